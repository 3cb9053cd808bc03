//! The durable record of deliveries and the inbox a worker drains.
//!
//! The receiver calls [`DeliveryStore::record`] once a delivery is verified and
//! parsed: in one transaction the delivery is inserted and queued, and a unique
//! event key backs the dedupe (Plane Cloud's stable event id, otherwise a digest
//! of the body: a repeated delivery id and Plane CE's retries, which carry a new
//! delivery id and the same body, are both caught). Only after that returns may
//! it answer 200. A worker then [`claim`](DeliveryStore::claim)s items under a
//! lease, runs the handler, and marks them [`complete`](DeliveryStore::complete),
//! [`ignore`](DeliveryStore::ignore)d (no handler owns the event; the reason is
//! kept) or [`fail`](DeliveryStore::fail)ed (retried with exponential backoff,
//! dead after `max_attempts`). A crashed worker's items come back when the
//! lease ends.

mod copy;
mod memory;
mod postgres;
mod private_file;
mod sqlite;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use private_file::prepare_database_file;
pub use sqlite::SqliteStore;

use bytes::Bytes;

#[cfg(doc)]
use crate::Envelope;
use crate::{Error, EventHead};

/// A boxed future, as returned by [`DeliveryStore`] methods.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A verified delivery, ready to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `X-Plane-Delivery`: new on every attempt of Plane CE, so not the dedupe key.
    pub delivery_id: Uuid,
    /// The event as sent (`issue`, `workitem.updated`...), for listings and routing.
    pub event: String,
    /// The normalised action (`created`, `updated`...).
    pub action: String,
    /// What identifies the event across re-sends: `event:<id>` when Plane sends a
    /// stable event id (v2), otherwise `sha256:<digest of the body>`.
    pub event_key: String,
    /// The raw body, exactly as verified (shared with the request, not copied).
    pub body: Bytes,
    /// Where the event's key sits in the store's dedupe index: the digits of
    /// `data.updated_at` (to the millisecond), so the keys of deliveries that
    /// arrive together sit together and a commit writes a few index pages
    /// instead of one per delivery. 0 for an `event:` key or a body without a
    /// timestamp. It never decides what is a duplicate: the same body always
    /// gets the same order, and an event id always 0.
    pub order: u64,
}

impl NewDelivery {
    /// Builds the record of a verified delivery from its head
    /// ([`EventHead::parse`], or [`Envelope::head`] of a parsed one).
    pub fn new(delivery_id: Uuid, head: &EventHead, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let event_key = event_key(head.event_id.as_deref(), &body);
        let order = match head.event_id {
            Some(_) => 0,
            None => head.updated_at.as_deref().map_or(0, order_of),
        };
        Self {
            delivery_id,
            event: head.event.clone(),
            action: head.action.as_str().to_owned(),
            event_key,
            body,
            order,
        }
    }
}

/// The first 17 digits of a timestamp as a number (`2026-11-25T13:42:52.086386Z`
/// gives 20261125134252086), padded with zeros: ordered as the time is, for
/// Plane's fixed-width ISO 8601.
pub(crate) fn order_of(timestamp: &str) -> u64 {
    let digits = timestamp
        .bytes()
        .filter(u8::is_ascii_digit)
        .chain(std::iter::repeat(b'0'))
        .take(17);
    digits.fold(0, |n, d| n * 10 + u64::from(d - b'0'))
}

/// What identifies an event across re-sends: `event:<id>` for a stable event id,
/// otherwise `sha256:<hex digest of the body>`.
pub(crate) fn event_key(event_id: Option<&str>, body: &[u8]) -> String {
    match event_id {
        Some(id) => format!("event:{id}"),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

/// What [`DeliveryStore::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Stored and queued.
    New {
        /// The new row's id (what `deliveries replay` takes).
        id: i64,
    },
    /// Already known; nothing was stored or queued.
    Duplicate {
        /// The row of the delivery first stored for this event.
        id: i64,
        /// What matched: the delivery id, or only the event.
        by: DuplicateBy,
    },
}

/// Why a delivery counts as a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateBy {
    /// The same `X-Plane-Delivery` (and the same event).
    DeliveryId,
    /// A new delivery id, but the same event (Plane's retries change the id).
    SameEvent,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting for a worker.
    Pending,
    /// Leased by a worker.
    Processing,
    /// Handled.
    Done,
    /// The handler failed; waiting for its next attempt.
    Failed,
    /// Failed `max_attempts` times; needs a person (`replay`).
    Dead,
    /// Finished without being handled: no handler owns the event, or the one
    /// that owns it chose not to act. The reason is kept in
    /// [`DeliveryRecord::note`]; `replay` runs it again.
    Ignored,
}

impl Status {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Ignored => "ignored",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Status::Pending,
            "processing" => Status::Processing,
            "done" => Status::Done,
            "failed" => Status::Failed,
            "dead" => Status::Dead,
            "ignored" => Status::Ignored,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An item a worker has leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// The delivery's row id.
    pub id: i64,
    /// The `X-Plane-Delivery` it arrived with.
    pub delivery_id: Uuid,
    /// The event as sent (`issue`...).
    pub event: String,
    /// The normalised action (`created`, `updated`...).
    pub action: String,
    /// What identifies the event across re-sends (see [`NewDelivery::event_key`]):
    /// a domain crate records it beside the change the event caused.
    pub event_key: String,
    /// The raw body, exactly as verified; parse it with [`Envelope::parse`].
    /// Shared, not copied, when the item goes from the receiver straight to a
    /// waiting claim.
    pub body: Bytes,
    /// Attempts so far, including this one.
    pub attempts: u32,
    /// Proves this claim holds the item: pass it to `complete`, `fail` or
    /// `release`. Each claim gets a new one, so a worker that outlived its lease
    /// cannot finish an item that was handed out again, even to itself.
    pub lease: String,
}

/// A stored delivery, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The row id.
    pub id: i64,
    /// The `X-Plane-Delivery` it arrived with.
    pub delivery_id: Uuid,
    /// The event as sent (`issue`...).
    pub event: String,
    /// The normalised action (`created`, `updated`...).
    pub action: String,
    /// Where it is in its life.
    pub status: Status,
    /// Handler attempts so far.
    pub attempts: u32,
    /// When it was recorded, in Unix milliseconds.
    pub received_at: i64,
    /// When a worker may take it next, in Unix milliseconds.
    pub next_attempt_at: i64,
    /// When it became done or dead, in Unix milliseconds; purge counts from here.
    pub finished_at: Option<i64>,
    /// The handler's last error, or why the lease was lost.
    pub last_error: Option<String>,
    /// Why an [`Status::Ignored`] item was not handled, or what its handler
    /// noted about a [`Status::Done`] one (the echo of the connector's own
    /// write, see [`DeliveryStore::complete_noted`]); cleared by `replay`.
    pub note: Option<String>,
}

/// What [`DeliveryStore::fail`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Tried again later.
    Retry {
        /// When, in Unix milliseconds.
        at: i64,
    },
    /// Out of attempts.
    Dead,
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Waiting for a worker.
    pub pending: u64,
    /// Leased by a worker now.
    pub processing: u64,
    /// Failed and waiting for their next attempt.
    pub failed: u64,
    /// Out of attempts: need a person (`deliveries replay`).
    pub dead: u64,
    /// Handled and kept until the retention purge.
    pub done: u64,
    /// Finished without a handler acting, kept until the retention purge.
    pub ignored: u64,
    /// Receive time (unix ms) of the oldest unfinished item.
    pub oldest_unfinished: Option<i64>,
}

/// What [`SqliteStore::inspect_inbox`] and [`PgStore::inspect_inbox`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxSnapshot {
    /// Counts by status.
    pub stats: InboxStats,
    /// Pending, processing and failed deliveries, oldest first.
    pub waiting: Vec<DeliveryRecord>,
    /// Dead deliveries, newest first.
    pub dead: Vec<DeliveryRecord>,
}

/// What a panic carried, for the error that replaces it (`complete_with`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A source of the current time, so tests can move it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Whether this is a machine's wall clock ([`SystemClock`]), which may be wrong:
    /// ahead or behind the other replicas' by any amount. A store shared by several
    /// machines ([`PgStore`]) then takes its lease times from the database's clock
    /// instead, the one clock they all share. `false` (the default) for a clock a test
    /// moves by hand ([`ManualClock`]), which every store uses as it is.
    fn is_wall_clock(&self) -> bool {
        false
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn is_wall_clock(&self) -> bool {
        true
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at `ms`.
    pub fn new(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }

    /// Moves forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_ms(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Retry and retention settings shared by every store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// After this many failed attempts an item is dead (default 8).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (default 10 s).
    pub retry_base: Duration,
    /// Longest retry delay (default 1 h).
    pub retry_max: Duration,
    /// Where "now" comes from: [`SystemClock`], or a [`ManualClock`] in tests. A
    /// [`PgStore`] takes its times from the database's clock instead when this one is a
    /// [wall clock](Clock::is_wall_clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            clock: Arc::new(SystemClock),
        }
    }
}

impl StoreConfig {
    /// When an item that failed its `attempts`-th try is tried again.
    pub(crate) fn after_failure(&self, attempts: u32, now: i64) -> FailOutcome {
        if attempts >= self.max_attempts {
            return FailOutcome::Dead;
        }
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let delay = self.retry_base.saturating_mul(factor).min(self.retry_max);
        FailOutcome::Retry {
            at: now + duration_ms(delay),
        }
    }
}

/// A lease token: the worker's name (for people reading the table) and a
/// unique part.
pub(crate) fn lease_token(worker: &str) -> String {
    format!("{worker}/{}", Uuid::new_v4())
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Durable de-duplication and the inbox. Implemented by [`SqliteStore`] (the
/// default, durable), [`PgStore`] (several replicas on one PostgreSQL) and
/// [`MemoryStore`] (tests).
pub trait DeliveryStore: Send + Sync + fmt::Debug {
    /// Stores a verified delivery and queues it, in one transaction; when this
    /// returns `New`, the delivery is on disk.
    fn record(&self, delivery: NewDelivery) -> BoxFuture<'_, Result<RecordOutcome, Error>>;

    /// Leases up to `limit` ready items to `worker` for `lease`.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<InboxItem>, Error>>;

    /// As [`claim`](Self::claim), but when fewer than `limit` items are ready
    /// the claim may wait up to `wait` for deliveries to arrive, and a store
    /// that can take them leases them to it as they are recorded, in the same
    /// transaction (no second write to lease them, no read to load them).
    /// Answers as soon as it holds some items. The default claims once,
    /// without waiting.
    fn claim_waiting<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<InboxItem>, Error>> {
        let _ = wait;
        self.claim(worker, limit, lease)
    }

    /// Marks a leased item handled. [`Error::LeaseLost`] when the lease ended
    /// and the item was claimed again.
    fn complete<'a>(&'a self, item: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>>;

    /// Marks several leased items handled: one answer per item, in order, as
    /// [`complete`](Self::complete) would give. A store that can does it with
    /// one write (the SQLite store: one command to its writer, one reply); the
    /// default completes them one at a time.
    fn complete_all<'a>(&'a self, items: &'a [InboxItem]) -> BoxFuture<'a, Vec<Result<(), Error>>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                answers.push(self.complete(item).await);
            }
            answers
        })
    }

    /// Marks a leased item finished without being handled, keeping `reason`
    /// (shown by `deliveries list`). [`Error::LeaseLost`] as for `complete`.
    fn ignore<'a>(
        &'a self,
        item: &'a InboxItem,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Marks a leased item done, keeping `note` (shown by `deliveries list`):
    /// for an event its handler recognised and had nothing to do about, such
    /// as the echo of the connector's own write (`Handled::Echo`).
    /// [`Error::LeaseLost`] as for `complete`.
    fn complete_noted<'a>(
        &'a self,
        item: &'a InboxItem,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Pushes the lease of an item this claim still holds to `lease` from now,
    /// for handlers that run long; [`Error::LeaseLost`] if it was claimed again.
    fn extend<'a>(
        &'a self,
        item: &'a InboxItem,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Records a failed attempt: retried later with backoff, or dead.
    fn fail<'a>(
        &'a self,
        item: &'a InboxItem,
        error: &'a str,
    ) -> BoxFuture<'a, Result<FailOutcome, Error>>;

    /// Gives a leased item back untouched (graceful shutdown); the attempt does not count.
    fn release<'a>(&'a self, item: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>>;

    /// Deliveries, newest first, optionally of one status.
    fn list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeliveryRecord>, Error>>;

    /// Puts a delivery back in the inbox with fresh attempts;
    /// [`Error::InProgress`] while a worker holds it.
    fn replay(&self, id: i64) -> BoxFuture<'_, Result<(), Error>>;

    /// Deletes done, ignored and dead deliveries finished more than `older_than` ago;
    /// returns how many. Their ids and event keys stop counting as duplicates.
    fn purge(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>>;

    /// Counts by status.
    fn stats(&self) -> BoxFuture<'_, Result<InboxStats, Error>>;

    /// Answers when the store can take a write now (health checks); cheaper
    /// than `stats`.
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { self.stats().await.map(drop) })
    }

    /// Where the store's "now" comes from ([`StoreConfig::clock`]), so the rest of a
    /// service reads the same time (a [`ManualClock`] in tests). The system clock for a
    /// store that was given none. ([`PgStore`] answers the clock it was given, but with a
    /// wall clock its stored times are the database's: see its docs.)
    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}
