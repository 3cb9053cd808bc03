//! Single odd responses scripted with wiremock: what goes on the wire, and
//! how the client reacts.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use plane_core::{Error, PlaneClient, RetryPolicy, StaticToken};
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn fake_key() -> String {
    // Built at run time so no key-shaped literal sits in the repo.
    format!("plane_api_{}", "0123456789abcdef".repeat(2))
}

fn user() -> serde_json::Value {
    serde_json::json!({"id": "39b1ea76-38fc-41d6-bf9d-004cb8cca054", "first_name": "A",
        "last_name": "B", "email": "a@example.com", "avatar": "", "avatar_url": null, "display_name": "ab"})
}

async fn client_for(server: &MockServer) -> PlaneClient {
    PlaneClient::builder()
        .base_url(server.uri())
        .api_key(fake_key())
        .retry_policy(RetryPolicy {
            base_delay: Duration::from_millis(10),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn api_key_goes_in_x_api_key_and_every_path_ends_in_a_slash() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/me/"))
        .and(header("x-api-key", fake_key().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(user()))
        .expect(1)
        .mount(&server)
        .await;
    let me = client_for(&server).await.users().me().await.unwrap();
    assert_eq!(me.display_name, "ab");
    let request = &server.received_requests().await.unwrap()[0];
    assert!(
        request.headers.get("authorization").is_none(),
        "sent both credentials"
    );
}

#[tokio::test]
async fn a_bearer_source_sends_only_authorization() {
    let server = MockServer::start().await;
    Mock::given(header("authorization", "Bearer pln_bot_not_real"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user()))
        .expect(1)
        .mount(&server)
        .await;
    let client = PlaneClient::builder()
        .base_url(server.uri())
        .bearer(StaticToken::new("pln_bot_not_real"))
        .build()
        .unwrap();
    client.users().me().await.unwrap();
    let request = &server.received_requests().await.unwrap()[0];
    assert!(request.headers.get("x-api-key").is_none());
}

#[test]
fn both_credentials_or_none_is_a_configuration_error() {
    let both = PlaneClient::builder()
        .api_key(fake_key())
        .bearer(StaticToken::new("pln_x"))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            both,
            Error::InvalidConfig {
                key: "credentials",
                ..
            }
        ),
        "{both}"
    );
    let none = PlaneClient::builder().build().unwrap_err();
    assert!(none.to_string().contains("PLANE_API_KEY"), "{none}");
    let slug = PlaneClient::builder()
        .api_key(fake_key())
        .workspace_slug(" ")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            slug,
            Error::InvalidConfig {
                key: "workspace_slug",
                ..
            }
        ),
        "{slug}"
    );
}

#[tokio::test]
async fn an_undecodable_body_is_a_decode_error_with_a_short_excerpt() {
    let server = MockServer::start().await;
    let html = format!("<html>{}</html>", "x".repeat(5000));
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(html))
        .mount(&server)
        .await;
    let err = client_for(&server).await.users().me().await.unwrap_err();
    let Error::Decode { excerpt, path, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        excerpt.starts_with("<html>") && excerpt.chars().count() <= 201,
        "{excerpt}"
    );
    assert_eq!(path, "/api/v1/users/me/");
}

#[tokio::test]
async fn a_429_without_retry_after_backs_off_and_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            serde_json::json!({"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"}),
        ))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user()))
        .mount(&server)
        .await;
    let client = client_for(&server).await;
    client.users().me().await.unwrap();
    assert_eq!(client.stats().requests, 3);
    assert_eq!(client.stats().retries, 2);
    assert_eq!(client.stats().responses, [(200, 1), (429, 2)].into());
    assert_eq!(client.rate_limit().throttled, 2);
}

#[tokio::test]
async fn a_429_surfaces_after_three_retries_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(
                    serde_json::json!({"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"}),
                ),
        )
        .expect(4)
        .mount(&server)
        .await;
    let err = client_for(&server).await.users().me().await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { attempts: 4, retry_after: Some(d), .. } if d.is_zero()),
        "{err:?}"
    );
    assert!(err.to_string().contains("GET /api/v1/users/me/"), "{err}");
}

#[tokio::test]
async fn a_conflict_carries_the_existing_id_in_either_key() {
    let server = MockServer::start().await;
    let existing = "49804e6a-23dc-4630-ba9f-f8f5742e3c7c";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(409).set_body_json(serde_json::json!({
            "error": "Issue with the same external id and external source already exists", "issue_id": existing })))
        .mount(&server)
        .await;
    let client = client_for(&server).await;
    let project = uuid::Uuid::new_v4();
    let err = client
        .work_items(project)
        .create(&plane_core::WorkItemFields::new("x"))
        .await
        .unwrap_err();
    match err {
        Error::Conflict { existing_id, .. } => {
            assert_eq!(existing_id.unwrap().to_string(), existing)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fields_and_expand_pass_through_and_id_is_always_selected() {
    let server = MockServer::start().await;
    let item = serde_json::json!({"id": "49804e6a-23dc-4630-ba9f-f8f5742e3c7c", "name": "n"});
    Mock::given(method("GET"))
        .and(query_param("fields", "id,name,state"))
        .and(query_param("expand", "state"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server).await;
    let got = client
        .work_items(uuid::Uuid::new_v4())
        .fields(["name", "state"])
        .expand(["state"])
        .get("49804e6a-23dc-4630-ba9f-f8f5742e3c7c".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(got.name.as_deref(), Some("n"));
}

#[tokio::test]
async fn requests_carry_a_user_agent_and_accept_json() {
    let server = MockServer::start().await;
    Mock::given(header_exists("user-agent"))
        .and(header("accept", "application/json"))
        .respond_with(|req: &Request| {
            let agent = req.headers.get("user-agent").unwrap().to_str().unwrap();
            assert!(agent.starts_with("plane-connector/"), "{agent}");
            ResponseTemplate::new(200).set_body_json(user())
        })
        .expect(1)
        .mount(&server)
        .await;
    client_for(&server).await.users().me().await.unwrap();
}

#[tokio::test]
async fn legacy_issue_paths_for_servers_from_before_the_rename() {
    let server = MockServer::start().await;
    let project = uuid::Uuid::new_v4();
    let item = serde_json::json!({"id": "49804e6a-23dc-4630-ba9f-f8f5742e3c7c", "name": "n"});
    Mock::given(method("GET"))
        .and(path(format!("/api/v1/workspaces/insightpulseai/projects/{project}/issues/49804e6a-23dc-4630-ba9f-f8f5742e3c7c/")))
        .respond_with(ResponseTemplate::new(200).set_body_json(item.clone()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/workspaces/insightpulseai/issues/BIR-1/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item))
        .expect(1)
        .mount(&server)
        .await;
    let client = PlaneClient::builder()
        .base_url(server.uri())
        .api_key(fake_key())
        .legacy_issue_paths(true)
        .build()
        .unwrap();
    let items = client.work_items(project);
    items
        .get("49804e6a-23dc-4630-ba9f-f8f5742e3c7c".parse().unwrap())
        .await
        .unwrap();
    items.get_by_identifier("BIR-1").await.unwrap();
}

#[tokio::test]
async fn a_filter_cannot_override_the_page_size_or_cursor() {
    let client = PlaneClient::builder().api_key(fake_key()).build().unwrap();
    for key in ["per_page", "cursor", "fields", "expand"] {
        let err = client
            .work_items(uuid::Uuid::new_v4())
            .list(&plane_core::ListParams::new().filter(key, "5000"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{key}: {err}");
    }
}
