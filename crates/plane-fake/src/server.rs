//! The HTTP side: our own accept loop (so a fault can drop a connection), fault middleware,
//! request log and webhook dispatch.

use crate::api::{self, ApiRequest, WebhookEvent};
use crate::fault::{self, Fault, FaultKind};
use crate::oauth::OAuthState;
use crate::ratelimit::RateLimiter;
use crate::resp::Resp;
use crate::store::Store;
use crate::webhook::WebhookSender;
use crate::webhook_log::SentWebhook;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// One request as the fake saw it. The API key itself is never stored.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the fake received the request (before any injected delay).
    pub at: Instant,
    /// HTTP method, e.g. `"GET"`.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Status answered; 0 when the connection was dropped by a fault.
    pub status: u16,
    /// Whether the request carried a valid API key or OAuth access token.
    pub authenticated: bool,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// Whether an `X-API-Key` header was sent (valid or not).
    pub sent_api_key: bool,
    /// The `Authorization: Bearer` token sent, if any, as its place among the
    /// tokens the fake issued (never its value).
    pub bearer: Option<Bearer>,
}

/// Which `Authorization: Bearer` token a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    /// The token at this index of [`crate::RunningFake::issued_tokens`] (live or not).
    Issued(usize),
    /// A token this fake never issued.
    Unknown,
}

#[derive(Clone)]
pub(crate) struct WebhookTarget {
    pub url: String,
    pub secret: String,
    pub webhook_id: Uuid,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("webhook_id", &self.webhook_id)
            .finish()
    }
}

pub(crate) struct Shared {
    pub keys: Vec<String>,
    /// The OAuth app and its tokens, when OAuth is on.
    pub oauth: Option<Mutex<OAuthState>>,
    store: Mutex<Store>,
    limiter: Mutex<RateLimiter>,
    pub faults: Mutex<Vec<Fault>>,
    pub log: Mutex<Vec<RequestRecord>>,
    pub webhooks: Mutex<Vec<WebhookTarget>>,
    /// Every webhook delivery that ended, in the order they ended.
    pub webhook_log: Mutex<Vec<SentWebhook>>,
    /// Deliveries queued or under way.
    pub webhooks_pending: AtomicUsize,
    /// Woken whenever a delivery ends.
    pub webhook_done: Notify,
}

impl std::fmt::Debug for Shared {
    // Keys and the store's contents stay out of Debug output (test logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("requests_logged", &lock(&self.log).len())
            .field("pending_faults", &lock(&self.faults).len())
            .field("webhooks", &*lock(&self.webhooks))
            .finish_non_exhaustive()
    }
}

/// Locks ignoring poisoning: a panicking test thread must not wedge the fake.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(
        keys: Vec<String>,
        oauth: Option<OAuthState>,
        store: Store,
        limiter: RateLimiter,
    ) -> Shared {
        Shared {
            keys,
            oauth: oauth.map(Mutex::new),
            store: Mutex::new(store),
            limiter: Mutex::new(limiter),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            webhooks: Mutex::new(Vec::new()),
            webhook_log: Mutex::new(Vec::new()),
            webhooks_pending: AtomicUsize::new(0),
            webhook_done: Notify::new(),
        }
    }

    /// The primary key, an extra key, or a key owned by another member.
    pub(crate) fn key_is_valid(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key) || self.store().key_owners.contains_key(key)
    }

    /// A live OAuth access token from `Authorization: Bearer` (Cloud; CE, and a fake
    /// without OAuth, ignore the header).
    pub(crate) fn bearer<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h str> {
        let oauth = self.oauth.as_ref()?;
        let token = headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        lock(oauth).bearer_is_valid(token).then_some(token)
    }

    /// Which `Authorization: Bearer` token `headers` carry, for the request log.
    fn bearer_sent(&self, headers: &http::HeaderMap) -> Option<Bearer> {
        let token = headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let issued = self
            .oauth
            .as_ref()
            .and_then(|oauth| lock(oauth).issued.iter().position(|t| t == token));
        Some(issued.map_or(Bearer::Unknown, Bearer::Issued))
    }

    /// Records a finished delivery and wakes whoever waits for one.
    pub(crate) fn log_webhook(&self, sent: SentWebhook) {
        lock(&self.webhook_log).push(sent);
        self.webhook_done.notify_waiters();
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.limiter)
    }

    fn record(&self, rec: RequestRecord) {
        lock(&self.log).push(rec);
    }

    /// Sends `events` to every registered webhook, in order, off the request path; each
    /// delivery is logged when it ends.
    pub(crate) fn dispatch_webhooks(self: &Arc<Self>, events: Vec<WebhookEvent>) {
        if events.is_empty() {
            return;
        }
        let targets = lock(&self.webhooks).clone();
        if targets.is_empty() {
            return;
        }
        let workspace_id = self.store().workspace_id;
        self.webhooks_pending
            .fetch_add(targets.len() * events.len(), Ordering::SeqCst);
        let shared = self.clone();
        tokio::spawn(async move {
            for t in targets {
                let sender = WebhookSender::new(t.secret.clone())
                    .webhook_id(t.webhook_id)
                    .workspace_id(workspace_id);
                for e in &events {
                    let r = sender
                        .send(
                            &t.url,
                            e.event,
                            e.action,
                            e.data.clone(),
                            e.activity.clone(),
                        )
                        .await;
                    match r {
                        Ok(sent) => shared.log_webhook(SentWebhook::new(&t.url, e.event, sent)),
                        Err(err) => tracing::warn!(url = %t.url, error = %err, "webhook not sent"),
                    }
                    shared.webhooks_pending.fetch_sub(1, Ordering::SeqCst);
                    shared.webhook_done.notify_waiters();
                }
            }
        });
    }
}

/// Runs the accept loop until `shutdown` changes or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // E.g. too many open files: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    // A drop_connection fault notifies this; dropping the connection future closes the socket
    // without writing a response.
    let kill = Arc::new(Notify::new());
    let svc_kill = kill.clone();
    let svc = service_fn(move |req| handle(shared.clone(), svc_kill.clone(), req));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = kill.notified() => {}
        _ = shutdown.changed() => {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    kill: Arc<Notify>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let authenticated = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| shared.key_is_valid(k))
        || shared.bearer(&parts.headers).is_some();
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sent_api_key = parts.headers.contains_key("x-api-key");
    let bearer = shared.bearer_sent(&parts.headers);
    let record = |status: u16| RequestRecord {
        at,
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        status,
        authenticated,
        user_agent: user_agent.clone(),
        sent_api_key,
        bearer,
    };

    let fault = fault::take_matching(&mut lock(&shared.faults), &method, &path);
    let drop_after_handling = fault == Some(FaultKind::DropAfterHandling);
    match fault {
        Some(FaultKind::Drop) => {
            shared.record(record(0));
            kill.notify_one();
            // Never answer; the connection task drops the socket.
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Some(FaultKind::Status(code)) => {
            let resp = Resp::for_fault_status(code);
            shared.record(record(resp.status));
            return Ok(to_hyper(resp));
        }
        Some(FaultKind::TooManyRequests(secs)) => {
            let resp = Resp::throttled(Some(secs));
            shared.record(record(429));
            return Ok(to_hyper(resp));
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::DropAfterHandling) | None => {}
    }

    if let (Some(oauth), true) = (&shared.oauth, path.starts_with("/auth/o/")) {
        let resp = lock(oauth).handle(&method, &path, query.as_deref(), &parts.headers, &body);
        shared.record(record(resp.status));
        return Ok(to_hyper(resp));
    }

    let api_req = ApiRequest {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: &parts.headers,
        body: &body,
    };
    let outcome = api::handle(&shared, &api_req, at);
    if drop_after_handling {
        // The write is done and its webhooks go out; only the answer is lost.
        shared.record(record(0));
        shared.dispatch_webhooks(outcome.events);
        kill.notify_one();
        let never: Infallible = std::future::pending().await;
        match never {}
    }
    shared.record(record(outcome.resp.status));
    shared.dispatch_webhooks(outcome.events);
    Ok(to_hyper(outcome.resp))
}

fn to_hyper(r: Resp) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(r.status);
    for (k, v) in &r.headers {
        builder = builder.header(*k, v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| {
            // Only an unusable status or header value gets here; answer a plain 500.
            let mut fallback = hyper::Response::new(Full::new(Bytes::from_static(
                br#"{"error":"Something went wrong please try again later"}"#,
            )));
            *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
}
