//! Behaviour of the fake beyond the captures: pagination math, rate limiting, auth order,
//! redirects, external ids, fields/expand, CRUD of every resource, faults and the request log.

#![allow(clippy::unwrap_used)]

use plane_fake::{FakePlane, Fault, RunningFake};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Api {
    fake: RunningFake,
    http: reqwest::Client,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    json: Value,
    raw: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    fn new(fake: RunningFake) -> Api {
        Api {
            fake,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// `rel` is relative to the default project's path `.../projects/{id}/`, unless it starts
    /// with `/`, in which case it is a full path.
    fn url(&self, rel: &str) -> String {
        if rel.starts_with('/') {
            format!("{}{}", self.fake.base_url(), rel)
        } else {
            format!(
                "{}/api/v1/workspaces/{}/projects/{}/{}",
                self.fake.base_url(),
                self.fake.workspace_slug(),
                self.fake.project_id(),
                rel
            )
        }
    }

    async fn call_with(
        &self,
        method: &str,
        rel: &str,
        body: Option<Value>,
        key: Option<String>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(rel));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            raw,
        }
    }

    async fn call(&self, method: &str, rel: &str, body: Option<Value>) -> Answer {
        self.call_with(method, rel, body, Some(self.fake.api_key()))
            .await
    }

    async fn get(&self, rel: &str) -> Answer {
        self.call("GET", rel, None).await
    }

    async fn post(&self, rel: &str, body: Value) -> Answer {
        self.call("POST", rel, Some(body)).await
    }

    async fn patch(&self, rel: &str, body: Value) -> Answer {
        self.call("PATCH", rel, Some(body)).await
    }
}

async fn api(seed: usize) -> Api {
    Api::new(
        FakePlane::builder()
            .no_rate_limit()
            .seed_work_items(seed)
            .start()
            .await
            .unwrap(),
    )
}

fn wrong_key() -> String {
    format!("plane_api_{}", "f".repeat(32))
}

// ----- pagination -------------------------------------------------------------------------

#[tokio::test]
async fn pagination_math() {
    let a = api(250).await;
    let mut counts = Vec::new();
    let mut all = Vec::new();
    let mut cursor = None::<String>;
    for page in 0..3 {
        let rel = match &cursor {
            None => "work-items/?per_page=100".to_owned(),
            Some(c) => format!("work-items/?per_page=100&cursor={c}"),
        };
        let r = a.get(&rel).await;
        assert_eq!(r.status, 200);
        let j = &r.json;
        counts.push(j["count"].as_u64().unwrap());
        assert_eq!(j["total_count"], 250);
        assert_eq!(j["total_results"], 250);
        assert_eq!(j["total_pages"], 3);
        assert_eq!(j["next_cursor"], format!("100:{}:0", page + 1));
        assert_eq!(j["prev_cursor"], format!("100:{}:1", page - 1));
        assert_eq!(j["next_page_results"], page < 2);
        assert_eq!(j["prev_page_results"], page > 0);
        assert_eq!(
            j.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "grouped_by",
                "sub_grouped_by",
                "total_count",
                "next_cursor",
                "prev_cursor",
                "next_page_results",
                "prev_page_results",
                "count",
                "total_pages",
                "total_results",
                "extra_stats",
                "results"
            ]
        );
        for item in j["results"].as_array().unwrap() {
            all.push(item["sequence_id"].as_i64().unwrap());
        }
        cursor = Some(j["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(counts, [100, 100, 50]);
    // Newest first: sequence ids 250 down to 1, no duplicates.
    assert_eq!(all, (1..=250).rev().collect::<Vec<_>>());

    // Past the end: 200 with empty results.
    let r = a.get("work-items/?per_page=100&cursor=100:7:0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["count"], 0);
    assert_eq!(r.json["results"], json!([]));
    assert_eq!(r.json["next_cursor"], "100:8:0");
    // Exactly at the end: no further page.
    let r = a.get("work-items/?per_page=50&cursor=50:4:0").await;
    assert_eq!(r.json["count"], 50);
    assert_eq!(r.json["next_page_results"], false);
    let r = a.get("work-items/?per_page=125&cursor=125:0:0").await;
    assert_eq!(r.json["next_page_results"], true);
    // Default per_page is 1000; `page` is ignored.
    let r = a.get("work-items/?page=2").await;
    assert_eq!(r.json["count"], 250);
    assert_eq!(r.json["next_cursor"], "1000:1:0");
    // The cursor's value is ignored; per_page wins.
    let r = a.get("work-items/?per_page=10&cursor=100:2:0").await;
    assert_eq!(r.json["results"][0]["sequence_id"], 230);
    // A float value is accepted.
    let r = a.get("work-items/?per_page=10&cursor=10.5:1:1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["results"][0]["sequence_id"], 240);
}

#[tokio::test]
async fn pagination_errors() {
    let a = api(3).await;
    let cases: [(&str, u16, Value); 8] = [
        (
            "per_page=abc",
            400,
            json!({"detail": "Invalid per_page parameter."}),
        ),
        (
            "per_page=1001",
            400,
            json!({"detail": "Invalid per_page value. Cannot exceed 1000."}),
        ),
        (
            "per_page=0",
            500,
            json!({"error": "Something went wrong please try again later"}),
        ),
        (
            "cursor=garbage",
            400,
            json!({"detail": "Invalid cursor parameter."}),
        ),
        (
            "cursor=1:2",
            400,
            json!({"detail": "Invalid cursor parameter."}),
        ),
        (
            "cursor=a:1:0",
            400,
            json!({"detail": "Invalid cursor parameter."}),
        ),
        (
            "cursor=1:1.5:0",
            400,
            json!({"detail": "Invalid cursor parameter."}),
        ),
        (
            "per_page=2&cursor=2:-1:1",
            400,
            json!({"detail": "Error in parsing"}),
        ),
    ];
    for (q, status, body) in cases {
        for list in ["work-items", "states", "labels"] {
            let r = a.get(&format!("{list}/?{q}")).await;
            assert_eq!((r.status, &r.json), (status, &body), "{list}?{q}");
        }
    }
    let r = a
        .get("/api/v1/workspaces/insightpulseai/projects/?per_page=x")
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn inserting_during_a_walk_shifts_pages() {
    let a = api(25).await;
    let p1 = a.get("work-items/?per_page=10").await.json;
    a.fake.insert_work_item("arrived mid-walk");
    let p2 = a.get("work-items/?per_page=10&cursor=10:1:0").await.json;
    // The newest-first order pushed the last row of page 1 onto page 2: clients must dedupe.
    assert_eq!(p1["results"][9]["id"], p2["results"][0]["id"]);
    assert_eq!(p2["total_count"], 26);
}

// ----- rate limiting and auth -------------------------------------------------------------

#[tokio::test]
async fn rate_limit_sliding_window() {
    // A window far longer than any stall of a busy machine, so the three
    // requests and the refused fourth are certainly inside it.
    let window = Duration::from_secs(600);
    let fake = FakePlane::builder()
        .rate_limit(3, window)
        .start()
        .await
        .unwrap();
    let a = Api::new(fake);
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    for want in ["2", "1", "0"] {
        let before = unix_now();
        let r = a.get("/api/v1/users/me/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-RateLimit-Remaining"), Some(want));
        // DRF's reset: when this request leaves the window.
        let reset: u64 = r.header("X-RateLimit-Reset").unwrap().parse().unwrap();
        let after = unix_now();
        assert!(
            reset >= before + window.as_secs() && reset <= after + window.as_secs(),
            "reset {reset}, request between {before} and {after}"
        );
        assert!(r.header("Retry-After").is_none());
    }
    let r = a.get("/api/v1/users/me/").await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json,
        json!({"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"})
    );
    // Until the first request leaves the window, rounded up.
    let retry_after: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!(
        (1..=window.as_secs()).contains(&retry_after),
        "{retry_after}"
    );
    assert!(r.header("X-RateLimit-Remaining").is_none());
    assert!(r.header("X-RateLimit-Reset").is_none());
}

/// Waiting out `Retry-After` is enough, whatever the machine's speed: the wait
/// counts from the refusal, and the oldest request is older than that.
#[tokio::test]
async fn waiting_out_retry_after_is_enough() {
    let fake = FakePlane::builder()
        .rate_limit(1, Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let a = Api::new(fake);
    assert_eq!(a.get("/api/v1/users/me/").await.status, 200);
    // Normally the very next request is refused; on a stalled machine the
    // window may already have passed, so go on until one is.
    let mut refused = None;
    for _ in 0..100 {
        let r = a.get("/api/v1/users/me/").await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("no request was refused in 100 tries at 1 per second");
    let retry_after: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = a.get("/api/v1/users/me/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
}

#[tokio::test]
async fn keys_have_independent_buckets() {
    let other = format!("plane_api_{}", "1".repeat(32));
    let fake = FakePlane::builder()
        .extra_api_key(other.clone())
        .rate_limit(2, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let a = Api::new(fake);
    for _ in 0..2 {
        assert_eq!(a.get("/api/v1/users/me/").await.status, 200);
    }
    assert_eq!(a.get("/api/v1/users/me/").await.status, 429);
    let r = a
        .call_with("GET", "/api/v1/users/me/", None, Some(other.clone()))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("1"));
}

#[tokio::test]
async fn auth_failures_cost_no_budget_but_view_errors_do() {
    let fake = FakePlane::builder()
        .rate_limit(3, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let a = Api::new(fake);
    for _ in 0..5 {
        let r = a.call_with("GET", "/api/v1/users/me/", None, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.json,
            json!({"detail": "Authentication credentials were not provided."})
        );
        assert!(r.header("X-RateLimit-Remaining").is_none());
        let r = a
            .call_with("GET", "/api/v1/users/me/", None, Some(wrong_key()))
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(r.json, json!({"detail": "Given API token is not valid"}));
        let r = a.get("/api/v1/workspaces/nope/projects/").await;
        assert_eq!(r.status, 403);
        assert_eq!(
            r.json,
            json!({"detail": "You do not have permission to perform this action."})
        );
        assert!(r.header("X-RateLimit-Remaining").is_none());
        // Unknown routes are answered before authentication and throttling.
        let r = a.get("/api/v1/nothing/here/").await;
        assert_eq!(
            (r.status, &r.json),
            (404, &json!({"error": "Page not found."}))
        );
        assert!(r.header("X-RateLimit-Remaining").is_none());
    }
    // Bearer alone is not a credential in CE.
    let r = a
        .http
        .get(a.url("/api/v1/users/me/"))
        .bearer_auth(a.fake.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The header name is case-insensitive.
    let r = a
        .http
        .get(a.url("/api/v1/users/me/"))
        .header("x-api-key", a.fake.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["X-RateLimit-Remaining"], "2");
    // A 404 and a 400 from the view count.
    let r = a
        .get(&format!("work-items/{}/", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("1"));
    let r = a.post("work-items/", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    assert_eq!(a.get("/api/v1/users/me/").await.status, 429);
    // Still not throttled: unknown routes.
    assert_eq!(a.get("/api/v1/nothing/").await.status, 404);
}

#[tokio::test]
async fn trailing_slash_redirects() {
    let a = api(0).await;
    for method in ["GET", "POST", "PATCH", "DELETE"] {
        let r = a
            .call(
                method,
                "work-items?per_page=5&expand=state",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(r.status, 301, "{method}");
        let want = format!(
            "/api/v1/workspaces/insightpulseai/projects/{}/work-items/?per_page=5&expand=state",
            a.fake.project_id()
        );
        assert_eq!(r.header("Location"), Some(want.as_str()));
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert!(r.raw.is_empty());
    }
    // Redirects happen before authentication.
    let r = a.call_with("GET", "/api/v1/users/me", None, None).await;
    assert_eq!(r.status, 301);
    // Nothing was created by the slashless POST.
    assert_eq!(a.fake.work_item_count(a.fake.project_id()), 0);
    // A slashless URL that would not resolve either is a plain 404.
    let r = a.get("/api/v1/users/you").await;
    assert_eq!(r.status, 404);
    // Non-UUID path parameters do not resolve.
    let r = a
        .get("/api/v1/workspaces/insightpulseai/projects/BIR/")
        .await;
    assert_eq!(
        (r.status, &r.json),
        (404, &json!({"error": "Page not found."}))
    );
}

// ----- work items -------------------------------------------------------------------------

#[tokio::test]
async fn work_item_crud_and_identifiers() {
    let a = api(2).await;
    let r = a
        .post(
            "work-items/",
            json!({"name": "  Pay 1601-C  ", "priority": "high", "bogus": 1, "target_date": "2026-11-10"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let item = r.json.clone();
    let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
    let captured: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/plane-ce/api/06_get_issue.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let want: Vec<&String> = captured["response"]["body_json"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, want);
    assert_eq!(item["name"], "Pay 1601-C");
    assert_eq!(item["sequence_id"], 3);
    assert_eq!(item["sort_order"], 85535.0);
    assert_eq!(item["description_html"], "<p></p>");
    assert!(item.get("bogus").is_none());
    let created_at = item["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 27,
        "{created_at}"
    );
    let id = item["id"].as_str().unwrap().to_owned();

    let states = a.get("states/").await.json;
    let names: Vec<&str> = states["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Backlog", "Todo", "In Progress", "Done", "Cancelled"]
    );
    let backlog = &states["results"][0];
    assert_eq!(item["state"], backlog["id"]);
    let done = states["results"][3]["id"].clone();

    // Both path families and the identifier lookup.
    for rel in [format!("work-items/{id}/"), format!("issues/{id}/")] {
        assert_eq!(a.get(&rel).await.json["id"], json!(id));
    }
    for fam in ["work-items", "issues"] {
        let r = a
            .get(&format!("/api/v1/workspaces/insightpulseai/{fam}/BIR-3/"))
            .await;
        assert_eq!(r.json["id"], json!(id));
    }
    let r = a
        .get("/api/v1/workspaces/insightpulseai/work-items/BIR-99/")
        .await;
    assert_eq!(r.status, 404);

    // Partial update.
    let r = a
        .patch(&format!("work-items/{id}/"), json!({"state": done}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["name"], "Pay 1601-C");
    assert_eq!(r.json["state"], done);
    assert!(r.json["completed_at"].is_string());
    assert_eq!(
        r.json["updated_by"],
        a.get("/api/v1/users/me/").await.json["id"]
    );

    // Validation.
    let bad = [
        (
            json!({"priority": "highest"}),
            json!({"priority": ["\"highest\" is not a valid choice."]}),
        ),
        (
            json!({"name": ""}),
            json!({"name": ["This field may not be blank."]}),
        ),
        (
            json!({"start_date": "2026-12-01", "target_date": "2026-11-01"}),
            json!({"non_field_errors": ["Start date cannot exceed target date"]}),
        ),
        (
            json!({"target_date": "next week"}),
            json!({"target_date": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]}),
        ),
    ];
    for (body, want) in bad {
        let r = a.patch(&format!("work-items/{id}/"), body.clone()).await;
        assert_eq!((r.status, &r.json), (400, &want), "{body}");
    }

    // PUT is not routed.
    let r = a
        .call("PUT", &format!("work-items/{id}/"), Some(json!({})))
        .await;
    assert_eq!(
        (r.status, &r.json),
        (405, &json!({"detail": "Method \"PUT\" not allowed."}))
    );

    // Activities were recorded for the create and the update.
    let acts = a.get(&format!("work-items/{id}/activities/")).await.json;
    assert_eq!(acts["count"], 2);
    assert_eq!(acts["results"][0]["verb"], "created");
    assert_eq!(acts["results"][1]["field"], "state");
    assert_eq!(acts["results"][1]["new_value"], "Done");

    // Delete.
    let r = a.call("DELETE", &format!("work-items/{id}/"), None).await;
    assert_eq!(r.status, 204);
    assert!(r.raw.is_empty());
    let r = a.get(&format!("issues/{id}/")).await;
    assert_eq!(
        (r.status, &r.json),
        (
            404,
            &json!({"error": "The requested resource does not exist."})
        )
    );
    // Sequence ids are never reused.
    let r = a.post("work-items/", json!({"name": "next"})).await;
    assert_eq!(r.json["sequence_id"], 4);
}

#[tokio::test]
async fn malformed_and_missing_bodies() {
    let a = api(0).await;
    let r = a
        .http
        .post(a.url("work-items/"))
        .header("X-API-Key", a.fake.api_key())
        .header("Content-Type", "application/json")
        .body("{\"name\": \"broken\",")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let j: Value = r.json().await.unwrap();
    assert!(
        j["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - ")
    );
    let r = a.post("work-items/", json!({"priority": "high"})).await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"name": ["This field is required."]}))
    );
    let r = a.post("work-items/", json!([1])).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["non_field_errors"][0],
        "Invalid data. Expected a dictionary, but got list."
    );
}

#[tokio::test]
async fn external_id_lookup_and_conflicts() {
    let a = api(1).await;
    let body = json!({"name": "BIR 1601-C Oct", "external_source": "plane-bir", "external_id": "bir:1601-C:2026-10"});
    let first = a.post("work-items/", body.clone()).await;
    assert_eq!(first.status, 201);
    let id = first.json["id"].clone();
    let dup = a.post("issues/", body).await;
    assert_eq!(
        (dup.status, &dup.json),
        (
            409,
            &json!({"error": "Issue with the same external id and external source already exists", "id": id})
        )
    );
    let r = a
        .get("work-items/?external_id=bir:1601-C:2026-10&external_source=plane-bir&fields=id,external_id")
        .await;
    assert_eq!(
        r.json,
        json!({"id": id, "external_id": "bir:1601-C:2026-10"})
    );
    let r = a
        .get("work-items/?external_id=nope&external_source=plane-bir")
        .await;
    assert_eq!(
        (r.status, &r.json),
        (
            404,
            &json!({"error": "The requested resource does not exist."})
        )
    );
    // Only one of the two: the normal list.
    let r = a.get("work-items/?external_id=bir:1601-C:2026-10").await;
    assert_eq!(r.json["total_count"], 2);
    // PATCH onto a taken pair: 409 carrying the patched item's own id (Plane's bug).
    let other = a.fake.insert_work_item("other");
    let r = a
        .patch(
            &format!("work-items/{}/", other["id"].as_str().unwrap()),
            json!({"external_id": "bir:1601-C:2026-10", "external_source": "plane-bir"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json["id"], other["id"]);
}

#[tokio::test]
async fn fields_and_expand() {
    let a = api(0).await;
    let label = a
        .post(
            "labels/",
            json!({"name": "form:1601-C", "color": "#3366FF"}),
        )
        .await;
    assert_eq!(label.status, 201);
    let parent = a.post("work-items/", json!({"name": "parent"})).await.json;
    let me = a.get("/api/v1/users/me/").await.json;
    let child = a
        .post(
            "work-items/",
            json!({"name": "child", "labels": [label.json["id"]], "assignees": [me["id"]], "parent": parent["id"]}),
        )
        .await
        .json;
    let id = child["id"].as_str().unwrap();

    let r = a
        .get(&format!("work-items/{id}/?fields=name,id,nope"))
        .await;
    assert_eq!(r.json, json!({"id": id, "name": "child"}));
    let r = a.get(&format!("work-items/{id}/?fields=nope")).await;
    assert_eq!(r.json, json!({}));
    // fields runs before expand: an expanded name must also be listed.
    let r = a
        .get(&format!("work-items/{id}/?fields=id&expand=state"))
        .await;
    assert_eq!(r.json, json!({"id": id}));
    let r = a
        .get(&format!(
            "work-items/{id}/?expand=state,project,assignees,labels,parent,created_by,unknown"
        ))
        .await
        .json;
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&r["state"]), ["id", "name", "color", "group"]);
    assert_eq!(
        keys(&r["project"]),
        [
            "id",
            "identifier",
            "name",
            "cover_image",
            "icon_prop",
            "emoji",
            "description",
            "cover_image_url"
        ]
    );
    assert_eq!(r["assignees"][0], me);
    assert_eq!(r["labels"][0], label.json);
    assert_eq!(
        r["parent"],
        json!({"id": parent["id"], "sequence_id": 1, "project_id": a.fake.project_id().to_string()})
    );
    assert_eq!(r["created_by"], me);
    // Lists honour both too.
    let r = a.get("work-items/?fields=id,state&expand=state").await.json;
    assert_eq!(r["results"][0]["state"]["name"], "Backlog");
    assert_eq!(keys(&r["results"][0]), ["id", "state"]);
    let r = a
        .get("/api/v1/workspaces/insightpulseai/projects/?fields=identifier")
        .await
        .json;
    assert_eq!(r["results"][0], json!({"identifier": "BIR"}));
}

// ----- other resources --------------------------------------------------------------------

#[tokio::test]
async fn states_labels_comments_links() {
    let a = api(1).await;
    let item = a.get("work-items/").await.json["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let st = a
        .post("states/", json!({"name": "Review", "color": "#123456", "group": "started", "external_source": "x", "external_id": "1"}))
        .await;
    assert_eq!(st.status, 201);
    let dup = a
        .post("states/", json!({"name": "Review", "color": "#000000"}))
        .await;
    assert_eq!(
        (dup.status, &dup.json),
        (
            409,
            &json!({"error": "State with the same name already exists in the project", "id": st.json["id"]})
        )
    );
    let dup = a
        .post("states/", json!({"name": "Other", "color": "#000000", "external_source": "x", "external_id": "1"}))
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json["id"], st.json["id"]);
    let r = a.post("states/", json!({"name": "No colour"})).await;
    assert_eq!(r.json, json!({"color": ["This field is required."]}));
    let sid = st.json["id"].as_str().unwrap();
    let r = a
        .patch(&format!("states/{sid}/"), json!({"name": "Reviewing"}))
        .await;
    assert_eq!(r.json["name"], "Reviewing");
    assert_eq!(
        a.call("DELETE", &format!("states/{sid}/"), None)
            .await
            .status,
        204
    );
    let backlog = a.get("states/").await.json["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = a.call("DELETE", &format!("states/{backlog}/"), None).await;
    assert_eq!(r.json, json!({"error": "Default state cannot be deleted"}));

    let l = a.post("labels/", json!({"name": "urgent"})).await;
    assert_eq!(l.status, 201);
    let dup = a.post("labels/", json!({"name": "urgent"})).await;
    assert_eq!(
        dup.json,
        json!({"error": "Label with the same name already exists in the project", "id": l.json["id"]})
    );

    let c = a
        .post(
            &format!("work-items/{item}/comments/"),
            json!({"comment_html": "<p>hi</p>", "external_source": "gh", "external_id": "c1"}),
        )
        .await;
    assert_eq!(c.status, 201);
    assert_eq!(c.json["comment_html"], "<p>hi</p>");
    // The pair is unique across the project, not per work item.
    let other = a.fake.insert_work_item("other")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dup = a
        .post(
            &format!("issues/{other}/comments/"),
            json!({"comment_html": "<p>again</p>", "external_source": "gh", "external_id": "c1"}),
        )
        .await;
    assert_eq!(
        (dup.status, &dup.json),
        (
            409,
            &json!({"error": "Work item comment with the same external id and external source already exists", "id": c.json["id"]})
        )
    );
    let list = a.get(&format!("work-items/{item}/comments/")).await.json;
    assert_eq!(list["count"], 1);
    let cid = c.json["id"].as_str().unwrap();
    let r = a
        .patch(
            &format!("work-items/{item}/comments/{cid}/"),
            json!({"comment_html": "<p>edited</p>"}),
        )
        .await;
    assert_eq!(r.json["comment_html"], "<p>edited</p>");
    assert!(r.json["edited_at"].is_string());
    assert_eq!(
        a.call(
            "DELETE",
            &format!("work-items/{item}/comments/{cid}/"),
            None
        )
        .await
        .status,
        204
    );

    let link = a
        .post(
            &format!("work-items/{item}/links/"),
            json!({"url": "https://bir.gov.ph", "title": "BIR"}),
        )
        .await;
    assert_eq!(link.status, 201);
    let dup = a
        .post(
            &format!("issues/{item}/links/"),
            json!({"url": "https://bir.gov.ph"}),
        )
        .await;
    assert_eq!(
        (dup.status, &dup.json),
        (
            400,
            &json!({"error": ["URL already exists for this Issue"]})
        )
    );
    let r = a
        .post(
            &format!("work-items/{item}/links/"),
            json!({"url": "not a url"}),
        )
        .await;
    assert_eq!(r.json, json!({"url": ["Invalid URL format."]}));
    let lid = link.json["id"].as_str().unwrap();
    assert_eq!(
        a.get(&format!("work-items/{item}/links/{lid}/")).await.json["title"],
        "BIR"
    );
}

#[tokio::test]
async fn cycles_modules_members() {
    let a = api(3).await;
    let items: Vec<String> = a.get("work-items/").await.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let c = a
        .post(
            "cycles/",
            json!({"name": "Sprint 1", "start_date": "2026-11-01", "end_date": "2026-11-14"}),
        )
        .await;
    assert_eq!(c.status, 201);
    let cid = c.json["id"].as_str().unwrap();
    let r = a
        .post(
            &format!("cycles/{cid}/cycle-issues/"),
            json!({"issues": items[..2]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json.as_array().unwrap().len(), 2);
    let r = a.get(&format!("cycles/{cid}/cycle-issues/")).await.json;
    assert_eq!(r["count"], 2);
    let r = a.get(&format!("cycles/{cid}/")).await.json;
    assert_eq!(r["total_issues"], 2);
    assert_eq!(r["backlog_issues"], 2);
    let r = a
        .post(
            "cycles/",
            json!({"name": "half", "start_date": "2026-11-01"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = a
        .post(
            &format!("cycles/{cid}/cycle-issues/"),
            json!({"issues": []}),
        )
        .await;
    assert_eq!(r.json, json!({"error": "Issues are required"}));
    assert_eq!(
        a.call(
            "DELETE",
            &format!("cycles/{cid}/cycle-issues/{}/", items[0]),
            None
        )
        .await
        .status,
        204
    );

    let m = a.post("modules/", json!({"name": "Filing"})).await;
    assert_eq!(m.status, 201);
    let mid = m.json["id"].as_str().unwrap();
    let r = a
        .post(
            &format!("modules/{mid}/module-issues/"),
            json!({"issues": [items[2]]}),
        )
        .await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert_eq!(
        a.get(&format!("modules/{mid}/module-issues/")).await.json["count"],
        1
    );

    // Cycles and modules can be switched off per project.
    let r = a
        .patch(
            &format!(
                "/api/v1/workspaces/insightpulseai/projects/{}/",
                a.fake.project_id()
            ),
            json!({"cycle_view": false, "module_view": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = a.post("cycles/", json!({"name": "Sprint 2"})).await;
    assert_eq!(
        (r.status, &r.json),
        (
            400,
            &json!({"non_field_errors": ["Cycles are not enabled for this project"]})
        )
    );
    let r = a.post("modules/", json!({"name": "Other"})).await;
    assert_eq!(
        r.json,
        json!({"non_field_errors": ["Modules are not enabled for this project"]})
    );

    let me = a.get("/api/v1/users/me/").await.json;
    let r = a.get("members/").await.json;
    assert_eq!(r, json!([me]));
    let r = a
        .get("/api/v1/workspaces/insightpulseai/members/")
        .await
        .json;
    assert_eq!(r[0]["role"], 20);
    assert_eq!(r[0]["id"], me["id"]);
}

#[tokio::test]
async fn projects_create_and_conflicts() {
    let a = api(0).await;
    let r = a
        .post(
            "/api/v1/workspaces/insightpulseai/projects/",
            json!({"name": "Peer API Project", "identifier": "papi"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json["identifier"], "PAPI");
    assert_eq!(r.json["cycle_view"], false);
    let pid = r.json["id"].as_str().unwrap();
    let states = a
        .get(&format!(
            "/api/v1/workspaces/insightpulseai/projects/{pid}/states/"
        ))
        .await;
    assert_eq!(states.json["count"], 5);
    let r = a
        .post(
            "/api/v1/workspaces/insightpulseai/projects/",
            json!({"name": "Peer API Project", "identifier": "X"}),
        )
        .await;
    assert_eq!(
        (r.status, &r.json),
        (409, &json!({"name": "The project name is already taken"}))
    );
    let r = a
        .post(
            "/api/v1/workspaces/insightpulseai/projects/",
            json!({"name": "New", "identifier": "BIR"}),
        )
        .await;
    assert_eq!(
        r.json,
        json!({"identifier": "The project identifier is already taken"})
    );
    let list = a.get("/api/v1/workspaces/insightpulseai/projects/").await;
    assert_eq!(list.json["count"], 2);
    assert_eq!(
        a.call(
            "DELETE",
            &format!("/api/v1/workspaces/insightpulseai/projects/{pid}/"),
            None
        )
        .await
        .status,
        204
    );
    // Nested routes of an unknown project fail the membership check.
    let r = a
        .get(&format!(
            "/api/v1/workspaces/insightpulseai/projects/{pid}/work-items/"
        ))
        .await;
    assert_eq!(r.status, 403);
}

// ----- faults and the request log ---------------------------------------------------------

#[tokio::test]
async fn faults() {
    let a = api(1).await;
    a.fake.inject(Fault::status(503));
    let r = a.get("/api/v1/users/me/").await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.raw).contains("503"));
    assert_eq!(
        a.get("/api/v1/users/me/").await.status,
        200,
        "used up after one"
    );

    a.fake.inject(Fault::status(500).times(2));
    for _ in 0..2 {
        let r = a.get("/api/v1/users/me/").await;
        assert_eq!(
            (r.status, &r.json),
            (
                500,
                &json!({"error": "Something went wrong please try again later"})
            )
        );
    }
    assert_eq!(a.get("/api/v1/users/me/").await.status, 200);

    a.fake.inject(
        Fault::status(502)
            .method("POST")
            .path_contains("/work-items/"),
    );
    assert_eq!(a.get("work-items/").await.status, 200);
    assert_eq!(a.get("/api/v1/users/me/").await.status, 200);
    assert_eq!(
        a.post("work-items/", json!({"name": "x"})).await.status,
        502
    );
    assert_eq!(
        a.post("work-items/", json!({"name": "x"})).await.status,
        201
    );

    a.fake.inject(Fault::too_many_requests(7));
    let r = a.get("/api/v1/users/me/").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("Retry-After"), Some("7"));
    assert!(r.header("X-RateLimit-Remaining").is_none());
    assert_eq!(r.json["error_code"], 5900);

    a.fake.inject(Fault::delay(Duration::from_millis(300)));
    let t = Instant::now();
    let r = a.get("/api/v1/users/me/").await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    a.fake.inject(Fault::drop_connection().times(2));
    for _ in 0..2 {
        let err = a
            .http
            .get(a.url("/api/v1/users/me/"))
            .header("X-API-Key", a.fake.api_key())
            .send()
            .await
            .expect_err("the connection is dropped");
        assert!(err.is_request() || err.is_connect(), "{err:?}");
    }
    assert_eq!(a.get("/api/v1/users/me/").await.status, 200);

    let log = a.fake.request_log();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            503, 200, 500, 500, 200, 200, 200, 502, 201, 429, 200, 0, 0, 200
        ]
    );
}

#[tokio::test]
async fn request_log_contents() {
    let a = api(0).await;
    a.fake.insert_work_item("not logged");
    let t0 = Instant::now();
    a.get("work-items/?per_page=5").await;
    a.call_with("GET", "/api/v1/users/me/", None, Some(wrong_key()))
        .await;
    a.call_with("GET", "/api/v1/users/me", None, None).await;
    a.post("work-items/", json!({"name": "logged"})).await;
    let log = a.fake.request_log();
    assert_eq!(a.fake.request_count(), 4);
    let rows: Vec<(&str, &str, Option<&str>, u16, bool)> = log
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_deref(),
                r.status,
                r.authenticated,
            )
        })
        .collect();
    let wi = format!(
        "/api/v1/workspaces/insightpulseai/projects/{}/work-items/",
        a.fake.project_id()
    );
    assert_eq!(
        rows,
        [
            ("GET", wi.as_str(), Some("per_page=5"), 200, true),
            ("GET", "/api/v1/users/me/", None, 403, false),
            ("GET", "/api/v1/users/me", None, 301, false),
            ("POST", wi.as_str(), None, 201, true),
        ]
    );
    assert!(log.iter().all(|r| r.at >= t0));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    // The key is never kept, nor printed.
    assert!(!format!("{log:?}").contains(&a.fake.api_key()));
    assert!(!format!("{:?}", a.fake).contains(&a.fake.api_key()));
    a.fake.clear_request_log();
    assert_eq!(a.fake.request_count(), 0);
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let fake = FakePlane::builder().start().await.unwrap();
    let url = format!("{}/api/v1/users/me/", fake.base_url());
    let clone = fake.clone();
    drop(fake);
    // A clone keeps it alive.
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 401);
    clone.shutdown().await;
    let client = reqwest::Client::new();
    assert!(client.get(&url).send().await.is_err());

    let fake = FakePlane::builder().start().await.unwrap();
    let url = format!("{}/api/v1/users/me/", fake.base_url());
    drop(fake);
    // Dropping stops the server in the background: wait for the refusal (a
    // busy machine may take a while), capped so a server that never stops fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while client.get(&url).send().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped fake still answers after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
