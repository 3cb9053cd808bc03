//! `plane-server db backup` and `db check`, on a SQLite store that takes deliveries while
//! the backup runs, and `db migrate` of a SQLite file filled by real use into PostgreSQL
//! (the real binary, a second process, as an operator runs it).
//!
//! The PostgreSQL tests need `PLANE_TEST_DATABASE_URL` (`bash scripts/with-postgres.sh
//! cargo test -p plane-server --test db_cli`); without it they are skipped with
//! plane-postgres's message.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, PgDeadlineStore, SqliteDeadlineStore,
    StatusApplied, StatusChange, SyncRun,
};
use plane_core::oauth::TokenSet;
use plane_core::{ExposeSecret, SecretString};
use plane_postgres::testing::{self, TestDatabase};
use plane_server::token_store::{
    PendingAuthorization, PgTokenStore, SqliteTokenStore, TokenKey, TokenOwner, TokenStore,
};
use plane_webhook::{
    DeliveryStore, DuplicateBy, EventHead, NewDelivery, PgStore, RecordOutcome, SqliteStore,
    Status, StoreConfig,
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

// ---- db migrate ----

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/plane-ce/webhooks")
}

/// The bodies a real Plane CE sent (recorded), then `extra` of the same size class.
fn real_deliveries(extra: u64) -> Vec<NewDelivery> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .collect();
    names.sort();
    let mut out: Vec<NewDelivery> = names
        .iter()
        .map(|path| {
            let body = std::fs::read(path).unwrap();
            NewDelivery::new(
                uuid::Uuid::new_v4(),
                &EventHead::parse(&body).unwrap(),
                body,
            )
        })
        .collect();
    assert!(out.len() >= 5, "the recorded deliveries are missing");
    out.extend((0..extra).map(delivery));
    out
}

/// `db migrate` into the test's schema, as JSON; PGPASSWORD passed on if the test has one.
fn migrate(from: &Path, pg: &TestDatabase) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(["db", "migrate", "--format", "json", "--from"])
        .arg(from)
        .args(["--to", pg.url(), "--schema", pg.schema()])
        .env_clear()
        .env("RUST_LOG", "warn");
    if let Ok(password) = std::env::var("PGPASSWORD") {
        command.env("PGPASSWORD", password);
    }
    command.output().unwrap()
}

/// The per-table counts of a migrate's JSON: table -> (source, copied, target).
fn counts(out: &Output) -> Vec<(String, u64, u64, u64)> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["source"].as_u64().unwrap(),
                t["copied"].as_u64().unwrap(),
                t["target"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn random_key() -> TokenKey {
    let bytes: Vec<u8> = (0..32)
        .map(|_| (uuid::Uuid::new_v4().as_u128() & 0xff) as u8)
        .collect();
    TokenKey::from_base64(
        "test",
        &base64::engine::general_purpose::STANDARD.encode(bytes),
    )
    .unwrap()
}

fn token_set() -> TokenSet {
    TokenSet {
        access_token: SecretString::from(format!("fake-access-{}", uuid::Uuid::new_v4())),
        refresh_token: Some(SecretString::from(format!(
            "fake-refresh-{}",
            uuid::Uuid::new_v4()
        ))),
        expires_at: Some(Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap()),
        scope: Some("projects:read".into()),
    }
}

fn deadline(n: u32, work_item: uuid::Uuid) -> DeadlineRecord {
    DeadlineRecord {
        external_id: format!("bir:000-123-456-00000:1601-C:2026-{n:02}"),
        profile: "000-123-456-00000".into(),
        form: "1601-C".into(),
        period: format!("2026-{n:02}"),
        due_date: chrono::NaiveDate::from_ymd_opt(2026, n + 1, 10).unwrap(),
        payment_date: (n == 2).then(|| chrono::NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()),
        project_id: uuid::Uuid::from_u128(0x6f1c),
        work_item_id: Some(work_item),
        pushed: Some(format!("pushed-{n}")),
        fingerprint: Some(format!("fp-{n}")),
        status: DeadlineStatus::Pending,
        status_by: None,
        status_at: None,
    }
}

/// What a SQLite file holds after some real use, to compare the copy with.
struct Filled {
    deliveries: Vec<NewDelivery>,
    /// A delivery a worker held when the file was last written.
    leased: i64,
    /// The event whose status change was applied with its inbox item.
    applied_event: String,
    work_items: Vec<uuid::Uuid>,
    key: TokenKey,
    tokens: TokenSet,
    pending_state: String,
    verifier: String,
}

/// Fills `path` the way `serve`, `bir sync` and `oauth` do, through the stores: deliveries
/// recorded, some handled (done, noted, ignored, failed, one status change applied with
/// its item in one transaction, one left leased as by a killed worker), deadlines with a
/// sync run and status changes, a token saved twice and a pending authorization.
async fn fill(path: &Path) -> Filled {
    let deliveries = real_deliveries(22);
    let store = SqliteStore::open(path, StoreConfig::default()).unwrap();
    for d in &deliveries {
        assert!(matches!(
            store.record(d.clone()).await.unwrap(),
            RecordOutcome::New { .. }
        ));
    }

    let deadlines = SqliteDeadlineStore::open(path).unwrap();
    let work_items: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    for (n, item) in work_items.iter().enumerate() {
        deadlines
            .record(&deadline(u32::try_from(n).unwrap() + 1, *item))
            .await
            .unwrap();
    }
    deadlines
        .record_sync_run(&SyncRun {
            profile: "000-123-456-00000".into(),
            project_id: uuid::Uuid::from_u128(0x6f1c),
            finished_at: Utc::now(),
            requests: 17,
            writes: 3,
            waited: Duration::from_millis(1250),
        })
        .await
        .unwrap();
    // A status read from a listing (no event), as `bir sync` applies one.
    assert!(matches!(
        deadlines
            .apply_status(&StatusChange {
                work_item_id: work_items[1],
                status: DeadlineStatus::InProgress,
                by: Some("Ana".into()),
                at: Utc::now() - chrono::Duration::hours(1),
                event: None,
            })
            .await
            .unwrap(),
        StatusApplied::Changed { .. }
    ));

    let items = store
        .claim("worker-1", 6, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(items.len(), 6);
    // The handler's way: the status change and the item's completion in one transaction.
    let applied_event = items[0].event_key.clone();
    let change = StatusChange {
        work_item_id: work_items[0],
        status: DeadlineStatus::Filed,
        by: Some("Ben".into()),
        at: Utc::now(),
        event: Some(applied_event.clone()),
    };
    let applied = store
        .complete_with(&items[0], move |tx| {
            plane_bir::apply_status_change(tx, &change)
        })
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(applied, StatusApplied::Changed { .. }));
    store.complete(&items[1]).await.unwrap();
    store
        .complete_noted(&items[2], "the connector's own write")
        .await
        .unwrap();
    store
        .ignore(&items[3], "no handler owns event project")
        .await
        .unwrap();
    store
        .fail(&items[4], "Plane answered 502 Bad Gateway")
        .await
        .unwrap();
    let leased = items[5].id;

    let key = random_key();
    let tokens_store = SqliteTokenStore::open(path, key.clone()).unwrap();
    let owner = TokenOwner::User("ops".into());
    tokens_store.save(&owner, &token_set()).unwrap();
    let tokens = token_set();
    tokens_store.save(&owner, &tokens).unwrap();
    let verifier = format!("verifier-{}", uuid::Uuid::new_v4());
    let pending_state = format!("state-{}", uuid::Uuid::new_v4());
    tokens_store
        .save_pending(
            &pending_state,
            &PendingAuthorization {
                owner: TokenOwner::User("ops".into()),
                verifier: SecretString::from(verifier.clone()),
                redirect_uri: "https://connector.example/oauth/callback".into(),
                created_at: Utc::now(),
            },
        )
        .unwrap();
    drop((store, deadlines, tokens_store));
    Filled {
        deliveries,
        leased,
        applied_event,
        work_items,
        key,
        tokens,
        pending_state,
        verifier,
    }
}

fn sqlite_bodies(path: &Path) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c
        .prepare("SELECT id, event_key, body FROM deliveries ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A SQLite file filled by real use, moved to PostgreSQL: every table's rows, the bodies
/// and dedupe keys byte for byte, inbox state (a leased item back to pending), deadlines
/// with their status events, the token still sealed; dedupe and event dedupe survive the
/// move, new rows get ids past the copied ones, and a second run copies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_filled_by_use_moves_to_postgres_whole_and_a_second_run_copies_nothing() {
    let Some(pg) = testing::database("db_migrate").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plane.db");
    let filled = fill(&file).await;
    let expected_list = {
        let store = SqliteStore::open(&file, StoreConfig::default()).unwrap();
        let mut list = store.list(None, 1000).await.unwrap();
        for r in &mut list {
            if r.status == Status::Processing {
                r.status = Status::Pending;
            }
        }
        list
    };
    let expected_deadlines = SqliteDeadlineStore::open_read_only(&file)
        .unwrap()
        .all()
        .await
        .unwrap();
    let expected_runs = SqliteDeadlineStore::open_read_only(&file)
        .unwrap()
        .sync_runs()
        .await
        .unwrap();
    let file_bytes = std::fs::read(&file).unwrap();

    let out = migrate(&file, &pg);
    assert!(out.status.success(), "{}", text(&out));
    let n = u64::try_from(filled.deliveries.len()).unwrap();
    let expected = [
        ("deliveries", n),
        ("inbox", n),
        ("bir_deadlines", 3),
        ("bir_status_events", 2),
        ("bir_sync_runs", 1),
        ("oauth_tokens", 1),
        ("oauth_token_versions", 1),
        ("oauth_pending", 1),
    ];
    let first = counts(&out);
    assert_eq!(
        first,
        expected
            .iter()
            .map(|(t, n)| ((*t).to_owned(), *n, *n, *n))
            .collect::<Vec<_>>(),
        "{}",
        text(&out)
    );
    // The file was only read.
    assert_eq!(std::fs::read(&file).unwrap(), file_bytes);

    // Again: nothing copied, the counts still equal.
    let again = migrate(&file, &pg);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        counts(&again),
        expected
            .iter()
            .map(|(t, n)| ((*t).to_owned(), *n, 0, *n))
            .collect::<Vec<_>>()
    );

    // Deliveries: the same rows, inbox state, bodies and keys byte for byte.
    let deliveries = PgStore::open(pg.db().clone(), StoreConfig::default())
        .await
        .unwrap();
    assert_eq!(deliveries.list(None, 1000).await.unwrap(), expected_list);
    let client = pg.db().client().await.unwrap();
    let copied: Vec<(i64, Vec<u8>, Vec<u8>)> = client
        .query(
            "SELECT id, event_key, body FROM deliveries ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(copied, sqlite_bodies(&file));
    let leases: i64 = client
        .query_one(
            "SELECT count(*) FROM inbox WHERE lease_owner IS NOT NULL OR lease_until IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leases, 0);

    // Dedupe survives the move: a re-sent copy (same delivery id, or Plane CE's retry with
    // a new one) of a copied delivery is a duplicate of the copied row.
    let first_id = copied[0].0;
    let resent = filled.deliveries[0].clone();
    assert_eq!(
        deliveries.record(resent.clone()).await.unwrap(),
        RecordOutcome::Duplicate {
            id: first_id,
            by: DuplicateBy::DeliveryId
        }
    );
    let retry = NewDelivery {
        delivery_id: uuid::Uuid::new_v4(),
        ..resent
    };
    assert_eq!(
        deliveries.record(retry).await.unwrap(),
        RecordOutcome::Duplicate {
            id: first_id,
            by: DuplicateBy::SameEvent
        }
    );
    // A new delivery gets an id past the copied ones.
    let max_id = copied.iter().map(|c| c.0).max().unwrap();
    let RecordOutcome::New { id } = deliveries.record(delivery(9_999)).await.unwrap() else {
        panic!("a new delivery was taken for a duplicate");
    };
    assert!(id > max_id, "new id {id} is not past the copied {max_id}");
    // The item leased on the file is claimable at once, its attempt counted.
    let claimed = deliveries
        .claim("replica-1", 100, Duration::from_secs(60))
        .await
        .unwrap();
    let leased = claimed.iter().find(|i| i.id == filled.leased).unwrap();
    assert_eq!(leased.attempts, 2);

    // Deadlines, their status events and the sync run.
    let deadline_store = PgDeadlineStore::open(pg.db().clone()).await.unwrap();
    assert_eq!(deadline_store.all().await.unwrap(), expected_deadlines);
    assert_eq!(deadline_store.sync_runs().await.unwrap(), expected_runs);
    // The event applied on the file stays applied once.
    assert_eq!(
        deadline_store
            .apply_status(&StatusChange {
                work_item_id: filled.work_items[0],
                status: DeadlineStatus::Filed,
                by: Some("Ben".into()),
                at: Utc::now(),
                event: Some(filled.applied_event.clone()),
            })
            .await
            .unwrap(),
        StatusApplied::Duplicate
    );
    // A new status change is recorded under an id past the copied ones.
    assert!(matches!(
        deadline_store
            .apply_status(&StatusChange {
                work_item_id: filled.work_items[2],
                status: DeadlineStatus::Void,
                by: None,
                at: Utc::now(),
                event: Some("event:new-on-postgres".into()),
            })
            .await
            .unwrap(),
        StatusApplied::Changed { .. }
    ));
    let event_ids: Vec<i64> = client
        .query("SELECT id FROM bir_status_events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(event_ids.len(), 3);
    assert!(event_ids[2] > event_ids[1], "{event_ids:?}");

    // The token opens with the same key on PostgreSQL; so does the pending authorization.
    let tokens = PgTokenStore::open(pg.db().clone(), filled.key.clone())
        .await
        .unwrap();
    let owner = TokenOwner::User("ops".into());
    let loaded = tokens.load(&owner).await.unwrap().unwrap();
    assert_eq!(
        loaded.access_token.expose_secret(),
        filled.tokens.access_token.expose_secret()
    );
    assert_eq!(
        loaded.refresh_token.unwrap().expose_secret(),
        filled
            .tokens
            .refresh_token
            .as_ref()
            .unwrap()
            .expose_secret()
    );
    let pending = tokens
        .take_pending(&filled.pending_state)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.verifier.expose_secret(), filled.verifier);
    // The next write continues the versions (rollback protection carried over).
    tokens.save(&owner, &token_set()).await.unwrap();
    let version: i64 = client
        .query_one("SELECT version FROM oauth_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 3);

    // PostgreSQL now holds rows the file does not: a third run refuses, naming the tables,
    // and commits nothing.
    let third = migrate(&file, &pg);
    assert_eq!(third.status.code(), Some(1), "{}", text(&third));
    let message = text(&third);
    assert!(message.contains("deliveries: "), "{message}");
    assert!(message.contains("nothing was committed"), "{message}");
    let report: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(report["committed"], false);
}

/// A schema a replica has written to (another event under a copied id) is refused by
/// name, and the failed copy leaves PostgreSQL as it was: nothing of any component kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_into_a_schema_with_other_deliveries_is_refused_and_leaves_it_as_it_was() {
    let Some(pg) = testing::database("db_migrate_refused").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plane.db");
    fill(&file).await;
    {
        let replica = PgStore::open(pg.db().clone(), StoreConfig::default())
            .await
            .unwrap();
        assert_eq!(
            replica.record(delivery(77)).await.unwrap(),
            RecordOutcome::New { id: 1 }
        );
    }
    let out = migrate(&file, &pg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another event in PostgreSQL"),
        "{}",
        text(&out)
    );
    let client = pg.db().client().await.unwrap();
    for (table, rows) in [
        ("deliveries", 1),
        ("inbox", 1),
        ("bir_deadlines", 0),
        ("bir_status_events", 0),
        ("oauth_tokens", 0),
    ] {
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, rows, "{table}");
    }
}

/// A database that cannot be reached: a clear error naming it, never its password.
#[test]
fn a_wrong_url_says_so_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plane.db");
    drop(SqliteStore::open(&file, StoreConfig::default()).unwrap());
    for (url, code) in [
        ("postgres://plane:hunter2@127.0.0.1:1/plane", 1),
        ("postgres://plane:hunter2@127.0.0.1:1/plane?bogus=1", 2),
        ("postgres://plane@127.0.0.1:1/plane", 1),
    ] {
        let out = Command::new(BIN)
            .args(["db", "migrate", "--from"])
            .arg(&file)
            .args(["--to", url])
            .env_clear()
            .env("PGPASSWORD", "s3cret-from-env")
            .output()
            .unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(code), "{url}: {said}");
        assert!(
            said.contains("postgres://plane@127.0.0.1:1/plane"),
            "{said}"
        );
        assert!(
            !said.contains("hunter2") && !said.contains("s3cret"),
            "{said}"
        );
    }
}

/// A file whose stores are older or newer than this build is refused before PostgreSQL
/// is touched, saying what to do.
#[test]
fn a_file_at_another_schema_version_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plane.db");
    drop(SqliteStore::open(&file, StoreConfig::default()).unwrap());
    let run = || {
        Command::new(BIN)
            .args(["db", "migrate", "--from"])
            .arg(&file)
            .args(["--to", "postgres://plane@127.0.0.1:1/plane"])
            .env_clear()
            .output()
            .unwrap()
    };
    let set = |version: i64| {
        rusqlite::Connection::open(&file)
            .unwrap()
            .pragma_update(None, "user_version", version)
            .unwrap();
    };
    set(SqliteStore::SCHEMA_VERSION - 1);
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("older than this build"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("`plane-server serve`"),
        "{}",
        text(&out)
    );
    set(SqliteStore::SCHEMA_VERSION + 1);
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("newer plane-server"), "{}", text(&out));
}
