//! Plane webhooks: verification, typed events, a durable inbox, and the
//! handler trait domain crates implement.
//!
//! * [`Verifier`] checks `X-Plane-Signature` (HMAC-SHA256 over the raw body,
//!   several secrets during rotation) before anything parses the body.
//! * [`DeliveryHeaders`] reads `X-Plane-Delivery` / `X-Plane-Event`.
//! * [`Envelope`] parses v1 (Plane CE) and v2 (Plane Cloud) bodies into typed
//!   payloads, normalising `create`/`created` and passing unknown events through.
//! * [`DeliveryStore`] records each verified delivery and queues it in one
//!   transaction, deduplicating on the event, and serves the inbox to a worker under
//!   leases: [`SqliteStore`] (the embedded default, one machine), [`PgStore`]
//!   (several replicas sharing one PostgreSQL: a unique constraint for dedupe,
//!   `FOR UPDATE SKIP LOCKED` claims, deliveries recorded together committed
//!   together), [`MemoryStore`] (tests). One test suite runs against all three.
//! * [`EventHandler`] is what a domain crate (plane-bir) implements to act on
//!   events; its [`Handled`] outcome says whether the worker marks the item
//!   done, leaves it (the handler completed it), ignores it with a reason, or
//!   marks it done with a note (the echo of the connector's own write).
//!   An event no handler owns is ignored, never silently done.
//!
//! # A domain change applied exactly once
//!
//! On PostgreSQL the same holds through [`PgStore::complete_with`] (the closure gets
//! the `tokio_postgres` transaction and may `.await` its statements), and a domain
//! crate runs its migrations with [`PgStore::database`]`().migrate(...)` in the same
//! schema. The SQLite side:
//!
//! A domain crate keeps its tables in the deliveries' SQLite file, registers
//! them with [`SqliteStore::migrate`] (versions per component in
//! `schema_migrations`; `PRAGMA user_version` stays the deliveries'), and
//! applies an event with [`SqliteStore::complete_with`]: the lease is checked,
//! the change is made and the inbox item is marked done in one transaction.
//! If the lease was lost, the change never happens; if the change fails, it is
//! rolled back and the item is retried. The handler then answers
//! [`Handled::Completed`].
//!
//! ```
//! use plane_webhook::{DeliveryStore, Envelope, NewDelivery, SqliteStore, Status, StoreConfig};
//!
//! const STEPS: &[&str] = &[
//!     "CREATE TABLE deadlines (work_item TEXT PRIMARY KEY, status TEXT NOT NULL, event_key TEXT)",
//! ];
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("connector.db"), StoreConfig::default()).unwrap();
//! store.migrate("toy", STEPS).await.unwrap();
//! store
//!     .write(|tx| tx.execute("INSERT INTO deadlines VALUES ('wi-1', 'pending', NULL)", []))
//!     .await
//!     .unwrap()
//!     .unwrap();
//!
//! // The receiver stored a delivery; the worker claimed it and calls the handler.
//! let body = br#"{"event": "issue", "action": "updated", "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "state": {"id": "3f0e2c1a-0000-4000-8000-000000000001", "group": "completed"}}}"#;
//! let envelope = Envelope::parse(body).unwrap();
//! store.record(NewDelivery::new(uuid::Uuid::new_v4(), &envelope.head(), body.to_vec())).await.unwrap();
//! let item = store.claim("worker", 1, std::time::Duration::from_secs(60)).await.unwrap().remove(0);
//!
//! // In the handler: the change and the completion, in one transaction.
//! let filed = envelope.work_item().and_then(|w| w.state_group()) == Some("completed");
//! let key = item.event_key.clone();
//! let changed = store
//!     .complete_with(&item, move |tx| {
//!         tx.execute(
//!             "UPDATE deadlines SET status = ?1, event_key = ?2 WHERE work_item = 'wi-1'",
//!             [if filed { "filed" } else { "pending" }, key.as_str()],
//!         )
//!     })
//!     .await
//!     .expect("the store (lease lost, disk)")
//!     .expect("the domain change");
//! assert_eq!(changed, 1);
//! // ...and the handler returns Ok(Handled::Completed).
//! assert_eq!(store.list(Some(Status::Done), 10).await.unwrap().len(), 1);
//! # });
//! ```
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
    Action, Activity, Actor, CommentData, CycleData, Envelope, EventHead, EventKind, Extra, IdOr,
    LabelRef, ModuleData, Payload, ProjectData, StateRef, WorkItemData,
};
pub use handler::{EventHandler, Handled, HandlerError};
pub use headers::DeliveryHeaders;
pub use store::{
    BoxFuture, Clock, DeliveryRecord, DeliveryStore, DuplicateBy, FailOutcome, InboxItem,
    InboxSnapshot, InboxStats, ManualClock, MemoryStore, NewDelivery, PgStore, RecordOutcome,
    SqliteStore, Status, StoreConfig, SystemClock, prepare_database_file,
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
        /// The database file, or the PostgreSQL URL without its password (and the schema).
        path: String,
        /// What the store was doing, as a verb phrase (`record a delivery`).
        operation: &'static str,
        /// The database's message.
        message: String,
    },
    /// The database could not be reached ([`PgStore`]): no connection could be made, or
    /// the one in use was lost (a restart, a network cut). Nothing was acknowledged; the
    /// same call may work once the database is back, and the pool reconnects by itself.
    /// The receiver closes the connection without an answer, so Plane sends again; a
    /// health check reports it as a lost connection ([`Error::is_unavailable`]).
    #[error("delivery store {target} is unavailable: could not {operation}: {message}")]
    Unavailable {
        /// The PostgreSQL URL without its password.
        target: String,
        /// What the store was doing, as a verb phrase (`record a delivery`).
        operation: &'static str,
        /// What the driver or the pool said.
        message: String,
    },
    /// The database was written by a newer version of plane-webhook.
    #[error(
        "delivery store {path} has schema version {found}, newer than the {supported} this build \
         understands; run the newer plane-server, or point --db at another file"
    )]
    SchemaTooNew {
        /// The database file, or the PostgreSQL URL without its password (and the schema).
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

impl Error {
    /// Whether the store's database could not be reached ([`Error::Unavailable`]): a
    /// lost connection, as opposed to a statement it refused. Worth retrying; a health
    /// check says "connection lost".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

/// A short printable prefix of untrusted input, for error messages.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}
