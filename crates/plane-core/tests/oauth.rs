//! OAuth token sources against a scripted token endpoint (Plane Cloud's
//! `/auth/o/token/`), and the client's one renewal on a 401.
#![allow(clippy::unwrap_used)]

use plane_core::PlaneClient;
use plane_core::oauth::OAuthApp;
use wiremock::matchers::{body_string_contains, header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "client-secret-not-real";

/// A client of `server` authenticated by `source`.
fn client_with(server: &MockServer, source: impl plane_core::TokenSource + 'static) -> PlaneClient {
    PlaneClient::builder()
        .base_url(server.uri())
        .bearer(source)
        .build()
        .unwrap()
}

/// A client of `server` with the bot token of installation `inst-1`.
fn bot_client(server: &MockServer) -> PlaneClient {
    let app = OAuthApp::new(&server.uri(), "client-1", SECRET).unwrap();
    client_with(server, app.bot_token("inst-1"))
}

fn me() -> serde_json::Value {
    serde_json::json!({"id": "39b1ea76-38fc-41d6-bf9d-004cb8cca054", "display_name": "bot"})
}

#[tokio::test]
async fn a_bot_token_is_fetched_once_with_basic_auth_and_reused_until_it_expires() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/o/token/"))
        .and(header_exists("authorization"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("app_installation_id=inst-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "pln_bot_first", "token_type": "Bearer", "expires_in": 86400}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/me/"))
        .and(header("authorization", "Bearer pln_bot_first"))
        .respond_with(ResponseTemplate::new(200).set_body_json(me()))
        .expect(3)
        .mount(&server)
        .await;
    let client = bot_client(&server);
    for _ in 0..3 {
        client.users().me().await.unwrap();
    }
    let token_request = &server.received_requests().await.unwrap()[0];
    let basic = token_request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(basic.starts_with("Basic "), "{basic}");
    assert!(
        !String::from_utf8_lossy(&token_request.body).contains(SECRET),
        "the secret goes in Basic auth, not the body"
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_and_a_refused_one_is_renewed_once() {
    let server = MockServer::start().await;
    // expires_in shorter than the renewal margin: every call renews.
    Mock::given(method("POST"))
        .and(path("/auth/o/token/"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "pln_bot_short", "expires_in": 1}),
            ),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(me()))
        .mount(&server)
        .await;
    let client = bot_client(&server);
    client.users().me().await.unwrap();
    client.users().me().await.unwrap();

    // A revoked token: 401 once, then the renewed token works.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/o/token/"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "pln_bot_x", "expires_in": 86400}),
            ),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            serde_json::json!({"detail": "Authentication credentials were not provided."}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(me()))
        .mount(&server)
        .await;
    let client = bot_client(&server);
    client.users().me().await.unwrap();
}

#[tokio::test]
async fn a_refresh_token_renews_the_access_token_and_keeps_the_rotated_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/o/token/"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=pln_refresh_one"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "pln_two", "refresh_token": "pln_refresh_two", "expires_in": 1}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/o/token/"))
        .and(body_string_contains("refresh_token=pln_refresh_two"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "pln_three", "expires_in": 3600}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer pln_one"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(serde_json::json!({"detail": "expired"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(me()))
        .mount(&server)
        .await;
    let app = OAuthApp::new(&server.uri(), "client-1", SECRET).unwrap();
    let client = client_with(&server, app.refreshing_token("pln_one", "pln_refresh_one"));
    client.users().me().await.unwrap(); // 401 with pln_one, refresh -> pln_two
    client.users().me().await.unwrap(); // pln_two expires at once -> refresh with the rotated token -> pln_three
    let auths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .map(|r| {
            r.headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        auths,
        ["Bearer pln_one", "Bearer pln_two", "Bearer pln_three"]
    );
}

#[tokio::test]
async fn a_token_endpoint_failure_is_a_token_error_without_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"error": "invalid_client"})),
        )
        .mount(&server)
        .await;
    let client = bot_client(&server);
    let err = client.users().me().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, plane_core::Error::Token { .. }), "{text}");
    assert!(
        text.contains("invalid_client") && text.contains("/auth/o/token/"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}
