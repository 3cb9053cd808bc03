//! What a sync reports and relies on: writes counted apart from reads, 429 sleeps counted
//! as waiting, the page-size fallback, and clearing a field with an explicit null.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::TryStreamExt;
use plane_core::{Error, ListParams, PlaneClient, RetryPolicy, WorkItemFields};
use plane_fake::{FakePlane, Fault, RunningFake};
use serde_json::{Value, json};
use wiremock::matchers::{method, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(fake: &RunningFake) -> PlaneClient {
    PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .retry_policy(RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap()
}

async fn fake() -> RunningFake {
    FakePlane::builder().no_rate_limit().start().await.unwrap()
}

#[tokio::test]
async fn writes_are_counted_apart_from_reads_retries_included() {
    let fake = fake().await;
    let client = client(&fake);
    let items = client.work_items(fake.project_id());
    let _ = items.list(&ListParams::new()).await.unwrap();
    let created = items.create(&WorkItemFields::new("counted")).await.unwrap();
    // A 503 on the DELETE: retried (DELETE is repeatable), so two write attempts.
    fake.inject(Fault::status(503).method("DELETE"));
    items
        .update(created.id, &WorkItemFields::new("counted twice"))
        .await
        .unwrap();
    items.delete(created.id).await.unwrap();
    let _ = items.get(created.id).await.unwrap_err();

    let stats = client.stats();
    let log = fake.request_log();
    let fake_writes = log.iter().filter(|r| r.method != "GET").count() as u64;
    assert_eq!(stats.requests, log.len() as u64);
    assert_eq!((stats.requests, stats.writes, stats.retries), (6, 4, 1));
    assert_eq!(stats.writes, fake_writes);
    assert_eq!(stats.reads(), 2);
}

#[tokio::test]
async fn the_sleep_before_retrying_a_429_is_counted_as_waited() {
    let fake = fake().await;
    let client = client(&fake);
    fake.inject(Fault::too_many_requests(1));
    client.users().me().await.unwrap();
    let status = client.rate_limit();
    assert_eq!(status.throttled, 1);
    assert_eq!(status.waits, 1);
    // The rule: the client slept at least Retry-After before its second attempt.
    assert!(status.waited >= Duration::from_secs(1), "{status:?}");
    assert_eq!((status.waiting, status.waiting_since), (0, None));
    assert_eq!(client.stats().requests, 2);
}

fn page(ids: &[&str], next: bool, per_page: u32, index: u32) -> Value {
    let results: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    json!({"grouped_by": null, "sub_grouped_by": null, "total_count": 3,
        "next_cursor": format!("{per_page}:{}:0", index + 1),
        "prev_cursor": format!("{per_page}:{}:1", i64::from(index) - 1),
        "next_page_results": next, "prev_page_results": index > 0,
        "count": ids.len(), "total_pages": 2, "total_results": 3,
        "extra_stats": null, "results": results})
}

const IDS: [&str; 3] = [
    "49804e6a-23dc-4630-ba9f-f8f5742e3c7c",
    "1c7f8f5e-3a38-4a34-9d56-2ad8f3b1a001",
    "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
];

/// A server whose paginator refuses more than 2 per page, the way Plane's does.
async fn strict_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("per_page", "1000"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"detail": "Invalid per_page value. Cannot exceed 2."})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("per_page", "2"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&IDS[..2], true, 2, 0)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("per_page", "2"))
        .and(query_param("cursor", "2:1:0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&IDS[2..], false, 2, 1)))
        .mount(&server)
        .await;
    server
}

fn mock_client(server: &MockServer) -> PlaneClient {
    PlaneClient::builder()
        .base_url(server.uri())
        .api_key(format!("plane_api_{}", "0".repeat(32)))
        .build()
        .unwrap()
}

async fn queries(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.query().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_refused_page_size_falls_back_once_and_is_remembered() {
    let server = strict_server().await;
    let client = mock_client(&server);
    assert_eq!(client.per_page_cap(), None);
    let items = client.work_items(uuid::Uuid::new_v4());
    let walked: Vec<_> = items
        .stream(ListParams::new().per_page(1000))
        .map_ok(|i| i.id.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(walked, IDS);
    assert_eq!(client.per_page_cap(), Some(2), "the size the server named");
    assert_eq!(
        queries(&server).await,
        ["per_page=1000", "per_page=2", "per_page=2&cursor=2%3A1%3A0"]
    );

    // Remembered: the next listing (a clone shares it) asks 2 straight away.
    let again = client
        .clone()
        .work_items(uuid::Uuid::new_v4())
        .list(&ListParams::new().per_page(1000))
        .await
        .unwrap();
    assert_eq!(again.count, 2);
    assert_eq!(queries(&server).await.len(), 4);
    assert_eq!(queries(&server).await[3], "per_page=2");
}

#[tokio::test]
async fn a_refusal_naming_no_size_falls_back_to_100_and_other_400s_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("per_page", "1000"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"detail": "Invalid per_page."})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("per_page", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&IDS, false, 100, 0)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("per_page", "500"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"detail": "Invalid cursor parameter."})),
        )
        .mount(&server)
        .await;
    let client = mock_client(&server);
    let items = client.work_items(uuid::Uuid::new_v4());
    let page = items.list(&ListParams::new().per_page(1000)).await.unwrap();
    assert_eq!(page.count, 3);
    assert_eq!(client.per_page_cap(), Some(100));
    assert_eq!(queries(&server).await, ["per_page=1000", "per_page=100"]);

    // A 400 about something else is the caller's: surfaced, not retried.
    let fresh = mock_client(&server);
    let err = fresh
        .work_items(uuid::Uuid::new_v4())
        .list(&ListParams::new().per_page(500))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest { .. }), "{err:?}");
    assert_eq!(fresh.per_page_cap(), None);
    assert_eq!(queries(&server).await.len(), 3);
}

#[tokio::test]
async fn a_page_size_refused_mid_walk_or_at_100_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"detail": "Invalid per_page value. Cannot exceed 50."})),
        )
        .mount(&server)
        .await;
    let client = mock_client(&server);
    let items = client.work_items(uuid::Uuid::new_v4());
    // With a cursor, another size would change what the cursor points at.
    let err = items
        .list(&ListParams::new().per_page(1000).cursor("1000:3:0"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest { .. }), "{err:?}");
    // 100 (Plane Cloud's documented maximum) or less: nothing smaller is tried.
    let err = items
        .list(&ListParams::new().per_page(100))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest { .. }), "{err:?}");
    assert_eq!(queries(&server).await.len(), 2);
    assert_eq!(client.per_page_cap(), None);
}

#[tokio::test]
async fn plane_ce_takes_1000_per_page_without_a_fallback() {
    let fake = FakePlane::builder()
        .seed_work_items(1001)
        .no_rate_limit()
        .start()
        .await
        .unwrap();
    let client = client(&fake);
    let n = client
        .work_items(fake.project_id())
        .stream(ListParams::new().per_page(1000))
        .try_fold(0, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    assert_eq!(n, 1001);
    assert_eq!(fake.request_count(), 2);
    assert_eq!(client.per_page_cap(), None);
}

#[tokio::test]
async fn a_patch_can_clear_nullable_fields_with_an_explicit_null() {
    let fake = fake().await;
    let client = client(&fake);
    let pid = fake.project_id();
    let items = client.work_items(pid);
    let parent = items.create(&WorkItemFields::new("parent")).await.unwrap();
    let todo = fake.state_id(pid, "unstarted").unwrap();
    let child = items
        .create(
            &WorkItemFields::new("child")
                .parent(parent.id)
                .state(todo)
                .start_date("2026-11-01".parse().unwrap())
                .target_date("2026-11-10".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(child.start_date, Some("2026-11-01".parse().unwrap()));

    // Restore a due date earlier than the start date someone set: clear the start.
    let restored = items
        .update(
            child.id,
            &WorkItemFields::default()
                .clear_start_date()
                .target_date("2026-10-25".parse().unwrap())
                .clear_parent()
                .reset_state(),
        )
        .await
        .unwrap();
    assert_eq!(restored.start_date, None);
    assert_eq!(restored.target_date, Some("2026-10-25".parse().unwrap()));
    assert_eq!(restored.parent, None);
    let stored = fake.work_item_json(pid, child.id).unwrap();
    assert_eq!(stored["start_date"], Value::Null);
    assert_eq!(stored["parent"], Value::Null);
    assert_eq!(
        stored["state"],
        fake.state_id(pid, "backlog").unwrap().to_string(),
        "null state is the project's default"
    );

    // Unset fields are still left alone.
    let untouched = items
        .update(child.id, &WorkItemFields::default().clear_target_date())
        .await
        .unwrap();
    assert_eq!(untouched.target_date, None);
    assert_eq!(untouched.name.as_deref(), Some("child"));
}

#[tokio::test]
async fn the_cleared_field_goes_out_as_null_and_the_rest_not_at_all() {
    use wiremock::matchers::body_json;
    let server = MockServer::start().await;
    let id = uuid::Uuid::new_v4();
    Mock::given(method("PATCH"))
        .and(body_json(
            json!({"start_date": null, "target_date": "2026-10-25"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": id})))
        .expect(1)
        .mount(&server)
        .await;
    mock_client(&server)
        .work_items(uuid::Uuid::new_v4())
        .update(
            id,
            &WorkItemFields::default()
                .target_date("2026-10-25".parse().unwrap())
                .clear_start_date(),
        )
        .await
        .unwrap();
}
