//! A faithful in-process fake of Plane CE's public REST API (`/api/v1/`) and its webhooks.
//!
//! Every test and benchmark of the workspace talks to this fake instead of a real Plane.
//! Its behaviour copies Plane CE (commit 4ca6d6c) as recorded in `testdata/plane-ce/`:
//!
//! - **Routing**: work items under both `work-items/` and the
//!   legacy `issues/` paths, states, labels, comments, links, activities, cycles (+ items),
//!   modules (+ items), members, projects, `users/me/`, lookup by `IDENT-SEQ`. Slashless URLs
//!   that would resolve with a slash get Django's 301; anything else unknown is
//!   `404 {"error":"Page not found."}`.
//! - **Auth and throttling** in DRF's order: `X-API-Key` (401 when missing, 403 when
//!   unknown) → workspace/project permission (403) → per-key sliding-log rate limit with
//!   `X-RateLimit-Remaining`/`X-RateLimit-Reset`, or 429 with `Retry-After` → the view.
//! - **Pagination**: Plane's cursor `limit:page:is_prev` envelope with its quirks (the last
//!   page still has a `next_cursor`, `per_page=0` is a 500, work items newest first).
//! - **`fields` / `expand`** on the serialised objects.
//! - **Fault injection** ([`Fault`]): status codes, delays, dropped connections (before or
//!   after handling), 429s, optionally only the n-th matching request.
//! - **Request log** ([`RequestRecord`]) for asserting what a client sent.
//! - **More than one user**: [`RunningFake::add_user`], keys owned by another member
//!   ([`RunningFake::add_api_key`]) and a person acting in the web app
//!   ([`RunningFake::as_user`] → [`Person`]), whose changes send webhooks but cost no API budget.
//! - **OAuth apps** (Plane Cloud; [`FakePlaneBuilder::oauth_app`]): the authorize
//!   endpoint, the token endpoint with `authorization_code` (+ PKCE S256),
//!   `client_credentials` and rotating `refresh_token` grants, installation lookup and
//!   `Authorization: Bearer` on the API, with token lifetimes under test control. The
//!   [`oauth`] module says what follows the reference and what follows RFC 6749/7636.
//! - **Webhook log** ([`SentWebhook`], [`RunningFake::webhook_log`]) with waits and re-sends.
//! - **Webhooks**: [`WebhookSender`] builds, serialises ([`python_json_dumps`]) and signs
//!   ([`sign`]) v1 deliveries byte-for-byte like Plane; [`RunningFake::register_webhook`]
//!   makes API writes emit them.
//!
//! Data lives in memory as JSON objects in Plane's field order; captured objects can be
//! loaded verbatim with the `insert_*_json` methods.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use plane_fake::FakePlane;
//!
//! let fake = FakePlane::builder().seed_work_items(3).no_rate_limit().start().await?;
//! let url = format!(
//!     "{}/api/v1/workspaces/{}/projects/{}/work-items/?per_page=2",
//!     fake.base_url(),
//!     fake.workspace_slug(),
//!     fake.project_id()
//! );
//! let page: serde_json::Value = reqwest::Client::new()
//!     .get(&url)
//!     .header("X-API-Key", fake.api_key())
//!     .send()
//!     .await
//!     .expect("request")
//!     .json()
//!     .await
//!     .expect("json");
//! assert_eq!(page["total_count"], 3);
//! assert_eq!(page["next_cursor"], "2:1:0");
//! assert_eq!(fake.request_count(), 1);
//! fake.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod api;
pub mod cli;
mod fault;
mod json;
pub mod oauth;
mod pagination;
mod person;
mod ratelimit;
mod resp;
mod server;
mod store;
mod webhook;
mod webhook_log;

pub use fault::Fault;
pub use json::python_json_dumps;
pub use oauth::TokenRequest;
pub use person::{Person, WebAppError};
pub use server::{Bearer, RequestRecord};
pub use webhook::{WebhookDelivery, WebhookError, WebhookSender, sign};
pub use webhook_log::SentWebhook;

use serde_json::{Value, json};
use server::{Shared, WebhookTarget, lock};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Obj, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Entry point: `FakePlane::builder()...start().await`.
#[derive(Debug)]
pub struct FakePlane;

impl FakePlane {
    /// A builder with Plane's defaults: a random key, workspace `insightpulseai`, 60
    /// requests per 60 s per key, an empty default project `BIR`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use plane_fake::FakePlane;
    /// use std::time::Duration;
    ///
    /// let fake = FakePlane::builder()
    ///     .api_key(format!("plane_api_{}", "0".repeat(32)))
    ///     .workspace_slug("acme")
    ///     .rate_limit(5, Duration::from_secs(1))
    ///     .seed_work_items(10)
    ///     .start()
    ///     .await?;
    /// assert_eq!(fake.work_item_count(fake.project_id()), 10);
    /// assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> FakePlaneBuilder {
        FakePlaneBuilder {
            api_key: None,
            extra_keys: Vec::new(),
            workspace_slug: "insightpulseai".to_owned(),
            rate_limit: Some((60, Duration::from_secs(60))),
            seed_work_items: 0,
            oauth: None,
        }
    }
}

/// Configures a fake before it starts. See [`FakePlane::builder`].
#[derive(Clone)]
pub struct FakePlaneBuilder {
    api_key: Option<String>,
    extra_keys: Vec<String>,
    workspace_slug: String,
    rate_limit: Option<(u32, Duration)>,
    seed_work_items: usize,
    oauth: Option<oauth::OAuthAppConfig>,
}

impl std::fmt::Debug for FakePlaneBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePlaneBuilder")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("extra_api_keys", &self.extra_keys.len())
            .field("workspace_slug", &self.workspace_slug)
            .field("rate_limit", &self.rate_limit)
            .field("seed_work_items", &self.seed_work_items)
            .field("oauth", &self.oauth)
            .finish()
    }
}

fn random_key() -> String {
    format!("plane_api_{}", Uuid::new_v4().simple())
}

impl FakePlaneBuilder {
    /// The valid API key (default: a random `plane_api_<32 hex>` made at run time).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Another valid key, with its own rate-limit bucket.
    pub fn extra_api_key(mut self, key: impl Into<String>) -> Self {
        self.extra_keys.push(key.into());
        self
    }

    /// The workspace slug (default `insightpulseai`); any other slug is a 403.
    pub fn workspace_slug(mut self, slug: impl Into<String>) -> Self {
        self.workspace_slug = slug.into();
        self
    }

    /// Allow `requests` per sliding `window` per key (default 60 per 60 s, Plane's default).
    pub fn rate_limit(mut self, requests: u32, window: Duration) -> Self {
        self.rate_limit = Some((requests, window));
        self
    }

    /// No throttling; responses then carry no `X-RateLimit-*` headers.
    pub fn no_rate_limit(mut self) -> Self {
        self.rate_limit = None;
        self
    }

    /// Create `n` work items in the default project (default 0).
    pub fn seed_work_items(mut self, n: usize) -> Self {
        self.seed_work_items = n;
        self
    }

    /// Offers OAuth as Plane Cloud does, for one app: its client id and secret and
    /// its registered Redirect URI. Without this the fake is CE: no `/auth/o/`
    /// routes, and `Authorization: Bearer` is ignored. See [`oauth`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use plane_fake::FakePlane;
    /// let secret = format!("fake-secret-{}", std::process::id());
    /// let fake = FakePlane::builder()
    ///     .oauth_app("client-1", secret.clone(), "http://127.0.0.1:9/callback")
    ///     .start()
    ///     .await?;
    /// let answer = reqwest::Client::new()
    ///     .post(format!("{}/auth/o/token/", fake.base_url()))
    ///     .basic_auth("client-1", Some(&secret))
    ///     .form(&[
    ///         ("grant_type", "client_credentials"),
    ///         ("app_installation_id", &fake.oauth_installation_id()),
    ///     ])
    ///     .send()
    ///     .await
    ///     .expect("request");
    /// assert_eq!(answer.status(), 200);
    /// assert_eq!(fake.token_requests()[0].grant_type, "client_credentials");
    /// # Ok(())
    /// # }
    /// ```
    pub fn oauth_app(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        self.oauth = Some(oauth::OAuthAppConfig {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
        });
        self
    }

    /// Starts on `127.0.0.1` with a free port.
    pub async fn start(self) -> std::io::Result<RunningFake> {
        self.start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
    }

    /// Starts on `addr`.
    pub async fn start_on(self, addr: SocketAddr) -> std::io::Result<RunningFake> {
        let api_key = self.api_key.unwrap_or_else(random_key);
        let mut keys = vec![api_key.clone()];
        keys.extend(self.extra_keys);

        let mut store = Store::new(self.workspace_slug);
        let mut body = Obj::new();
        body.insert("cycle_view".into(), json!(true));
        body.insert("module_view".into(), json!(true));
        body.insert("project_lead".into(), json!(store.user_id()));
        let pid = store.new_project("BIR", "BIR", &body);
        store.default_project = pid;
        for i in 1..=self.seed_work_items {
            let mut fields = Obj::new();
            fields.insert("name".into(), json!(format!("Seeded work item {i}")));
            store.new_work_item(pid, &fields);
        }

        let oauth = self.oauth.map(|app| {
            oauth::OAuthState::new(app, store.workspace_slug.clone(), store.workspace_id)
        });
        let shared = Arc::new(Shared::new(
            keys,
            oauth,
            store,
            ratelimit::RateLimiter::new(self.rate_limit),
        ));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, shared.clone(), rx));
        Ok(RunningFake {
            inner: Arc::new(Inner {
                shared,
                addr,
                api_key,
                shutdown: tx,
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

/// A started fake. Clones share the same server; it stops when the last clone is dropped
/// or on [`RunningFake::shutdown`].
#[derive(Debug, Clone)]
pub struct RunningFake {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    api_key: String,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningFake")
            .field("addr", &self.addr)
            .field("api_key", &"<redacted>")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stops the accept loop and every open connection.
        let _ = self.shutdown.send(true);
    }
}

impl RunningFake {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.shared.store()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The primary valid API key.
    pub fn api_key(&self) -> String {
        self.inner.api_key.clone()
    }

    /// The workspace slug.
    pub fn workspace_slug(&self) -> String {
        self.store().workspace_slug.clone()
    }

    /// The workspace id (`workspace` of objects, `workspace_id` of webhooks).
    pub fn workspace_id(&self) -> Uuid {
        self.store().workspace_id
    }

    /// The default project (identifier and name `BIR`, cycles and modules enabled).
    pub fn project_id(&self) -> Uuid {
        self.store().default_project
    }

    /// Every request received so far, in arrival order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        let mut log = lock(&self.inner.shared.log).clone();
        log.sort_by_key(|r| r.at);
        log
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.inner.shared.log).len()
    }

    /// Forgets the request log (rate-limit state is kept).
    pub fn clear_request_log(&self) {
        lock(&self.inner.shared.log).clear();
    }

    fn oauth(&self) -> std::sync::MutexGuard<'_, oauth::OAuthState> {
        match &self.inner.shared.oauth {
            Some(state) => lock(state),
            None => panic!("this fake has no OAuth app: build it with FakePlaneBuilder::oauth_app"),
        }
    }

    /// The id of the app's one installation (`app_installation_id`).
    ///
    /// # Panics
    /// If the fake was built without [`FakePlaneBuilder::oauth_app`] (as do the other
    /// OAuth methods).
    pub fn oauth_installation_id(&self) -> String {
        self.oauth().installation_id.to_string()
    }

    /// `expires_in` of access tokens issued from now on (default 86 400 s, Plane's
    /// documented example). Expiry is measured on tokio's clock.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.oauth().access_lifetime = lifetime;
    }

    /// Fields that replace those of every token response from now on, to play a server
    /// that answers oddly (`{"expires_in": "3600"}`, `{"token_type": "mac"}`). The grant
    /// itself happens as usual: a refresh token is spent and a new one issued.
    pub fn override_token_responses(&self, fields: serde_json::Value) {
        if let serde_json::Value::Object(map) = fields {
            self.oauth().response_overrides = map;
        }
    }

    /// How long refresh tokens issued from now on can be used (default 30 days).
    pub fn set_refresh_token_lifetime(&self, lifetime: Duration) {
        self.oauth().refresh_lifetime = lifetime;
    }

    /// Every access token issued so far is refused from now on (401), as after a
    /// revocation; refresh tokens keep working.
    pub fn revoke_access_tokens(&self) {
        self.oauth().revoke_access_tokens();
    }

    /// Every refresh token issued so far is expired from now on.
    pub fn expire_refresh_tokens(&self) {
        self.oauth().expire_refresh_tokens();
    }

    /// Every request to the token endpoint so far, in order, with its answer's status.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.oauth().token_requests.clone()
    }

    /// Every access and refresh token issued so far (for scanning logs for them).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.oauth().issued.clone()
    }

    /// Installs a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.shared.faults).push(fault);
    }

    /// Removes all pending faults.
    pub fn clear_faults(&self) {
        lock(&self.inner.shared.faults).clear();
    }

    /// Creates a work item in the default project directly in the store (no request, not
    /// logged, no rate cost, no webhook) and returns it as the API would.
    pub fn insert_work_item(&self, name: &str) -> Value {
        let mut s = self.store();
        let pid = s.default_project;
        let mut fields = Obj::new();
        fields.insert("name".into(), json!(name));
        s.new_work_item(pid, &fields)
            .map_or(Value::Null, Value::Object)
    }

    /// Inserts a complete work item object as given (e.g. a captured one) into a project.
    /// Its `created_at` decides its place in the newest-first order.
    ///
    /// # Panics
    /// If `item` is not a JSON object or the project does not exist.
    pub fn insert_work_item_json(&self, project_id: Uuid, item: Value) {
        let Value::Object(obj) = item else {
            panic!("insert_work_item_json: the work item must be a JSON object");
        };
        if self.store().insert_item_obj(project_id, obj).is_none() {
            panic!("insert_work_item_json: unknown project {project_id}; insert it first");
        }
    }

    /// Inserts a project object as given. Same id: replaces the object (children kept). Same
    /// `identifier` as another project (e.g. the default `BIR`): that project is removed
    /// first, as Plane keeps identifiers unique, and if it was the default project this one
    /// becomes [`project_id`](Self::project_id). `cycle_view`/`module_view` are respected.
    ///
    /// # Panics
    /// If `project` is not a JSON object.
    pub fn insert_project_json(&self, project: Value) {
        let Value::Object(obj) = project else {
            panic!("insert_project_json: the project must be a JSON object");
        };
        self.store().insert_project_obj(obj);
    }

    /// Inserts (or replaces, by id) a state object as given.
    ///
    /// # Panics
    /// If `state` is not a JSON object or the project does not exist.
    pub fn insert_state_json(&self, project_id: Uuid, state: Value) {
        let Value::Object(mut obj) = state else {
            panic!("insert_state_json: the state must be a JSON object");
        };
        let mut s = self.store();
        let id = store::id_of(&obj).unwrap_or_else(Uuid::new_v4);
        obj.insert("id".into(), json!(id.to_string()));
        let Some(p) = s.project_mut(project_id) else {
            panic!("insert_state_json: unknown project {project_id}; insert it first");
        };
        match p.states.iter_mut().find(|st| store::id_of(st) == Some(id)) {
            Some(existing) => *existing = obj,
            None => p.states.push(obj),
        }
    }

    /// Inserts (or replaces, by id) a label object as given.
    ///
    /// # Panics
    /// If `label` is not a JSON object or the project does not exist.
    pub fn insert_label_json(&self, project_id: Uuid, label: Value) {
        let Value::Object(mut obj) = label else {
            panic!("insert_label_json: the label must be a JSON object");
        };
        let mut s = self.store();
        let id = store::id_of(&obj).unwrap_or_else(Uuid::new_v4);
        obj.insert("id".into(), json!(id.to_string()));
        let Some(p) = s.project_mut(project_id) else {
            panic!("insert_label_json: unknown project {project_id}; insert it first");
        };
        match p.labels.iter_mut().find(|l| store::id_of(l) == Some(id)) {
            Some(existing) => *existing = obj,
            None => p.labels.push(obj),
        }
    }

    /// Sets what `/users/me/` returns; its `id` becomes the actor of later writes.
    ///
    /// # Panics
    /// If `user` is not a JSON object.
    pub fn set_user_json(&self, user: Value) {
        let Value::Object(obj) = user else {
            panic!("set_user_json: the user must be a JSON object");
        };
        self.store().user = obj;
    }

    /// Number of work items stored in a project (drafts and archived included).
    pub fn work_item_count(&self, project_id: Uuid) -> usize {
        self.store()
            .project(project_id)
            .map_or(0, |p| p.items.len())
    }

    /// A stored work item as the API's detail view returns it.
    pub fn work_item_json(&self, project_id: Uuid, id: Uuid) -> Option<Value> {
        self.store()
            .project(project_id)
            .and_then(|p| p.items.get(&id))
            .map(|i| Value::Object(i.obj.clone()))
    }

    /// Makes API writes send Plane v1 webhooks to `url`, signed with `secret`: work item
    /// create/update (one delivery per changed field), comment, project, cycle and module
    /// create/update, and project delete. Deliveries are sent from a background task.
    pub fn register_webhook(&self, url: impl Into<String>, secret: impl Into<String>) {
        lock(&self.inner.shared.webhooks).push(WebhookTarget {
            url: url.into(),
            secret: secret.into(),
            webhook_id: Uuid::new_v4(),
        });
    }

    /// A sender for hand-made deliveries, using this fake's workspace id.
    pub fn webhook_sender(&self, secret: impl Into<String>) -> WebhookSender {
        WebhookSender::new(secret).workspace_id(self.workspace_id())
    }

    /// Stops the server (for every clone) and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
