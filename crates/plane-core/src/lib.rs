//! An async client for [Plane](https://plane.so)'s REST API (`/api/v1`).
//!
//! # A tour
//!
//! * [`PlaneClient`] is built once ([`PlaneClient::builder`] or
//!   [`PlaneClient::from_env`]) and cloned freely. Every request goes through one
//!   pipeline: **pace** under the key's [`Budget`] (a [`RateLimiter`] shared by
//!   all clones, fed by `X-RateLimit-Remaining`/`X-RateLimit-Reset`), **send** with
//!   the [`Credentials`] (`X-API-Key` or `Authorization: Bearer`, never both),
//!   **map** the status to an [`Error`] variant, and **retry** what may be retried
//!   ([`RetryPolicy`]: 429 up to three times honouring `Retry-After`; 5xx and
//!   connection failures only for requests that are safe to repeat).
//! * URLs are built from segments by [`BaseUrl`], so every path ends in `/` (Plane
//!   redirects slashless paths and loses POST bodies on the way).
//! * Listings return a [`Page`]; `stream` methods walk every page as a
//!   `futures::Stream`, dropping items already seen (Plane's cursor is an offset
//!   in disguise, so rows shift when data changes mid-walk) and refusing to loop
//!   on a repeated cursor.
//! * Resources, one module each: [`users`](PlaneClient::users),
//!   [`projects`](PlaneClient::projects), [`work_items`](PlaneClient::work_items)
//!   (with comments, links and activities), [`states`](PlaneClient::states),
//!   [`labels`](PlaneClient::labels), [`cycles`](PlaneClient::cycles),
//!   [`modules`](PlaneClient::modules), [`members`](PlaneClient::members).
//!   Models keep unknown fields in `extra`; fields that `expand=` turns into
//!   objects are [`Expandable`].
//! * Secrets live in [`SecretString`] (re-exported from the `secrecy` crate): it
//!   never prints itself and is zeroised when dropped; reading it takes an
//!   explicit [`ExposeSecret::expose_secret`]. OAuth apps (Plane Cloud)
//!   authenticate with the token sources in [`oauth`].
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use plane_core::{ListParams, PlaneClient, WorkItemFields};
//!
//! # async fn run(project: uuid::Uuid) -> Result<(), plane_core::Error> {
//! let client = PlaneClient::from_env()?; // PLANE_BASE_URL, PLANE_API_KEY, PLANE_WORKSPACE_SLUG
//! let items = client.work_items(project);
//! let created = items
//!     .create(&WorkItemFields::new("File 1601-C").external("plane-bir", "1601C-2026-10"))
//!     .await?;
//! let all: Vec<_> = items.stream(ListParams::new().per_page(100)).try_collect().await?;
//! assert!(all.iter().any(|i| i.id == created.id));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod auth;
mod client;
mod error;
mod models;
pub mod oauth;
mod pagination;
mod ratelimit;
mod resources;
mod retry;
mod url;

pub use auth::{BoxFuture, Credentials, StaticToken, TokenSource};
pub use client::{
    ClientStats, DEFAULT_BASE_URL, DEFAULT_PER_PAGE, DEFAULT_RATE_LIMIT_THRESHOLD,
    DEFAULT_WORKSPACE_SLUG, MAX_PER_PAGE, PlaneClient, PlaneClientBuilder,
};
pub use error::Error;
pub use http::Method;
pub use models::{
    DateOrTime, Expandable, Priority, ProjectLite, StateGroup, StateLite, Timestamp, UserLite,
    WorkItemLite,
};
pub use pagination::{Identified, ItemStream, ListParams, Page};
pub use ratelimit::{Budget, Permit, RateLimitStatus, RateLimiter, SharedBudget};
pub use resources::Membership;
pub use resources::activities::{ActivitiesHandler, Activity};
pub use resources::comments::{Comment, CommentFields, CommentsHandler};
pub use resources::cycles::{Cycle, CycleFields, CyclesHandler};
pub use resources::labels::{Label, LabelFields, LabelsHandler};
pub use resources::links::{Link, LinkFields, LinksHandler};
pub use resources::members::{MembersHandler, WorkspaceMember};
pub use resources::modules::{Module, ModuleFields, ModulesHandler};
pub use resources::projects::{Project, ProjectFields, ProjectsHandler};
pub use resources::states::{State, StateFields, StatesHandler};
pub use resources::users::UsersHandler;
pub use resources::work_items::{WorkItem, WorkItemFields, WorkItemsHandler};
pub use retry::RetryPolicy;
/// The one way to read a [`SecretString`]; every use is greppable.
pub use secrecy::ExposeSecret;
/// A secret string (API key, bearer token, client secret), from the `secrecy`
/// crate: `Debug` prints `[REDACTED]`, there is no `Display`, and the memory is
/// zeroised on drop. Read it only where it leaves the process (an HTTP header).
///
/// ```
/// use plane_core::{ExposeSecret, SecretString};
/// let key = SecretString::from(format!("plane_api_{}", "0".repeat(32)));
/// assert!(!format!("{key:?}").contains("plane_api_"));
/// assert!(key.expose_secret().starts_with("plane_api_"));
/// ```
pub use secrecy::SecretString;
pub use url::BaseUrl;
