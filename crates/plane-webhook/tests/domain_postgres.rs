//! `PgStore`'s seam for domain crates sharing the schema: `database()` for their own
//! migrations, and `complete_with` (a change applied with the inbox item that caused
//! it, exactly once, whichever replica runs it). The PostgreSQL twin of `domain.rs`;
//! skipped without `PLANE_TEST_DATABASE_URL` (see `plane_postgres::testing`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_postgres::testing::{self, TestDatabase};
use plane_webhook::{
    DeliveryStore, Error, EventHead, InboxItem, ManualClock, NewDelivery, PgStore, Status,
    StoreConfig,
};
use uuid::Uuid;

const T0: i64 = 1_795_614_000_000;
const LEASE: Duration = Duration::from_secs(30);
const STEPS: [&str; 2] = [
    "CREATE TABLE toy (key text PRIMARY KEY, status text NOT NULL)",
    "CREATE TABLE toy_events (key text NOT NULL, event_key text NOT NULL)",
];

fn delivery(n: u32) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}}}"#
    )
    .into_bytes();
    NewDelivery::new(Uuid::new_v4(), &EventHead::parse(&body).unwrap(), body)
}

struct Fixture {
    // Dropped last: it drops the schema.
    pg: TestDatabase,
    clock: Arc<ManualClock>,
    store: Arc<PgStore>,
}

async fn fixture(name: &str) -> Option<Fixture> {
    let pg = testing::database(name).await?;
    let clock = Arc::new(ManualClock::new(T0));
    let store = PgStore::open(
        pg.db().clone(),
        StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    // The domain crate's own tables, in the same schema, versioned on their own.
    assert_eq!(store.database().migrate("toy", &STEPS).await.unwrap(), 2);
    Some(Fixture {
        pg,
        clock,
        store: Arc::new(store),
    })
}

impl Fixture {
    async fn claimed(&self, n: u32) -> InboxItem {
        self.store.record(delivery(n)).await.unwrap();
        self.store.claim("w", 1, LEASE).await.unwrap().remove(0)
    }

    /// Read on a connection of its own: only what was committed.
    async fn toy_rows(&self) -> Vec<(String, String)> {
        let db = self.pg.options().connect().await.unwrap();
        let client = db.client().await.unwrap();
        client
            .query("SELECT key, status FROM toy ORDER BY key", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    async fn status_of(&self, id: i64) -> Status {
        let rows = self.store.list(None, 100).await.unwrap();
        rows.into_iter().find(|r| r.id == id).unwrap().status
    }
}

#[tokio::test]
async fn complete_with_applies_the_change_and_finishes_the_item_together() {
    let Some(f) = fixture("complete_with").await else {
        return;
    };
    let item = f.claimed(1).await;
    let key = item.event_key.clone();
    let applied = f
        .store
        .complete_with(&item, move |tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", &[])
                    .await?;
                tx.execute("INSERT INTO toy_events VALUES ('d1', $1)", &[&key])
                    .await
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied, 1);
    assert_eq!(f.toy_rows().await, [("d1".to_owned(), "filed".to_owned())]);
    assert_eq!(f.status_of(item.id).await, Status::Done);
    // Done: a second completion (a retry after a lost answer) cannot apply it again.
    let again = f
        .store
        .complete_with(&item, |tx| {
            Box::pin(async move { tx.execute("UPDATE toy SET status = 'twice'", &[]).await })
        })
        .await;
    assert!(matches!(again, Err(Error::LeaseLost { .. })), "{again:?}");
    assert_eq!(f.toy_rows().await, [("d1".to_owned(), "filed".to_owned())]);
}

#[tokio::test]
async fn a_failing_closure_is_rolled_back_and_the_item_stays_leased() {
    let Some(f) = fixture("failing_closure").await else {
        return;
    };
    let item = f.claimed(1).await;
    let answer = f
        .store
        .complete_with(&item, |tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", &[])
                    .await?;
                // The second write breaks the primary key: the first must go too.
                tx.execute("INSERT INTO toy VALUES ('d1', 'again')", &[])
                    .await
            })
        })
        .await
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert!(f.toy_rows().await.is_empty(), "half a change was kept");
    assert_eq!(f.status_of(item.id).await, Status::Processing);
    // The same claim can still fail it (retried later), as the worker does.
    f.store.fail(&item, "domain error").await.unwrap();
    assert_eq!(f.status_of(item.id).await, Status::Failed);
}

#[tokio::test]
async fn a_panicking_closure_is_rolled_back_and_the_store_keeps_working() {
    let Some(f) = fixture("panicking_closure").await else {
        return;
    };
    let item = f.claimed(1).await;
    let answer = f
        .store
        .complete_with::<(), plane_postgres::tokio_postgres::Error, _>(&item, |tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", &[])
                    .await?;
                panic!("bug in a handler")
            })
        })
        .await;
    let err: Error = match answer {
        Err(e) => e,
        Ok(r) => panic!(
            "the panic was not reported: {:?}",
            r.map_err(|e| e.to_string())
        ),
    };
    assert!(err.to_string().contains("bug in a handler"), "{err}");
    assert!(f.toy_rows().await.is_empty());
    assert_eq!(f.status_of(item.id).await, Status::Processing);
    f.store.complete(&item).await.unwrap();
    assert_eq!(f.status_of(item.id).await, Status::Done);
}

#[tokio::test]
async fn a_lost_lease_keeps_the_domain_change_out_across_replicas() {
    let Some(f) = fixture("lost_lease").await else {
        return;
    };
    let slow = f.claimed(1).await;
    f.clock.advance(LEASE);
    // Another replica takes the item over once the lease ended.
    let other = PgStore::open(
        f.pg.options().connect().await.unwrap(),
        StoreConfig {
            clock: f.clock.clone(),
            ..StoreConfig::default()
        },
    )
    .await
    .unwrap();
    let fresh = other.claim("w2", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(fresh.id, slow.id);
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let answer = f
        .store
        .complete_with(&slow, move |tx| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                tx.execute("INSERT INTO toy VALUES ('d1', 'from the stale claim')", &[])
                    .await
            })
        })
        .await;
    assert!(matches!(answer, Err(Error::LeaseLost { .. })), "{answer:?}");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "f ran");
    assert!(
        f.toy_rows().await.is_empty(),
        "a stale claim changed the domain"
    );
    // The claim that holds it applies the event, once.
    other
        .complete_with(&fresh, |tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO toy VALUES ('d1', 'filed')", &[])
                    .await
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.toy_rows().await, [("d1".to_owned(), "filed".to_owned())]);
    assert_eq!(f.status_of(fresh.id).await, Status::Done);
}

/// A handler runs `complete_with` inside a spawned task: its future must be `Send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_runs_in_a_spawned_task() {
    let Some(f) = fixture("spawned").await else {
        return;
    };
    let item = f.claimed(1).await;
    let store = f.store.clone();
    let answer = tokio::spawn(async move {
        let item = item;
        store
            .complete_with(&item, |tx| {
                Box::pin(async move {
                    let row = tx
                        .query_one("SELECT count(*) FROM toy", &[])
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<i64, String>(row.get(0))
                })
            })
            .await
    })
    .await
    .unwrap();
    assert_eq!(answer.unwrap(), Ok(0));
}

#[tokio::test]
async fn a_newer_domain_component_is_refused() {
    let Some(f) = fixture("newer_component").await else {
        return;
    };
    let err = f
        .store
        .database()
        .migrate("toy", &STEPS[..1])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            plane_postgres::Error::SchemaTooNew {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    // The deliveries' own version is untouched by the component's.
    assert_eq!(
        PgStore::inspect_schema_version(f.store.database())
            .await
            .unwrap(),
        PgStore::SCHEMA_VERSION
    );
}
