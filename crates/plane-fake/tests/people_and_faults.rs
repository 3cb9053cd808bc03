//! More than one user (a person in the web app, a key owned by another member), the log of
//! sent webhooks with re-sends, and the faults for "the write happened, the answer was lost".

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use plane_fake::{FakePlane, Fault, RunningFake, SentWebhook, sign};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// A hang guard only: every wait below ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(30);

fn secret() -> String {
    format!("plane_wh_{}", "cd34".repeat(8))
}

type Inbox = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver answering `status` to every POST /hook.
async fn receiver(status: StatusCode) -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let sink = inbox.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((headers, body));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

async fn wait_for(fake: &RunningFake, n: usize) -> Vec<SentWebhook> {
    tokio::time::timeout(PATIENCE, fake.wait_for_webhooks(n))
        .await
        .expect("webhooks within the hang guard")
}

fn base(fake: &RunningFake) -> String {
    format!(
        "{}/api/v1/workspaces/{}/projects/{}",
        fake.base_url(),
        fake.workspace_slug(),
        fake.project_id()
    )
}

async fn create(fake: &RunningFake, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/work-items/", base(fake)))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn id_of(v: &Value) -> Uuid {
    Uuid::parse_str(v["id"].as_str().unwrap()).unwrap()
}

/// The captured "state changed to Done" delivery of a real Plane CE.
fn captured_close() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/plane-ce/webhooks/1795615128300_0003_issue.body");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn a_person_closing_an_item_sends_the_ce_webhook_as_that_person_at_no_api_cost() {
    let (url, inbox) = receiver(StatusCode::OK).await;
    // Two requests per minute for the key: one create, one check afterwards.
    let fake = FakePlane::builder()
        .rate_limit(2, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    fake.register_webhook(&url, secret());
    let item: Value = create(
        &fake,
        &fake.api_key(),
        json!({"name": "1601-C", "external_source": "plane-bir", "external_id": "bir:1"}),
    )
    .await
    .json()
    .await
    .unwrap();
    wait_for(&fake, 1).await;

    let ana =
        fake.add_user(json!({"first_name": "Ana", "last_name": "Reyes", "display_name": "ana"}));
    assert_ne!(ana, fake.user_id());
    let pid = fake.project_id();
    let todo = fake.state_id(pid, "unstarted").unwrap();
    let done = fake.state_id(pid, "completed").unwrap();
    let person = fake.as_user(ana);
    person
        .patch_work_item(pid, id_of(&item), json!({"state": todo.to_string()}))
        .unwrap();
    let after = person
        .patch_work_item(pid, id_of(&item), json!({"state": done.to_string()}))
        .unwrap();
    assert_eq!(after["updated_by"], ana.to_string());
    assert!(after["completed_at"].is_string());

    let log = wait_for(&fake, 3).await;
    assert_eq!(log.len(), 3);
    let close = log[2].json();
    assert_eq!(close["action"], "updated");
    assert_eq!(close["activity"]["field"], "state");
    assert_eq!(close["activity"]["old_value"], todo.to_string());
    assert_eq!(close["activity"]["new_value"], done.to_string());
    assert_eq!(close["activity"]["actor"]["id"], ana.to_string());
    assert_eq!(close["activity"]["actor"]["display_name"], "ana");
    assert_eq!(close["activity"]["actor"]["first_name"], "Ana");
    assert_eq!(close["data"]["updated_by"], ana.to_string());
    assert_eq!(close["data"]["created_by"], fake.user_id().to_string());
    assert_eq!(close["data"]["state"]["group"], "completed");
    assert!(close["data"]["completed_at"].is_string());
    assert_eq!(close["data"]["external_id"], "bir:1");
    // The shape of the real CE delivery, key order included.
    let cap = captured_close();
    assert_eq!(keys(&close), keys(&cap));
    assert_eq!(keys(&close["data"]), keys(&cap["data"]));
    assert_eq!(keys(&close["activity"]), keys(&cap["activity"]));
    assert_eq!(
        keys(&close["activity"]["actor"]),
        keys(&cap["activity"]["actor"])
    );
    // Signed, and what the receiver got is what the log says.
    assert_eq!(
        log[2].header("x-plane-signature").unwrap(),
        sign(&secret(), &log[2].body)
    );
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(got.iter().any(|(h, b)| {
        b.as_ref() == log[2].body.as_slice()
            && h["x-plane-delivery"] == log[2].header("X-Plane-Delivery").unwrap()
    }));

    // The web app used neither the request log nor the key's budget.
    assert_eq!(fake.request_count(), 1);
    let r = reqwest::Client::new()
        .get(format!(
            "{}/work-items/{}/",
            base(&fake),
            item["id"].as_str().unwrap()
        ))
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["state"], done.to_string());
}

#[tokio::test]
async fn a_person_changing_two_fields_sends_two_deliveries_in_body_order() {
    let (url, _inbox) = receiver(StatusCode::OK).await;
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    fake.register_webhook(&url, secret());
    let item = fake.insert_work_item("due soon");
    let ben = fake.add_user(json!({"display_name": "ben"}));
    fake.as_user(ben)
        .patch_work_item(
            fake.project_id(),
            id_of(&item),
            json!({"target_date": "2026-12-01", "name": "due later", "priority": "none"}),
        )
        .unwrap();
    let log = wait_for(&fake, 2).await;
    tokio::time::timeout(PATIENCE, fake.webhooks_settled())
        .await
        .unwrap();
    assert_eq!(fake.webhook_log().len(), 2, "priority did not change");
    let fields: Vec<Value> = log
        .iter()
        .map(|d| d.json()["activity"]["field"].clone())
        .collect();
    assert_eq!(fields, [json!("target_date"), json!("name")]);
    for d in &log {
        assert_eq!(d.json()["activity"]["actor"]["id"], ben.to_string());
        assert_eq!(d.event(), "issue");
        assert_eq!(d.status, Some(200));
    }
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn a_refused_web_app_change_changes_nothing_and_sends_nothing() {
    let (url, _inbox) = receiver(StatusCode::OK).await;
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    fake.register_webhook(&url, secret());
    let pid = fake.project_id();
    let item = fake.insert_work_item("dated");
    let id = id_of(&item);
    let cy = fake.add_user(json!({"display_name": "cy"}));
    let person = fake.as_user(cy);
    person
        .patch_work_item(pid, id, json!({"target_date": "2026-01-10"}))
        .unwrap();
    wait_for(&fake, 1).await;
    // CE compares the two dates only when the body carries both.
    let err = person
        .patch_work_item(
            pid,
            id,
            json!({"start_date": "2026-02-01", "target_date": "2026-01-31"}),
        )
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(
        err.to_string()
            .contains("Start date cannot exceed target date"),
        "{err}"
    );
    let err = person
        .patch_work_item(pid, Uuid::new_v4(), json!({"name": "x"}))
        .unwrap_err();
    assert_eq!(err.status, 404);
    assert_eq!(
        person
            .patch_work_item(pid, id, json!([1]))
            .unwrap_err()
            .status,
        400
    );
    tokio::time::timeout(PATIENCE, fake.webhooks_settled())
        .await
        .unwrap();
    assert_eq!(fake.webhook_log().len(), 1);
    let stored = fake.work_item_json(pid, id).unwrap();
    assert_eq!(stored["start_date"], Value::Null);
    assert_eq!(stored["target_date"], "2026-01-10");
}

#[tokio::test]
#[should_panic(expected = "is not a member")]
async fn acting_as_an_unknown_user_is_refused() {
    let fake = FakePlane::builder().start().await.unwrap();
    let _ = fake.as_user(Uuid::new_v4());
}

#[tokio::test]
async fn a_key_owned_by_another_member_acts_as_that_member_with_its_own_budget() {
    let (url, _inbox) = receiver(StatusCode::OK).await;
    let fake = FakePlane::builder()
        .rate_limit(2, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    fake.register_webhook(&url, secret());
    let dee = fake.add_user(json!({"display_name": "dee", "email": "dee@example.test"}));
    let dee_key = format!("plane_api_{}", Uuid::new_v4().simple());
    fake.add_api_key(&dee_key, dee);
    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{}/api/v1/users/me/", fake.base_url()))
        .header("X-API-Key", &dee_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], dee.to_string());
    assert_eq!(me["email"], "dee@example.test");
    let item: Value = create(&fake, &dee_key, json!({"name": "by dee"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item["created_by"], dee.to_string());
    let log = wait_for(&fake, 1).await;
    assert_eq!(log[0].json()["activity"]["actor"]["id"], dee.to_string());
    // Dee's two requests spent Dee's bucket, not the primary key's.
    let third = create(&fake, &dee_key, json!({"name": "one too many"})).await;
    assert_eq!(third.status(), 429);
    let primary: Value = create(&fake, &fake.api_key(), json!({"name": "by the owner"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(primary["created_by"], fake.user_id().to_string());
    // Both appear as project members.
    let members: Value = http
        .get(format!("{}/members/", base(&fake)))
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [fake.user_id().to_string(), dee.to_string()]);
}

#[tokio::test]
async fn the_webhook_log_keeps_answers_and_deliveries_can_be_sent_again() {
    let (url, inbox) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    fake.register_webhook(&url, secret());
    // A target that refuses connections: delivered never, retried like Plane.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    fake.register_webhook(&dead_url, secret());
    create(&fake, &fake.api_key(), json!({"name": "logged"})).await;
    let log = wait_for(&fake, 2).await;
    let live = log.iter().find(|d| d.url == url).unwrap();
    let dead = log.iter().find(|d| d.url == dead_url).unwrap();
    assert_eq!(
        live.status,
        Some(500),
        "any HTTP answer counts as delivered"
    );
    assert_eq!(live.delivery_ids.len(), 1);
    assert_eq!(dead.status, None);
    assert!(dead.delivery_ids.len() > 1, "transport errors are retried");
    assert_eq!(live.header("User-Agent"), Some("Autopilot"));
    assert_eq!(live.header("content-type"), Some("application/json"));
    assert_eq!(live.json()["action"], "created");

    // Plane-style re-send: same bytes and signature, a new delivery id.
    let again = fake.redeliver(live).await.unwrap();
    assert_eq!(again.body, live.body);
    assert_eq!(
        again.header("X-Plane-Signature"),
        live.header("X-Plane-Signature")
    );
    assert_ne!(
        again.header("X-Plane-Delivery"),
        live.header("X-Plane-Delivery")
    );
    // A network duplicate: byte-identical, same delivery id.
    let dup = fake.replay(live).await.unwrap();
    assert_eq!(
        dup.header("X-Plane-Delivery"),
        live.header("X-Plane-Delivery")
    );
    assert_eq!(dup.status, Some(500));

    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for (h, b) in &got {
        assert_eq!(b.as_ref(), live.body.as_slice());
        assert_eq!(h["x-plane-signature"].to_str().unwrap(), sign(&secret(), b));
    }
    let ids: Vec<&str> = got
        .iter()
        .map(|(h, _)| h["x-plane-delivery"].to_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(fake.webhook_log().len(), 4, "re-sends are logged too");
}

#[tokio::test]
async fn drop_after_handling_creates_the_item_but_loses_the_answer() {
    let (url, _inbox) = receiver(StatusCode::OK).await;
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    fake.register_webhook(&url, secret());
    fake.inject(Fault::drop_after_handling().method("POST"));
    let err = reqwest::Client::new()
        .post(format!("{}/work-items/", base(&fake)))
        .header("X-API-Key", fake.api_key())
        .json(&json!({"name": "lost answer", "external_source": "t", "external_id": "1"}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "no HTTP answer at all: {err}");
    assert_eq!(
        fake.work_item_count(fake.project_id()),
        1,
        "the write happened"
    );
    let log = fake.request_log();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].method.as_str(), log[0].status), ("POST", 0));
    // Its webhook still goes out, as Plane's Celery task would send it.
    let sent = wait_for(&fake, 1).await;
    assert_eq!(sent[0].json()["data"]["external_id"], "1");
    // A repeat now meets the item it cannot see: Plane's 409 with the existing id.
    let r = create(
        &fake,
        &fake.api_key(),
        json!({"name": "lost answer", "external_source": "t", "external_id": "1"}),
    )
    .await;
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn drop_after_handling_spends_rate_budget_like_a_handled_request() {
    let fake = FakePlane::builder()
        .rate_limit(2, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    fake.inject(Fault::drop_after_handling());
    let http = reqwest::Client::new();
    let me = format!("{}/api/v1/users/me/", fake.base_url());
    let lost = http
        .get(&me)
        .header("X-API-Key", fake.api_key())
        .send()
        .await;
    assert!(lost.is_err());
    let r = http
        .get(&me)
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-ratelimit-remaining"],
        "0",
        "the lost answer still counted"
    );
    let r = http
        .get(&me)
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn skip_faults_only_the_nth_matching_request() {
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    // Die on the third create: two answered, the third done but unanswered.
    fake.inject(Fault::drop_after_handling().method("POST").skip(2));
    for i in 0..2 {
        let r = create(&fake, &fake.api_key(), json!({"name": format!("ok {i}")})).await;
        assert_eq!(r.status(), 201);
    }
    // GETs match no POST fault and do not count towards the skip.
    let r = reqwest::Client::new()
        .get(format!("{}/work-items/", base(&fake)))
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let third = reqwest::Client::new()
        .post(format!("{}/work-items/", base(&fake)))
        .header("X-API-Key", fake.api_key())
        .json(&json!({"name": "third"}))
        .send()
        .await;
    assert!(third.is_err(), "the third create gets no answer");
    let fourth = create(&fake, &fake.api_key(), json!({"name": "fourth"})).await;
    assert_eq!(fourth.status(), 201, "the fault was used up");
    assert_eq!(fake.work_item_count(fake.project_id()), 4);
    let statuses: Vec<u16> = fake
        .request_log()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [201, 201, 0, 201]);
}
