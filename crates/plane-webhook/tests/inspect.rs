//! `SqliteStore::inspect_schema_version` and `PgStore::inspect_schema_version`: read,
//! never create or migrate; `inspect_inbox` reads the same snapshot from either.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_postgres::testing;
use plane_webhook::{
    DeliveryStore, Error, EventHead, ManualClock, NewDelivery, PgStore, SqliteStore, StoreConfig,
};
use uuid::Uuid;

#[test]
fn a_missing_file_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = SqliteStore::inspect_schema_version(&path).unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    assert!(err.to_string().contains("no such file"), "{err}");
    assert!(!path.exists(), "inspecting created the file");
}

#[test]
fn an_empty_file_is_version_0_and_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(SqliteStore::inspect_schema_version(&path).unwrap(), 0);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "inspecting migrated the file"
    );
}

#[test]
fn a_store_reports_the_version_this_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, StoreConfig::default()).unwrap());
    let before = std::fs::read(&path).unwrap();
    assert_eq!(
        SqliteStore::inspect_schema_version(&path).unwrap(),
        SqliteStore::SCHEMA_VERSION
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
}

#[test]
fn a_file_that_is_not_a_database_or_is_too_new_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::inspect_schema_version(&junk).unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");

    let newer = dir.path().join("newer.db");
    let connection = rusqlite::Connection::open(&newer).unwrap();
    connection
        .pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1)
        .unwrap();
    drop(connection);
    let err = SqliteStore::inspect_schema_version(&newer).unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
}

// PostgreSQL: `PgStore::inspect_schema_version` and `PgStore::inspect_inbox`, skipped
// without `PLANE_TEST_DATABASE_URL` (see `plane_postgres::testing`).

const T0: i64 = 1_795_614_000_000;

fn delivery(n: u8) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}}}"#
    )
    .into_bytes();
    let id = Uuid::from_u128(u128::from(n) + 1);
    NewDelivery::new(id, &EventHead::parse(&body).unwrap(), body)
}

/// The same history on any store: one done, one dead, one leased, two pending,
/// recorded a minute apart.
async fn history(store: &dyn DeliveryStore, clock: &ManualClock) {
    for n in 0..5 {
        store.record(delivery(n)).await.unwrap();
        clock.advance(Duration::from_secs(60));
    }
    let lease = Duration::from_secs(30);
    let done = store.claim("w", 1, lease).await.unwrap().remove(0);
    store.complete(&done).await.unwrap();
    let dead = store.claim("w", 1, lease).await.unwrap().remove(0);
    store.fail(&dead, "Plane said 400").await.unwrap();
    store.claim("w", 1, lease).await.unwrap();
}

fn config(clock: &Arc<ManualClock>) -> StoreConfig {
    StoreConfig {
        max_attempts: 1,
        clock: clock.clone(),
        ..StoreConfig::default()
    }
}

#[tokio::test]
async fn postgres_reports_the_version_and_refuses_a_newer_one() {
    let Some(pg) = testing::database("inspect_version").await else {
        return;
    };
    assert_eq!(PgStore::inspect_schema_version(pg.db()).await.unwrap(), 0);
    assert_eq!(PgStore::inspect_inbox(pg.db(), 5).await.unwrap(), None);
    drop(
        PgStore::open(pg.db().clone(), StoreConfig::default())
            .await
            .unwrap(),
    );
    assert_eq!(
        PgStore::inspect_schema_version(pg.db()).await.unwrap(),
        PgStore::SCHEMA_VERSION
    );
    pg.db()
        .client()
        .await
        .unwrap()
        .execute(
            "UPDATE schema_migrations SET version = version + 1 WHERE component = 'deliveries'",
            &[],
        )
        .await
        .unwrap();
    let err = PgStore::inspect_schema_version(pg.db()).await.unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
    let err = PgStore::inspect_inbox(pg.db(), 5).await.unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
}

#[tokio::test]
async fn both_backends_inspect_the_same_inbox_alike() {
    let Some(pg) = testing::database("inspect_inbox").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let clock = Arc::new(ManualClock::new(T0));
    let sqlite = SqliteStore::open(&path, config(&clock)).unwrap();
    history(&sqlite, &clock).await;
    let from_sqlite = SqliteStore::inspect_inbox(&path, 10).unwrap().unwrap();

    let clock = Arc::new(ManualClock::new(T0));
    let store = PgStore::open(pg.db().clone(), config(&clock))
        .await
        .unwrap();
    history(&store, &clock).await;
    let from_postgres = PgStore::inspect_inbox(store.database(), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from_postgres, from_sqlite);

    let s = &from_postgres.stats;
    assert_eq!(
        (s.pending, s.processing, s.done, s.dead),
        (2, 1, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.oldest_unfinished, Some(T0 + 2 * 60_000));
    let waiting: Vec<_> = from_postgres.waiting.iter().map(|r| r.id).collect();
    assert_eq!(waiting, [3, 4, 5], "oldest first");
    assert_eq!(from_postgres.dead.len(), 1);
    assert_eq!(
        from_postgres.dead[0].last_error.as_deref(),
        Some("Plane said 400")
    );
    // At most `limit` of each.
    let one = PgStore::inspect_inbox(store.database(), 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.waiting.len(), 1);
}
