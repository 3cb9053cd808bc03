//! The HTTP side: `POST /webhooks/plane`, `/healthz`, `/readyz`, `/metrics`.
//!
//! None of them asks for credentials: the webhook route is protected by its
//! signature, and the others say nothing secret.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::StatusCode;
use plane_webhook::RecordOutcome;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::config::Config;
use crate::connector::{Connector, WEBHOOK_SECRET_REF};
use crate::error::{ApiError, WebhookRejection};
use crate::in_flight::InFlightLimit;
use crate::metrics::Metrics;
use crate::serve::AbortConnection;
use crate::verified_delivery::VerifiedDelivery;

/// How long a Plane reachability answer is reused by `/readyz`, so probes
/// never spend the rate budget.
const READY_CACHE: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for Plane.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` says about Plane: a fixed word, never Plane's own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaneReadiness {
    /// `GET users/me` answered.
    Ok,
    /// Plane refused the API key (401 or 403).
    Unauthorized,
    /// Plane answered with an error, or could not be reached.
    Unreachable,
    /// No answer within 3 s (and none earlier to reuse).
    NoAnswer,
    /// The connector is off, or no API key is configured.
    NotChecked,
}

/// The last Plane reachability answer and when it was taken.
type ReadyCache = Arc<Mutex<Option<(Instant, PlaneReadiness)>>>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Verification, the store, the Plane client, the on/off switch.
    pub connector: Connector,
    /// Counters and gauges for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when something was queued.
    pub queued: Arc<Notify>,
    /// The largest body taken, in bytes (`server.body_limit_bytes`).
    pub body_limit: usize,
    /// How long a delivery's body may take to arrive (default 30 s).
    pub body_timeout: Duration,
    /// Webhook requests being read or stored at once (`server.max_in_flight`).
    pub in_flight: InFlightLimit,
    /// `sqlite` or `postgres`, and the delivery schema version the store was opened at,
    /// for `/readyz`.
    pub backend: (&'static str, i64),
    ready_cache: ReadyCache,
    key_missing_logged: Arc<Once>,
}

impl AppState {
    /// State for a router, with the body limit and the in-flight limit of `config`.
    pub fn new(connector: Connector, metrics: Arc<Metrics>, config: &Config) -> Self {
        let (current, waiting, limit) = metrics.in_flight_gauges();
        metrics.set_enabled(connector.enabled());
        Self {
            connector,
            queued: Arc::new(Notify::new()),
            body_limit: config.body_limit,
            body_timeout: Duration::from_secs(30),
            in_flight: InFlightLimit::with_gauges(config.max_in_flight, current, waiting, limit),
            backend: match config.postgres {
                Some(_) => ("postgres", plane_webhook::PgStore::SCHEMA_VERSION),
                None => ("sqlite", plane_webhook::SqliteStore::SCHEMA_VERSION),
            },
            metrics,
            ready_cache: Arc::default(),
            key_missing_logged: Arc::new(Once::new()),
        }
    }
}

/// The service's routes, with JSON answers for unknown routes and methods.
pub fn router(state: AppState) -> Router {
    Router::new()
        // `VerifiedDelivery` reads the body itself, within `body_limit` and `body_timeout`.
        .route(
            "/webhooks/plane",
            post(receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Behind one Arc: axum clones the state for every request.
        .with_state(Arc::new(state))
}

async fn receive(
    State(state): State<Arc<AppState>>,
    abort: Option<Extension<AbortConnection>>,
    delivery: Result<VerifiedDelivery, WebhookRejection>,
) -> Response {
    let result = match delivery {
        Ok(delivery) => state
            .connector
            .record(&delivery.headers, &delivery.head, delivery.body.clone())
            .await
            .map(|outcome| (delivery, outcome))
            .map_err(ApiError::Store),
        Err(rejection) => Err(ApiError::Rejected(rejection)),
    };
    match result {
        Ok((delivery, RecordOutcome::New { id })) => {
            state.metrics.delivery("accepted", "new");
            state.queued.notify_one();
            tracing::info!(id, delivery = %delivery.headers.delivery_id, event = %delivery.head.event, action = delivery.head.action.as_str(), "delivery accepted");
            json_answer(r#"{"status":"accepted"}"#)
        }
        Ok((delivery, RecordOutcome::Duplicate { id, by })) => {
            state.metrics.delivery(
                "duplicate",
                match by {
                    plane_webhook::DuplicateBy::DeliveryId => "delivery_id",
                    plane_webhook::DuplicateBy::SameEvent => "same_event",
                },
            );
            tracing::info!(id, delivery = %delivery.headers.delivery_id, ?by, "duplicate delivery ignored");
            json_answer(r#"{"status":"duplicate"}"#)
        }
        Err(error) => {
            state.metrics.delivery("rejected", error.reason());
            match &error {
                ApiError::Rejected(WebhookRejection::KeyMissing) => {
                    state.key_missing_logged.call_once(|| {
                        tracing::error!(
                            ssot_ref = WEBHOOK_SECRET_REF,
                            "no webhook secret configured: every delivery is answered 503 KEY_MISSING \
                             until PLANE_WEBHOOK_SECRET is set"
                        );
                    })
                }
                ApiError::Store(_) | ApiError::Rejected(WebhookRejection::BodyTimeout) => {
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

/// A 200 with a fixed JSON body: the answer on the hot path builds nothing.
fn json_answer(body: &'static str) -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The state of each dependency. 503 only when the store cannot take a
/// delivery: a receiver taken out of rotation for a Plane outage would make
/// Plane's own deliveries fail, and Plane CE turns a webhook off after 6
/// failed attempts. Plane's state is reported as a fixed word.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    // The store's error names files; it goes to the log, not to the caller, who gets a
    // fixed word: `unavailable` for a store that refuses, `connection_lost` for a
    // database that cannot be reached (the pool reconnects by itself).
    let store = match state.connector.store().ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::error!(error = %e, "readiness: the delivery store does not answer");
            if e.is_unavailable() {
                "connection_lost"
            } else {
                "unavailable"
            }
        }
    };
    let store_ok = store == "ok";
    state.metrics.set_store_up(store_ok);
    let plane = plane_readiness(&state).await;
    let status = match (store_ok, plane) {
        (false, _) => "not_ready",
        (true, PlaneReadiness::Ok | PlaneReadiness::NotChecked) => "ready",
        (true, _) => "degraded",
    };
    let body = json!({
        "status": status,
        "store": store,
        "backend": state.backend.0,
        "schema_version": state.backend.1,
        "plane": plane,
        "connector": if state.connector.enabled() { "on" } else { "off" },
    });
    let code = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// A cached answer when fresh; Plane's error text goes to the log only. Whatever it
/// answers is also `/metrics`' `plane_connector_plane_check`.
async fn plane_readiness(state: &AppState) -> PlaneReadiness {
    let readiness = ask_plane(state).await;
    state.metrics.set_plane_check(readiness);
    readiness
}

/// How often [`check_plane`] asks Plane.
pub const PLANE_CHECK_EVERY: Duration = Duration::from_secs(300);

/// Asks Plane as `/readyz` does (through its 30 s cache) every [`PLANE_CHECK_EVERY`],
/// the first time one period after start, until `stop` turns true. Without it the
/// Plane alerts would depend on someone probing `/readyz`: `serve` itself never calls
/// Plane otherwise (its handlers hold no client). At most one request per 5 minutes,
/// of a budget of 60 a minute; none when the connector is off or has no API key.
pub async fn check_plane(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + PLANE_CHECK_EVERY,
        PLANE_CHECK_EVERY,
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = every.tick() => {
                plane_readiness(&state).await;
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn ask_plane(state: &AppState) -> PlaneReadiness {
    let Ok(client) = state.connector.client() else {
        return PlaneReadiness::NotChecked;
    };
    let cache = || {
        state
            .ready_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some((_, readiness)) = (*cache()).filter(|(at, _)| at.elapsed() < READY_CACHE) {
        return readiness;
    }
    // A probe must not wait behind the rate limiter or a 429 hold: give it a
    // few seconds, and keep the last known answer if it gets none.
    let readiness = match tokio::time::timeout(READY_TIMEOUT, client.users().me()).await {
        Ok(Ok(_)) => PlaneReadiness::Ok,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: Plane did not answer GET users/me");
            match e {
                plane_core::Error::Unauthorized { .. } | plane_core::Error::Forbidden { .. } => {
                    PlaneReadiness::Unauthorized
                }
                _ => PlaneReadiness::Unreachable,
            }
        }
        Err(_) => {
            return (*cache()).map_or(PlaneReadiness::NoAnswer, |(_, last)| last);
        }
    };
    *cache() = Some((Instant::now(), readiness));
    readiness
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
