//! What a domain crate implements to act on webhook events.
//!
//! The inbox worker (in plane-server) parses each claimed item and hands it,
//! with the [`InboxItem`] itself, to every registered handler that wants it.
//! Handlers are idempotent by contract: an item can run again after a crash, a
//! lease expiry or a `replay`.
//!
//! What the worker does with the item afterwards depends on the [`Handled`]
//! outcome. An item no handler wants is marked ignored with the reason ("no
//! handler for issue.updated"), never silently done: done means a handler that
//! owns the event ran.

use std::fmt;

use crate::{BoxFuture, Envelope, InboxItem};

/// Acts on events of interest.
///
/// ```
/// use plane_webhook::{BoxFuture, Envelope, EventHandler, EventKind, Handled, HandlerError, InboxItem};
///
/// #[derive(Debug)]
/// struct CountWorkItems(std::sync::atomic::AtomicUsize);
///
/// impl EventHandler for CountWorkItems {
///     fn name(&self) -> &str { "count-work-items" }
///     fn wants(&self, envelope: &Envelope) -> bool { envelope.kind == EventKind::WorkItem }
///     fn handle<'a>(&'a self, _: &'a InboxItem, _: &'a Envelope) -> BoxFuture<'a, Result<Handled, HandlerError>> {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         Box::pin(async { Ok(Handled::Done) })
///     }
/// }
/// ```
pub trait EventHandler: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Whether this handler owns the event (its kind and action). Owning it
    /// does not mean acting on it: the handler may still answer
    /// [`Handled::NotOurs`], [`Handled::Ignored`] or [`Handled::Echo`].
    fn wants(&self, envelope: &Envelope) -> bool;

    /// Acts on the event; `item` says which inbox item it came in (its id,
    /// lease, delivery id and event key), for a handler that records the
    /// change with the item through `complete_with` (SQLite or PostgreSQL). An
    /// error is retried later with backoff, up to the store's `max_attempts`,
    /// then parked as dead.
    fn handle<'a>(
        &'a self,
        item: &'a InboxItem,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>>;
}

/// What a handler did with an event, and so what the worker does with the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Acted on it: the worker marks the item done.
    Done,
    /// Acted on it and already finished the item in the same transaction as
    /// its own change (`SqliteStore::complete_with`, `PgStore::complete_with`):
    /// the worker does nothing more, and handlers registered after this one do
    /// not see the item.
    Completed,
    /// About an object this handler does not own (a work item another system
    /// made): the item is done, and counted apart in metrics.
    NotOurs,
    /// Owned but deliberately not acted on: the item is marked ignored with
    /// the reason, shown by `deliveries list` (and `replay`able).
    Ignored {
        /// Why, for people reading `deliveries list`. No secrets.
        reason: String,
    },
    /// The echo of a write the connector itself made (a sync creating or
    /// changing a work item comes back as a webhook): recognised, and nothing
    /// to act on. The item is marked done with the note (shown by
    /// `deliveries list`) and counted apart in metrics (`echo`), so a
    /// person's edit (ignored as drift) and an object no handler owns
    /// (`not_ours`) stay apart from the connector's own traffic.
    Echo {
        /// Which write it echoes, for people reading `deliveries list`. No secrets.
        note: String,
    },
}

/// Why a handler could not finish; stored with the item as its last error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong, for people reading `deliveries list`. No secrets.
    pub message: String,
}

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
