//! The real `plane-server` binary: exit codes, signals, and a kill -9 in the
//! middle of a stream of deliveries.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use plane_fake::FakePlane;
use plane_webhook::{DeliveryStore, SqliteStore, Status, StoreConfig, Verifier};

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");

fn plane_server(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear().env(
        "RUST_LOG",
        std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    plane_server(args, env).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(feature = "demo")]
#[test]
fn demo_runs_the_whole_loop_and_exits_0() {
    // As a person runs it: no RUST_LOG.
    let out = plane_server(&["demo"], &[])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let step = |n: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("no step {n}: {stdout}"))
    };
    // 1. The first sync creates every work item of the example profile's year.
    assert!(step("1. ").contains("43 work items created"), "{stdout}");
    // 2. The second sync only lists: 3 requests, no write.
    assert!(step("2. ").ends_with(": 3 requests (0 writes)"), "{stdout}");
    // 3. A person's close arrives signed, files the deadline, and costs Plane nothing.
    let close = step("3. ");
    assert!(
        close.contains("webhook HTTP 200, deadline filed by ana")
            && close.ends_with(": 0 requests to Plane"),
        "{stdout}"
    );
    // 4. A due date edited in Plane is drift: one PATCH puts it back.
    let drift = step("4. ");
    assert!(
        drift.contains("finds 1 drifted") && drift.ends_with("(1 write)"),
        "{stdout}"
    );
    // 5. The re-sent close is a duplicate handled 0 times; the forged copy gets 401.
    assert!(
        step("5. ").contains("HTTP 200 (1 duplicate, 0 handled); a forged copy: HTTP 401"),
        "{stdout}"
    );
    assert!(stdout.contains("deadlines: 1 filed of 43"), "{stdout}");
    // Without RUST_LOG the story is not buried in logs: warnings only (the forged
    // copy of step 5 is refused with one).
    let stderr = text(&out.stderr);
    assert!(!stderr.contains(" INFO "), "{stderr}");
    assert!(stderr.lines().count() <= 3, "{stderr}");
}

#[test]
fn help_is_useful_on_every_command() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["check", "--help"],
        &["deliveries", "list", "--help"],
        &["deliveries", "purge", "--help"],
    ] {
        let out = run(args, &[]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("Usage:"), "{args:?}: {help}");
    }
    assert!(text(&run(&["serve", "--help"], &[]).stdout).contains("--listen"));
    let check = text(&run(&["check", "--help"], &[]).stdout);
    assert!(check.contains("3 bad credentials"), "{check}");
    assert!(check.contains("5 delivery store unusable"), "{check}");
}

#[test]
fn a_configuration_error_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plane-server.toml");
    std::fs::write(&file, "[plane]\napi_key = \"do-not-put-me-here\"\n").unwrap();
    let out = run(&["check", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("plane.api_key"), "{stderr}");
    assert!(!stderr.contains("do-not-put-me-here"), "{stderr}");
    let out = run(
        &["serve", "--db", dir.path().join("x.db").to_str().unwrap()],
        &[("PLANE_LISTEN", "nowhere")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("server.listen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exit_codes_tell_config_credentials_and_reachability_apart() {
    let fake = FakePlane::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("check.db");
    drop(SqliteStore::open(&db, StoreConfig::default()).unwrap());
    let (base, slug, key) = (fake.base_url(), fake.workspace_slug(), fake.api_key());
    let wrong_key = format!("plane_api_{}", "0".repeat(32));
    let closed = format!("http://127.0.0.1:{}", free_port());
    let cases = [
        (
            vec![
                ("PLANE_BASE_URL", base.as_str()),
                ("PLANE_WORKSPACE_SLUG", slug.as_str()),
                ("PLANE_API_KEY", key.as_str()),
            ],
            0,
        ),
        (
            vec![
                ("PLANE_BASE_URL", base.as_str()),
                ("PLANE_API_KEY", wrong_key.as_str()),
            ],
            3,
        ),
        (
            vec![
                ("PLANE_BASE_URL", closed.as_str()),
                ("PLANE_API_KEY", key.as_str()),
            ],
            4,
        ),
        (vec![("PLANE_BASE_URL", base.as_str())], 2),
    ];
    for (env, code) in cases {
        let out = tokio::task::spawn_blocking({
            let db = db.clone();
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run(&["check", "--db", db.to_str().unwrap()], &env)
            }
        })
        .await
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{env:?}\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains(&key) && !all.contains(&wrong_key),
            "a key was printed: {all}"
        );
        if code == 0 {
            assert!(all.contains("authenticated:"), "{all}");
            assert!(
                all.contains(&format!(
                    "schema version {} (current)",
                    SqliteStore::SCHEMA_VERSION
                )),
                "{all}"
            );
        }
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(db: &std::path::Path, port: u16, secret: &str) -> Self {
        // A short lease, so items leased at a crash come back within the test.
        let config = db.with_extension("toml");
        std::fs::write(&config, "[worker]\nlease_seconds = 2\n").unwrap();
        let child = plane_server(
            &[
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
                db.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
            &[
                ("PLANE_WEBHOOK_SECRET", secret),
                // Each handler run is logged: the crash test counts them.
                ("RUST_LOG", "info,plane_server::worker=debug"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(db.with_extension("log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("plane-server did not start listening");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_gracefully_with_exit_0_and_the_cli_sees_the_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let secret = format!("plane_wh_{}", uuid::Uuid::new_v4().simple());
    let mut server = Server::start(&db, free_port(), &secret);
    let sender = plane_fake::WebhookSender::new(&secret);
    let sent = sender
        .send(
            &format!("{}/webhooks/plane", server.url),
            "issue",
            "created",
            serde_json::json!({"id": uuid::Uuid::new_v4(), "name": "x"}),
            serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(sent.status, Some(200));
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("plane_webhook_deliveries_total{outcome=\"accepted\",reason=\"new\"} 1"),
        "{metrics}"
    );
    server.signal("-TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        drop(server);
        status
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));

    let out = run(
        &[
            "deliveries",
            "list",
            "--format",
            "json",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["delivery_id"], sent.delivery_ids[0].to_string());
    let out = run(
        &[
            "deliveries",
            "purge",
            "--older-than",
            "0s",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        text(&out.stdout).contains("purged"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &["deliveries", "replay", "999", "--db", db.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no delivery with id 999"),
        "{}",
        text(&out.stderr)
    );
}

/// kill -9 while a sender streams deliveries (with duplicates); restart; the
/// sender re-sends whatever was not acknowledged under new delivery ids, as
/// Plane does after a transport error. Every event must end up stored once and
/// finished (done as `not_ours`: the BIR handler owns work item events, and these are
/// no deadline's); only the items leased at the moment of the crash may run a second time
/// (at-least-once into idempotent handlers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_loses_nothing_and_stores_each_event_once() {
    const EVENTS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let port = free_port();
    let secret = format!("plane_wh_{}", uuid::Uuid::new_v4().simple());
    let url = format!("http://127.0.0.1:{port}/webhooks/plane");
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..EVENTS)
            .map(|n| {
                format!(
                    r#"{{"event": "issue", "action": "updated", "webhook_id": null, "workspace_id": null, "data": {{"id": "{}", "name": "event {n}"}}, "activity": {{"field": "name"}}}}"#,
                    uuid::Uuid::new_v4()
                )
                .into_bytes()
            })
            .collect(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let post = {
        let (url, secret) = (url.clone(), secret.clone());
        move |n: usize| {
            let (http, url, bodies, secret) =
                (http.clone(), url.clone(), bodies.clone(), secret.clone());
            async move {
                let body = bodies[n].clone();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-plane-event", "issue")
                    .header("x-plane-delivery", uuid::Uuid::new_v4().to_string())
                    .header("x-plane-signature", Verifier::sign(&secret, &body))
                    .body(body)
                    .send()
                    .await;
                matches!(response, Ok(r) if r.status() == 200)
            }
        }
    };

    let mut server = Server::start(&db, port, &secret);
    // 16 senders; every 10th event is also sent twice (a retry).
    let acked = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (acked, post) = (acked.clone(), post.clone());
        tasks.push(tokio::spawn(async move {
            for n in (worker..EVENTS).step_by(16) {
                let sends = if n % 10 == 0 { 2 } else { 1 };
                for _ in 0..sends {
                    if post(n).await {
                        acked.lock().unwrap().insert(n);
                    }
                }
            }
        }));
    }
    // Let part of the stream through, then crash hard.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if acked.lock().unwrap().len() >= EVENTS / 3 {
            break;
        }
    }
    server.signal("-KILL");
    let _ = server.child.wait();
    for task in tasks {
        task.await.unwrap();
    }
    let acked_before_restart = acked.lock().unwrap().clone();
    assert!(
        acked_before_restart.len() < EVENTS,
        "the crash came too late to test anything"
    );

    // Restart and redeliver everything that was not acknowledged.
    let server = Server::start(&db, port, &secret);
    for n in 0..EVENTS {
        if !acked_before_restart.contains(&n) {
            assert!(post(n).await, "redelivery of event {n} failed");
        }
    }
    let store_view = || SqliteStore::open(&db, StoreConfig::default()).unwrap();
    let mut drained = false;
    for _ in 0..500 {
        let stats = store_view().stats().await.unwrap();
        // `serve` runs the BIR handler: these work items are not ours, so each
        // event is finished as done (counted `not_ours`).
        if stats.pending + stats.processing + stats.failed == 0 && stats.done as usize >= EVENTS {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);
    if !drained {
        let log = std::fs::read_to_string(db.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "the inbox did not drain: {:?} (db {})\n{}",
            store_view().stats().await.unwrap(),
            db.display(),
            tail.join("\n")
        );
    }

    let rows = store_view().list(None, EVENTS * 2).await.unwrap();
    assert_eq!(rows.len(), EVENTS, "every event stored exactly once");
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Done && r.note.is_none())
    );
    // How often each item's handlers ran, from both processes' logs. An item
    // handled just before the crash, whose outcome was not committed yet, runs
    // again after its lease (at-least-once into idempotent handlers). Items that
    // were claimed but not started have a claim more (`attempts`) but ran once.
    let log = std::fs::read_to_string(db.with_extension("log")).unwrap();
    let mut runs: HashMap<i64, usize> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("inbox item handled")) {
        let id = line
            .split(" id=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no id in {line}"));
        *runs.entry(id).or_default() += 1;
    }
    assert_eq!(runs.len(), EVENTS, "every item's handlers ran");
    let ran_twice = runs.values().filter(|&&n| n > 1).count();
    let reclaimed = rows.iter().filter(|r| r.attempts > 1).count();
    // Re-runs are bounded by the outcomes in flight at the crash: fewer than
    // the items the crashed process had claimed.
    assert!(
        ran_twice <= reclaimed && runs.values().all(|&n| n <= 2),
        "{ran_twice} items ran twice, {reclaimed} were claimed again"
    );
}

#[cfg(feature = "demo")]
#[test]
fn json_logs_are_one_json_object_per_line() {
    let out = plane_server(&["--log-format", "json", "demo"], &[("RUST_LOG", "info")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 5, "{stderr}");
    for line in lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            json["level"].is_string() && json["fields"].is_object(),
            "{line}"
        );
    }
}

#[test]
fn serve_without_a_webhook_secret_refuses_to_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("PLANE_WEBHOOK_SECRET ") && stderr.contains("PLANE_WEBHOOK_SECRET_FILE"),
        "{stderr}"
    );
    assert!(!db.exists(), "a refused start created the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_store_without_creating_or_migrating_it_and_exits_5_when_unusable() {
    let fake = FakePlane::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (base, key) = (fake.base_url(), fake.api_key());
    let check = move |db: std::path::PathBuf, enabled: &'static str| {
        let (base, key) = (base.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            run(
                &["check", "--db", db.to_str().unwrap()],
                &[
                    ("PLANE_BASE_URL", base.as_str()),
                    ("PLANE_API_KEY", key.as_str()),
                    ("PLANE_ENABLED", enabled),
                ],
            )
        })
    };
    // Missing: reported (exit 5), not created.
    let missing = dir.path().join("missing.db");
    let out = check(missing.clone(), "true").await.unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists(), "check created the database");
    // Not a database: exit 5.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let out = check(junk, "true").await.unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    // An empty file is reported and left as it is (serve sets it up).
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = check(empty.clone(), "false").await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("serve will set it up"), "{stdout}");
    assert!(stdout.contains("connector:       off"), "{stdout}");
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "check migrated it"
    );
}

#[tokio::test]
async fn an_ignored_delivery_is_listed_with_its_reason_and_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ignored.db");
    let id = {
        let store = SqliteStore::open(&db, StoreConfig::default()).unwrap();
        let body = br#"{"event": "issue", "action": "updated", "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "x"}}"#.to_vec();
        let head = plane_webhook::EventHead::parse(&body).unwrap();
        store
            .record(plane_webhook::NewDelivery::new(
                uuid::Uuid::new_v4(),
                &head,
                body,
            ))
            .await
            .unwrap();
        let item = store
            .claim("t", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        store
            .ignore(&item, "no handler for issue.updated")
            .await
            .unwrap();
        item.id
    };
    let db = db.to_str().unwrap();
    let table = run(
        &["deliveries", "list", "--status", "ignored", "--db", db],
        &[],
    );
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(
        table.contains("ignored") && table.contains("no handler for issue.updated"),
        "{table}"
    );
    let json = run(
        &[
            "deliveries",
            "list",
            "--status",
            "ignored",
            "--format",
            "json",
            "--db",
            db,
        ],
        &[],
    );
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["status"], "ignored");
    assert_eq!(rows[0]["note"], "no handler for issue.updated");

    let replay = run(&["deliveries", "replay", &id.to_string(), "--db", db], &[]);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let json = run(&["deliveries", "list", "--format", "json", "--db", db], &[]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[0]["status"], "pending");
    assert_eq!(rows[0]["note"], serde_json::Value::Null);
    let none = run(
        &[
            "deliveries",
            "list",
            "--status",
            "ignored",
            "--format",
            "json",
            "--db",
            db,
        ],
        &[],
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&none.stdout).unwrap(),
        serde_json::json!([])
    );
}
