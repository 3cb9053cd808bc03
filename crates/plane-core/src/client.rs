//! `PlaneClient`: configuration and the request pipeline every call goes through.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use rand::rngs::StdRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ratelimit::Observation;
use crate::{
    BaseUrl, Budget, Credentials, Error, ExposeSecret, RateLimitStatus, RateLimiter, RetryPolicy,
    SecretString, SharedBudget, TokenSource, retry,
};

/// Plane Cloud's API origin, the default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.plane.so";
/// The workspace this project uses unless configured otherwise.
pub const DEFAULT_WORKSPACE_SLUG: &str = "insightpulseai";
/// The page size sent when the caller does not choose one: the documented Cloud maximum.
pub const DEFAULT_PER_PAGE: u32 = 100;
/// The largest page size Plane CE accepts.
pub const MAX_PER_PAGE: u32 = 1000;
/// Remaining-request level under which unexplained budget use makes the client wait.
pub const DEFAULT_RATE_LIMIT_THRESHOLD: u32 = 5;

/// An async client for Plane's REST API (`/api/v1`).
///
/// Clones share the connection pool, the rate limiter and the counters, so hand
/// clones to concurrent tasks rather than building one client per task.
///
/// ```no_run
/// use plane_core::PlaneClient;
/// # async fn run() -> Result<(), plane_core::Error> {
/// let client = PlaneClient::builder()
///     .base_url("https://plane.example.com")
///     .workspace_slug("acme")
///     .api_key(std::env::var("PLANE_API_KEY").unwrap_or_default())
///     .build()?;
/// let me = client.users().me().await?;
/// println!("hello {}", me.display_name);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PlaneClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: BaseUrl,
    workspace_slug: String,
    credentials: Credentials,
    limiter: RateLimiter,
    retry: RetryPolicy,
    request_timeout: Duration,
    per_page: u32,
    /// The largest page size this server accepted after refusing a larger one; 0 until
    /// a refusal is seen.
    per_page_cap: AtomicU32,
    /// `work-items`, or `issues` for servers from before the rename.
    work_items_segment: &'static str,
    rng: Arc<Mutex<StdRng>>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    writes: AtomicU64,
    retries: AtomicU64,
    by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
}

/// Counters since the client was built (shared by clones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Of `requests`, those that may change data on Plane (POST, PATCH, PUT, DELETE),
    /// retries included; the rest are reads.
    pub writes: u64,
    /// Requests that were attempts after the first.
    pub retries: u64,
    /// Answers by HTTP status; requests that got no answer are not counted here.
    pub responses: std::collections::BTreeMap<u16, u64>,
}

impl ClientStats {
    /// Requests that only read (GET, HEAD, OPTIONS): `requests - writes`.
    pub fn reads(&self) -> u64 {
        self.requests.saturating_sub(self.writes)
    }
}

impl fmt::Debug for PlaneClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaneClient")
            .field("base", &self.inner.base)
            .field("workspace_slug", &self.inner.workspace_slug)
            .field("credentials", &self.inner.credentials)
            .field("limiter", &self.inner.limiter)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PlaneClient`].
#[derive(Debug)]
pub struct PlaneClientBuilder {
    base_url: String,
    workspace_slug: String,
    api_key: Option<SecretString>,
    bearer: Option<Arc<dyn TokenSource>>,
    http: HttpSettings,
    budget: Budget,
    threshold: u32,
    shared_budget: Option<Arc<dyn SharedBudget>>,
    retry: RetryPolicy,
    per_page: u32,
    jitter_seed: Option<u64>,
    legacy_issue_paths: bool,
}

impl Default for PlaneClientBuilder {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            workspace_slug: DEFAULT_WORKSPACE_SLUG.to_owned(),
            api_key: None,
            bearer: None,
            http: HttpSettings::default(),
            budget: Budget::default(),
            threshold: DEFAULT_RATE_LIMIT_THRESHOLD,
            shared_budget: None,
            retry: RetryPolicy::default(),
            per_page: DEFAULT_PER_PAGE,
            jitter_seed: None,
            legacy_issue_paths: false,
        }
    }
}

impl PlaneClientBuilder {
    /// The server origin (default [`DEFAULT_BASE_URL`]); `/api/v1/` is added.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The workspace slug used by every workspace-scoped call.
    pub fn workspace_slug(mut self, slug: impl Into<String>) -> Self {
        self.workspace_slug = slug.into();
        self
    }

    /// Authenticate with an API key (`X-API-Key`).
    pub fn api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Authenticate with bearer tokens from `source` (OAuth apps on Plane Cloud).
    pub fn bearer(mut self, source: impl TokenSource + 'static) -> Self {
        self.bearer = Some(Arc::new(source));
        self
    }

    /// How long to wait for a TCP/TLS connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.http.connect_timeout = timeout;
        self
    }

    /// How long a whole request may take, body included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.http.request_timeout = timeout;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.http.user_agent = agent.into();
        self
    }

    /// The request budget of the key (default 60 per minute; 300 for service tokens).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Shares the key's budget with other processes (replicas spending the same key):
    /// every request also takes a slot in `shared`. See [`SharedBudget`].
    pub fn shared_budget(mut self, shared: Arc<dyn SharedBudget>) -> Self {
        self.shared_budget = Some(shared);
        self
    }

    /// Below this `X-RateLimit-Remaining`, budget spent elsewhere makes the client
    /// wait for the reset (default 5).
    pub fn rate_limit_threshold(mut self, remaining: u32) -> Self {
        self.threshold = remaining;
        self
    }

    /// Retry limits and delays.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The default page size for listings (1..=1000, default 100).
    pub fn per_page(mut self, per_page: u32) -> Self {
        self.per_page = per_page;
        self
    }

    /// Use the older `/issues/` paths instead of `/work-items/`, for Plane servers
    /// from before the work-items routes were added (Plane still routes both).
    pub fn legacy_issue_paths(mut self, legacy: bool) -> Self {
        self.legacy_issue_paths = legacy;
        self
    }

    /// Makes retry jitter reproducible (tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Reads `PLANE_BASE_URL`, `PLANE_API_KEY` and `PLANE_WORKSPACE_SLUG` (each
    /// optional here; `build` reports what is missing).
    pub fn from_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(url) = var("PLANE_BASE_URL") {
            self.base_url = url;
        }
        if let Some(slug) = var("PLANE_WORKSPACE_SLUG") {
            self.workspace_slug = slug;
        }
        if let Some(key) = var("PLANE_API_KEY") {
            self.api_key = Some(SecretString::from(key));
        }
        self
    }

    /// Validates the configuration and builds the client.
    pub fn build(self) -> Result<PlaneClient, Error> {
        let base = BaseUrl::parse(&self.base_url)?;
        let slug = self.workspace_slug.trim().to_owned();
        if slug.is_empty() || slug.contains('/') {
            return Err(Error::InvalidConfig {
                key: "workspace_slug",
                message: format!("{slug:?} is not a workspace slug (set PLANE_WORKSPACE_SLUG)"),
            });
        }
        let credentials = match (
            self.api_key
                .filter(|k| !k.expose_secret().trim().is_empty()),
            self.bearer,
        ) {
            (Some(key), None) => Credentials::ApiKey(key),
            (None, Some(source)) => Credentials::Bearer(source),
            (Some(_), Some(_)) => {
                return Err(Error::InvalidConfig {
                    key: "credentials",
                    message: "both an API key and a bearer token source are configured; \
                              Plane expects exactly one"
                        .into(),
                });
            }
            (None, None) => {
                return Err(Error::InvalidConfig {
                    key: "credentials",
                    message: "no API key or bearer token configured (set PLANE_API_KEY; \
                              see ssot/secrets/registry.yaml#plane_api_key)"
                        .into(),
                });
            }
        };
        check_per_page(self.per_page)?;
        let http = self.http.client()?;
        let retry = self.retry;
        Ok(PlaneClient {
            inner: Arc::new(Inner {
                http,
                base,
                workspace_slug: slug,
                credentials,
                limiter: match self.shared_budget {
                    Some(shared) => RateLimiter::with_shared(self.budget, self.threshold, shared),
                    None => RateLimiter::new(self.budget, self.threshold),
                },
                rng: Arc::new(Mutex::new(retry.rng(self.jitter_seed))),
                retry,
                request_timeout: self.http.request_timeout,
                per_page: self.per_page,
                per_page_cap: AtomicU32::new(0),
                work_items_segment: if self.legacy_issue_paths {
                    "issues"
                } else {
                    "work-items"
                },
                stats: Stats::default(),
            }),
        })
    }
}

/// How every HTTP client of this crate is built (the API client's and the OAuth
/// token endpoint's), so both have the same timeouts and user agent.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub user_agent: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            user_agent: format!("plane-connector/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl HttpSettings {
    pub(crate) fn client(&self) -> Result<reqwest::Client, Error> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(self.user_agent.clone())
            // Plane answers slashless paths with 301s; every path here ends in `/`,
            // so a redirect is a bug to surface, not to follow with a lost body. The
            // OAuth endpoints answer their grants directly, never by redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InvalidConfig {
                key: "http",
                message: format!("could not build the HTTP client: {e}"),
            })
    }
}

pub(crate) fn check_per_page(per_page: u32) -> Result<(), Error> {
    if (1..=MAX_PER_PAGE).contains(&per_page) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "per_page {per_page} is out of range: Plane accepts 1..={MAX_PER_PAGE} \
                 (Plane Cloud documents 100 as its maximum)"
            ),
        })
    }
}

/// One request, described before it is sent.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
}

impl Request {
    pub fn new(method: Method, segments: Vec<String>) -> Self {
        Self {
            method,
            segments,
            query: Vec::new(),
            body: None,
        }
    }

    pub fn query(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        self.query.extend(pairs);
        self
    }

    pub fn json(mut self, body: &impl Serialize) -> Result<Self, Error> {
        self.body = Some(
            serde_json::to_value(body).map_err(|e| Error::InvalidArgument {
                message: format!("could not serialise the request body: {e}"),
            })?,
        );
        Ok(self)
    }

    /// The path as shown in errors and logs: `/api/v1/…/` plus the query.
    pub fn display_path(&self) -> String {
        let mut path = format!("/api/v1/{}/", self.segments.join("/"));
        if !self.query.is_empty() {
            path.push('?');
            let pairs: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            path.push_str(&pairs.join("&"));
        }
        path
    }

    /// GET, PUT and DELETE can be repeated after an ambiguous failure; POST and
    /// PATCH cannot (a PATCH fans out into webhook deliveries on Plane).
    fn repeatable(&self) -> bool {
        matches!(
            self.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        )
    }
}

impl PlaneClient {
    /// A builder with the defaults ([`DEFAULT_BASE_URL`], [`DEFAULT_WORKSPACE_SLUG`],
    /// 60 requests per minute).
    pub fn builder() -> PlaneClientBuilder {
        PlaneClientBuilder::default()
    }

    /// A client configured from `PLANE_BASE_URL`, `PLANE_API_KEY`,
    /// `PLANE_WORKSPACE_SLUG`; a missing key is an [`Error::InvalidConfig`].
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().from_env().build()
    }

    /// The configured base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.inner.base
    }

    /// The configured workspace slug.
    pub fn workspace_slug(&self) -> &str {
        &self.inner.workspace_slug
    }

    /// The default page size.
    pub fn per_page(&self) -> u32 {
        self.inner.per_page
    }

    /// The page size this client fell back to after the server refused a larger one
    /// (400 on `per_page`); later listings that start from the first page use at most
    /// this. `None` until that happened.
    pub fn per_page_cap(&self) -> Option<u32> {
        Some(self.inner.per_page_cap.load(Ordering::Relaxed)).filter(|&cap| cap > 0)
    }

    pub(crate) fn remember_per_page_cap(&self, cap: u32) {
        self.inner.per_page_cap.store(cap, Ordering::Relaxed);
    }

    /// The retry limits in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// Waits, at most `within`, until a renewed OAuth token whose save failed is stored
    /// (see [`TokenSource::settle`]); `true` at once with an API key. Call it before a
    /// process exits.
    pub async fn settle(&self, within: Duration) -> bool {
        match &self.inner.credentials {
            Credentials::ApiKey(_) => true,
            Credentials::Bearer(source) => source.settle(within).await,
        }
    }

    /// The last seen rate-limit state (shared by all clones).
    pub fn rate_limit(&self) -> RateLimitStatus {
        self.inner.limiter.status()
    }

    /// Requests and retries made so far (shared by all clones).
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.inner.stats.requests.load(Ordering::Relaxed),
            writes: self.inner.stats.writes.load(Ordering::Relaxed),
            retries: self.inner.stats.retries.load(Ordering::Relaxed),
            responses: self
                .inner
                .stats
                .by_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// `work-items`, or `issues` with [`PlaneClientBuilder::legacy_issue_paths`].
    pub(crate) fn work_items_segment(&self) -> &'static str {
        self.inner.work_items_segment
    }

    /// `["workspaces", slug, "projects", project_id, rest…]`.
    pub(crate) fn project_path(&self, project: Uuid, rest: &[&str]) -> Vec<String> {
        let mut segments = vec![
            "workspaces".to_owned(),
            self.inner.workspace_slug.clone(),
            "projects".to_owned(),
            project.to_string(),
        ];
        segments.extend(rest.iter().map(|s| (*s).to_owned()));
        segments
    }

    /// `["workspaces", slug, rest…]`.
    pub(crate) fn workspace_path(&self, rest: &[&str]) -> Vec<String> {
        let mut segments = vec!["workspaces".to_owned(), self.inner.workspace_slug.clone()];
        segments.extend(rest.iter().map(|s| (*s).to_owned()));
        segments
    }

    /// Any `/api/v1/` endpoint this crate does not model yet (intake, estimates,
    /// relations...), through the same pacing, retries and error mapping.
    ///
    /// `segments` are percent-encoded and joined with a trailing slash; `body`,
    /// when given, is sent as JSON. Answers with no body decode as `null`.
    ///
    /// ```no_run
    /// # async fn run(client: plane_core::PlaneClient, project: uuid::Uuid) -> Result<(), plane_core::Error> {
    /// let project = project.to_string();
    /// let intake: serde_json::Value = client
    ///     .request_json(
    ///         http::Method::GET,
    ///         &["workspaces", client.workspace_slug(), "projects", &project, "intake-issues"],
    ///         &[("per_page", "100")],
    ///         None,
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn request_json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, Error> {
        let mut request = Request::new(method, segments.iter().map(|s| (*s).to_owned()).collect())
            .query(
                query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
        request.body = body.cloned();
        self.send_json(request).await
    }

    /// Sends a request and decodes a JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        request: Request,
    ) -> Result<T, Error> {
        let (method, path) = (request.method.clone(), request.display_path());
        let body = self.send(request).await?;
        let body = if body.is_empty() {
            bytes::Bytes::from_static(b"null")
        } else {
            body
        };
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            method,
            path,
            message: e.to_string(),
            excerpt: crate::error::excerpt(&body),
        })
    }

    /// Sends a request whose answer has no body worth reading (DELETE → 204).
    pub(crate) async fn send_empty(&self, request: Request) -> Result<(), Error> {
        self.send(request).await.map(drop)
    }

    /// Sends a request; a bearer token Plane refuses (401, or 403 "token is not
    /// valid") is renewed once and the request sent once more, never again.
    pub(crate) async fn send(&self, request: Request) -> Result<bytes::Bytes, Error> {
        let used = Mutex::new(None);
        let result = self.send_with_retries(&request, &used).await;
        match (&result, &self.inner.credentials) {
            (Err(Error::Unauthorized { .. }), Credentials::Bearer(source)) => {
                let refused = used
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                let Some(refused) = refused else {
                    return result;
                };
                tracing::info!("Plane refused the bearer token; renewing it and trying once more");
                // Awaited, not best-effort: the retry must not reuse the refused token.
                source.invalidate(&refused).await;
                self.send_with_retries(&request, &used).await
            }
            _ => result,
        }
    }

    /// The pipeline: pace → authenticate → send → observe rate-limit headers →
    /// map the status → retry what may be retried.
    ///
    /// `used` receives the bearer token of the last attempt, so that a 401 renews
    /// exactly the token Plane refused.
    async fn send_with_retries(
        &self,
        request: &Request,
        used: &Mutex<Option<SecretString>>,
    ) -> Result<bytes::Bytes, Error> {
        let inner = &self.inner;
        let url = inner.base.endpoint(&request.segments)?;
        let path = request.display_path();
        let repeatable = request.repeatable();
        let pacer = Some(&inner.limiter);
        retry::run(&inner.retry, repeatable, &inner.rng, pacer, |attempt| {
            let (url, path) = (url.clone(), path.clone());
            async move {
                if attempt > 1 {
                    inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                let (name, value, token) = inner.credentials.header().await?;
                *used
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
                let mut builder = inner
                    .http
                    .request(request.method.clone(), url)
                    .header(name, value)
                    .header(http::header::ACCEPT, "application/json");
                if !request.query.is_empty() {
                    builder = builder.query(&request.query);
                }
                if let Some(body) = &request.body {
                    builder = builder.json(body);
                }
                let mut permit = inner.limiter.acquire().await;
                inner.stats.requests.fetch_add(1, Ordering::Relaxed);
                if !request.method.is_safe() {
                    inner.stats.writes.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(method = %request.method, %path, attempt, "plane request");
                let method = request.method.clone();
                let response = match builder.send().await {
                    Ok(response) => response,
                    Err(e) => return Err(transport_error(method, path, e, inner.request_timeout)),
                };
                let status = response.status().as_u16();
                *inner
                    .stats
                    .by_status
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(status)
                    .or_default() += 1;
                let observation =
                    Observation::from_headers(response.headers(), inner.retry.max_retry_after);
                let retry_after = (status == 429).then_some(observation.retry_after).flatten();
                permit.observe(Observation {
                    retry_after: if status == 429 {
                        Some(retry_after.unwrap_or(Duration::ZERO))
                    } else {
                        None
                    },
                    ..observation
                });
                let body = match response.bytes().await {
                    Ok(body) => body,
                    Err(e) => return Err(transport_error(method, path, e, inner.request_timeout)),
                };
                drop(permit);
                if (200..300).contains(&status) {
                    Ok(body)
                } else {
                    Err(Error::from_response(
                        method,
                        path,
                        status,
                        retry_after,
                        &body,
                    ))
                }
            }
        })
        .await
    }
}

pub(crate) fn transport_error(
    method: Method,
    path: String,
    e: reqwest::Error,
    timeout: Duration,
) -> Error {
    if e.is_timeout() {
        Error::Timeout {
            method,
            path,
            timeout,
            attempts: 1,
        }
    } else {
        // Strip the URL: the path is already named, and the error then cannot carry
        // anything but the cause.
        Error::Transport {
            method,
            path,
            attempts: 1,
            source: e.without_url(),
        }
    }
}
