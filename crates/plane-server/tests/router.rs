//! The routes through `tower::ServiceExt::oneshot`: no socket needed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use futures::StreamExt;
use http::{Request, StatusCode};
use plane_server::app::{AppState, router};
use plane_server::config::{Config, Overrides};
use plane_server::connector::Connector;
use plane_server::metrics::Metrics;
use plane_webhook::{DeliveryStore, MemoryStore, StoreConfig, Verifier};
use serde_json::Value;
use tower::ServiceExt;

mod support;

fn secret() -> String {
    format!("plane_wh_{}", "7".repeat(32))
}

fn config(env: &[(&str, String)]) -> Config {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Config::load(&Overrides::default(), &move |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
}

fn state_with(config: &Config) -> (AppState, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new(StoreConfig::default()));
    let connector = Connector::new(config, store.clone() as Arc<dyn DeliveryStore>).unwrap();
    let state = AppState::new(connector, Arc::new(Metrics::default()), config);
    (state, store)
}

fn state() -> (AppState, Arc<MemoryStore>) {
    state_with(&config(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_ENABLED", "true".into()),
    ]))
}

fn body(n: u32) -> Vec<u8> {
    format!(
        r#"{{"event": "issue", "action": "created", "webhook_id": "9b70f55f-3e40-44a4-a814-f08b4ff86e59", "workspace_id": "94a89513-b7f8-4d70-97aa-ecf2810be8ea", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}, "activity": {{"field": null}}}}"#
    )
    .into_bytes()
}

fn delivery(body: &[u8], signature: Option<String>, delivery_id: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/webhooks/plane")
        .header("content-type", "application/json")
        .header("x-plane-event", "issue");
    if let Some(id) = delivery_id {
        request = request.header("x-plane-delivery", id);
    }
    if let Some(signature) = signature {
        request = request.header("x-plane-signature", signature);
    }
    request.body(Body::from(body.to_vec())).unwrap()
}

fn signed(body: &[u8]) -> Request<Body> {
    let id = uuid::Uuid::new_v4().to_string();
    delivery(body, Some(Verifier::sign(&secret(), body)), Some(&id))
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Value) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_signed_delivery_is_accepted_then_recognised_as_a_duplicate() {
    let (state, store) = state();
    let (status, json) = send(&state, signed(&body(1))).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
    // Plane's retry: same body, new delivery id.
    let (status, json) = send(&state, signed(&body(1))).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(store.stats().await.unwrap().pending, 1);
}

#[tokio::test]
async fn bad_signatures_are_401_with_the_reason_and_store_nothing() {
    let (state, store) = state();
    let b = body(2);
    let good = Verifier::sign(&secret(), &b);
    let id = uuid::Uuid::new_v4().to_string();
    for (signature, reason) in [
        (None, "missing"),
        (Some("zz".repeat(32)), "not_hex"),
        (Some(good[..10].to_owned()), "wrong_length"),
        (Some(Verifier::sign("plane_wh_other", &b)), "mismatch"),
    ] {
        let (status, json) = send(&state, delivery(&b, signature, Some(&id))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["error"], "INVALID_SIGNATURE");
        assert_eq!(json["reason"], reason);
        assert!(!json.to_string().contains(&secret()));
    }
    assert_eq!(store.stats().await.unwrap().pending, 0);
    assert_eq!(
        state
            .metrics
            .delivery_count("rejected", "signature_mismatch"),
        1
    );
}

#[tokio::test]
async fn a_missing_delivery_header_or_a_body_that_is_not_an_envelope_is_400() {
    let (state, _) = state();
    let b = body(3);
    let (status, json) = send(
        &state,
        delivery(&b, Some(Verifier::sign(&secret(), &b)), None),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("x-plane-delivery"),
        "{json}"
    );
    let (status, json) = send(
        &state,
        delivery(&b, Some(Verifier::sign(&secret(), &b)), Some("not-a-uuid")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    let not_json = b"[1, 2, 3]";
    let (status, json) = send(&state, signed(not_json)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["message"].as_str().unwrap().contains("envelope"),
        "{json}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_with_a_json_body() {
    let mut cfg = config(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_ENABLED", "true".into()),
    ]);
    cfg.body_limit = 1024;
    let (state, _) = state_with(&cfg);
    let big = vec![b' '; 2048];
    let (status, json) = send(&state, signed(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["error"], "PAYLOAD_TOO_LARGE");
    assert_eq!(json["limit_bytes"], 1024);
}

#[tokio::test]
async fn a_secret_gone_at_run_time_is_503_key_missing() {
    // `serve` refuses to start without a secret; an embedded router without one
    // (a secret store that went away) answers KEY_MISSING and stores nothing.
    let (state, store) = state_with(&config(&[("PLANE_ENABLED", "true".into())]));
    let (status, json) = send(&state, signed(&body(4))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json,
        serde_json::json!({"error": "KEY_MISSING", "ssot_ref": "ssot/secrets/registry.yaml#plane_webhook_secret"})
    );
    assert_eq!(store.stats().await.unwrap().pending, 0);
    assert_eq!(state.metrics.delivery_count("rejected", "key_missing"), 1);
}

#[tokio::test]
async fn a_switched_off_connector_still_verifies_and_stores_deliveries() {
    let (state, store) = state_with(&config(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_ENABLED", "false".into()),
    ]));
    let (status, json) = send(&state, signed(&body(5))).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{json}"
    );
    assert_eq!(store.stats().await.unwrap().pending, 1);
    // Verification still applies: a forged delivery is refused and not stored.
    let b = body(6);
    let (status, _) = send(
        &state,
        delivery(
            &b,
            Some(Verifier::sign("plane_wh_forged", &b)),
            Some(&uuid::Uuid::new_v4().to_string()),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(store.stats().await.unwrap().pending, 1);
    let (status, json) = send(&state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["connector"], "off");
    assert_eq!(json["plane"], "not_checked");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let (state, _) = state();
    let (status, json) = send(&state, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, json) = send(
        &state,
        Request::get("/webhooks/plane").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("METHOD_NOT_ALLOWED"))
    );
}

async fn get(state: &AppState, path: &str) -> (StatusCode, String) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// A state over a [`support::ProbeStore`], with a Plane client when `env` has one.
fn probed(env: &[(&str, String)]) -> (AppState, Arc<support::ProbeStore>) {
    let cfg = config(env);
    let store = Arc::new(support::ProbeStore::new(Arc::new(MemoryStore::new(
        StoreConfig::default(),
    ))));
    let connector = Connector::new(&cfg, store.clone() as Arc<dyn DeliveryStore>).unwrap();
    let metrics = Arc::new(Metrics::new(connector.configured_client()));
    (AppState::new(connector, metrics, &cfg), store)
}

#[tokio::test]
async fn health_and_readiness_answer_without_credentials() {
    let (state, _) = state();
    let (status, json) = send(
        &state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    // No header of any kind.
    let (status, json) = send(&state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        json,
        serde_json::json!({
            "status": "ready", "store": "ok", "backend": "sqlite",
            "schema_version": plane_webhook::SqliteStore::SCHEMA_VERSION,
            "plane": "not_checked", "connector": "on"
        })
    );
}

#[tokio::test]
async fn readiness_is_503_only_when_the_store_fails_and_never_shows_its_error() {
    let (state, store) = probed(&[("PLANE_WEBHOOK_SECRET", secret())]);
    store
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, text) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["store"].as_str()),
        (Some("not_ready"), Some("unavailable"))
    );
    assert!(
        !text.contains("disk full") && !text.contains("/secret/path"),
        "{text}"
    );
}

#[tokio::test]
async fn readiness_says_connection_lost_for_a_database_that_cannot_be_reached() {
    let (state, store) = probed(&[("PLANE_WEBHOOK_SECRET", secret())]);
    store
        .unreachable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    store
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(metrics.contains("plane_connector_store_up 1"), "{metrics}");
    let (status, text) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["store"].as_str()),
        (Some("not_ready"), Some("connection_lost"))
    );
    assert!(!text.contains("secret-db"), "{text}");
    // And for Prometheus (alert PlaneConnectorStoreDown), until the store answers again.
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(metrics.contains("plane_connector_store_up 0"), "{metrics}");
    store
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
    let (_, metrics) = get(&state, "/metrics").await;
    assert!(metrics.contains("plane_connector_store_up 1"), "{metrics}");
}

#[tokio::test]
async fn readiness_names_plane_trouble_by_a_fixed_word_and_stays_200() {
    let fake = plane_fake::FakePlane::builder().start().await.unwrap();
    // A key Plane refuses: "unauthorized", with none of Plane's own text.
    let wrong_key = format!("plane_api_{}", "0".repeat(32));
    let (state, _) = probed(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_API_KEY", wrong_key.clone()),
        ("PLANE_BASE_URL", fake.base_url()),
    ]);
    let (status, text) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "status": "degraded", "store": "ok", "backend": "sqlite",
            "schema_version": plane_webhook::SqliteStore::SCHEMA_VERSION,
            "plane": "unauthorized", "connector": "on"
        })
    );
    assert!(!text.contains(&wrong_key), "{text}");
    // Plane failing with a body of its own: "unreachable", the body not echoed.
    fake.inject(plane_fake::Fault::status(502).times(10));
    let (state, _) = probed(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_API_KEY", fake.api_key()),
        ("PLANE_BASE_URL", fake.base_url()),
    ]);
    let (status, text) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    // plane-core retries a 502 with jittered backoff (up to about 3.5 s in all), so on a busy
    // machine the 3 s probe may end first: either fixed word is right, Plane's text never is.
    assert!(
        json["plane"] == "unreachable" || json["plane"] == "no_answer",
        "{text}"
    );
    assert!(
        !text.contains("nginx") && !text.contains("Bad Gateway"),
        "{text}"
    );
}

#[tokio::test]
async fn readiness_does_not_hang_when_plane_is_slow() {
    let fake = plane_fake::FakePlane::builder().start().await.unwrap();
    fake.inject(plane_fake::Fault::delay(std::time::Duration::from_secs(30)).times(10));
    let cfg = config(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_API_KEY", fake.api_key()),
        ("PLANE_BASE_URL", fake.base_url()),
    ]);
    let (state, _) = state_with(&cfg);
    let started = std::time::Instant::now();
    let (status, json) = send(&state, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    // The probe gives Plane 3 s; the fake would take 30.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["plane"], "no_answer", "{json}");
    assert_eq!(json["status"], "degraded", "{json}");
    assert_eq!(json["store"], "ok");
}

/// Every sample belongs to a family announced with both `# HELP` and `# TYPE`.
fn assert_every_family_has_help_and_type(text: &str) {
    let announced = |kind: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("# {kind} ")))
            .map(|rest| rest.split(' ').next().unwrap().to_owned())
            .collect()
    };
    let (help, types) = (announced("HELP"), announced("TYPE"));
    assert_eq!(help, types, "{text}");
    assert!(!types.is_empty());
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            types.iter().any(|family| name == family
                || name.strip_prefix(family.as_str()).is_some_and(|rest| {
                    ["_total", "_bucket", "_sum", "_count", "_created"].contains(&rest)
                })),
            "{name} has no HELP/TYPE in\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_come_from_memory_with_help_and_type_and_no_secret() {
    let fake = plane_fake::FakePlane::builder().start().await.unwrap();
    let (state, store) = probed(&[
        ("PLANE_WEBHOOK_SECRET", secret()),
        ("PLANE_API_KEY", fake.api_key()),
        ("PLANE_BASE_URL", fake.base_url()),
    ]);
    send(&state, signed(&body(6))).await;
    send(&state, signed(&body(6))).await;
    send(&state, signed(&body(8))).await;
    send(
        &state,
        delivery(&body(7), None, Some(&uuid::Uuid::new_v4().to_string())),
    )
    .await;
    // Plane is asked once (readiness), so the client's families have samples.
    get(&state, "/readyz").await;
    let mut text = String::new();
    for _ in 0..5 {
        let (status, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        text = body;
    }
    assert_eq!(
        store.stats_calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a scrape asked the store to count"
    );
    for line in [
        "plane_webhook_deliveries_total{outcome=\"accepted\",reason=\"new\"} 2",
        "plane_webhook_deliveries_total{outcome=\"duplicate\",reason=\"same_event\"} 1",
        "plane_webhook_deliveries_total{outcome=\"rejected\",reason=\"signature_missing\"} 1",
        "plane_inbox_backlog_items 2",
        "plane_inbox_dead_items 0",
        "plane_connector_enabled 1",
        "plane_webhook_requests_in_flight 0",
        "plane_webhook_requests_in_flight_limit 64",
        "plane_api_requests_total 1",
        "plane_api_responses_total{status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_every_family_has_help_and_type(&text);
    assert!(
        !text.contains(&secret()) && !text.contains(&fake.api_key()),
        "{text}"
    );
    assert_eq!(
        store.stats().await.unwrap().pending,
        2,
        "the gauge agrees with the store"
    );
}

#[tokio::test]
async fn a_body_that_never_finishes_is_cut_off() {
    let (mut state, store) = state();
    state.body_timeout = std::time::Duration::from_millis(200);
    let b = body(9);
    let signature = Verifier::sign(&secret(), &b);
    let first = bytes::Bytes::from(b[..10].to_vec());
    let trickle = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(futures::stream::pending());
    let request = Request::post("/webhooks/plane")
        .header("x-plane-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-plane-signature", signature)
        .body(Body::from_stream(trickle))
        .unwrap();
    let (status, json) = send(&state, request).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("REQUEST_TIMEOUT"))
    );
    assert_eq!(store.stats().await.unwrap().pending, 0);
}
