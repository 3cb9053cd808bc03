//! `plane-server db backup` and `db check`, on a SQLite store that takes deliveries while
//! the backup runs (the real binary, a second process, as an operator runs it).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plane_webhook::{
    DeliveryStore, EventHead, NewDelivery, RecordOutcome, SqliteStore, StoreConfig,
};

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");

fn delivery(n: u64) -> NewDelivery {
    // A body of the recorded deliveries' size class (about 2 KiB), distinct per n.
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "webhook_id": null, "workspace_id": null, "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}", "description_html": "{}"}}, "activity": {{"field": "name"}}}}"#,
        "x".repeat(2000)
    )
    .into_bytes();
    NewDelivery::new(
        uuid::Uuid::new_v4(),
        &EventHead::parse(&body).unwrap(),
        body,
    )
}

fn db(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("db")
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every delivery acknowledged (committed) before the backup began is in the copy, the
/// copy passes the integrity check, and deliveries kept arriving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_deliveries_arrive_holds_every_one_acknowledged_before() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("plane.db");
    let copy = dir.path().join("backup.db");
    let store = Arc::new(SqliteStore::open(&live, StoreConfig::default()).unwrap());
    let mut acknowledged = Vec::new();
    for n in 0..300 {
        let RecordOutcome::New { id } = store.record(delivery(n)).await.unwrap() else {
            panic!("duplicate");
        };
        acknowledged.push(id);
    }
    // A writer goes on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 1_000;
            while !stop.load(Ordering::Relaxed) {
                store.record(delivery(n)).await.unwrap();
                n += 1;
            }
            n - 1_000
        })
    };
    let (live_arg, copy_arg) = (live.display().to_string(), copy.display().to_string());
    let out =
        tokio::task::spawn_blocking(move || db(&["backup", "--db", &live_arg, "--to", &copy_arg]))
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    let written_meanwhile = writer.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("integrity ok"), "{}", text(&out));
    assert!(
        written_meanwhile > 0,
        "no delivery arrived during the backup"
    );

    let backup = rusqlite::Connection::open(&copy).unwrap();
    let ids: Vec<i64> = backup
        .prepare("SELECT id FROM deliveries ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for id in &acknowledged {
        assert!(ids.binary_search(id).is_ok(), "delivery {id} is missing");
    }
    // The copy is private, as the store is.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // db check on the copy: integrity ok, the deliveries' schema version named.
    let out = db(&["check", "--db", copy.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["integrity"], serde_json::json!(["ok"]));
    let deliveries = &report["schemas"][0];
    assert_eq!(deliveries["store"], "deliveries");
    assert_eq!(deliveries["version"], SqliteStore::SCHEMA_VERSION);
    assert_eq!(report["schemas"][2]["version"], serde_json::Value::Null);

    // A backup never overwrites a file.
    let before = std::fs::read(&copy).unwrap();
    let out = db(&[
        "backup",
        "--db",
        live.to_str().unwrap(),
        "--to",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the file exists"), "{}", text(&out));
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

/// A damaged file fails the check (exit 1), naming what SQLite found.
#[test]
fn a_damaged_file_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        let tx = c.transaction().unwrap();
        tx.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t (v);",
        )
        .unwrap();
        for i in 0..2000 {
            tx.execute("INSERT INTO t (v) VALUES (?1)", [format!("value {i}")])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let out = db(&["check", "--db", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("integrity:  ok"), "{}", text(&out));
    // Overwrite a page in the middle of the file (the index's or the table's).
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let out = db(&["check", "--db", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}
