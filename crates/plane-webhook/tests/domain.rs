//! `SqliteStore`'s seam for domain crates sharing the database file:
//! `migrate`, `write` and `complete_with` (a change applied with the inbox item
//! that caused it, exactly once).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_webhook::{
    DeliveryStore, Error, EventHead, InboxItem, ManualClock, NewDelivery, SqliteStore, Status,
    StoreConfig,
};
use rusqlite::Connection;
use uuid::Uuid;

const T0: i64 = 1_795_614_000_000;
const LEASE: Duration = Duration::from_secs(30);
const STEPS: [&str; 2] = [
    "CREATE TABLE toy (key TEXT PRIMARY KEY, status TEXT NOT NULL)",
    "CREATE TABLE toy_events (key TEXT NOT NULL, event_key TEXT NOT NULL)",
];

fn delivery(n: u32) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}}}"#
    )
    .into_bytes();
    NewDelivery::new(Uuid::new_v4(), &EventHead::parse(&body).unwrap(), body)
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    store: SqliteStore,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let clock = Arc::new(ManualClock::new(T0));
    let store = SqliteStore::open(
        &path,
        StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        },
    )
    .unwrap();
    assert_eq!(store.migrate("toy", &STEPS).await.unwrap(), 2);
    Fixture {
        _dir: dir,
        path,
        clock,
        store,
    }
}

impl Fixture {
    async fn claimed(&self, n: u32) -> InboxItem {
        self.store.record(delivery(n)).await.unwrap();
        self.store.claim("w", 1, LEASE).await.unwrap().remove(0)
    }

    /// Read from a connection of its own: only what was committed.
    fn toy_rows(&self) -> Vec<(String, String)> {
        let connection = Connection::open(&self.path).unwrap();
        let mut stmt = connection
            .prepare("SELECT key, status FROM toy ORDER BY key")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    async fn status_of(&self, id: i64) -> Status {
        let rows = self.store.list(None, 100).await.unwrap();
        rows.into_iter().find(|r| r.id == id).unwrap().status
    }
}

fn file_user_version(path: &std::path::Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn complete_with_applies_the_change_and_finishes_the_item_together() {
    let f = fixture().await;
    let item = f.claimed(1).await;
    let key = item.event_key.clone();
    let applied = f
        .store
        .complete_with(&item, move |tx| {
            tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", [])?;
            tx.execute("INSERT INTO toy_events VALUES ('d1', ?1)", [key])
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied, 1);
    assert_eq!(f.toy_rows(), [("d1".to_owned(), "filed".to_owned())]);
    assert_eq!(f.status_of(item.id).await, Status::Done);
    // Done: a second completion (a retry after a lost answer) cannot apply it again.
    let again = f
        .store
        .complete_with(&item, |tx| {
            tx.execute("UPDATE toy SET status = 'twice'", [])
        })
        .await;
    assert!(matches!(again, Err(Error::LeaseLost { .. })), "{again:?}");
    assert_eq!(f.toy_rows(), [("d1".to_owned(), "filed".to_owned())]);
}

#[tokio::test]
async fn a_failing_closure_is_rolled_back_and_the_item_stays_leased() {
    let f = fixture().await;
    let item = f.claimed(1).await;
    let answer = f
        .store
        .complete_with(&item, |tx| {
            tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", [])?;
            // The second write breaks the primary key: the first must go too.
            tx.execute("INSERT INTO toy VALUES ('d1', 'again')", [])
        })
        .await
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert!(f.toy_rows().is_empty(), "half a change was kept");
    assert_eq!(f.status_of(item.id).await, Status::Processing);
    // The same claim can still fail it (retried later), as the worker does.
    f.store.fail(&item, "domain error").await.unwrap();
    assert_eq!(f.status_of(item.id).await, Status::Failed);
}

#[tokio::test]
async fn a_panicking_closure_is_rolled_back_and_the_store_keeps_working() {
    let f = fixture().await;
    let item = f.claimed(1).await;
    let answer = f
        .store
        .complete_with(&item, |tx| -> rusqlite::Result<()> {
            tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", [])?;
            panic!("bug in a handler")
        })
        .await;
    let err = answer.unwrap_err();
    assert!(err.to_string().contains("bug in a handler"), "{err}");
    assert!(f.toy_rows().is_empty());
    assert_eq!(f.status_of(item.id).await, Status::Processing);
    f.store.complete(&item).await.unwrap();
    assert_eq!(f.status_of(item.id).await, Status::Done);
}

#[tokio::test]
async fn a_lost_lease_keeps_the_domain_change_out() {
    let f = fixture().await;
    let slow = f.claimed(1).await;
    f.clock.advance(LEASE);
    let fresh = f.store.claim("w2", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(fresh.id, slow.id);
    let answer = f
        .store
        .complete_with(&slow, move |tx| {
            tx.execute("INSERT INTO toy VALUES ('d1', 'from the stale claim')", [])
        })
        .await;
    assert!(matches!(answer, Err(Error::LeaseLost { .. })), "{answer:?}");
    assert!(f.toy_rows().is_empty(), "a stale claim changed the domain");
    // The claim that holds it applies the event, once.
    f.store
        .complete_with(&fresh, |tx| {
            tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", [])
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.toy_rows(), [("d1".to_owned(), "filed".to_owned())]);
    assert_eq!(f.status_of(fresh.id).await, Status::Done);
}

#[tokio::test]
async fn write_commits_on_ok_and_rolls_back_on_err() {
    let f = fixture().await;
    f.store
        .write(|tx| tx.execute("INSERT INTO toy VALUES ('a', 'pending')", []))
        .await
        .unwrap()
        .unwrap();
    let failed: Result<(), String> = f
        .store
        .write(|tx| {
            tx.execute("INSERT INTO toy VALUES ('b', 'pending')", [])
                .map_err(|e| e.to_string())?;
            Err("changed my mind".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(failed, Err("changed my mind".to_owned()));
    assert_eq!(f.toy_rows(), [("a".to_owned(), "pending".to_owned())]);
}

#[tokio::test]
async fn concurrent_commands_beside_a_failing_closure_all_commit() {
    // Sent together, these usually share a group commit; whichever way the
    // writer batches them, each must get its own answer and only the failing
    // closure may be lost.
    let f = fixture().await;
    let item = f.claimed(0).await;
    let failing = f.store.complete_with(&item, |tx| {
        tx.execute("INSERT INTO toy VALUES ('bad', 'x')", [])?;
        tx.execute("INSERT INTO no_such_table VALUES (1)", [])
    });
    let writes: Vec<_> = (0..8)
        .map(|n| {
            f.store
                .write(move |tx| tx.execute("INSERT INTO toy VALUES (?1, 'ok')", [format!("k{n}")]))
        })
        .collect();
    let records: Vec<_> = (1..=8).map(|n| f.store.record(delivery(n))).collect();
    let (failing, writes, records) =
        tokio::join!(failing, futures_join_all(writes), futures_join_all(records));
    assert!(failing.unwrap().is_err());
    assert!(writes.into_iter().all(|w| w.unwrap().is_ok()));
    assert!(records.into_iter().all(|r| r.is_ok()));
    let rows = f.toy_rows();
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert!(rows.iter().all(|(_, status)| status == "ok"));
    assert_eq!(f.store.stats().await.unwrap().pending, 8);
}

async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test]
async fn migrate_runs_each_step_once_and_leaves_user_version_alone() {
    let f = fixture().await;
    assert_eq!(file_user_version(&f.path), SqliteStore::SCHEMA_VERSION);
    // Already there: nothing runs again (CREATE TABLE would fail if it did).
    assert_eq!(f.store.migrate("toy", &STEPS).await.unwrap(), 2);
    // A new step is appended.
    let three = [STEPS[0], STEPS[1], "ALTER TABLE toy ADD COLUMN note TEXT"];
    assert_eq!(f.store.migrate("toy", &three).await.unwrap(), 3);
    f.store
        .write(|tx| tx.execute("INSERT INTO toy VALUES ('a', 'x', 'n')", []))
        .await
        .unwrap()
        .unwrap();
    // Components are independent.
    assert_eq!(
        f.store
            .migrate("other", &["CREATE TABLE other (x)"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(file_user_version(&f.path), SqliteStore::SCHEMA_VERSION);
}

#[tokio::test]
async fn a_newer_component_is_refused_and_a_broken_step_changes_nothing() {
    let f = fixture().await;
    let err = f.store.migrate("toy", &STEPS[..1]).await.unwrap_err();
    assert!(
        matches!(&err, Error::ComponentSchemaTooNew { component, found: 2, supported: 1, .. } if component == "toy"),
        "{err}"
    );
    let err = f
        .store
        .migrate("broken", &["CREATE TABLE fine (x)", "CREATE TABLE oops ("])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broken step 2"), "{err}");
    // Step 1 of the broken component was rolled back with it.
    assert_eq!(
        f.store
            .migrate("broken", &["CREATE TABLE fine (x)"])
            .await
            .unwrap(),
        1
    );
}
