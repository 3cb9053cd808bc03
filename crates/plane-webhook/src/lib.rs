//! Plane webhooks: verification, typed events, a durable inbox, and the
//! handler trait domain crates implement.
//!
//! * [`Verifier`] checks `X-Plane-Signature` (HMAC-SHA256 over the raw body,
//!   several secrets during rotation) before anything parses the body.
//! * [`DeliveryHeaders`] reads `X-Plane-Delivery` / `X-Plane-Event`.
//! * [`Envelope`] parses v1 (Plane CE) and v2 (Plane Cloud) bodies into typed
//!   payloads, normalising `create`/`created` and passing unknown events through.
//! * [`DeliveryStore`] ([`SqliteStore`], [`MemoryStore`]) records each verified
//!   delivery and queues it in one transaction, deduplicating on the event, and
//!   serves the inbox to a worker under leases.
//! * [`EventHandler`] is what a domain crate (plane-bir) implements to act on events.
//!
//! ```
//! use plane_webhook::{Envelope, Verifier};
//! let secret = format!("plane_wh_{}", "0".repeat(32));
//! let verifier = Verifier::new([&secret]).unwrap();
//! let body = br#"{"event": "project", "action": "created", "data": {"id": "a9264a20-6679-4a9d-ab58-348ec8b80962", "name": "BIR"}}"#;
//! verifier.verify(body, Some(&Verifier::sign(&secret, body))).unwrap();
//! let envelope = Envelope::parse(body).unwrap();
//! assert_eq!(envelope.action.as_str(), "created");
//! ```

#![warn(missing_docs)]

mod envelope;
mod handler;
mod headers;
mod store;
mod verify;

pub use envelope::{
    Action, Activity, Actor, CommentData, CycleData, Envelope, EventKind, IdOr, ModuleData,
    Payload, ProjectData, StateRef, WorkItemData,
};
pub use handler::{EventHandler, Handled, HandlerError};
pub use headers::DeliveryHeaders;
pub use store::{
    BoxFuture, Clock, DeliveryRecord, DeliveryStore, DuplicateBy, FailOutcome, InboxItem,
    InboxStats, ManualClock, MemoryStore, NewDelivery, RecordOutcome, SqliteStore, Status,
    StoreConfig, SystemClock,
};
pub use verify::{NoSecret, SignatureError, Verified, Verifier};

/// Everything that can go wrong receiving or storing a webhook.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A delivery header is missing or malformed.
    #[error("header {header} {message}")]
    BadHeader {
        /// The header's name, such as `X-Plane-Delivery`.
        header: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The body is not a Plane webhook envelope.
    #[error("{message}")]
    BadEnvelope {
        /// What the parser found, with a short excerpt of the body.
        message: String,
    },
    /// The store could not do what was asked; nothing was acknowledged.
    #[error("delivery store {path}: could not {operation}: {message}")]
    Store {
        /// The database file.
        path: String,
        /// What the store was doing, as a verb phrase (`record a delivery`).
        operation: &'static str,
        /// SQLite's message.
        message: String,
    },
    /// The database was written by a newer version of plane-webhook.
    #[error(
        "delivery store {path} has schema version {found}, newer than the {supported} this build \
         understands; run the newer plane-server, or point --db at another file"
    )]
    SchemaTooNew {
        /// The database file.
        path: String,
        /// The schema version in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// A domain component's tables in the database were written by a newer build.
    #[error(
        "database {path}: component {component} has schema version {found}, newer than the \
         {supported} this build understands; run the newer plane-server, or point --db at another file"
    )]
    ComponentSchemaTooNew {
        /// The database file.
        path: String,
        /// The component (`bir`...).
        component: String,
        /// Its version in the file.
        found: i64,
        /// The newest version this build knows (its number of steps).
        supported: i64,
    },
    /// The worker's lease on this item ended and it went back to the inbox.
    #[error(
        "delivery {id}: the lease ended before the worker finished; another worker may have it"
    )]
    LeaseLost {
        /// The delivery's row id.
        id: i64,
    },
    /// A worker holds this delivery right now; replaying it would run it twice at once.
    #[error(
        "delivery {id} is being processed now; replay it once it has finished or its lease has ended"
    )]
    InProgress {
        /// The delivery's row id.
        id: i64,
    },
    /// No delivery has this id.
    #[error("no delivery with id {id}")]
    UnknownDelivery {
        /// The id asked for.
        id: i64,
    },
    /// The `X-Plane-Signature` header did not verify the body; nothing was parsed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// No webhook secret is configured, so no delivery can be verified.
    #[error(transparent)]
    NoSecret(#[from] NoSecret),
}

/// A short printable prefix of untrusted input, for error messages.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}
