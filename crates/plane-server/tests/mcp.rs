//! `plane-server mcp` as an MCP client runs it: the real binary as a child process, spoken
//! to over its stdin and stdout with rmcp's own client (and, for malformed input, with raw
//! lines, which rmcp's client would never send).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{NaiveDate, TimeZone, Utc};
use plane_bir::sync::external_id;
use plane_bir::{DeadlineRecord, DeadlineStatus, DeadlineStore, SqliteDeadlineStore, StatusChange};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ReadResourceRequestParams, ResourceContents, Tool,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

// The BIR loop as `serve` runs it (shared with bir_loop.rs, which allows its unwraps).
#[allow(clippy::unwrap_used)]
mod bir_service;

use bir_service::BirService;
use plane_fake::RunningFake;

const TIN: &str = "111222333000";

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plane-bir/profiles")
}

fn fiscal_june() -> PathBuf {
    profiles_dir().join("fiscal-june-corporation.toml")
}

fn day(s: &str) -> NaiveDate {
    s.parse().expect("a test date")
}

/// A database as `bir sync` and the webhook handler leave it: an overdue 1601-C still
/// open, a 2550Q filed in Plane by a person, and the 1702Q that is due soon, synced.
fn database(dir: &Path) -> PathBuf {
    let path = dir.join("plane.db");
    let store = SqliteDeadlineStore::open(&path).expect("open the deadline store");
    futures::executor::block_on(deadlines_into(&store));
    path
}

/// The deadlines of [`database`], into any deadline store.
async fn deadlines_into(store: &dyn DeadlineStore) {
    let project = uuid::Uuid::new_v4();
    let record = |form: &str, period: &str, due: &str, item: uuid::Uuid| DeadlineRecord {
        external_id: external_id(TIN, form, period),
        profile: TIN.into(),
        form: form.into(),
        period: period.into(),
        due_date: day(due),
        payment_date: None,
        project_id: project,
        work_item_id: Some(item),
        pushed: None,
        fingerprint: None,
        status: DeadlineStatus::Pending,
        status_by: None,
        status_at: None,
    };
    let filed_item = uuid::Uuid::new_v4();
    for r in [
        record("1601-C", "2026-09", "2026-10-12", uuid::Uuid::new_v4()),
        record("2550Q", "2027-Q1", "2026-10-26", filed_item),
        record("1702Q", "2027-Q1", "2026-12-01", uuid::Uuid::new_v4()),
    ] {
        store.record(&r).await.expect("record a deadline");
    }
    store
        .apply_status(&StatusChange {
            work_item_id: filed_item,
            status: DeadlineStatus::Filed,
            by: Some("ana@example.com".into()),
            at: Utc.with_ymd_and_hms(2026, 10, 23, 2, 0, 0).unwrap(),
            event: Some("test-event".into()),
        })
        .await
        .expect("mark it filed");
}

fn command(args: &[&str], db: &Path) -> tokio::process::Command {
    command_in(args, db.as_os_str(), db.parent().expect("a directory"))
}

/// `plane-server mcp ARGS --db DB` in `dir`.
fn command_in(args: &[&str], db: &std::ffi::OsStr, dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_plane-server"));
    cmd.arg("mcp")
        .args(args)
        .arg("--db")
        .arg(db)
        .arg("--today")
        .arg("2026-11-20")
        // The child's own working directory: no stray bir-overrides.toml, no config.
        .current_dir(dir)
        .env_remove("PLANE_DATABASE_URL")
        .env_remove("PLANE_DATABASE_SCHEMA")
        .env_remove("PLANE_BIR_OVERRIDES")
        .env("RUST_LOG", "warn");
    cmd
}

async fn client(args: &[&str], db: &Path) -> RunningService<RoleClient, ()> {
    spawn(command(args, db)).await
}

async fn spawn(command: tokio::process::Command) -> RunningService<RoleClient, ()> {
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start plane-server mcp");
    ().serve(transport).await.expect("initialize")
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The structured result, checked against the schema the tool declared.
fn structured(tools: &[Tool], name: &str, result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{name} failed: {result:?}");
    let value = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{name} gave no structured content"));
    let tool = tools.iter().find(|t| t.name == name).expect("the tool");
    let schema = Value::Object(
        tool.output_schema
            .clone()
            .expect("an output schema")
            .as_ref()
            .clone(),
    );
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: the output does not match its schema: {errors:?}"
    );
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .expect("a text summary");
    assert!(!text.text.is_empty());
    value
}

fn error_text(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .expect("an error text")
        .text
        .clone()
}

#[tokio::test]
async fn mcp_tools_answer_with_schema_valid_results_and_known_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = database(dir.path());
    let fiscal = fiscal_june();
    let client = client(&["--profile", fiscal.to_str().expect("utf-8")], &db).await;

    let info = client.peer_info().expect("the server's initialize result");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("plane-server")
    );
    assert!(info.capabilities.tools.is_some());

    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "calendar",
            "deadlines",
            "explain_deadline",
            "filing_status",
            "forms",
            "inbox_health",
            "sync_plan"
        ]
    );
    for t in &tools {
        assert_eq!(
            t.annotations.as_ref().and_then(|a| a.read_only_hint),
            Some(true),
            "{}",
            t.name
        );
    }

    // 1702Q 2027-Q1 (July-September 2026): 60 days after Sep 30 is Sun Nov 29, Mon Nov 30
    // is Bonifacio Day, so Tue Dec 1.
    let explain = call(
        &client,
        "explain_deadline",
        json!({"form": "1702q", "period": "2027-Q1"}),
    )
    .await;
    let v = structured(&tools, "explain_deadline", &explain);
    assert_eq!(v["deadline"]["due_date"], "2026-12-01");
    assert_eq!(v["deadline"]["rule_date"], "2026-11-29");
    assert_eq!(
        v["deadline"]["months"],
        json!(["2026-07", "2026-08", "2026-09"])
    );
    let moved: Vec<(&str, &str)> = v["deadline"]["moved_by"]
        .as_array()
        .expect("moved_by")
        .iter()
        .map(|m| {
            (
                m["date"].as_str().unwrap_or(""),
                m["why"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(moved[0], ("2026-11-29", "Sunday"));
    assert_eq!(moved[1].0, "2026-11-30");
    assert!(moved[1].1.contains("Bonifacio"), "{moved:?}");
    assert_eq!(v["deadline"]["override"], Value::Null);
    assert_eq!(v["profile"], TIN);
    assert_eq!(v["status"]["status"], "pending");
    assert_eq!(v["status"]["days_left"], 11);

    let calendar = call(
        &client,
        "calendar",
        json!({"from": "2026-12-01", "to": "2026-12-31"}),
    )
    .await;
    let v = structured(&tools, "calendar", &calendar);
    let first = &v["deadlines"][0];
    assert_eq!(
        (&first["form"], &first["period"], &first["due_date"]),
        (&json!("1702Q"), &json!("2027-Q1"), &json!("2026-12-01"))
    );
    assert_eq!(
        v["count"],
        v["deadlines"].as_array().map(Vec::len).unwrap_or(0)
    );

    let forms = call(&client, "forms", json!({})).await;
    let v = structured(&tools, "forms", &forms);
    let m2551 = v["forms"]
        .as_array()
        .expect("forms")
        .iter()
        .find(|f| f["form"] == "2551M")
        .expect("2551M");
    assert_eq!(m2551["status"], "abolished");
    assert!(
        m2551["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{m2551}"
    );

    deadlines_and_filing_status(&client, &tools).await;
    client.cancel().await.expect("close");
}

/// `deadlines` and `filing_status` on the database of [`database`] / [`deadlines_into`].
async fn deadlines_and_filing_status(client: &RunningService<RoleClient, ()>, tools: &[Tool]) {
    // Default range: today (2026-11-20) + 30 days, plus every overdue one.
    let deadlines = call(client, "deadlines", json!({})).await;
    let v = structured(tools, "deadlines", &deadlines);
    assert_eq!(v["from"], "2026-11-20");
    assert_eq!(v["to"], "2026-12-20");
    let rows = v["deadlines"].as_array().expect("rows");
    let find = |form: &str, period: &str| {
        rows.iter()
            .find(|r| r["form"] == form && r["period"] == period)
    };
    let overdue = find("1601-C", "2026-09").expect("the overdue 1601-C is listed");
    assert_eq!(overdue["status"], "overdue");
    assert_eq!(overdue["days_left"], -39);
    assert_eq!(overdue["synced"], true);
    let soon = find("1702Q", "2027-Q1").expect("the 1702Q due Dec 1");
    assert_eq!(soon["status"], "pending");
    assert!(soon["work_item_id"].is_string());
    assert!(
        find("2550Q", "2027-Q1").is_none(),
        "a filed deadline before the range is not listed"
    );
    assert_eq!(v["overdue"], 1);

    let filed = call(
        client,
        "deadlines",
        json!({"from": "2026-10-01", "to": "2026-10-31", "status": ["filed"]}),
    )
    .await;
    let v = structured(tools, "deadlines", &filed);
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["deadlines"][0]["filed_by"], "ana@example.com");
    assert_eq!(v["deadlines"][0]["form"], "2550Q");

    let status = call(client, "filing_status", json!({})).await;
    let v = structured(tools, "filing_status", &status);
    let p = &v["profiles"][0];
    assert_eq!(
        p["counts"],
        json!({"pending": 1, "in_progress": 0, "overdue": 1, "filed": 1, "void": 0})
    );
    assert_eq!(p["next"]["form"], "1702Q");
}

/// Deliveries in the webhook inbox of the same database, as `serve` leaves them: one dead
/// after its only attempt, one done, two waiting (received a second apart).
async fn inbox(db: &Path) -> i64 {
    let (config, clock, t0) = inbox_config();
    let store = plane_webhook::SqliteStore::open(db, config).expect("open the inbox");
    deliveries_into(&store, &clock).await;
    t0
}

/// The inbox's store configuration: one attempt, and a clock at the first delivery's time.
fn inbox_config() -> (
    plane_webhook::StoreConfig,
    std::sync::Arc<plane_webhook::ManualClock>,
    i64,
) {
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 19, 1, 0, 0)
        .unwrap()
        .timestamp_millis();
    let clock = std::sync::Arc::new(plane_webhook::ManualClock::new(t0));
    let config = plane_webhook::StoreConfig {
        max_attempts: 1,
        clock: clock.clone(),
        ..plane_webhook::StoreConfig::default()
    };
    (config, clock, t0)
}

/// The deliveries of [`inbox`], into a store opened with [`inbox_config`].
async fn deliveries_into(
    store: &dyn plane_webhook::DeliveryStore,
    clock: &plane_webhook::ManualClock,
) {
    use plane_webhook::{EventHead, NewDelivery};
    let delivery = |n: u32| {
        let body = format!(
            r#"{{"event": "issue", "action": "updated", "webhook_id": null, "workspace_id": null, "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "BODY-SECRET-{n}"}}, "activity": {{"field": "name"}}}}"#
        )
        .into_bytes();
        NewDelivery::new(
            uuid::Uuid::new_v4(),
            &EventHead::parse(&body).expect("a head"),
            body,
        )
    };
    let lease = std::time::Duration::from_secs(60);
    store.record(delivery(1)).await.expect("record");
    let item = store.claim("w", 1, lease).await.expect("claim").remove(0);
    store.fail(&item, "Plane answered 500").await.expect("fail");
    clock.advance(std::time::Duration::from_secs(1));
    store.record(delivery(2)).await.expect("record");
    let item = store.claim("w", 1, lease).await.expect("claim").remove(0);
    store.complete(&item).await.expect("complete");
    for n in [3, 4] {
        clock.advance(std::time::Duration::from_secs(1));
        store.record(delivery(n)).await.expect("record");
    }
}

#[tokio::test]
async fn mcp_inbox_health_counts_deliveries_and_lists_the_dead_without_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = database(dir.path());
    let t0 = inbox(&db).await;
    let fiscal = fiscal_june();
    let server = client(&["--profile", fiscal.to_str().expect("utf-8")], &db).await;
    let tools = server.list_all_tools().await.expect("tools/list");

    let v = structured(
        &tools,
        "inbox_health",
        &call(&server, "inbox_health", json!({})).await,
    );
    assert_eq!(
        v["counts"],
        json!({"pending": 2, "processing": 0, "failed": 0, "dead": 1, "done": 1, "ignored": 0})
    );
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    assert_eq!(v["oldest_waiting_since"], at(t0 + 2000));
    let waiting: Vec<&Value> = v["waiting"].as_array().expect("waiting").iter().collect();
    assert_eq!(waiting.len(), 2);
    assert_eq!(waiting[0]["received_at"], at(t0 + 2000));
    assert_eq!(waiting[1]["received_at"], at(t0 + 3000));
    assert_eq!(waiting[0]["status"], "pending");
    let dead = &v["dead"][0];
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["last_error"], "Plane answered 500");
    assert_eq!(
        (&dead["event"], &dead["action"]),
        (&json!("issue"), &json!("updated"))
    );
    assert!(!v.to_string().contains("BODY-SECRET"), "no bodies: {v}");

    let v = structured(
        &tools,
        "inbox_health",
        &call(&server, "inbox_health", json!({"limit": 1})).await,
    );
    assert_eq!(v["waiting"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["waiting"][0]["received_at"], at(t0 + 2000));
    let e = error_text(&call(&server, "inbox_health", json!({"limit": 0})).await);
    assert!(e.contains("`limit`"), "{e}");
    server.cancel().await.expect("close");

    // A database no `serve` has written deliveries to: none, and it says why.
    let dir = tempfile::tempdir().expect("tempdir");
    let only_deadlines = database(dir.path());
    let server = client(&[], &only_deadlines).await;
    let v = structured(
        &tools,
        "inbox_health",
        &call(&server, "inbox_health", json!({})).await,
    );
    assert_eq!(v["counts"]["pending"], 0);
    assert!(
        v["database"]
            .as_str()
            .is_some_and(|d| d.contains("no webhook inbox")),
        "{v}"
    );
    server.cancel().await.expect("close");
}

fn contents(r: &ResourceContents) -> (&str, Option<&str>, &str) {
    match r {
        ResourceContents::TextResourceContents {
            uri,
            mime_type,
            text,
            ..
        } => (uri.as_str(), mime_type.as_deref(), text.as_str()),
        _ => panic!("a text resource: {r:?}"),
    }
}

#[tokio::test]
async fn mcp_calendar_resources_per_profile_as_ics_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("absent.db");
    let fiscal = fiscal_june();
    let other = profiles_dir().join("efps-a-vat-corporation.toml");
    let server = client(
        &[
            "--profile",
            fiscal.to_str().expect("utf-8"),
            "--profile",
            other.to_str().expect("utf-8"),
        ],
        &db,
    )
    .await;
    let info = server.peer_info().expect("initialize result");
    assert!(info.capabilities.resources.is_some());

    // This year and the next (today is 2026-11-20), for each configured profile.
    let listed = server.list_all_resources().await.expect("resources/list");
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris.len(), 4, "{uris:?}");
    assert!(
        uris.contains(&"bir://calendar/111222333000/2026"),
        "{uris:?}"
    );
    assert!(
        uris.contains(&"bir://calendar/111222333000/2027"),
        "{uris:?}"
    );
    let templates = server
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "bir://calendar/{profile}/{year}");

    // Fiscal year 2027 (July 2026 - June 2027): the 1702Q of its first quarter is due
    // Tue 2026-12-01 (Sun Nov 29, then Bonifacio Day).
    let uri = "bir://calendar/111222333000/2027";
    let read = server
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .expect("resources/read");
    assert_eq!(read.contents.len(), 2);
    let (at, mime, ics) = contents(&read.contents[0]);
    assert_eq!((at, mime), (uri, Some("text/calendar")));
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"), "{ics}");
    let event = ics
        .split("BEGIN:VEVENT")
        .find(|e| e.contains("UID:1702Q.2027-Q1.111222333000@plane-bir"))
        .unwrap_or_else(|| panic!("the 1702Q 2027-Q1 event: {ics}"));
    assert!(event.contains("DTSTART;VALUE=DATE:20261201\r\n"), "{event}");
    let (at, mime, text) = contents(&read.contents[1]);
    assert_eq!((at, mime), (uri, Some("application/json")));
    let json: Value = serde_json::from_str(text).expect("JSON");
    let rows = json.as_array().expect("a list of deadlines");
    let q1 = rows
        .iter()
        .find(|d| d["form"] == "1702Q" && d["period"] == "2027-Q1")
        .unwrap_or_else(|| panic!("the 1702Q in the JSON: {json}"));
    assert_eq!(q1["due_date"], "2026-12-01");
    assert_eq!(
        rows.len(),
        ics.matches("BEGIN:VEVENT").count(),
        "the same deadlines in both"
    );

    // The profile by its name, percent-encoded, or its file name reads the same calendar.
    for other in [
        "bir://calendar/Malaya%20Foods%20Trading%20Inc./2027",
        "bir://calendar/fiscal-june-corporation/2027",
    ] {
        let again = server
            .read_resource(ReadResourceRequestParams::new(other))
            .await
            .unwrap_or_else(|e| panic!("{other}: {e}"));
        assert_eq!(contents(&again.contents[1]).2, text, "{other}");
    }

    let e = server
        .read_resource(ReadResourceRequestParams::new("bir://calendar/nobody/2027"))
        .await
        .expect_err("an unknown profile");
    let e = e.to_string();
    assert!(
        e.contains("unknown profile \"nobody\"") && e.contains(TIN),
        "{e}"
    );
    let e = server
        .read_resource(ReadResourceRequestParams::new(
            "bir://calendar/111222333000/20x7",
        ))
        .await
        .expect_err("a bad year")
        .to_string();
    assert!(e.contains("bad year \"20x7\""), "{e}");
    // The server goes on.
    assert_eq!(server.list_all_resources().await.expect("again").len(), 4);
    server.cancel().await.expect("close");
}

#[tokio::test]
async fn mcp_tool_errors_say_what_was_wrong_and_the_server_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No database file: the tools still answer, and say no status is known.
    let db = dir.path().join("absent.db");
    let fiscal = fiscal_june();
    let other = profiles_dir().join("efps-a-vat-corporation.toml");
    let client = client(
        &[
            "--profile",
            fiscal.to_str().expect("utf-8"),
            "--profile",
            other.to_str().expect("utf-8"),
        ],
        &db,
    )
    .await;

    let e = error_text(
        &call(
            &client,
            "explain_deadline",
            json!({"form": "9999-X", "period": "2026", "profile": TIN}),
        )
        .await,
    );
    assert!(
        e.contains("unknown form \"9999-X\"") && e.contains("1702Q"),
        "{e}"
    );
    let e = error_text(
        &call(
            &client,
            "explain_deadline",
            json!({"form": "1702Q", "period": "2027-Q1"}),
        )
        .await,
    );
    assert!(e.contains("several profiles") && e.contains(TIN), "{e}");
    let e = error_text(
        &call(
            &client,
            "explain_deadline",
            json!({"form": "1702Q", "period": "2027-Q4", "profile": TIN}),
        )
        .await,
    );
    assert!(e.contains("2027-Q4"), "{e}");
    let e = error_text(
        &call(
            &client,
            "calendar",
            json!({"from": "2026-02-30", "to": "2026-03-31", "profile": "fiscal-june-corporation"}),
        )
        .await,
    );
    assert!(e.contains("`from`") && e.contains("2026-02-30"), "{e}");
    let e = error_text(&call(&client, "deadlines", json!({"profile": "nobody"})).await);
    assert!(e.contains("unknown profile \"nobody\""), "{e}");
    let e = error_text(&call(&client, "forms", json!({"frm": "1702Q"})).await);
    assert!(e.contains("frm"), "{e}");
    let e = error_text(
        &call(
            &client,
            "explain_deadline",
            json!({"form": "2551M", "period": "2026-01", "profile": TIN}),
        )
        .await,
    );
    assert!(e.contains("2551M has no deadline"), "{e}");

    // An unknown tool is a protocol error, and the connection survives it.
    let unknown = client.call_tool(CallToolRequestParams::new("nope")).await;
    assert!(unknown.is_err(), "{unknown:?}");

    let tools = client.list_all_tools().await.expect("tools/list");
    let ok = call(
        &client,
        "deadlines",
        json!({"profile": "Malaya Foods Trading Inc."}),
    )
    .await;
    let v = structured(&tools, "deadlines", &ok);
    assert!(
        v["database"]
            .as_str()
            .is_some_and(|d| d.contains("no such file")),
        "{v}"
    );
    assert!(v["count"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(!db.exists(), "a read-only server creates no database");
    client.cancel().await.expect("close");
}

/// Raw lines, as a broken client might send them.
#[tokio::test]
async fn mcp_answers_malformed_input_with_an_error_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("absent.db");
    let fiscal = fiscal_june();
    let mut child = command(&["--profile", fiscal.to_str().expect("utf-8")], &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start plane-server mcp");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), stdout.next_line())
            .await
            .expect("an answer in time")
            .expect("read stdout")
            .expect("a line");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout holds only JSON: {e}: {line}"))
    };

    stdin.write_all(b"this is not json\n").await.expect("write");
    let v = next().await;
    assert_eq!(v["error"]["code"], -32700, "{v}");
    assert_eq!(v["id"], Value::Null);

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .expect("write");
    let v = next().await;
    assert_eq!(v["id"], 1);
    assert_eq!(v["result"]["serverInfo"]["name"], "plane-server", "{v}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .expect("write");

    // Valid JSON, not a JSON-RPC message: rmcp's Invalid Request.
    stdin.write_all(b"{\"hello\": 1}\n").await.expect("write");
    let v = next().await;
    assert!(v["error"]["code"].is_i64(), "{v}");

    // A line over the limit is dropped with an error, not buffered without end.
    let huge = vec![b'x'; 5 * 1024 * 1024];
    stdin.write_all(&huge).await.expect("write");
    stdin.write_all(b"\n").await.expect("write");
    let v = next().await;
    assert_eq!(v["error"]["code"], -32600, "{v}");

    let unknown = json!({"jsonrpc": "2.0", "id": 2, "method": "no/such/method"});
    stdin
        .write_all(format!("{unknown}\n").as_bytes())
        .await
        .expect("write");
    let v = next().await;
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(2), json!(-32601)),
        "{v}"
    );

    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "explain_deadline", "arguments": {"form": "1702Q", "period": "2027-Q1"}}});
    stdin
        .write_all(format!("{call}\n").as_bytes())
        .await
        .expect("write");
    let v = next().await;
    assert_eq!(v["id"], 3);
    assert_eq!(
        v["result"]["structuredContent"]["deadline"]["due_date"], "2026-12-01",
        "{v}"
    );

    drop(stdin);
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("exits when stdin closes")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn mcp_refuses_a_bad_profile_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"X\"\ntaxpayer = \"robot\"\n").expect("write");
    let output = command(
        &["--profile", bad.to_str().expect("utf-8")],
        &dir.path().join("db"),
    )
    .stdin(Stdio::null())
    .output()
    .await
    .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "nothing but protocol on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("taxpayer"),
        "{stderr}"
    );
}

/// `plane-server mcp` beside a Plane: the fake's address and key, and nothing else from the
/// developer's environment (no stray key, project or override file).
fn plane_command(fake: Option<&RunningFake>, args: &[&str], db: &Path) -> tokio::process::Command {
    let mut cmd = command(args, db);
    cmd.env_clear().env("RUST_LOG", "warn");
    if let Some(fake) = fake {
        cmd.env("PLANE_BASE_URL", fake.base_url())
            .env("PLANE_WORKSPACE_SLUG", fake.workspace_slug())
            .env("PLANE_API_KEY", fake.api_key())
            .env("PLANE_RATE_LIMIT_PER_MINUTE", "100000");
    }
    cmd
}

async fn plane_client(
    fake: Option<&RunningFake>,
    args: &[&str],
    db: &Path,
) -> RunningService<RoleClient, ()> {
    let (transport, _stderr) = TokioChildProcess::builder(plane_command(fake, args, db))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start plane-server mcp");
    ().serve(transport).await.expect("initialize")
}

fn tool_names(tools: &[Tool]) -> Vec<&str> {
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn mcp_write_tools_are_listed_and_callable_only_with_allow_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("absent.db");
    let fiscal = fiscal_june();
    let fiscal = fiscal.to_str().expect("utf-8");
    let project = uuid::Uuid::new_v4().to_string();

    let reader = plane_client(None, &["--profile", fiscal], &db).await;
    let tools = reader.list_all_tools().await.expect("tools/list");
    assert_eq!(
        tool_names(&tools),
        [
            "calendar",
            "deadlines",
            "explain_deadline",
            "filing_status",
            "forms",
            "inbox_health",
            "sync_plan"
        ]
    );
    for (tool, args) in [
        ("sync", json!({})),
        ("mark_filed", json!({"form": "1702Q", "period": "2027-Q1"})),
    ] {
        let e = error_text(&call(&reader, tool, args).await);
        assert!(
            e.contains(&format!("`{tool}` writes to Plane")) && e.contains("--allow-writes"),
            "{e}"
        );
    }
    // sync_plan is there, and says what it lacks: first a project, then credentials.
    let e = error_text(&call(&reader, "sync_plan", json!({})).await);
    assert!(
        e.contains("no Plane project for --profile") && e.contains("PLANE_BIR_PROJECT_ID"),
        "{e}"
    );
    reader.cancel().await.expect("close");

    let writer = plane_client(
        None,
        &["--profile", fiscal, "--project", &project, "--allow-writes"],
        &db,
    )
    .await;
    let tools = writer.list_all_tools().await.expect("tools/list");
    assert_eq!(
        tool_names(&tools),
        [
            "calendar",
            "deadlines",
            "explain_deadline",
            "filing_status",
            "forms",
            "inbox_health",
            "mark_filed",
            "sync",
            "sync_plan"
        ]
    );
    for t in &tools {
        let writes = ["sync", "mark_filed"].contains(&t.name.as_ref());
        let hints = t.annotations.as_ref().expect("annotations");
        assert_eq!(hints.read_only_hint, Some(!writes), "{}", t.name);
        assert_eq!(hints.destructive_hint, Some(writes), "{}", t.name);
    }
    for tool in ["sync_plan", "sync"] {
        let e = error_text(&call(&writer, tool, json!({})).await);
        assert!(
            e.contains("PLANE_API_KEY is not set") && e.contains(&format!("`{tool}` tool")),
            "{e}"
        );
    }
    let e = error_text(&call(&writer, "sync_plan", json!({"year": 2027, "ahead": "6m"})).await);
    assert!(e.contains("`year`") && e.contains("not both"), "{e}");
    let e = error_text(&call(&writer, "sync_plan", json!({"ahead": "99m"})).await);
    assert!(e.contains("bad `ahead`") && e.contains("36m"), "{e}");
    let e = error_text(
        &call(
            &writer,
            "mark_filed",
            json!({"form": "1702Q", "period": "2027-Q1"}),
        )
        .await,
    );
    assert!(e.contains("has no work item in Plane yet"), "{e}");
    assert!(!db.exists(), "nothing was created");
    writer.cancel().await.expect("close");
}

/// Every tool against a database filled by a real sync to plane-fake (the `sync` tool of
/// the real binary), with `serve`'s receiver and worker taking Plane's signed webhooks, and
/// `mark_filed` closing a work item in Plane: the webhook files the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_against_a_real_sync_to_plane_fake_and_mark_filed_through_the_webhook() {
    let l = BirService::start(std::sync::Arc::new(plane_webhook::SystemClock)).await;
    let fake = &l.fake;
    let project = fake.project_id();
    let project_arg = project.to_string();
    let fiscal = fiscal_june();
    let fiscal = fiscal.to_str().expect("utf-8");
    let items_before = fake.work_item_count(project);
    let server = plane_client(
        Some(fake),
        &[
            "--profile",
            fiscal,
            "--project",
            &project_arg,
            "--allow-writes",
        ],
        &l.db,
    )
    .await;
    let tools = server.list_all_tools().await.expect("tools/list");
    // Today is 2026-11-20 (`command`); from October, so October's deadlines are overdue.
    let window = json!({"from": "2026-10-01"});

    // The plan: every deadline of the window is to be created; nothing is written.
    let plan = structured(
        &tools,
        "sync_plan",
        &call(&server, "sync_plan", window.clone()).await,
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        plan["covers"],
        json!({"from": "2026-10-01", "to": "2027-11-30"})
    );
    let to_create = plan["created"].as_u64().expect("created");
    assert!(to_create > 30, "{plan}");
    assert_eq!(
        (plan["requests"].as_u64(), plan["writes"].as_u64()),
        (Some(3), Some(0))
    );
    let changes = plan["profiles"][0]["plan"].as_array().expect("the plan");
    assert_eq!(
        changes.iter().filter(|c| c["action"] == "create").count() as u64,
        to_create
    );
    assert!(
        changes
            .iter()
            .any(|c| c["action"] == "create" && c["form"] == "1702Q" && c["period"] == "2027-Q1"),
        "{plan}"
    );
    assert_eq!(
        fake.work_item_count(project),
        items_before,
        "a plan writes nothing"
    );
    assert!(l.deadlines.all().await.expect("read").is_empty());

    // The same plan as `bir sync --dry-run --format json`: one code for both.
    let cli = plane_command(Some(fake), &[], &l.db)
        .as_std()
        .get_program()
        .to_owned();
    let out = tokio::process::Command::new(cli)
        .args([
            "bir",
            "sync",
            "--dry-run",
            "--format",
            "json",
            "--profile",
            fiscal,
        ])
        .args([
            "--project",
            &project_arg,
            "--from",
            "2026-10-01",
            "--today",
            "2026-11-20",
        ])
        .arg("--db")
        .arg(&l.db)
        .current_dir(l.db.parent().expect("a directory"))
        .env_clear()
        .env("PLANE_BASE_URL", fake.base_url())
        .env("PLANE_WORKSPACE_SLUG", fake.workspace_slug())
        .env("PLANE_API_KEY", fake.api_key())
        .env("PLANE_RATE_LIMIT_PER_MINUTE", "100000")
        .output()
        .await
        .expect("run bir sync --dry-run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut from_cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut from_mcp = plan.clone();
    for v in [&mut from_cli, &mut from_mcp] {
        v["waited_ms"] = json!(0);
        v["profiles"][0]["waited_ms"] = json!(0);
    }
    assert_eq!(from_mcp, from_cli);

    // The sync itself, then Plane's webhooks of its creates are handled (echoes).
    let synced = structured(&tools, "sync", &call(&server, "sync", window.clone()).await);
    assert_eq!(synced["dry_run"], false);
    assert_eq!(synced["created"].as_u64(), Some(to_create));
    assert!(
        !synced["profiles"][0]
            .as_object()
            .expect("a profile")
            .contains_key("plan")
    );
    l.settle().await;
    let records = l.deadlines.all().await.expect("read");
    assert_eq!(records.len() as u64, to_create);
    assert_eq!(
        fake.work_item_count(project),
        items_before + to_create as usize
    );
    let again = structured(
        &tools,
        "sync_plan",
        &call(&server, "sync_plan", window.clone()).await,
    );
    assert_eq!(
        (
            again["created"].as_u64(),
            again["updated"].as_u64(),
            again["writes"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{again}"
    );
    assert_eq!(again["profiles"][0]["plan"], json!([]));

    // deadlines: each synced row links to its work item in Plane's web app.
    let v = structured(
        &tools,
        "deadlines",
        &call(&server, "deadlines", json!({})).await,
    );
    let rows = v["deadlines"].as_array().expect("rows");
    let find = |form: &str, period: &str| {
        rows.iter()
            .find(|r| r["form"] == form && r["period"] == period)
            .unwrap_or_else(|| panic!("{form} {period} in {v}"))
    };
    let q1 = find("1702Q", "2027-Q1");
    let item: uuid::Uuid = q1["work_item_id"]
        .as_str()
        .expect("synced")
        .parse()
        .expect("a uuid");
    let link = format!(
        "{}/{}/projects/{project}/issues/{item}",
        fake.base_url().trim_end_matches('/'),
        fake.workspace_slug()
    );
    assert_eq!(q1["work_item_url"], link.as_str());
    assert_eq!(q1["status"], "pending");
    assert!(
        fake.work_item_json(project, item).is_some(),
        "the link's item is in Plane"
    );
    let overdue = find("1601-C", "2026-09");
    assert_eq!(
        (&overdue["status"], &overdue["synced"]),
        (&json!("overdue"), &json!(true))
    );
    assert!(overdue["work_item_url"].is_string());
    assert!(
        rows.iter().all(|r| r["work_item_url"].is_string()),
        "every row in range is synced: {v}"
    );

    let v = structured(
        &tools,
        "explain_deadline",
        &call(
            &server,
            "explain_deadline",
            json!({"form": "1702Q", "period": "2027-Q1"}),
        )
        .await,
    );
    assert_eq!(v["deadline"]["due_date"], "2026-12-01");
    assert_eq!(v["status"]["work_item_url"], link.as_str());
    // The reference names no BIR page for any form yet (forms.toml `page`).
    assert_eq!(v["bir_page"], Value::Null);
    structured(
        &tools,
        "calendar",
        &call(&server, "calendar", json!({"year": 2027})).await,
    );
    let v = structured(&tools, "forms", &call(&server, "forms", json!({})).await);
    assert!(
        v["forms"]
            .as_array()
            .expect("forms")
            .iter()
            .all(|f| f.as_object().is_some_and(|f| f.contains_key("bir_page"))),
        "{v}"
    );
    let v = structured(
        &tools,
        "filing_status",
        &call(&server, "filing_status", json!({})).await,
    );
    let counts = &v["profiles"][0]["counts"];
    assert_eq!(counts["filed"], 0);
    let overdue_before = counts["overdue"].as_u64().expect("overdue");
    assert!(overdue_before >= 2, "{v}");
    let v = structured(
        &tools,
        "inbox_health",
        &call(&server, "inbox_health", json!({})).await,
    );
    assert_eq!(
        v["counts"]["done"].as_u64(),
        Some(to_create),
        "one echo per create: {v}"
    );
    assert_eq!(v["counts"]["dead"], 0);

    // mark_filed: one state change in Plane, and nothing else written; the webhook files it.
    fake.clear_request_log();
    let v = structured(
        &tools,
        "mark_filed",
        &call(
            &server,
            "mark_filed",
            json!({"form": "1702q", "period": "2027-Q1"}),
        )
        .await,
    );
    assert_eq!(v["moved"], true, "{v}");
    assert_eq!(v["state"]["group"], "completed");
    assert_eq!(v["previous_state"]["group"], "unstarted");
    assert_eq!(v["work_item_id"], item.to_string());
    assert_eq!(v["work_item_url"], link.as_str());
    let writes: Vec<String> = fake
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].starts_with("PATCH ") && writes[0].contains(&item.to_string()),
        "{writes:?}"
    );
    assert_eq!(
        fake.work_item_json(project, item).expect("the item")["state"],
        fake.state_id(project, "completed")
            .expect("a completed state")
            .to_string()
    );
    l.settle().await;
    let filed = l
        .deadlines
        .all()
        .await
        .expect("read")
        .into_iter()
        .find(|r| r.work_item_id == Some(item))
        .expect("the deadline");
    assert_eq!(filed.status, DeadlineStatus::Filed);
    assert_eq!(
        filed.status_by.as_deref(),
        Some("fake"),
        "the API key's user"
    );
    assert!(filed.status_at.is_some());

    let v = structured(
        &tools,
        "deadlines",
        &call(
            &server,
            "deadlines",
            json!({"from": "2026-11-01", "to": "2026-12-31", "status": ["filed"]}),
        )
        .await,
    );
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(
        (&v["deadlines"][0]["form"], &v["deadlines"][0]["filed_by"]),
        (&json!("1702Q"), &json!("fake"))
    );
    let v = structured(
        &tools,
        "filing_status",
        &call(&server, "filing_status", json!({})).await,
    );
    assert_eq!(v["profiles"][0]["counts"]["filed"], 1);

    // Again: already filed, nothing sent.
    fake.clear_request_log();
    let v = structured(
        &tools,
        "mark_filed",
        &call(
            &server,
            "mark_filed",
            json!({"form": "1702Q", "period": "2027-Q1"}),
        )
        .await,
    );
    assert_eq!(
        (&v["moved"], &v["filing_status"]),
        (&json!(false), &json!("filed"))
    );
    assert!(
        v["note"]
            .as_str()
            .is_some_and(|n| n.contains("already filed by fake")),
        "{v}"
    );
    assert_eq!(fake.request_count(), 0, "{:?}", fake.request_log());
    // A deadline past the window has no work item yet: said, and nothing sent.
    let e = error_text(
        &call(
            &server,
            "mark_filed",
            json!({"form": "1702Q", "period": "2028-Q2"}),
        )
        .await,
    );
    assert!(
        e.contains("1702Q 2028-Q2") && e.contains("no work item in Plane yet"),
        "{e}"
    );
    assert_eq!(fake.request_count(), 0);

    server.cancel().await.expect("close");
    l.running.shutdown().await.expect("shutdown");
}

/// On PostgreSQL (`--db URL` and `PLANE_DATABASE_SCHEMA`), the same answers from the same
/// rows, read-only: a schema nothing has written to yet is reported as such and left as it
/// was (no table created, nothing migrated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_reads_deadlines_and_the_inbox_from_postgres_and_creates_nothing() {
    let Some(pg) = plane_postgres::testing::database("mcp_reads").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let fiscal = fiscal_june();
    let fiscal = fiscal.to_str().expect("utf-8");
    let server = || {
        let mut cmd = command_in(&["--profile", fiscal], pg.url().as_ref(), dir.path());
        cmd.env("PLANE_DATABASE_SCHEMA", pg.schema());
        if let Ok(password) = std::env::var("PGPASSWORD") {
            cmd.env("PGPASSWORD", password);
        }
        spawn(cmd)
    };
    let versions = || async {
        (
            pg.db().schema_version("bir").await.expect("read"),
            pg.db().schema_version("deliveries").await.expect("read"),
        )
    };

    // Nothing there yet: said, and still nothing there after.
    let client = server().await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let v = structured(
        &tools,
        "deadlines",
        &call(&client, "deadlines", json!({})).await,
    );
    let database = v["database"].as_str().expect("database");
    assert!(database.contains("no deadline tables yet"), "{v}");
    assert!(database.contains(pg.schema()), "{v}");
    let v = structured(
        &tools,
        "inbox_health",
        &call(&client, "inbox_health", json!({})).await,
    );
    assert!(
        v["database"]
            .as_str()
            .is_some_and(|d| d.contains("no webhook inbox")),
        "{v}"
    );
    client.cancel().await.expect("close");
    assert_eq!(versions().await, (None, None), "the readers created tables");

    // The deadlines and the inbox, as `bir sync` and `serve` leave them on PostgreSQL.
    let store = plane_bir::PgDeadlineStore::open(pg.db().clone())
        .await
        .expect("open the deadline store");
    deadlines_into(&store).await;
    let (config, clock, _) = inbox_config();
    let inbox = plane_webhook::PgStore::open(pg.db().clone(), config)
        .await
        .expect("open the inbox");
    deliveries_into(&inbox, &clock).await;
    let before = versions().await;

    let client = server().await;
    deadlines_and_filing_status(&client, &tools).await;
    let v = structured(
        &tools,
        "deadlines",
        &call(&client, "deadlines", json!({})).await,
    );
    assert_eq!(
        v["database"],
        format!("{} (schema {})", pg.db().target(), pg.schema())
    );
    let v = structured(
        &tools,
        "inbox_health",
        &call(&client, "inbox_health", json!({})).await,
    );
    assert_eq!(
        v["counts"],
        json!({"pending": 2, "processing": 0, "failed": 0, "dead": 1, "done": 1, "ignored": 0})
    );
    assert_eq!(v["dead"][0]["last_error"], "Plane answered 500");
    assert!(!v.to_string().contains("BODY-SECRET"), "no bodies: {v}");
    client.cancel().await.expect("close");
    assert_eq!(versions().await, before);
}

/// On PostgreSQL the `sync` tool takes the project's lock as `bir sync` does: while another
/// sync holds it (here the test), the tool is an error naming the holder and nothing is
/// written; once it is free, the sync runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sync_on_postgres_waits_its_turn_behind_the_project_lock() {
    let Some(pg) = plane_postgres::testing::database("mcp_sync_lock").await else {
        return;
    };
    let fake = plane_fake::FakePlane::builder()
        .no_rate_limit()
        .start()
        .await
        .expect("plane-fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let fiscal = fiscal_june();
    let project = fake.project_id();
    let args = [
        "--profile",
        fiscal.to_str().expect("utf-8"),
        "--project",
        &project.to_string(),
        "--allow-writes",
    ];
    let mut cmd = command_in(&args, pg.url().as_ref(), dir.path());
    cmd.env_clear()
        .env("RUST_LOG", "warn")
        .env("PLANE_DATABASE_SCHEMA", pg.schema())
        .env("PLANE_BASE_URL", fake.base_url())
        .env("PLANE_WORKSPACE_SLUG", fake.workspace_slug())
        .env("PLANE_API_KEY", fake.api_key())
        .env("PLANE_RATE_LIMIT_PER_MINUTE", "100000");
    if let Ok(password) = std::env::var("PGPASSWORD") {
        cmd.env("PGPASSWORD", password);
    }
    let client = spawn(cmd).await;
    let tools = client.list_all_tools().await.expect("tools/list");

    let held = pg
        .db()
        .try_lock(&format!("bir-sync:{project}"))
        .await
        .expect("lock")
        .expect("the lock is free");
    let e = error_text(&call(&client, "sync", json!({})).await);
    assert!(e.contains("being synced by another"), "{e}");
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    assert_eq!(fake.work_item_count(project), 0);

    held.release().await;
    let v = structured(&tools, "sync", &call(&client, "sync", json!({})).await);
    let created = v["created"].as_u64().expect("created") as usize;
    assert!(created > 20, "{v}");
    assert_eq!(fake.work_item_count(project), created);
    client.cancel().await.expect("close");
}
