//! The SQLite deadline store: its own migrations beside plane-webhook's delivery schema in
//! one file, a newer schema refused untouched, and status changes applied once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, NaiveDate, Utc};
use plane_bir::store::SCHEMA_VERSION;
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, Error, SqliteDeadlineStore, StatusApplied,
    StatusChange, apply_status_change,
};
use plane_webhook::{SqliteStore, StoreConfig};
use rusqlite::Connection;
use uuid::Uuid;

fn record(external_id: &str, work_item: Uuid) -> DeadlineRecord {
    DeadlineRecord {
        external_id: external_id.into(),
        profile: "123456789000".into(),
        form: "1601-C".into(),
        period: "2026-03".into(),
        due_date: NaiveDate::from_ymd_opt(2026, 4, 15).unwrap(),
        payment_date: None,
        project_id: Uuid::new_v4(),
        work_item_id: Some(work_item),
        pushed: Some("abc:medium".into()),
        fingerprint: Some("def".into()),
        status: DeadlineStatus::Pending,
        status_by: None,
        status_at: None,
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[test]
fn the_deadline_schema_lives_beside_the_delivery_schema_without_touching_user_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    let deliveries = SqliteStore::open(&path, StoreConfig::default()).unwrap();
    let delivery_version = SqliteStore::inspect_schema_version(&path).unwrap();
    assert!(delivery_version > 0);

    let store = SqliteDeadlineStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let item = Uuid::new_v4();
    store.record(&record("bir:1:1601-C:2026-03", item)).unwrap();
    drop(store);
    drop(deliveries);

    // Both reopen; the delivery store's user_version is as it left it.
    assert_eq!(
        SqliteStore::inspect_schema_version(&path).unwrap(),
        delivery_version
    );
    let _deliveries = SqliteStore::open(&path, StoreConfig::default()).unwrap();
    let store = SqliteDeadlineStore::open(&path).unwrap();
    let rows = store.all().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].work_item_id, Some(item));
    assert_eq!(rows[0].pushed.as_deref(), Some("abc:medium"));

    // Deadline store first, delivery store second: also fine.
    let other = dir.path().join("other.db");
    SqliteDeadlineStore::open(&other).unwrap();
    SqliteStore::open(&other, StoreConfig::default()).unwrap();
    assert_eq!(
        SqliteStore::inspect_schema_version(&other).unwrap(),
        delivery_version
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    SqliteDeadlineStore::open(&path)
        .unwrap()
        .record(&record("bir:1:1601-C:2026-03", Uuid::new_v4()))
        .unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO bir_schema_migrations (version, applied_at) VALUES (?1, 'later')",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(raw);

    for result in [
        SqliteDeadlineStore::open(&path),
        SqliteDeadlineStore::open_read_only(&path),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("newer than this build knows"), "{text}");
    }
    let raw = Connection::open(&path).unwrap();
    let rows: i64 = raw
        .query_row("SELECT COUNT(*) FROM bir_deadlines", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "nothing stored is lost");
}

#[test]
fn read_only_opening_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let err = SqliteDeadlineStore::open_read_only(&missing).unwrap_err();
    assert!(err.to_string().contains("bir sync"), "{err}");
    assert!(!missing.exists());
    // A delivery-only file reads as no deadlines.
    let path = dir.path().join("plane.db");
    SqliteStore::open(&path, StoreConfig::default()).unwrap();
    let store = SqliteDeadlineStore::open_read_only(&path).unwrap();
    assert!(store.all().unwrap().is_empty());
    assert_eq!(store.schema_version().unwrap(), 0);
}

#[test]
fn a_status_change_is_applied_once_in_order_and_only_to_ours() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteDeadlineStore::open(dir.path().join("plane.db")).unwrap();
    let item = Uuid::new_v4();
    store.record(&record("bir:1:1601-C:2026-03", item)).unwrap();
    let filed = StatusChange {
        work_item_id: item,
        status: DeadlineStatus::Filed,
        by: Some("ana".into()),
        at: at("2026-04-10T09:00:00Z"),
        event: Some("delivery-1".into()),
    };
    assert_eq!(
        store.apply_status(&filed).unwrap(),
        StatusApplied::Changed {
            from: DeadlineStatus::Pending,
            to: DeadlineStatus::Filed
        }
    );
    assert_eq!(
        store.apply_status(&filed).unwrap(),
        StatusApplied::Duplicate
    );
    // An older event arriving late changes nothing.
    let stale = StatusChange {
        status: DeadlineStatus::InProgress,
        at: at("2026-04-09T09:00:00Z"),
        event: Some("delivery-0".into()),
        ..filed.clone()
    };
    assert_eq!(store.apply_status(&stale).unwrap(), StatusApplied::Stale);
    let not_ours = StatusChange {
        work_item_id: Uuid::new_v4(),
        event: Some("delivery-2".into()),
        ..filed.clone()
    };
    assert_eq!(
        store.apply_status(&not_ours).unwrap(),
        StatusApplied::NotOurs
    );

    let row = &store.all().unwrap()[0];
    assert_eq!(row.status, DeadlineStatus::Filed);
    assert_eq!(row.status_by.as_deref(), Some("ana"));
    assert_eq!(row.status_at, Some(at("2026-04-10T09:00:00Z")));

    // A later sync's record keeps the status (only status changes change it).
    store.record(&record("bir:1:1601-C:2026-03", item)).unwrap();
    assert_eq!(store.all().unwrap()[0].status, DeadlineStatus::Filed);
}

#[test]
fn a_status_change_rolls_back_with_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    let store = SqliteDeadlineStore::open(&path).unwrap();
    let item = Uuid::new_v4();
    store.record(&record("bir:1:1601-C:2026-03", item)).unwrap();
    let change = StatusChange {
        work_item_id: item,
        status: DeadlineStatus::Void,
        by: None,
        at: at("2026-04-10T09:00:00Z"),
        event: Some("delivery-9".into()),
    };
    let mut connection = Connection::open(&path).unwrap();
    {
        let tx = connection.transaction().unwrap();
        let applied = apply_status_change(&tx, &change).unwrap();
        assert!(matches!(applied, StatusApplied::Changed { .. }));
        // Dropped without commit: the caller's inbox update failed, say.
    }
    assert_eq!(store.all().unwrap()[0].status, DeadlineStatus::Pending);
    let tx = connection.transaction().unwrap();
    apply_status_change(&tx, &change).unwrap();
    tx.commit().unwrap();
    assert_eq!(store.all().unwrap()[0].status, DeadlineStatus::Void);
}

/// A file written by the build before (schema version 1, no `bir_sync_runs`) is read
/// as it is read-only (no sync runs yet), and migrated to version 2 by a writable
/// opening, its deadlines kept.
#[test]
fn a_version_1_file_is_migrated_to_version_2_with_its_deadlines_kept() {
    use plane_bir::SyncRun;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    let item = Uuid::new_v4();
    SqliteDeadlineStore::open(&path)
        .unwrap()
        .record(&record("bir:1:1601-C:2026-03", item))
        .unwrap();
    // What version 1 left: the same, without migration 2.
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE bir_sync_runs; DELETE FROM bir_schema_migrations WHERE version = 2;",
    )
    .unwrap();
    drop(raw);

    let old = SqliteDeadlineStore::open_read_only(&path).unwrap();
    assert_eq!(old.schema_version().unwrap(), 1);
    assert_eq!(old.sync_runs().unwrap(), []);
    assert_eq!(old.all().unwrap().len(), 1);
    drop(old);

    let store = SqliteDeadlineStore::open(&path).unwrap();
    assert_eq!((store.schema_version().unwrap(), SCHEMA_VERSION), (2, 2));
    assert_eq!(store.all().unwrap()[0].work_item_id, Some(item));
    let run = SyncRun {
        profile: "123456789000".into(),
        project_id: Uuid::new_v4(),
        finished_at: at("2026-03-01T10:00:00.123456Z"),
        requests: 46,
        writes: 43,
        waited: std::time::Duration::from_millis(2500),
    };
    store.record_sync_run(&run).unwrap();
    let later = SyncRun {
        finished_at: at("2026-03-02T10:00:00Z"),
        requests: 3,
        writes: 0,
        waited: std::time::Duration::ZERO,
        ..run.clone()
    };
    let other = SyncRun {
        profile: "name-sari-sari".into(),
        ..run.clone()
    };
    store.record_sync_run(&other).unwrap();
    assert_eq!(store.sync_runs().unwrap(), [run, other.clone()]);
    store.record_sync_run(&later).unwrap();
    assert_eq!(
        SqliteDeadlineStore::open_read_only(&path)
            .unwrap()
            .sync_runs()
            .unwrap(),
        [later, other],
        "one row per profile, the latest"
    );
}
