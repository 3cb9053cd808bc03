//! The HTTP side: `POST /webhooks/plane`, `/healthz`, `/readyz`, `/metrics`.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{HeaderMap, StatusCode};
use plane_webhook::{Clock, RecordOutcome};
use serde_json::json;
use tokio::sync::Notify;

use crate::connector::{Connector, WEBHOOK_SECRET_REF};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::serve::AbortConnection;

/// How long a Plane reachability answer is reused by `/readyz`, so probes
/// never spend the rate budget.
const READY_CACHE: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for Plane.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The last Plane reachability answer and when it was taken.
type ReadyCache = Arc<Mutex<Option<(Instant, Result<(), String>)>>>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub connector: Connector,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the worker when something was queued.
    pub queued: Arc<Notify>,
    pub body_limit: usize,
    /// How long a delivery's body may take to arrive (default 30 s).
    pub body_timeout: Duration,
    ready_cache: ReadyCache,
    key_missing_logged: Arc<Once>,
}

impl AppState {
    /// State for a router.
    pub fn new(
        connector: Connector,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        body_limit: usize,
    ) -> Self {
        Self {
            connector,
            metrics,
            clock,
            queued: Arc::new(Notify::new()),
            body_limit,
            body_timeout: Duration::from_secs(30),
            ready_cache: Arc::default(),
            key_missing_logged: Arc::new(Once::new()),
        }
    }
}

/// The service's routes, with JSON answers for unknown routes and methods.
pub fn router(state: AppState) -> Router {
    Router::new()
        // The handler reads the body itself, within `body_limit` and `body_timeout`.
        .route(
            "/webhooks/plane",
            post(receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

async fn receive(
    State(state): State<AppState>,
    abort: Option<Extension<AbortConnection>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        // Bounded in size and in time: a client that trickles its body is cut off.
        let body = match tokio::time::timeout(
            state.body_timeout,
            axum::body::to_bytes(body, state.body_limit),
        )
        .await
        {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                let e = e.into_inner();
                return Err(if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::TooLarge {
                        limit: state.body_limit,
                    }
                } else {
                    ApiError::BadRequest(format!("could not read the body: {e}"))
                });
            }
        };
        let (delivery, envelope) = state.connector.verify(&headers, &body)?;
        let outcome = state
            .connector
            .record(&delivery, &envelope, body.to_vec())
            .await?;
        Ok::<_, ApiError>((delivery, envelope, outcome))
    }
    .await;
    match result {
        Ok((delivery, envelope, RecordOutcome::New { id })) => {
            state.metrics.delivery("accepted", "new");
            state.queued.notify_one();
            tracing::info!(id, delivery = %delivery.delivery_id, event = %envelope.event, action = envelope.action.as_str(), "delivery accepted");
            (StatusCode::OK, Json(json!({"status": "accepted"}))).into_response()
        }
        Ok((delivery, _, RecordOutcome::Duplicate { id, by })) => {
            state.metrics.delivery(
                "duplicate",
                match by {
                    plane_webhook::DuplicateBy::DeliveryId => "delivery_id",
                    plane_webhook::DuplicateBy::SameEvent => "same_event",
                },
            );
            tracing::info!(id, delivery = %delivery.delivery_id, ?by, "duplicate delivery ignored");
            (StatusCode::OK, Json(json!({"status": "duplicate"}))).into_response()
        }
        Err(error) => {
            state.metrics.delivery("rejected", error.reason());
            match &error {
                ApiError::KeyMissing => state.key_missing_logged.call_once(|| {
                    tracing::error!(
                        ssot_ref = WEBHOOK_SECRET_REF,
                        "no webhook secret configured: every delivery is answered 503 KEY_MISSING \
                         until PLANE_WEBHOOK_SECRET is set"
                    );
                }),
                ApiError::Store(_) | ApiError::BodyTimeout => {
                    tracing::error!(error = %error, "delivery not taken");
                    // Any answer would count as delivered to Plane CE; no answer
                    // makes it send the event again later.
                    if let Some(Extension(abort)) = abort {
                        abort.abort();
                        return std::future::pending().await;
                    }
                }
                other => {
                    tracing::warn!(reason = other.reason(), error = %other, "delivery rejected")
                }
            }
            error.into_response()
        }
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    // The store's error names files; it goes to the log, not to the caller.
    let store = match state.connector.store().ping().await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "readiness: the delivery store does not answer");
            Err("the delivery store does not answer (see the server log)".to_owned())
        }
    };
    let plane = plane_reachable(&state).await;
    let ready = store.is_ok() && plane.as_ref().is_none_or(Result::is_ok);
    let describe = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!({"error": e}),
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": describe(&store),
        "plane": plane.as_ref().map_or(json!("not checked (connector disabled or no API key)"), describe),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `None` when there is nothing to check; a cached answer when fresh.
async fn plane_reachable(state: &AppState) -> Option<Result<(), String>> {
    let client = state.connector.client().ok()?;
    if let Some((_, result)) = state
        .ready_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .filter(|(at, _)| at.elapsed() < READY_CACHE)
    {
        return Some(result.clone());
    }
    // A probe must not wait behind the rate limiter or a 429 hold: give it a
    // few seconds, and keep the last known answer if it gets none.
    let result = match tokio::time::timeout(READY_TIMEOUT, client.users().me()).await {
        Ok(answer) => answer.map(drop).map_err(|e| e.to_string()),
        Err(_) => {
            let last = state
                .ready_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(|(_, r)| r.clone());
            return Some(last.unwrap_or_else(|| {
                Err(format!(
                    "no answer from Plane within {} s",
                    READY_TIMEOUT.as_secs()
                ))
            }));
        }
    };
    *state
        .ready_cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((Instant::now(), result.clone()));
    Some(result)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let inbox = state.connector.store().stats().await.ok();
    let text = state.metrics.render(
        inbox.as_ref(),
        state.clock.now_ms(),
        state.connector.configured_client(),
    );
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}
