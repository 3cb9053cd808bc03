//! The deadline store, one suite for both backends: every test body below takes a
//! [`Backend`] and runs once on SQLite (`<test>::sqlite`) and once on PostgreSQL
//! (`<test>::postgres`, in a throwaway schema; skipped with a note when
//! `PLANE_TEST_DATABASE_URL` is unset: `bash scripts/with-postgres.sh cargo test -p
//! plane-bir --test deadline_store`). What only one backend has (SQLite's file beside the
//! deliveries' schema) is tested at the end, for that backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use plane_bir::store::SCHEMA_VERSION;
use plane_bir::store::postgres as pg;
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, Error, PgDeadlineStore, SqliteDeadlineStore,
    StatusApplied, StatusChange, SyncRun, apply_status_change,
};
use plane_postgres::testing::TestDatabase;
use plane_webhook::{SqliteStore, StoreConfig};
use rusqlite::Connection;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// The backends.

/// What a test body needs of a backend beyond [`DeadlineStore`]: opening (as a replica
/// would, or read-only), and a look at the tables underneath.
trait Backend {
    /// A store opened for writing, its tables created or migrated. Each call is another
    /// connection (SQLite) or pool (PostgreSQL): another replica.
    async fn open(&self) -> Result<Arc<dyn DeadlineStore>, Error>;
    /// A store opened read-only: nothing created or migrated.
    async fn open_read_only(&self) -> Result<Arc<dyn DeadlineStore>, Error>;
    /// The deadline tables' version, read as a read-only opening reads it.
    async fn schema_version(&self) -> i64;
    /// Marks the tables as migrated by a newer build.
    async fn bump_version(&self);
    /// Takes the tables back to what version 1 left: no `bir_sync_runs`.
    async fn back_to_version_1(&self);
    /// The number of rows in `table`.
    async fn count(&self, table: &str) -> i64;
    /// The deadline tables that exist.
    async fn bir_tables(&self) -> Vec<String>;
    /// Applies `change` inside a transaction of the test's own (as the webhook handler
    /// does inside the inbox's), then commits it or rolls it back.
    async fn apply_in_transaction(&self, change: &StatusChange, commit: bool) -> StatusApplied;
}

/// A SQLite file holding the deliveries' schema, as `serve` leaves it.
struct Sqlite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Sqlite {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane.db");
        SqliteStore::open(&path, StoreConfig::default()).unwrap();
        Sqlite { _dir: dir, path }
    }

    fn raw(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }
}

impl Backend for Sqlite {
    async fn open(&self) -> Result<Arc<dyn DeadlineStore>, Error> {
        Ok(Arc::new(SqliteDeadlineStore::open(&self.path)?))
    }

    async fn open_read_only(&self) -> Result<Arc<dyn DeadlineStore>, Error> {
        Ok(Arc::new(SqliteDeadlineStore::open_read_only(&self.path)?))
    }

    async fn schema_version(&self) -> i64 {
        SqliteDeadlineStore::open_read_only(&self.path)
            .unwrap()
            .schema_version()
            .unwrap()
    }

    async fn bump_version(&self) {
        self.raw()
            .execute(
                "INSERT INTO bir_schema_migrations (version, applied_at) VALUES (?1, 'later')",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
    }

    async fn back_to_version_1(&self) {
        self.raw()
            .execute_batch(
                "DROP TABLE bir_sync_runs; DELETE FROM bir_schema_migrations WHERE version = 2;",
            )
            .unwrap();
    }

    async fn count(&self, table: &str) -> i64 {
        self.raw()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    async fn bir_tables(&self) -> Vec<String> {
        let raw = self.raw();
        let mut select = raw
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'bir%' \
                 ORDER BY name",
            )
            .unwrap();
        select
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    async fn apply_in_transaction(&self, change: &StatusChange, commit: bool) -> StatusApplied {
        let mut raw = self.raw();
        let tx = raw.transaction().unwrap();
        let applied = apply_status_change(&tx, change).unwrap();
        if commit {
            tx.commit().unwrap();
        }
        applied
    }
}

/// A throwaway schema in the test database.
struct Postgres {
    test: TestDatabase,
}

impl Postgres {
    async fn new(name: &str) -> Option<Self> {
        Some(Postgres {
            test: plane_postgres::testing::database(name).await?,
        })
    }

    async fn execute(&self, sql: &str) {
        self.test
            .db()
            .client()
            .await
            .unwrap()
            .batch_execute(sql)
            .await
            .unwrap();
    }
}

impl Backend for Postgres {
    async fn open(&self) -> Result<Arc<dyn DeadlineStore>, Error> {
        // A pool of its own: another replica.
        let db = self.test.options().connect().await?;
        Ok(Arc::new(PgDeadlineStore::open(db).await?))
    }

    async fn open_read_only(&self) -> Result<Arc<dyn DeadlineStore>, Error> {
        let db = self.test.options().connect().await?;
        Ok(Arc::new(PgDeadlineStore::open_read_only(db).await?))
    }

    async fn schema_version(&self) -> i64 {
        PgDeadlineStore::open_read_only(self.test.db().clone())
            .await
            .unwrap()
            .schema_version()
            .await
            .unwrap()
    }

    async fn bump_version(&self) {
        self.execute(&format!(
            "UPDATE schema_migrations SET version = {} WHERE component = '{}'",
            SCHEMA_VERSION + 1,
            pg::COMPONENT
        ))
        .await;
    }

    async fn back_to_version_1(&self) {
        self.execute(&format!(
            "DROP TABLE bir_sync_runs; \
             UPDATE schema_migrations SET version = 1 WHERE component = '{}'",
            pg::COMPONENT
        ))
        .await;
    }

    async fn count(&self, table: &str) -> i64 {
        self.test
            .db()
            .client()
            .await
            .unwrap()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn bir_tables(&self) -> Vec<String> {
        self.test
            .db()
            .client()
            .await
            .unwrap()
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 \
                 AND tablename LIKE 'bir%' ORDER BY tablename",
                &[&self.test.schema()],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn apply_in_transaction(&self, change: &StatusChange, commit: bool) -> StatusApplied {
        let mut client = self.test.db().client().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let applied = pg::apply_status_change(&tx, change).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        applied
    }
}

/// Each test body, once per backend: `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(&super::Sqlite::new()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = super::Postgres::new(stringify!($name)).await else {
                    return;
                };
                super::$name(&backend).await;
            }
        }
    )*};
}

on_both_backends!(
    a_deadline_reads_back_as_recorded_in_due_date_order,
    a_status_change_is_applied_once_in_order_and_only_to_ours,
    a_status_change_rolls_back_with_the_callers_transaction,
    a_work_item_belongs_to_one_deadline,
    one_event_raced_by_two_replicas_is_applied_once,
    concurrent_changes_of_one_deadline_keep_the_newest,
    a_newer_schema_is_refused_and_left_untouched,
    a_store_nobody_migrated_reads_as_empty_and_read_only_creates_nothing,
    a_version_1_store_is_migrated_to_version_2_with_its_deadlines_kept,
);

// ---------------------------------------------------------------------------------------
// The suite.

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

fn change(work_item: Uuid, status: DeadlineStatus, when: &str, event: &str) -> StatusChange {
    StatusChange {
        work_item_id: work_item,
        status,
        by: Some("ana".into()),
        at: at(when),
        event: Some(event.into()),
    }
}

/// The version a "schema too new" error found, whichever backend said it.
fn too_new(e: &Error) -> Option<i64> {
    match e {
        Error::SchemaTooNew { found, .. } => Some(*found),
        Error::Postgres(plane_postgres::Error::SchemaTooNew { found, .. }) => Some(*found),
        _ => None,
    }
}

async fn a_deadline_reads_back_as_recorded_in_due_date_order(b: &impl Backend) {
    let store = b.open().await.unwrap();
    let d = |day: u32| NaiveDate::from_ymd_opt(2026, 4, day).unwrap();
    // Every column set, and byte order for forms ("1601-C" < "1601C" < "2550Q" < "a").
    let full = DeadlineRecord {
        form: "1601C".into(),
        period: "2026-Q1".into(),
        due_date: d(15),
        payment_date: Some(d(20)),
        work_item_id: None,
        pushed: None,
        fingerprint: None,
        ..record("bir:1:1601C:2026-Q1", Uuid::new_v4())
    };
    let first = DeadlineRecord {
        due_date: d(10),
        ..record("bir:1:2550Q:2026-Q1", Uuid::new_v4())
    };
    let same_day = record("bir:1:1601-C:2026-03", Uuid::new_v4());
    let lower = DeadlineRecord {
        form: "a".into(),
        ..record("bir:1:a:2026-03", Uuid::new_v4())
    };
    let other_profile = DeadlineRecord {
        profile: "other".into(),
        due_date: d(1),
        ..record("bir:2:1601-C:2026-03", Uuid::new_v4())
    };
    for r in [&lower, &full, &other_profile, &first, &same_day] {
        store.record(r).await.unwrap();
    }
    let all = store.all().await.unwrap();
    assert_eq!(
        all,
        [
            other_profile.clone(),
            first.clone(),
            same_day.clone(),
            full.clone(),
            lower.clone()
        ]
    );
    let mine = store.deadlines_of("123456789000").await.unwrap();
    assert_eq!(mine, [first, same_day.clone(), full, lower]);
    assert!(store.deadlines_of("nobody").await.unwrap().is_empty());

    // A change's time is kept to the microsecond, by whom, and it survives a later sync.
    let item = same_day.work_item_id.unwrap();
    let filed = StatusChange {
        at: at("2026-04-10T09:00:00.123456789Z"),
        ..change(item, DeadlineStatus::Filed, "2026-04-10T09:00:00Z", "e-1")
    };
    store.apply_status(&filed).await.unwrap();
    let moved = DeadlineRecord {
        due_date: d(16),
        fingerprint: Some("new".into()),
        ..same_day.clone()
    };
    store.record(&moved).await.unwrap();
    let row = store
        .all()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.external_id == same_day.external_id)
        .unwrap();
    assert_eq!(
        row,
        DeadlineRecord {
            status: DeadlineStatus::Filed,
            status_by: Some("ana".into()),
            status_at: Some(at("2026-04-10T09:00:00.123456Z")),
            ..moved
        }
    );
}

async fn a_status_change_is_applied_once_in_order_and_only_to_ours(b: &impl Backend) {
    let store = b.open().await.unwrap();
    let item = Uuid::new_v4();
    store
        .record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    let filed = change(
        item,
        DeadlineStatus::Filed,
        "2026-04-10T09:00:00Z",
        "delivery-1",
    );
    assert_eq!(
        store.apply_status(&filed).await.unwrap(),
        StatusApplied::Changed {
            from: DeadlineStatus::Pending,
            to: DeadlineStatus::Filed
        }
    );
    assert_eq!(
        store.apply_status(&filed).await.unwrap(),
        StatusApplied::Duplicate
    );
    // An older event arriving late changes nothing.
    let stale = change(
        item,
        DeadlineStatus::InProgress,
        "2026-04-09T09:00:00Z",
        "delivery-0",
    );
    assert_eq!(
        store.apply_status(&stale).await.unwrap(),
        StatusApplied::Stale
    );
    // The same status again, later, under another event (or none: a listing's).
    let again = change(
        item,
        DeadlineStatus::Filed,
        "2026-04-11T09:00:00Z",
        "delivery-3",
    );
    assert_eq!(
        store.apply_status(&again).await.unwrap(),
        StatusApplied::Unchanged
    );
    let listed = StatusChange {
        event: None,
        ..again.clone()
    };
    assert_eq!(
        store.apply_status(&listed).await.unwrap(),
        StatusApplied::Unchanged
    );
    let not_ours = StatusChange {
        work_item_id: Uuid::new_v4(),
        event: Some("delivery-2".into()),
        ..filed.clone()
    };
    assert_eq!(
        store.apply_status(&not_ours).await.unwrap(),
        StatusApplied::NotOurs
    );
    assert_eq!(b.count("bir_status_events").await, 1);

    let row = &store.all().await.unwrap()[0];
    assert_eq!(row.status, DeadlineStatus::Filed);
    assert_eq!(row.status_by.as_deref(), Some("ana"));
    assert_eq!(row.status_at, Some(at("2026-04-10T09:00:00Z")));

    // A later sync's record keeps the status (only status changes change it).
    store
        .record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    assert_eq!(store.all().await.unwrap()[0].status, DeadlineStatus::Filed);

    // Reopened: recorded as a change of its own.
    let reopened = change(
        item,
        DeadlineStatus::Pending,
        "2026-04-12T09:00:00Z",
        "delivery-4",
    );
    assert_eq!(
        store.apply_status(&reopened).await.unwrap(),
        StatusApplied::Changed {
            from: DeadlineStatus::Filed,
            to: DeadlineStatus::Pending
        }
    );
    assert_eq!(b.count("bir_status_events").await, 2);
}

async fn a_status_change_rolls_back_with_the_callers_transaction(b: &impl Backend) {
    let store = b.open().await.unwrap();
    let item = Uuid::new_v4();
    store
        .record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    let void = StatusChange {
        by: None,
        ..change(
            item,
            DeadlineStatus::Void,
            "2026-04-10T09:00:00Z",
            "delivery-9",
        )
    };
    // Rolled back: the caller's inbox update failed, say.
    let applied = b.apply_in_transaction(&void, false).await;
    assert!(matches!(applied, StatusApplied::Changed { .. }));
    assert_eq!(
        store.all().await.unwrap()[0].status,
        DeadlineStatus::Pending
    );
    assert_eq!(b.count("bir_status_events").await, 0);
    // The worker that takes the item over applies it, once.
    let applied = b.apply_in_transaction(&void, true).await;
    assert!(matches!(applied, StatusApplied::Changed { .. }));
    assert_eq!(store.all().await.unwrap()[0].status, DeadlineStatus::Void);
    assert_eq!(
        b.apply_in_transaction(&void, true).await,
        StatusApplied::Duplicate
    );
}

async fn a_work_item_belongs_to_one_deadline(b: &impl Backend) {
    let store = b.open().await.unwrap();
    let item = Uuid::new_v4();
    store
        .record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    let err = store
        .record(&record("bir:1:1601-C:2026-04", item))
        .await
        .expect_err("a second deadline with the same work item");
    assert!(
        err.to_string().contains("record a pushed deadline"),
        "{err}"
    );
    // Deadlines without a work item yet are many.
    for period in ["2026-05", "2026-06"] {
        let r = DeadlineRecord {
            work_item_id: None,
            ..record(&format!("bir:1:1601-C:{period}"), Uuid::new_v4())
        };
        store.record(&r).await.unwrap();
    }
    assert_eq!(store.all().await.unwrap().len(), 3);
}

/// Two replicas (two connections or pools) apply the same event at once, many times
/// over: it changes the status once and is recorded once; the others see a duplicate.
async fn one_event_raced_by_two_replicas_is_applied_once(b: &impl Backend) {
    let (one, two) = (b.open().await.unwrap(), b.open().await.unwrap());
    let item = Uuid::new_v4();
    one.record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    for round in 0..10 {
        let status = if round % 2 == 0 {
            DeadlineStatus::Filed
        } else {
            DeadlineStatus::Pending
        };
        let c = change(
            item,
            status,
            &format!("2026-04-10T09:00:{round:02}Z"),
            &format!("delivery-{round}"),
        );
        let racers: Vec<_> = (0..6)
            .map(|i| {
                let store = if i % 2 == 0 { one.clone() } else { two.clone() };
                let c = c.clone();
                tokio::spawn(async move { store.apply_status(&c).await })
            })
            .collect();
        let mut changed = 0;
        for racer in racers {
            match racer.await.unwrap().unwrap() {
                StatusApplied::Changed { .. } => changed += 1,
                StatusApplied::Duplicate => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(changed, 1, "round {round}");
        assert_eq!(b.count("bir_status_events").await, round + 1);
    }
}

/// Changes of one deadline from two replicas at once (the webhook handler on one, `bir
/// sync` on the other), in any order: the newest wins, whatever committed last.
async fn concurrent_changes_of_one_deadline_keep_the_newest(b: &impl Backend) {
    let (one, two) = (b.open().await.unwrap(), b.open().await.unwrap());
    for round in 0..10 {
        let item = Uuid::new_v4();
        one.record(&record(&format!("bir:1:1601-C:2026-{round}"), item))
            .await
            .unwrap();
        let newer = change(
            item,
            DeadlineStatus::Filed,
            "2026-04-10T09:00:01Z",
            &format!("new-{round}"),
        );
        let older = change(
            item,
            DeadlineStatus::InProgress,
            "2026-04-10T09:00:00Z",
            &format!("old-{round}"),
        );
        let (first, second) = if round % 2 == 0 {
            (one.clone(), two.clone())
        } else {
            (two.clone(), one.clone())
        };
        let (x, y) = tokio::join!(
            tokio::spawn(async move { first.apply_status(&older).await }),
            tokio::spawn(async move { second.apply_status(&newer).await }),
        );
        let (older, newer) = (x.unwrap().unwrap(), y.unwrap().unwrap());
        assert!(
            matches!(
                (older, newer),
                (StatusApplied::Stale, StatusApplied::Changed { .. })
                    | (
                        StatusApplied::Changed { .. },
                        StatusApplied::Changed {
                            from: DeadlineStatus::InProgress,
                            ..
                        }
                    )
            ),
            "round {round}: {older:?} {newer:?}"
        );
        let row = one
            .all()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.work_item_id == Some(item))
            .unwrap();
        assert_eq!(
            (row.status, row.status_at),
            (DeadlineStatus::Filed, Some(at("2026-04-10T09:00:01Z"))),
            "round {round}"
        );
    }
}

async fn a_newer_schema_is_refused_and_left_untouched(b: &impl Backend) {
    b.open()
        .await
        .unwrap()
        .record(&record("bir:1:1601-C:2026-03", Uuid::new_v4()))
        .await
        .unwrap();
    b.bump_version().await;
    for err in [
        b.open().await.err().expect("opening a newer schema"),
        b.open_read_only()
            .await
            .err()
            .expect("reading a newer schema"),
    ] {
        assert_eq!(too_new(&err), Some(SCHEMA_VERSION + 1), "{err}");
        let text = err.to_string();
        assert!(text.contains("newer than this build knows"), "{text}");
    }
    assert_eq!(b.count("bir_deadlines").await, 1, "nothing stored is lost");
}

async fn a_store_nobody_migrated_reads_as_empty_and_read_only_creates_nothing(b: &impl Backend) {
    let store = b.open_read_only().await.unwrap();
    assert!(store.all().await.unwrap().is_empty());
    assert!(store.deadlines_of("x").await.unwrap().is_empty());
    assert_eq!(store.sync_runs().await.unwrap(), []);
    assert_eq!(b.schema_version().await, 0);
    assert_eq!(b.bir_tables().await, Vec::<String>::new());

    b.open().await.unwrap();
    assert_eq!(b.schema_version().await, SCHEMA_VERSION);
    let tables = b.bir_tables().await;
    for table in ["bir_deadlines", "bir_status_events", "bir_sync_runs"] {
        assert!(tables.iter().any(|t| t == table), "{table}: {tables:?}");
    }
    // Opening again (another replica starting) migrates nothing more.
    b.open().await.unwrap();
    assert_eq!(b.schema_version().await, SCHEMA_VERSION);
}

/// A store the build before wrote (schema version 1, no `bir_sync_runs`) is read as it
/// is read-only (no sync runs yet), and migrated to version 2 by a writable opening, its
/// deadlines kept.
async fn a_version_1_store_is_migrated_to_version_2_with_its_deadlines_kept(b: &impl Backend) {
    let item = Uuid::new_v4();
    b.open()
        .await
        .unwrap()
        .record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    b.back_to_version_1().await;

    let old = b.open_read_only().await.unwrap();
    assert_eq!(b.schema_version().await, 1);
    assert_eq!(old.sync_runs().await.unwrap(), []);
    assert_eq!(old.all().await.unwrap().len(), 1);
    drop(old);

    let store = b.open().await.unwrap();
    assert_eq!((b.schema_version().await, SCHEMA_VERSION), (2, 2));
    assert_eq!(store.all().await.unwrap()[0].work_item_id, Some(item));
    let run = SyncRun {
        profile: "123456789000".into(),
        project_id: Uuid::new_v4(),
        finished_at: at("2026-03-01T10:00:00.123456Z"),
        requests: 46,
        writes: 43,
        waited: Duration::from_millis(2500),
    };
    store.record_sync_run(&run).await.unwrap();
    let later = SyncRun {
        finished_at: at("2026-03-02T10:00:00Z"),
        requests: 3,
        writes: 0,
        waited: Duration::ZERO,
        ..run.clone()
    };
    // "Name..." sorts before "name..." byte-wise, whatever the database's locale.
    let other = SyncRun {
        profile: "name-sari-sari".into(),
        ..run.clone()
    };
    let upper = SyncRun {
        profile: "Name-upper".into(),
        ..run.clone()
    };
    store.record_sync_run(&other).await.unwrap();
    assert_eq!(store.sync_runs().await.unwrap(), [run, other.clone()]);
    store.record_sync_run(&later).await.unwrap();
    store.record_sync_run(&upper).await.unwrap();
    assert_eq!(
        b.open_read_only().await.unwrap().sync_runs().await.unwrap(),
        [later, upper, other],
        "one row per profile, the latest"
    );
}

// ---------------------------------------------------------------------------------------
// SQLite only: the store shares the deliveries' file.

#[tokio::test]
async fn the_deadline_schema_lives_beside_the_delivery_schema_without_touching_user_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    let deliveries = SqliteStore::open(&path, StoreConfig::default()).unwrap();
    let delivery_version = SqliteStore::inspect_schema_version(&path).unwrap();
    assert!(delivery_version > 0);

    let store = SqliteDeadlineStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let item = Uuid::new_v4();
    store
        .record(&record("bir:1:1601-C:2026-03", item))
        .await
        .unwrap();
    drop(store);
    drop(deliveries);

    // Both reopen; the delivery store's user_version is as it left it.
    assert_eq!(
        SqliteStore::inspect_schema_version(&path).unwrap(),
        delivery_version
    );
    let _deliveries = SqliteStore::open(&path, StoreConfig::default()).unwrap();
    let store = SqliteDeadlineStore::open(&path).unwrap();
    let rows = store.all().await.unwrap();
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
fn read_only_opening_of_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let err = SqliteDeadlineStore::open_read_only(&missing).unwrap_err();
    assert!(err.to_string().contains("bir sync"), "{err}");
    assert!(!missing.exists());
}

/// Outside a Tokio runtime (a command line before it starts one), the SQLite store's
/// futures run where they are polled.
#[test]
fn the_sqlite_store_answers_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteDeadlineStore::open(dir.path().join("plane.db")).unwrap();
    let item = Uuid::new_v4();
    futures::executor::block_on(store.record(&record("bir:1:1601-C:2026-03", item))).unwrap();
    let rows = futures::executor::block_on(store.all()).unwrap();
    assert_eq!(rows[0].work_item_id, Some(item));
}
