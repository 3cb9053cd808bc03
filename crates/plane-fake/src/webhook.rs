//! Plane CE ("v1") webhook deliveries: envelope, signature and Celery-like retries.

use crate::json::python_json_dumps;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::time::Duration;
use uuid::Uuid;

/// Lowercase hex HMAC-SHA256 of `body`, keyed with the whole secret string (including its
/// `plane_wh_` prefix), exactly like Plane's `X-Plane-Signature`.
///
/// ```
/// let sig = plane_fake::sign("secret", b"{}");
/// assert_eq!(sig.len(), 64);
/// ```
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Why a delivery could not even be attempted.
#[derive(Debug)]
pub enum WebhookError {
    /// The HTTP client could not be built.
    Client(reqwest::Error),
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookError::Client(e) => write!(f, "cannot build HTTP client: {e}"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// What happened to one webhook delivery (all its attempts).
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    /// `X-Plane-Delivery` of every attempt, in order (a new uuid4 each attempt, like Plane).
    pub delivery_ids: Vec<Uuid>,
    /// Status of the response that ended the delivery; `None` if every attempt failed in transport.
    pub status: Option<u16>,
    /// The exact body bytes sent (and signed).
    pub body: Vec<u8>,
    /// The `X-Plane-Signature` sent.
    pub signature: String,
    /// The transport error of the last failed attempt, if any attempt failed.
    pub last_error: Option<String>,
}

impl WebhookDelivery {
    /// Number of attempts made.
    pub fn attempts(&self) -> usize {
        self.delivery_ids.len()
    }
}

/// Sends webhooks the way Plane CE's Celery task does.
///
/// Any HTTP response, 4xx and 5xx included, counts as delivered; only transport errors are
/// retried, each attempt with a fresh `X-Plane-Delivery`. Plane waits up to 600 s between
/// retries; the default backoff here is 50 ms so tests stay fast.
#[derive(Clone)]
pub struct WebhookSender {
    secret: String,
    webhook_id: Uuid,
    workspace_id: Uuid,
    max_attempts: usize,
    backoff: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("secret", &"<redacted>")
            .field("webhook_id", &self.webhook_id)
            .field("workspace_id", &self.workspace_id)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WebhookSender {
    /// A sender signing with `secret`, with random webhook and workspace ids.
    pub fn new(secret: impl Into<String>) -> Self {
        WebhookSender {
            secret: secret.into(),
            webhook_id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            max_attempts: 6,
            backoff: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
        }
    }

    /// The envelope's `webhook_id`.
    pub fn webhook_id(mut self, id: Uuid) -> Self {
        self.webhook_id = id;
        self
    }

    /// The envelope's `workspace_id`.
    pub fn workspace_id(mut self, id: Uuid) -> Self {
        self.workspace_id = id;
        self
    }

    /// Attempts per delivery, first one included (Plane: 6). At least 1.
    pub fn max_attempts(mut self, n: usize) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Wait between attempts after a transport error.
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }

    /// Per-attempt timeout (Plane: 30 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The secret this sender signs with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Builds the v1 envelope (keys in Plane's order: event, action, webhook_id,
    /// workspace_id, data, activity).
    pub fn envelope(&self, event: &str, action: &str, data: Value, activity: Value) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), Value::String(event.to_owned()));
        m.insert("action".into(), Value::String(action.to_owned()));
        m.insert(
            "webhook_id".into(),
            Value::String(self.webhook_id.to_string()),
        );
        m.insert(
            "workspace_id".into(),
            Value::String(self.workspace_id.to_string()),
        );
        m.insert("data".into(), data);
        m.insert("activity".into(), activity);
        Value::Object(m)
    }

    /// Builds, serialises (like Python `json.dumps`), signs and POSTs a delivery.
    pub async fn send(
        &self,
        url: &str,
        event: &str,
        action: &str,
        data: Value,
        activity: Value,
    ) -> Result<WebhookDelivery, WebhookError> {
        let body = python_json_dumps(&self.envelope(event, action, data, activity)).into_bytes();
        self.raw(url, event, body, None).await
    }

    /// POSTs `body` as is, signed with this sender's secret unless `signature_override` is
    /// given (for forged or replayed deliveries in tests).
    pub async fn raw(
        &self,
        url: &str,
        event: &str,
        body: Vec<u8>,
        signature_override: Option<String>,
    ) -> Result<WebhookDelivery, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(WebhookError::Client)?;
        let signature = signature_override.unwrap_or_else(|| sign(&self.secret, &body));
        let mut delivery = WebhookDelivery {
            delivery_ids: Vec::new(),
            status: None,
            body: body.clone(),
            signature: signature.clone(),
            last_error: None,
        };
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff).await;
            }
            let delivery_id = Uuid::new_v4();
            delivery.delivery_ids.push(delivery_id);
            let mut request = client.post(url);
            for (name, value) in delivery_headers(delivery_id, event, &signature) {
                request = request.header(name, value);
            }
            let result = request.body(body.clone()).send().await;
            match result {
                Ok(resp) => {
                    delivery.status = Some(resp.status().as_u16());
                    // Read the body so the connection can be reused; its content is ignored.
                    let _ = resp.bytes().await;
                    return Ok(delivery);
                }
                Err(e) => {
                    tracing::debug!(%url, attempt, error = %e, "webhook attempt failed");
                    delivery.last_error = Some(e.to_string());
                }
            }
        }
        Ok(delivery)
    }
}

/// The headers of one delivery attempt, in the order Plane's Celery task sends them.
pub(crate) fn delivery_headers(
    delivery_id: Uuid,
    event: &str,
    signature: &str,
) -> [(&'static str, String); 5] {
    [
        ("Content-Type", "application/json".to_owned()),
        ("User-Agent", "Autopilot".to_owned()),
        ("X-Plane-Delivery", delivery_id.to_string()),
        ("X-Plane-Event", event.to_owned()),
        ("X-Plane-Signature", signature.to_owned()),
    ]
}
