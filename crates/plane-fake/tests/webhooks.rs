//! Webhooks: the captured deliveries (signatures, Python `json.dumps` layout), the sender's
//! headers and Celery-like retries, and the deliveries API writes trigger.

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use plane_fake::{FakePlane, WebhookSender, python_json_dumps, sign};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEBHOOKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/plane-ce/webhooks"
);

/// The throwaway secret of the capture instance, read from the testdata README so no
/// secret-looking literal lives in source.
fn captured_secret() -> String {
    let readme =
        std::fs::read_to_string(Path::new(WEBHOOKS).parent().unwrap().join("README.md")).unwrap();
    readme
        .split_whitespace()
        .find(|w| w.starts_with("plane_wh_"))
        .unwrap()
        .to_owned()
}

struct CapturedDelivery {
    name: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl CapturedDelivery {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap()
    }
}

fn captured() -> Vec<CapturedDelivery> {
    let mut bodies: Vec<PathBuf> = std::fs::read_dir(WEBHOOKS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .collect();
    bodies.sort();
    bodies
        .into_iter()
        .map(|p| {
            let meta: Value =
                serde_json::from_slice(&std::fs::read(p.with_extension("json")).unwrap()).unwrap();
            CapturedDelivery {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                body: std::fs::read(&p).unwrap(),
                headers: meta["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap().to_owned(),
                            h[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn captured_signatures_and_serialisation() {
    let secret = captured_secret();
    let caps = captured();
    assert_eq!(caps.len(), 8);
    let mut exact = 0;
    for c in &caps {
        assert_eq!(
            sign(&secret, &c.body),
            c.header("X-Plane-Signature"),
            "{}",
            c.name
        );
        assert_ne!(
            sign("plane_wh_other", &c.body),
            c.header("X-Plane-Signature")
        );
        let parsed: Value = serde_json::from_slice(&c.body).unwrap();
        let dumped = python_json_dumps(&parsed);
        assert!(dumped.is_ascii(), "{}: ensure_ascii", c.name);
        assert_eq!(
            serde_json::from_str::<Value>(&dumped).unwrap(),
            parsed,
            "{}",
            c.name
        );
        let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "event",
                "action",
                "webhook_id",
                "workspace_id",
                "data",
                "activity"
            ]
        );
        if dumped.as_bytes() == c.body.as_slice() {
            exact += 1;
        }
    }
    // Every captured body (unicode escapes and 65535.0 floats included) is reproduced exactly.
    assert_eq!(exact, caps.len(), "bodies re-serialised byte for byte");
}

/// What a receiver saw.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// A tiny receiver answering `status` to every POST /hook.
async fn receiver(status: StatusCode) -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let sink = inbox.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(Received { headers, body });
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

fn secret() -> String {
    format!("plane_wh_{}", "ab12".repeat(8))
}

#[tokio::test]
async fn sender_headers_signature_and_no_retry_on_http_errors() {
    let (url, inbox) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let sender = WebhookSender::new(secret());
    let data = json!({"id": "x", "name": "Café ✓ 😀", "sort_order": 65535.0});
    let d = sender
        .send(
            &url,
            "issue",
            "created",
            data.clone(),
            json!({"field": null}),
        )
        .await
        .unwrap();
    // A 500 counts as delivered: one attempt only.
    assert_eq!(d.status, Some(500));
    assert_eq!(d.attempts(), 1);
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.body.as_ref(), d.body.as_slice());
    let h = |k: &str| r.headers[k].to_str().unwrap().to_owned();
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("user-agent"), "Autopilot");
    assert_eq!(h("x-plane-event"), "issue");
    assert_eq!(h("x-plane-delivery"), d.delivery_ids[0].to_string());
    assert_eq!(h("x-plane-signature"), sign(&secret(), &r.body));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.starts_with(r#"{"event": "issue", "action": "created", "webhook_id": ""#));
    assert!(
        text.contains(r#""name": "Caf\u00e9 \u2713 \ud83d\ude00""#),
        "{text}"
    );
    assert!(text.contains(r#""sort_order": 65535.0"#));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"], data);

    // A forged signature is sent as given.
    let d = sender
        .raw(&url, "issue", b"{}".to_vec(), Some("00".repeat(32)))
        .await
        .unwrap();
    assert_eq!(d.signature, "00".repeat(32));
    let last = inbox.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.headers["x-plane-signature"], "00".repeat(32).as_str());
}

/// A server that closes the first `fail` connections without answering, then answers 200;
/// returns the X-Plane-Delivery of every attempt.
async fn flaky_server(fail: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let mut len = 0;
            // Read until the end of the headers, enough to see the delivery id.
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                let k = sock.read(&mut buf[len..]).await.unwrap();
                if k == 0 {
                    break;
                }
                len += k;
            }
            let head = String::from_utf8_lossy(&buf[..len]).to_ascii_lowercase();
            let id = head
                .lines()
                .find_map(|l| l.strip_prefix("x-plane-delivery: "))
                .unwrap_or("")
                .trim()
                .to_owned();
            sink.lock().unwrap().push(id);
            n += 1;
            if n > fail {
                sock.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            }
            drop(sock);
        }
    });
    (url, seen)
}

#[tokio::test]
async fn sender_retries_transport_errors_with_new_delivery_ids() {
    let (url, seen) = flaky_server(2).await;
    let sender = WebhookSender::new(secret())
        .max_attempts(6)
        .backoff(Duration::from_millis(10));
    let d = sender
        .send(&url, "issue", "updated", json!({}), json!({}))
        .await
        .unwrap();
    assert_eq!(d.status, Some(200));
    assert_eq!(d.attempts(), 3);
    let ids: Vec<String> = d.delivery_ids.iter().map(|u| u.to_string()).collect();
    assert_eq!(*seen.lock().unwrap(), ids);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "a new delivery id per attempt");

    // Every attempt failing: gives up after max_attempts with no status.
    let (url, seen) = flaky_server(usize::MAX).await;
    let d = WebhookSender::new(secret())
        .max_attempts(3)
        .backoff(Duration::from_millis(1))
        .send(&url, "issue", "updated", json!({}), json!({}))
        .await
        .unwrap();
    assert_eq!(d.status, None);
    assert_eq!(d.attempts(), 3);
    assert!(d.last_error.is_some());
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// Waits until `n` deliveries arrived. The cap only bounds a failing run: a busy
/// machine may take seconds, a missing delivery never comes.
async fn wait_for(inbox: &Inbox, n: usize) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while inbox.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    inbox.lock().unwrap().clone()
}

#[tokio::test]
async fn api_writes_send_webhooks_like_plane() {
    let (url, inbox) = receiver(StatusCode::OK).await;
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    fake.register_webhook(&url, secret());
    let http = reqwest::Client::new();
    let base = format!(
        "{}/api/v1/workspaces/{}/projects/{}",
        fake.base_url(),
        fake.workspace_slug(),
        fake.project_id()
    );
    let item: Value = http
        .post(format!("{base}/work-items/"))
        .header("X-API-Key", fake.api_key())
        .json(&json!({"name": "Peer issue #0 (first)", "priority": "high", "description_html": "<p>hello from peer</p>"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = wait_for(&inbox, 1).await;
    assert_eq!(got.len(), 1);
    let created: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(got[0].headers["x-plane-event"], "issue");
    assert_eq!(
        got[0].headers["x-plane-signature"].to_str().unwrap(),
        sign(&secret(), &got[0].body)
    );
    assert_eq!(created["action"], "created");
    assert_eq!(created["workspace_id"], fake.workspace_id().to_string());
    assert_eq!(created["data"]["id"], item["id"]);
    assert_eq!(created["data"]["state"]["name"], "Backlog");
    assert_eq!(created["data"]["description_stripped"], "hello from peer");
    assert_eq!(created["activity"]["field"], Value::Null);
    // Same shape as the captured "issue created" delivery, key order included.
    let cap = captured()
        .into_iter()
        .find(|c| c.name.ends_with("0001_issue"))
        .unwrap();
    let cap: Value = serde_json::from_slice(&cap.body).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&created), keys(&cap));
    assert_eq!(keys(&created["data"]), keys(&cap["data"]));
    assert_eq!(keys(&created["activity"]), keys(&cap["activity"]));
    assert_eq!(keys(&created["data"]["state"]), keys(&cap["data"]["state"]));
    let me: Value = http
        .get(format!("{}/api/v1/users/me/", fake.base_url()))
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["activity"]["actor"], me);

    // A PATCH changing three fields (and repeating one unchanged) sends three deliveries.
    let states: Value = http
        .get(format!("{base}/states/"))
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let started = states["results"][2]["id"].clone();
    let backlog = states["results"][0]["id"].clone();
    let id = item["id"].as_str().unwrap();
    let r = http
        .patch(format!("{base}/work-items/{id}/"))
        .header("X-API-Key", fake.api_key())
        .json(&json!({"name": "Peer issue #0 (renamed) – ünïcødé ✓", "priority": "urgent", "description_html": "<p>hello from peer</p>", "state": started}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // No delivery for the unchanged field: the comment below is the barrier. Its
    // delivery must be the fifth, so a stray one from this PATCH would take its
    // place; no sleep to guess how long a stray delivery could take.
    let got = wait_for(&inbox, 4).await;
    let updates: Vec<Value> = got[1..]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let fields: Vec<&str> = updates
        .iter()
        .map(|u| u["activity"]["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "priority", "state"]);
    assert!(updates.iter().all(|u| u["action"] == "updated"));
    assert_eq!(updates[0]["activity"]["old_value"], "Peer issue #0 (first)");
    assert_eq!(
        updates[0]["activity"]["new_value"],
        "Peer issue #0 (renamed) – ünïcødé ✓"
    );
    assert_eq!(updates[1]["activity"]["old_value"], "high");
    assert_eq!(updates[2]["activity"]["old_value"], backlog);
    assert_eq!(updates[2]["activity"]["new_value"], started);
    assert_eq!(updates[2]["data"]["state"]["group"], "started");
    // The raw body escapes non-ASCII like Python.
    let raw = String::from_utf8(got[1].body.to_vec()).unwrap();
    assert!(
        raw.contains(r#"\u2013 \u00fcn\u00efc\u00f8d\u00e9 \u2713"#),
        "{raw}"
    );

    // Deleting a work item sends nothing in CE.
    http.delete(format!("{base}/work-items/{id}/"))
        .header("X-API-Key", fake.api_key())
        .send()
        .await
        .unwrap();
    // A comment sends issue_comment/created.
    let other = fake.insert_work_item("other");
    http.post(format!(
        "{base}/work-items/{}/comments/",
        other["id"].as_str().unwrap()
    ))
    .header("X-API-Key", fake.api_key())
    .json(&json!({"comment_html": "<p>peer comment</p>"}))
    .send()
    .await
    .unwrap();
    let got = wait_for(&inbox, 5).await;
    assert_eq!(got.len(), 5);
    // The barrier: nothing from the PATCH's unchanged field or the delete came first.
    assert_eq!(got[4].headers["x-plane-event"], "issue_comment");
    let c: Value = serde_json::from_slice(&got[4].body).unwrap();
    let cap = captured()
        .into_iter()
        .find(|c| c.name.ends_with("issue_comment"))
        .unwrap();
    let cap: Value = serde_json::from_slice(&cap.body).unwrap();
    assert_eq!(keys(&c["data"]), keys(&cap["data"]));
}

#[tokio::test]
async fn fake_sender_uses_workspace_id() {
    let (url, inbox) = receiver(StatusCode::NO_CONTENT).await;
    let fake = FakePlane::builder().start().await.unwrap();
    let d = fake
        .webhook_sender(secret())
        .send(&url, "project", "deleted", json!({"id": "p"}), json!({}))
        .await
        .unwrap();
    assert_eq!(d.status, Some(204));
    let body: Value = serde_json::from_slice(&inbox.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["workspace_id"], fake.workspace_id().to_string());
}
