//! What a domain crate implements to act on webhook events.
//!
//! The inbox worker (in plane-server) parses each claimed item and hands it to
//! every registered handler that wants it. Handlers are idempotent by contract:
//! an item can run again after a crash, a lease expiry or a `replay`.

use std::fmt;

use crate::{BoxFuture, Envelope};

/// Acts on events of interest.
///
/// ```
/// use plane_webhook::{BoxFuture, Envelope, EventHandler, EventKind, HandlerError};
///
/// #[derive(Debug)]
/// struct CountWorkItems(std::sync::atomic::AtomicUsize);
///
/// impl EventHandler for CountWorkItems {
///     fn name(&self) -> &str { "count-work-items" }
///     fn wants(&self, envelope: &Envelope) -> bool { envelope.kind == EventKind::WorkItem }
///     fn handle<'a>(&'a self, _: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>> {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait EventHandler: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Whether this handler acts on the event.
    fn wants(&self, envelope: &Envelope) -> bool;

    /// Acts on the event. An error is retried later with backoff, up to the
    /// store's `max_attempts`, then parked as dead.
    fn handle<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>>;
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
