//! `/metrics`: counters and gauges kept in memory and updated as deliveries
//! and inbox items change state, encoded by `prometheus-client` (every family
//! with `HELP` and `TYPE`).
//!
//! A scrape reads memory only: it never asks the delivery store anything. The
//! inbox gauges are seeded from [`DeliveryStore::stats`](plane_webhook::DeliveryStore::stats)
//! once at start-up and re-synchronised after each purge (daily by default),
//! which also takes in what `plane-server deliveries replay` did from another
//! process.
//!
//! Labels are fixed words (outcomes, reasons, results, HTTP statuses): never a
//! secret, never an id. The one exception is `profile` on the `plane_bir_*` gauges: a
//! BIR profile's key (its TIN's digits, or `name-<slug>` without a TIN), which is not a
//! secret and is bounded by the profiles synced into the store.
//!
//! # What matters to the business
//!
//! The `plane_bir_*` gauges say how the BIR deadlines stand: how many per status (as
//! `bir status` shows them, `overdue` included), how long until the next open one is
//! due, and when `bir sync` last succeeded. `bir sync` runs as a process of its own, so
//! they come from the deadline store, not from memory: [`refresh_deadlines`] reads it
//! at start, every [`DEADLINE_REFRESH`], and shortly after an inbox item is done (a
//! deadline filed in Plane shows within seconds), and keeps the figures for the
//! scrapes. The store is the one the configuration names ([`DeadlineSource`]): the SQLite
//! file, or PostgreSQL, read-only either way (nothing created or migrated). Days are
//! Manila days, as in `bir status`; "now" is the delivery store's clock, so tests can fix
//! it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use plane_bir::store::{manila_date, manila_day_end};
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, PgDeadlineStore, SqliteDeadlineStore, SyncRun,
};
use plane_core::PlaneClient;
use plane_webhook::{Clock, InboxStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{Notify, watch};

use crate::app::PlaneReadiness;

/// Processing latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    processed: Family<ResultLabels, Counter>,
    processing_seconds: Histogram,
    backlog: Gauge,
    dead: Gauge,
    in_progress: Gauge,
    in_flight: Gauge,
    waiting: Gauge,
    in_flight_limit: Gauge,
    enabled: Gauge,
    store_up: Gauge,
    deadlines: Arc<Mutex<Option<DeadlineFigures>>>,
    deadlines_changed: Arc<Notify>,
    plane_check: Arc<AtomicU8>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// The metrics of a service; with a Plane client, its request, retry and
    /// rate-limit figures are included (read from the client at each scrape).
    pub fn new(client: Option<&PlaneClient>) -> Self {
        let mut registry = Registry::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "plane_webhook_deliveries",
            "Webhook deliveries received, by outcome and reason",
            deliveries.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "plane_webhook_requests_in_flight",
            "Webhook requests being read, verified or stored now",
            in_flight.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "plane_webhook_requests_waiting",
            "Webhook requests waiting for an in-flight slot, their bodies not yet read",
            waiting.clone(),
        );
        let in_flight_limit = Gauge::default();
        registry.register(
            "plane_webhook_requests_in_flight_limit",
            "server.max_in_flight: past it, webhook requests wait before their body is read",
            in_flight_limit.clone(),
        );
        let processed = Family::<ResultLabels, Counter>::default();
        registry.register(
            "plane_inbox_processed",
            "Inbox items processed, by result: done, not_ours (done; about an object no handler owns), echo (done; the connector's own write coming back, note kept), ignored (no handler acted; reason kept, e.g. drift: a person's edit of a field the sync owns), failed (retried later), dead, lease_lost",
            processed.clone(),
        );
        let processing_seconds = Histogram::new(BUCKETS);
        registry.register_with_unit(
            "plane_inbox_processing",
            "Time to run the handlers of one inbox item",
            Unit::Seconds,
            processing_seconds.clone(),
        );
        let backlog = Gauge::default();
        registry.register(
            "plane_inbox_backlog_items",
            "Stored deliveries not yet finished (pending, being processed, or waiting to retry)",
            backlog.clone(),
        );
        let dead = Gauge::default();
        registry.register(
            "plane_inbox_dead_items",
            "Deliveries parked as dead after their last attempt (replay them)",
            dead.clone(),
        );
        let in_progress = Gauge::default();
        registry.register(
            "plane_inbox_in_progress_items",
            "Inbox items this process's worker is handling now",
            in_progress.clone(),
        );
        let enabled = Gauge::default();
        registry.register(
            "plane_connector_enabled",
            "1 when the connector is on; 0 when off (deliveries are stored and held)",
            enabled.clone(),
        );
        // 1 until a use says otherwise: the store was open when the service started.
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "plane_connector_store_up",
            "1 when the delivery store answered its last use (a claim, /readyz); 0 when it \
             did not (with PostgreSQL: the database cannot be reached)",
            store_up.clone(),
        );
        if let Some(client) = client {
            registry.register_collector(Box::new(PlaneClientCollector(client.clone())));
        }
        let plane_check = Arc::new(AtomicU8::new(0));
        registry.register_collector(Box::new(PlaneCheckCollector(plane_check.clone())));
        let deadlines = Arc::new(Mutex::new(None));
        registry.register_collector(Box::new(DeadlineCollector(deadlines.clone())));
        Self {
            registry,
            deliveries,
            processed,
            processing_seconds,
            backlog,
            dead,
            in_progress,
            in_flight,
            waiting,
            in_flight_limit,
            enabled,
            store_up,
            deadlines,
            deadlines_changed: Arc::new(Notify::new()),
            plane_check,
        }
    }

    /// Counts a delivery by outcome (`accepted`, `duplicate`, `rejected`) and
    /// reason; an accepted new delivery joins the backlog.
    pub fn delivery(&self, outcome: &'static str, reason: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels { outcome, reason })
            .inc();
        if (outcome, reason) == ("accepted", "new") {
            self.backlog.inc();
        }
    }

    /// A worker started handling an item.
    pub fn started(&self) {
        self.in_progress.inc();
    }

    /// Counts a processed inbox item by result (`done`, `not_ours`, `echo`,
    /// `ignored`, `failed`, `dead`, `lease_lost`) and its latency; finished
    /// items (all but `failed` and `lease_lost`) leave the backlog.
    pub fn processed(&self, result: &'static str, took: Duration) {
        self.in_progress.dec();
        self.processed.get_or_create(&ResultLabels { result }).inc();
        self.processing_seconds.observe(took.as_secs_f64());
        match result {
            "done" => {
                self.backlog.dec();
                // A handler acted: a deadline may have been filed, voided or reopened.
                self.refresh_deadlines_soon();
            }
            "not_ours" | "echo" | "ignored" => {
                self.backlog.dec();
            }
            "dead" => {
                self.backlog.dec();
                self.dead.inc();
            }
            _ => {}
        }
    }

    /// Sets the inbox gauges from the store's counts (start-up, after a purge).
    pub fn seed(&self, stats: &InboxStats) {
        let unfinished = stats.pending + stats.processing + stats.failed;
        self.backlog
            .set(i64::try_from(unfinished).unwrap_or(i64::MAX));
        self.dead.set(i64::try_from(stats.dead).unwrap_or(i64::MAX));
    }

    /// Whether the delivery store answered its last use.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Whether the connector is on.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.set(i64::from(on));
    }

    /// The gauges of webhook requests in flight, waiting, and the limit.
    pub(crate) fn in_flight_gauges(&self) -> (Gauge, Gauge, Gauge) {
        (
            self.in_flight.clone(),
            self.waiting.clone(),
            self.in_flight_limit.clone(),
        )
    }

    /// How many deliveries ended with this outcome and reason.
    pub fn delivery_count(&self, outcome: &'static str, reason: &'static str) -> u64 {
        self.deliveries
            .get(&DeliveryLabels { outcome, reason })
            .map_or(0, |c| c.get())
    }

    /// How many inbox items were processed with this result.
    pub fn processed_count(&self, result: &'static str) -> u64 {
        self.processed
            .get(&ResultLabels { result })
            .map_or(0, |c| c.get())
    }

    /// Stored deliveries not yet finished, as the gauge has it.
    pub fn backlog(&self) -> i64 {
        self.backlog.get()
    }

    /// Asks [`refresh_deadlines`] to read the deadline store again soon (it waits
    /// [`DEADLINE_SETTLE`] first, so a burst of changes costs one read).
    pub fn refresh_deadlines_soon(&self) {
        self.deadlines_changed.notify_one();
    }

    /// Replaces the deadline figures the `plane_bir_*` gauges show, all at once (a
    /// scrape sees the old figures or the new ones, never a mix).
    pub fn set_deadline_figures(&self, figures: DeadlineFigures) {
        *self
            .deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(figures);
    }

    /// The deadline figures last set, if any.
    pub fn deadline_figures(&self) -> Option<DeadlineFigures> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the last Plane check (`/readyz`, or the periodic one) answered.
    pub fn set_plane_check(&self, readiness: PlaneReadiness) {
        let index = PLANE_CHECK_RESULTS
            .iter()
            .position(|(r, _)| *r == readiness)
            .unwrap_or(0);
        // 0 stands for "not asked yet", so the index is stored plus one.
        self.plane_check.store(
            u8::try_from(index + 1).unwrap_or(u8::MAX),
            Ordering::Relaxed,
        );
    }

    /// The text exposition format (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The Plane client's own counters, read when scraped (they live in the client).
#[derive(Debug)]
struct PlaneClientCollector(PlaneClient);

impl Collector for PlaneClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let stats = self.0.stats();
        let limit = self.0.rate_limit();
        let responses = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "plane_api_responses",
            "Plane API answers by HTTP status",
            None,
            responses.metric_type(),
        )?;
        for (status, n) in &stats.responses {
            let labels = [("status", status.to_string())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, value) in [
            (
                "plane_api_requests",
                "Requests sent to Plane (retries included)",
                stats.requests,
            ),
            (
                "plane_api_retries",
                "Requests to Plane sent again after a retryable failure",
                stats.retries,
            ),
            (
                "plane_api_rate_limit_waits",
                "Times a request waited for the rate budget",
                limit.waits,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let waited = ConstCounter::new(limit.waited.as_secs_f64());
        waited.encode(encoder.encode_descriptor(
            "plane_api_rate_limit_wait",
            "Time spent waiting for the rate budget",
            Some(&Unit::Seconds),
            waited.metric_type(),
        )?)?;
        if let Some(remaining) = limit.remaining {
            let gauge = ConstGauge::new(i64::from(remaining));
            gauge.encode(encoder.encode_descriptor(
                "plane_api_rate_limit_remaining",
                "X-RateLimit-Remaining from Plane's last answer",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The `result` label of `plane_connector_plane_check`, one per [`PlaneReadiness`].
const PLANE_CHECK_RESULTS: [(PlaneReadiness, &str); 5] = [
    (PlaneReadiness::Ok, "ok"),
    (PlaneReadiness::Unauthorized, "unauthorized"),
    (PlaneReadiness::Unreachable, "unreachable"),
    (PlaneReadiness::NoAnswer, "no_answer"),
    (PlaneReadiness::NotChecked, "not_checked"),
];

/// The last Plane check as a gauge per word: 1 for the answer, 0 for the others (all
/// five, so an alert can ask `== 1` and a graph shows each). Nothing before the first.
#[derive(Debug)]
struct PlaneCheckCollector(Arc<AtomicU8>);

impl Collector for PlaneCheckCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let current = usize::from(self.0.load(Ordering::Relaxed));
        let mut family = encoder.encode_descriptor(
            "plane_connector_plane_check",
            "Plane's answer to the last check of GET users/me (by /readyz, and by the server every 5 minutes): 1 for the answer, 0 for the others: ok, unauthorized (the API key or token was refused), unreachable (an error or no connection), no_answer (none within 3 s), not_checked (connector off or no API key). No sample before the first check.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        if current == 0 {
            return Ok(());
        }
        for (i, (_, word)) in PLANE_CHECK_RESULTS.iter().enumerate() {
            let labels = [("result", *word)];
            ConstGauge::new(i64::from(i + 1 == current)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// How often [`refresh_deadlines`] reads the deadline store when nothing asks sooner.
pub const DEADLINE_REFRESH: Duration = Duration::from_secs(60);

/// How long [`refresh_deadlines`] waits after [`Metrics::refresh_deadlines_soon`]
/// before reading, so a burst of handled events costs one read.
pub const DEADLINE_SETTLE: Duration = Duration::from_secs(1);

/// The `status` label of `plane_bir_deadlines`, in this order: as `bir status` shows
/// them (`pending` and `in_progress` are those not yet overdue).
pub const SHOWN_STATUSES: [&str; 5] = ["pending", "in_progress", "overdue", "filed", "void"];

/// One profile's deadline figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileFigures {
    /// Deadlines stored, by status as shown ([`SHOWN_STATUSES`] order).
    pub deadlines: [u64; 5],
    /// Seconds from the refresh to the end (Manila midnight) of the due day of the
    /// earliest open deadline that is not overdue yet; `None` when there is none.
    pub next_unfiled_seconds: Option<i64>,
    /// The last successful `bir sync`: when it finished (unix seconds) and how long it
    /// waited for Plane's rate limit (seconds).
    pub last_sync: Option<(i64, f64)>,
}

impl ProfileFigures {
    /// Open deadlines past their due day.
    pub fn overdue(&self) -> u64 {
        self.deadlines[2]
    }
}

/// What the `plane_bir_*` gauges show, computed from the store at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadlineFigures {
    /// By profile key.
    pub profiles: BTreeMap<String, ProfileFigures>,
    /// When the store was read (unix seconds).
    pub refreshed_at: i64,
}

impl DeadlineFigures {
    /// The figures of these deadlines and sync runs at `now` (today is `now`'s Manila day).
    pub fn compute(records: &[DeadlineRecord], runs: &[SyncRun], now: DateTime<Utc>) -> Self {
        let today = manila_date(now);
        let mut profiles: BTreeMap<String, ProfileFigures> = BTreeMap::new();
        for r in records {
            let figures = profiles.entry(r.profile.clone()).or_default();
            let overdue = r.status.is_overdue(r.due_date, today);
            let shown = match r.status {
                _ if overdue => 2,
                DeadlineStatus::Pending => 0,
                DeadlineStatus::InProgress => 1,
                DeadlineStatus::Filed => 3,
                DeadlineStatus::Void => 4,
            };
            figures.deadlines[shown] += 1;
            if !r.status.is_closed() && !overdue {
                let left = (manila_day_end(r.due_date) - now).num_seconds();
                figures.next_unfiled_seconds =
                    Some(figures.next_unfiled_seconds.map_or(left, |n| n.min(left)));
            }
        }
        for run in runs {
            profiles.entry(run.profile.clone()).or_default().last_sync =
                Some((run.finished_at.timestamp(), run.waited.as_secs_f64()));
        }
        DeadlineFigures {
            profiles,
            refreshed_at: now.timestamp(),
        }
    }
}

const PROFILE_HELP: &str = "profile is the BIR profile's key (its TIN's digits, or name-<slug> without a TIN): bounded by the profiles synced into the store.";

/// Encodes the last [`DeadlineFigures`]; the families' HELP and TYPE are always
/// written, samples only once the store was read.
#[derive(Debug)]
struct DeadlineCollector(Arc<Mutex<Option<DeadlineFigures>>>);

impl Collector for DeadlineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let figures = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let empty = DeadlineFigures::default();
        let figures_or_empty = figures.as_ref().unwrap_or(&empty);
        let profiles = &figures_or_empty.profiles;
        let gauge = prometheus_client::metrics::MetricType::Gauge;

        let help = format!(
            "BIR deadlines in the store, by status as bir status shows it: pending, in_progress, overdue (pending or in progress after its due day, Manila time), filed, void; {PROFILE_HELP}"
        );
        let mut family = encoder.encode_descriptor("plane_bir_deadlines", &help, None, gauge)?;
        for (profile, f) in profiles {
            for (status, n) in SHOWN_STATUSES.iter().zip(f.deadlines) {
                let labels = [("profile", profile.as_str()), ("status", status)];
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }

        let help = format!(
            "BIR deadlines still open (pending or in progress) after their due day, Manila time: file them, then close their work items in Plane; {PROFILE_HELP}"
        );
        let mut family =
            encoder.encode_descriptor("plane_bir_overdue_deadlines", &help, None, gauge)?;
        for (profile, f) in profiles {
            ConstGauge::new(i64::try_from(f.overdue()).unwrap_or(i64::MAX))
                .encode(family.encode_family(&[("profile", profile.as_str())])?)?;
        }

        let help = format!(
            "Seconds from the last refresh to the end of the due day (Manila midnight) of the next open BIR deadline not yet overdue; no sample for a profile without one; {PROFILE_HELP}"
        );
        let mut family = encoder.encode_descriptor(
            "plane_bir_next_unfiled_deadline",
            &help,
            Some(&Unit::Seconds),
            gauge,
        )?;
        for (profile, f) in profiles {
            if let Some(left) = f.next_unfiled_seconds {
                ConstGauge::new(left)
                    .encode(family.encode_family(&[("profile", profile.as_str())])?)?;
            }
        }

        let help = format!(
            "When bir sync last succeeded for the profile (unix seconds; a dry or failed run does not count); {PROFILE_HELP}"
        );
        let mut family = encoder.encode_descriptor(
            "plane_bir_last_sync_timestamp",
            &help,
            Some(&Unit::Seconds),
            gauge,
        )?;
        for (profile, f) in profiles {
            if let Some((at, _)) = f.last_sync {
                ConstGauge::new(at)
                    .encode(family.encode_family(&[("profile", profile.as_str())])?)?;
            }
        }

        let help = format!(
            "Seconds the last successful bir sync of the profile waited for Plane's rate limit (the server's own waits are plane_api_rate_limit_wait_seconds_total); {PROFILE_HELP}"
        );
        let mut family = encoder.encode_descriptor(
            "plane_bir_last_sync_rate_limit_wait",
            &help,
            Some(&Unit::Seconds),
            gauge,
        )?;
        for (profile, f) in profiles {
            if let Some((_, waited)) = f.last_sync {
                ConstGauge::new(waited)
                    .encode(family.encode_family(&[("profile", profile.as_str())])?)?;
            }
        }

        let family = encoder.encode_descriptor(
            "plane_bir_deadlines_refreshed_timestamp",
            "When the plane_bir_* gauges were last read from the deadline store (unix seconds; every minute, and after a handled event).",
            Some(&Unit::Seconds),
            gauge,
        )?;
        if let Some(figures) = &figures {
            ConstGauge::new(figures.refreshed_at).encode(family)?;
        }
        Ok(())
    }
}

/// Where [`refresh_deadlines`] reads the deadlines: the SQLite file, or PostgreSQL.
#[derive(Debug, Clone)]
pub enum DeadlineSource {
    /// The SQLite file (opened read-only).
    Sqlite(PathBuf),
    /// PostgreSQL: a pool of its own (two connections), made without creating anything.
    Postgres(Box<plane_postgres::Options>),
}

impl From<PathBuf> for DeadlineSource {
    fn from(path: PathBuf) -> Self {
        DeadlineSource::Sqlite(path)
    }
}

impl From<&crate::config::Config> for DeadlineSource {
    /// The store the configuration names: PostgreSQL when the database is a `postgres://`
    /// URL, else the SQLite file.
    fn from(config: &crate::config::Config) -> Self {
        match &config.postgres {
            Some(pg) => DeadlineSource::Postgres(Box::new(pg.options().clone())),
            None => DeadlineSource::Sqlite(config.database.clone()),
        }
    }
}

impl DeadlineSource {
    /// Opens the store read-only. A file opens on the blocking pool; PostgreSQL connects.
    async fn open(&self) -> Result<Arc<dyn DeadlineStore>, plane_bir::Error> {
        match self {
            DeadlineSource::Sqlite(path) => {
                let path = path.clone();
                let shown = path.display().to_string();
                let store =
                    tokio::task::spawn_blocking(move || SqliteDeadlineStore::open_read_only(&path))
                        .await
                        .map_err(|e| plane_bir::Error::Store {
                            path: shown,
                            operation: "open the database read-only",
                            message: e.to_string(),
                        })??;
                Ok(Arc::new(store))
            }
            DeadlineSource::Postgres(options) => {
                let db = (**options).clone().pool_size(2).connect_existing().await?;
                Ok(Arc::new(PgDeadlineStore::open_read_only(db).await?))
            }
        }
    }
}

/// Keeps the `plane_bir_*` gauges current until `stop` turns true: reads the deadline
/// store of `source` (a SQLite path, a [`Config`](crate::config::Config), or a
/// [`DeadlineSource`]) at once, every [`DEADLINE_REFRESH`] of tokio time, and
/// [`DEADLINE_SETTLE`] after [`Metrics::refresh_deadlines_soon`]. "Now" comes from
/// `clock`. A store it cannot read (not created yet, a newer schema) is logged and
/// tried again at the next turn; the gauges keep their last figures meanwhile, and
/// `plane_bir_deadlines_refreshed_timestamp_seconds` shows how old they are.
///
/// The source is taken at once, so the future borrows nothing (`tokio::spawn` it).
pub fn refresh_deadlines(
    metrics: Arc<Metrics>,
    source: impl Into<DeadlineSource>,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    refresh_deadlines_from(metrics, source.into(), clock, stop)
}

async fn refresh_deadlines_from(
    metrics: Arc<Metrics>,
    source: DeadlineSource,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(DEADLINE_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let changed = metrics.deadlines_changed.clone();
    let mut reader = DeadlineReader {
        source,
        store: None,
        failing: false,
    };
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = every.tick() => {}
            () = changed.notified() => {
                tokio::select! {
                    () = tokio::time::sleep(DEADLINE_SETTLE) => {}
                    _ = stop.changed() => return,
                }
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let now = DateTime::<Utc>::from_timestamp_millis(clock.now_ms()).unwrap_or_default();
        if let Some(figures) = reader.read(now).await {
            metrics.set_deadline_figures(figures);
        }
    }
}

/// The read-only store [`refresh_deadlines`] keeps between reads.
struct DeadlineReader {
    source: DeadlineSource,
    store: Option<Arc<dyn DeadlineStore>>,
    /// Whether the last read failed (a failure is logged as a warning once, until a
    /// read works again, so a missing file does not fill the log every minute).
    failing: bool,
}

impl DeadlineReader {
    /// Reads the store; a store that failed is dropped and opened again next time.
    async fn try_read(&mut self, now: DateTime<Utc>) -> Result<DeadlineFigures, plane_bir::Error> {
        let store = match self.store.take() {
            Some(store) => store,
            None => self.source.open().await?,
        };
        let figures = DeadlineFigures::compute(&store.all().await?, &store.sync_runs().await?, now);
        self.store = Some(store);
        Ok(figures)
    }

    async fn read(&mut self, now: DateTime<Utc>) -> Option<DeadlineFigures> {
        match self.try_read(now).await {
            Ok(figures) => {
                self.failing = false;
                Some(figures)
            }
            Err(e) => {
                if self.failing {
                    tracing::debug!(error = %e, "deadline gauges: cannot read the deadline store");
                } else {
                    tracing::warn!(error = %e, "deadline gauges: cannot read the deadline store; the plane_bir_* gauges keep their last figures");
                }
                self.failing = true;
                None
            }
        }
    }
}
