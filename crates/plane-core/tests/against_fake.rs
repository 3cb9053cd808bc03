//! plane-core against plane-fake: a real HTTP server that behaves like Plane CE.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use plane_core::{
    Budget, CommentFields, CycleFields, Error, Expandable, LabelFields, LinkFields, ListParams,
    ModuleFields, PlaneClient, Priority, RetryPolicy, StaticToken, WorkItemFields,
};
use plane_fake::{FakePlane, Fault, RunningFake};
use tokio::time::Instant;

fn client(fake: &RunningFake) -> PlaneClient {
    builder(fake).build().unwrap()
}

fn builder(fake: &RunningFake) -> plane_core::PlaneClientBuilder {
    PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .retry_policy(RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
}

async fn fake_with(items: usize) -> RunningFake {
    FakePlane::builder()
        .seed_work_items(items)
        .no_rate_limit()
        .start()
        .await
        .unwrap()
}

fn requests(fake: &RunningFake, method: &str) -> usize {
    fake.request_log()
        .iter()
        .filter(|r| r.method == method)
        .count()
}

#[tokio::test]
async fn a_250_item_walk_with_per_page_100_yields_each_item_once_in_three_requests() {
    let fake = fake_with(250).await;
    let client = client(&fake);
    let items: Vec<_> = client
        .work_items(fake.project_id())
        .stream(ListParams::new().per_page(100))
        .try_collect()
        .await
        .unwrap();
    let ids: HashSet<_> = items.iter().map(|i| i.id).collect();
    assert_eq!(items.len(), 250);
    assert_eq!(ids.len(), 250);
    let log = fake.request_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter()
            .all(|r| r.query.as_deref().unwrap_or("").contains("per_page=100"))
    );
    assert_eq!(client.stats().requests, 3);
}

#[tokio::test]
async fn a_walk_while_items_are_inserted_yields_no_duplicates_and_skips_nothing() {
    let fake = fake_with(250).await;
    let client = client(&fake);
    let originals: HashSet<_> = client
        .work_items(fake.project_id())
        .stream(ListParams::new().per_page(1000))
        .map_ok(|i| i.id)
        .try_collect()
        .await
        .unwrap();

    // Without de-duplication the same interleaving repeats items: newest-first
    // offset pages shift when rows are added in front.
    let handler = client.work_items(fake.project_id());
    let first = handler.list(&ListParams::new().per_page(50)).await.unwrap();
    fake.insert_work_item("inserted before page 2");
    let second = handler
        .list(
            &ListParams::new()
                .per_page(50)
                .cursor(first.next_cursor.clone().unwrap()),
        )
        .await
        .unwrap();
    let raw: Vec<_> = first
        .results
        .iter()
        .chain(&second.results)
        .map(|i| i.id)
        .collect();
    let distinct: HashSet<_> = raw.iter().collect();
    assert!(
        distinct.len() < raw.len(),
        "the fake did not shift pages; this test proves nothing"
    );

    let mut stream = handler.stream(ListParams::new().per_page(50));
    let mut seen = Vec::new();
    while let Some(item) = stream.try_next().await.unwrap() {
        seen.push(item.id);
        if seen.len() % 50 == 1 {
            for n in 0..7 {
                fake.insert_work_item(&format!("inserted during the walk {n}"));
            }
        }
    }
    let distinct: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "duplicates reached the caller");
    assert!(
        originals.is_subset(&distinct),
        "an item that existed before the walk was skipped"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_1_is_waited_out() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    fake.inject(Fault::too_many_requests(1));
    let started = Instant::now();
    client.users().me().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let log = fake.request_log();
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert!(log[1].at - log[0].at >= Duration::from_secs(1));
    assert_eq!(
        client.rate_limit().last_retry_after,
        Some(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn server_errors_and_dropped_connections_of_a_get_are_retried() {
    let fake = fake_with(1).await;
    let client = client(&fake);
    fake.inject(Fault::status(503).times(2));
    fake.inject(Fault::drop_connection().path_contains("/users/me/"));
    // Faults apply in the order they were injected; whichever fires, the GET wins.
    client.users().me().await.unwrap();
    assert_eq!(requests(&fake, "GET"), 4);
    assert_eq!(client.stats().retries, 3);
}

#[tokio::test]
async fn a_get_gives_up_after_the_retry_budget() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    fake.inject(Fault::status(500).times(10));
    let err = client.users().me().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Server {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(requests(&fake, "GET"), 4);
}

#[tokio::test]
async fn a_timeout_is_reported_as_such() {
    let fake = fake_with(0).await;
    let client = builder(&fake)
        .request_timeout(Duration::from_millis(200))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    // Far past the timeout, so that only the timeout can end the request, however
    // slowly a busy machine runs the client.
    fake.inject(Fault::delay(Duration::from_secs(300)));
    let err = client.users().me().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn a_post_is_never_repeated_blindly() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    fake.inject(Fault::status(500).method("POST"));
    let err = client
        .work_items(fake.project_id())
        .create(&WorkItemFields::new("no external id"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { attempts: 1, .. }), "{err:?}");
    assert_eq!(requests(&fake, "POST"), 1);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_returns_the_existing_item_instead_of_a_twin() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    let items = client.work_items(fake.project_id());
    let fields = WorkItemFields::new("File 1601-C October").external("plane-bir", "1601C-2026-10");
    let created = items.create(&fields).await.unwrap();

    // The same create again, and the connection drops before the answer: the
    // item exists, so the client must find it rather than POST a second time.
    fake.inject(Fault::drop_connection().method("POST"));
    let again = items.create(&fields).await.unwrap();
    assert_eq!(again.id, created.id);
    assert_eq!(fake.work_item_count(fake.project_id()), 1);
    assert_eq!(requests(&fake, "POST"), 2);
}

#[tokio::test]
async fn a_create_that_did_not_happen_is_sent_again_after_the_lookup() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    fake.inject(Fault::drop_connection().method("POST"));
    let fields = WorkItemFields::new("File 2550-Q").external("plane-bir", "2550Q-2026-Q3");
    let item = client
        .work_items(fake.project_id())
        .create(&fields)
        .await
        .unwrap();
    assert_eq!(item.external_id.as_deref(), Some("2550Q-2026-Q3"));
    assert_eq!(fake.work_item_count(fake.project_id()), 1);
    let methods: Vec<_> = fake
        .request_log()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(
        methods,
        ["POST", "GET", "GET", "POST"],
        "two lookups before the repeat"
    );
}

#[tokio::test]
async fn a_duplicate_external_key_on_first_create_is_a_conflict_with_the_existing_id() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    let items = client.work_items(fake.project_id());
    let fields = WorkItemFields::new("x").external("plane-bir", "dup");
    let first = items.create(&fields).await.unwrap();
    match items.create(&fields).await.unwrap_err() {
        Error::Conflict { existing_id, .. } => assert_eq!(existing_id, Some(first.id)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn credentials_errors_are_typed_as_plane_answers_them() {
    let fake = fake_with(0).await;
    let wrong = builder(&fake)
        .api_key(format!("plane_api_{}", "0".repeat(32)))
        .build()
        .unwrap();
    let err = wrong.users().me().await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 403, .. }),
        "{err:?}"
    );

    let bearer = PlaneClient::builder()
        .base_url(fake.base_url())
        .bearer(StaticToken::new("pln_not_on_ce"))
        .build()
        .unwrap();
    let err = bearer.users().me().await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );

    let other_workspace = builder(&fake).workspace_slug("no-such-ws").build().unwrap();
    let err = other_workspace
        .projects()
        .list(&ListParams::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/workspaces/no-such-ws/projects/"),
        "{err}"
    );
}

#[tokio::test]
async fn page_size_is_checked_before_anything_is_sent() {
    let fake = fake_with(3).await;
    let client = client(&fake);
    let items = client.work_items(fake.project_id());
    for bad in [0, 1001] {
        let err = items
            .list(&ListParams::new().per_page(bad))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
    assert_eq!(fake.request_count(), 0);
    let page = items.list(&ListParams::new().per_page(1000)).await.unwrap();
    assert_eq!(page.count, 3);
    assert!(!page.next_page_results);
}

#[tokio::test]
async fn a_repeating_cursor_fails_instead_of_looping() {
    // plane-fake is faithful, so the odd server comes from wiremock.
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let page = serde_json::json!({"grouped_by": null, "sub_grouped_by": null, "total_count": 2,
        "next_cursor": "1:1:0", "prev_cursor": "1:-1:1", "next_page_results": true,
        "prev_page_results": false, "count": 1, "total_pages": 2, "total_results": 2,
        "extra_stats": null, "results": [{"id": "49804e6a-23dc-4630-ba9f-f8f5742e3c7c"}]});
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;
    let client = PlaneClient::builder()
        .base_url(server.uri())
        .api_key(format!("plane_api_{}", "0".repeat(32)))
        .build()
        .unwrap();
    let results: Vec<_> = client
        .work_items(uuid::Uuid::new_v4())
        .stream(ListParams::new())
        .collect()
        .await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].is_ok());
    assert!(matches!(&results[1], Err(Error::PaginationLoop { cursor, .. }) if cursor == "1:1:0"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn work_items_by_id_identifier_and_external_id_with_fields_and_expand() {
    let fake = fake_with(0).await;
    let client = client(&fake);
    let items = client.work_items(fake.project_id());
    let created = items
        .create(
            &WorkItemFields::new("File 0619-E")
                .priority(Priority::Urgent)
                .external("plane-bir", "0619E-2026-10")
                .target_date("2026-11-10".parse().unwrap()),
        )
        .await
        .unwrap();
    let seq = created.sequence_id.unwrap();

    let expanded = items
        .clone()
        .expand(["state", "project"])
        .get(created.id)
        .await
        .unwrap();
    let Some(Expandable::Object(state)) = &expanded.state else {
        panic!("{:?}", expanded.state)
    };
    assert_eq!(state.name, "Backlog");
    assert!(matches!(expanded.project, Some(Expandable::Object(ref p)) if p.identifier == "BIR"));

    let by_identifier = items
        .get_by_identifier(&format!("BIR-{seq}"))
        .await
        .unwrap();
    assert_eq!(by_identifier.id, created.id);
    assert!(matches!(
        items.get_by_identifier("not an identifier").await,
        Err(Error::InvalidArgument { .. })
    ));

    let found = items
        .find_by_external_id("plane-bir", "0619E-2026-10")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.id);
    assert!(
        items
            .find_by_external_id("plane-bir", "nope")
            .await
            .unwrap()
            .is_none()
    );

    let slim = items
        .clone()
        .fields(["name"])
        .get(created.id)
        .await
        .unwrap();
    assert_eq!(slim.name.as_deref(), Some("File 0619-E"));
    assert!(slim.priority.is_none() && slim.state.is_none());

    let renamed = items
        .update(created.id, &WorkItemFields::new("File 0619-E (amended)"))
        .await
        .unwrap();
    assert_eq!(renamed.name.as_deref(), Some("File 0619-E (amended)"));
    assert_eq!(renamed.target_date, created.target_date);

    items.delete(created.id).await.unwrap();
    assert!(matches!(
        items.get(created.id).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn every_resource_round_trips() {
    let fake = fake_with(2).await;
    let client = client(&fake);
    let project = fake.project_id();

    let me = client.users().me().await.unwrap();
    let projects: Vec<_> = client
        .projects()
        .stream(ListParams::new())
        .try_collect()
        .await
        .unwrap();
    assert!(projects.iter().any(|p| p.id == project));
    assert_eq!(
        client
            .projects()
            .get(project)
            .await
            .unwrap()
            .identifier
            .as_deref(),
        Some("BIR")
    );

    let states: Vec<_> = client
        .states(project)
        .stream(ListParams::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(states.len(), 5);

    let label = client
        .labels(project)
        .create(&LabelFields::new("BIR").color("#2563eb"))
        .await
        .unwrap();
    let labels = client
        .labels(project)
        .list(&ListParams::new())
        .await
        .unwrap();
    assert!(labels.results.iter().any(|l| l.id == label.id));

    let item = client
        .work_items(project)
        .create(&WorkItemFields::new("with children").labels([label.id]))
        .await
        .unwrap();
    let comments = client.work_items(project).comments(item.id);
    let comment = comments
        .create(&CommentFields::new("<p>filed</p>"))
        .await
        .unwrap();
    assert_eq!(
        comments
            .get(comment.id)
            .await
            .unwrap()
            .comment_html
            .as_deref(),
        Some("<p>filed</p>")
    );
    let links = client.work_items(project).links(item.id);
    let link = links
        .create(&LinkFields::new("https://www.bir.gov.ph").title("BIR"))
        .await
        .unwrap();
    assert_eq!(
        links.list(&ListParams::new()).await.unwrap().results[0].id,
        link.id
    );
    let activity = client
        .work_items(project)
        .activities(item.id)
        .list(&ListParams::new())
        .await
        .unwrap();
    assert!(activity.count >= 1, "creating an item logs activity");

    let cycle = client
        .cycles(project)
        .create(&CycleFields::new("November"))
        .await
        .unwrap();
    client
        .cycles(project)
        .work_items(cycle.id)
        .add(&[item.id])
        .await
        .unwrap();
    let in_cycle: Vec<_> = client
        .cycles(project)
        .work_items(cycle.id)
        .stream(ListParams::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(in_cycle.iter().map(|i| i.id).collect::<Vec<_>>(), [item.id]);

    let module = client
        .modules(project)
        .create(&ModuleFields::new("Annual"))
        .await
        .unwrap();
    client
        .modules(project)
        .work_items(module.id)
        .add(&[item.id])
        .await
        .unwrap();
    let in_module = client
        .modules(project)
        .work_items(module.id)
        .list(&ListParams::new())
        .await
        .unwrap();
    assert_eq!(in_module.count, 1);

    let project_members = client.members().project(project).await.unwrap();
    assert!(project_members.iter().any(|m| m.id == me.id));
    let workspace_members = client.members().workspace().await.unwrap();
    assert!(
        workspace_members
            .iter()
            .any(|m| m.user.id == me.id && m.role.is_some())
    );
}

#[tokio::test]
async fn budget_spent_by_another_client_on_the_same_key_is_respected() {
    let window = Duration::from_secs(2);
    let fake = FakePlane::builder()
        .rate_limit(20, window)
        .start()
        .await
        .unwrap();
    // The other client never pauses for what Plane reports (threshold 0), so its
    // 17 requests are still inside the window when ours starts, on any machine.
    let other = builder(&fake)
        .budget(Budget::new(1000, window))
        .rate_limit_threshold(0)
        .build()
        .unwrap();
    for _ in 0..17 {
        other.users().me().await.unwrap();
    }
    // Below 5 left that it did not spend itself, a client waits for the reset.
    let threshold = 5;
    let ours = builder(&fake)
        .budget(Budget::new(20, window))
        .rate_limit_threshold(threshold)
        .build()
        .unwrap();
    for _ in 0..10 {
        ours.users().me().await.unwrap();
    }
    let log = fake.request_log();
    let statuses: Vec<_> = log.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The wait is owed once an answer to ours reported fewer than `threshold`
    // left, and fewer than ours had itself. The fake counts a sliding window, so
    // the log tells what each answer said. Whether that happened depends on how
    // fast this machine sent the requests: on a slow one the other client's
    // leave the window first, and nothing is owed. So the log decides, not the clock.
    let count_in_window = |at: std::time::Instant| {
        log.iter()
            .filter(|r| r.at <= at && at.duration_since(r.at) < window)
            .count() as u32
    };
    // An answer counts only when another request of ours followed it: the wait
    // is taken (and counted) by that next request.
    let told_low = (1..).zip(&log[17..log.len() - 1]).any(|(sent, request)| {
        let remaining = 20u32.saturating_sub(count_in_window(request.at));
        remaining < threshold && remaining < 20 - sent
    });
    if told_low {
        assert!(ours.rate_limit().waits >= 1, "the client never slowed down");
    }
}
