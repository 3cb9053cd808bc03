//! The store rules, run against every store (memory, SQLite, PostgreSQL when
//! `PLANE_TEST_DATABASE_URL` names a test database), plus what only SQLite can show
//! (durability across a crash, schema versions) and what only PostgreSQL can
//! (several replicas on one database, a lost connection).
//!
//! `bash scripts/with-postgres.sh cargo test -p plane-webhook --test store` runs the
//! PostgreSQL side against a throwaway PostgreSQL 15.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_postgres::testing;
use plane_webhook::{
    Clock, DeliveryStore, DuplicateBy, Error, EventHead, FailOutcome, ManualClock, MemoryStore,
    NewDelivery, PgStore, RecordOutcome, SqliteStore, Status, StoreConfig, SystemClock,
};
use uuid::Uuid;

const T0: i64 = 1_795_614_000_000;

fn body(n: u32) -> Vec<u8> {
    format!(
        r#"{{"event": "issue", "action": "updated", "webhook_id": null, "workspace_id": null, "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}, "activity": {{"field": "name"}}}}"#
    )
    .into_bytes()
}

fn delivery(n: u32) -> NewDelivery {
    let body = body(n);
    NewDelivery::new(Uuid::new_v4(), &EventHead::parse(&body).unwrap(), body)
}

fn config(clock: &Arc<ManualClock>) -> StoreConfig {
    StoreConfig {
        max_attempts: 3,
        retry_base: Duration::from_secs(10),
        retry_max: Duration::from_secs(60),
        clock: clock.clone(),
    }
}

/// Runs `check` against a memory store, a SQLite store and, when there is a test
/// database (`PLANE_TEST_DATABASE_URL`, see `plane_postgres::testing`), a PostgreSQL
/// store in a schema of its own, named after the test. Without the URL the PostgreSQL
/// run is skipped with a message.
async fn each_store<F, Fut>(check: F)
where
    F: Fn(Box<dyn DeliveryStore>, Arc<ManualClock>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // The test harness names each test's thread after the test.
    let name = std::thread::current().name().unwrap_or("store").to_owned();
    let name = name.as_str();
    eprintln!("{name}: memory");
    let clock = Arc::new(ManualClock::new(T0));
    check(Box::new(MemoryStore::new(config(&clock))), clock).await;
    eprintln!("{name}: sqlite");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let store = SqliteStore::open(dir.path().join("deliveries.db"), config(&clock)).unwrap();
    check(Box::new(store), clock).await;
    if let Some(pg) = testing::database(name).await {
        eprintln!("{name}: postgres, schema {}", pg.schema());
        let clock = Arc::new(ManualClock::new(T0));
        let store = PgStore::open(pg.db().clone(), config(&clock))
            .await
            .unwrap();
        check(Box::new(store), clock).await;
    }
}

#[tokio::test]
async fn new_then_duplicate_by_delivery_id_and_by_a_resent_event() {
    each_store(|store, _| async move {
        let first = delivery(1);
        let RecordOutcome::New { id } = store.record(first.clone()).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            store.record(first.clone()).await.unwrap(),
            RecordOutcome::Duplicate {
                id,
                by: DuplicateBy::DeliveryId
            }
        );
        // Plane retries with a new delivery id and the same body.
        let resent = NewDelivery {
            delivery_id: Uuid::new_v4(),
            ..first
        };
        assert_eq!(
            store.record(resent).await.unwrap(),
            RecordOutcome::Duplicate {
                id,
                by: DuplicateBy::SameEvent
            }
        );
        assert!(matches!(
            store.record(delivery(2)).await.unwrap(),
            RecordOutcome::New { .. }
        ));
        assert_eq!(store.stats().await.unwrap().pending, 2);
    })
    .await;
}

#[tokio::test]
async fn a_stable_v2_event_id_dedupes_even_when_the_body_differs() {
    each_store(|store, _| async move {
        let v2 = |attempt: u32| {
            let body = format!(
                r#"{{"version": "v2", "event": "workitem.updated", "event_id": "evt-1", "delivery_id": "d-{attempt}", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "x", "updated_at": "{attempt}"}}}}"#
            );
            NewDelivery::new(Uuid::new_v4(), &EventHead::parse(body.as_bytes()).unwrap(), body.into_bytes())
        };
        assert!(matches!(store.record(v2(1)).await.unwrap(), RecordOutcome::New { .. }));
        assert!(matches!(
            store.record(v2(2)).await.unwrap(),
            RecordOutcome::Duplicate { by: DuplicateBy::SameEvent, .. }
        ));
    })
    .await;
}

#[tokio::test]
async fn two_workers_never_hold_the_same_item_and_an_expired_lease_comes_back() {
    each_store(|store, clock| async move {
        for n in 0..3 {
            store.record(delivery(n)).await.unwrap();
        }
        let lease = Duration::from_secs(30);
        let a = store.claim("a", 2, lease).await.unwrap();
        let b = store.claim("b", 10, lease).await.unwrap();
        assert_eq!((a.len(), b.len()), (2, 1));
        assert!(a.iter().all(|i| i.id != b[0].id));
        assert!(store.claim("c", 10, lease).await.unwrap().is_empty());

        // Worker "a" dies; after the lease its items return, attempts counted.
        store.complete(&b[0]).await.unwrap();
        clock.advance(lease);
        let again = store.claim("c", 10, lease).await.unwrap();
        assert_eq!(
            again.iter().map(|i| i.id).collect::<Vec<_>>(),
            a.iter().map(|i| i.id).collect::<Vec<_>>()
        );
        assert!(again.iter().all(|i| i.attempts == 2));
        assert!(matches!(
            store.complete(&a[0]).await,
            Err(Error::LeaseLost { .. })
        ));
        store.complete(&again[0]).await.unwrap();
        assert!(matches!(
            store.complete(&again[0]).await,
            Err(Error::LeaseLost { .. })
        ));
        let unknown = plane_webhook::InboxItem {
            id: 999,
            ..again[0].clone()
        };
        assert!(matches!(
            store.complete(&unknown).await,
            Err(Error::UnknownDelivery { id: 999 })
        ));
    })
    .await;
}

#[tokio::test]
async fn failures_back_off_exponentially_then_park_as_dead_and_replay_revives() {
    each_store(|store, clock| async move {
        store.record(delivery(1)).await.unwrap();
        let lease = Duration::from_secs(5);
        let item = store.claim("w", 1, lease).await.unwrap().remove(0);
        assert_eq!(
            store.fail(&item, "Plane said 500").await.unwrap(),
            FailOutcome::Retry { at: T0 + 10_000 }
        );
        assert!(
            store.claim("w", 1, lease).await.unwrap().is_empty(),
            "not before its time"
        );
        clock.advance(Duration::from_secs(10));
        let item = store.claim("w", 1, lease).await.unwrap().remove(0);
        let now = T0 + 10_000;
        assert_eq!(
            store.fail(&item, "again").await.unwrap(),
            FailOutcome::Retry { at: now + 20_000 }
        );
        clock.advance(Duration::from_secs(20));
        let item = store.claim("w", 1, lease).await.unwrap().remove(0);
        assert_eq!(item.attempts, 3);
        assert_eq!(
            store.fail(&item, "third time").await.unwrap(),
            FailOutcome::Dead
        );

        let dead = store.list(Some(Status::Dead), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("third time"));
        assert!(
            store
                .list(Some(Status::Pending), 10)
                .await
                .unwrap()
                .is_empty()
        );
        clock.advance(Duration::from_secs(3600));
        assert!(
            store.claim("w", 1, lease).await.unwrap().is_empty(),
            "dead items are not retried"
        );

        store.replay(item.id).await.unwrap();
        let revived = store.claim("w", 1, lease).await.unwrap();
        assert_eq!(revived[0].attempts, 1);
        assert!(matches!(
            store.replay(12345).await,
            Err(Error::UnknownDelivery { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn a_stale_claim_cannot_finish_an_item_handed_out_again_even_to_the_same_worker() {
    each_store(|store, clock| async move {
        store.record(delivery(1)).await.unwrap();
        let lease = Duration::from_secs(10);
        let slow = store.claim("w", 1, lease).await.unwrap().remove(0);
        clock.advance(lease);
        let fresh = store.claim("w", 1, lease).await.unwrap().remove(0);
        assert_eq!(fresh.id, slow.id);
        assert!(matches!(
            store.complete(&slow).await,
            Err(Error::LeaseLost { .. })
        ));
        assert!(matches!(
            store.fail(&slow, "late").await,
            Err(Error::LeaseLost { .. })
        ));
        store.complete(&fresh).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_worker_that_dies_every_time_does_not_get_the_item_forever() {
    each_store(|store, clock| async move {
        store.record(delivery(1)).await.unwrap();
        let lease = Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(store.claim("w", 1, lease).await.unwrap().len(), 1);
            clock.advance(lease);
        }
        assert!(store.claim("w", 1, lease).await.unwrap().is_empty());
        let dead = store.list(Some(Status::Dead), 1).await.unwrap();
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("lease expired")
        );
    })
    .await;
}

#[tokio::test]
async fn release_gives_the_item_back_without_counting_the_attempt() {
    each_store(|store, _| async move {
        store.record(delivery(1)).await.unwrap();
        let item = store
            .claim("w", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        store.release(&item).await.unwrap();
        let again = store
            .claim("v", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        assert_eq!((again.id, again.attempts), (item.id, 1));
    })
    .await;
}

#[tokio::test]
async fn purge_removes_only_old_finished_rows_and_frees_their_keys() {
    each_store(|store, clock| async move {
        let lease = Duration::from_secs(60);
        let old_done = delivery(1);
        store.record(old_done.clone()).await.unwrap();
        store.record(delivery(2)).await.unwrap(); // never finishes, however old
        let claimed = store.claim("w", 1, lease).await.unwrap().remove(0);
        store.complete(&claimed).await.unwrap();
        store.record(delivery(4)).await.unwrap(); // ready long ago, finished recently
        clock.advance(Duration::from_secs(8 * 86_400));
        store.record(delivery(3)).await.unwrap();
        let recent = store.claim("w", 3, lease).await.unwrap();
        for n in [3, 4] {
            let done = recent.iter().find(|i| i.body == body(n)).unwrap();
            store.complete(done).await.unwrap();
        }

        let purged = store.purge(Duration::from_secs(7 * 86_400)).await.unwrap();
        assert_eq!(purged, 1);
        let left: Vec<_> = store.list(None, 10).await.unwrap();
        assert_eq!(left.len(), 3);
        assert!(left.iter().all(|r| r.id != claimed.id));
        // Past the retention window the event is new again.
        assert!(matches!(
            store.record(old_done).await.unwrap(),
            RecordOutcome::New { .. }
        ));
    })
    .await;
}

#[tokio::test]
async fn a_crash_after_recording_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    let clock = Arc::new(ManualClock::new(T0));
    let (recorded, leased) = {
        let store = SqliteStore::open(&path, config(&clock)).unwrap();
        let a = store.record(delivery(1)).await.unwrap();
        let b = store.record(delivery(2)).await.unwrap();
        let leased = store
            .claim("crashing-worker", 1, Duration::from_secs(30))
            .await
            .unwrap();
        (vec![a, b], leased)
        // dropped without completing anything: the process "crashed"
    };
    let [RecordOutcome::New { id: a }, RecordOutcome::New { id: b }] = recorded[..] else {
        panic!("both deliveries should be new: {recorded:?}")
    };
    assert_ne!(a, b);
    let store = SqliteStore::open(&path, config(&clock)).unwrap();
    // Both acknowledged deliveries are on disk after the crash, the leased one
    // still leased.
    let stored: Vec<(i64, Status)> = store
        .list(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.id, r.status))
        .collect();
    let unleased = if leased[0].id == a { b } else { a };
    let mut expected = vec![
        (leased[0].id, Status::Processing),
        (unleased, Status::Pending),
    ];
    expected.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    assert_eq!(stored, expected);
    let now = store
        .claim("new-worker", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(now.len(), 1, "the unleased item is back at once");
    assert_ne!(now[0].id, leased[0].id);
    store.complete(&now[0]).await.unwrap();
    clock.advance(Duration::from_secs(30));
    let later = store
        .claim("new-worker", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|i| i.id).collect::<Vec<_>>(),
        [leased[0].id]
    );
    // And the dedupe survived the restart.
    let again = store
        .record(NewDelivery {
            delivery_id: Uuid::new_v4(),
            ..delivery(1)
        })
        .await
        .unwrap();
    assert!(matches!(
        again,
        RecordOutcome::Duplicate {
            by: DuplicateBy::SameEvent,
            ..
        }
    ));
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path, StoreConfig::default()).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 99,
                supported: SqliteStore::SCHEMA_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("future.db"), "{err}");
}

#[tokio::test]
async fn an_unopenable_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("plane.db");
    let err = SqliteStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_each_get_an_answer_and_every_delivery_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("c.db"), StoreConfig::default()).unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.record(delivery(n)).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let RecordOutcome::New { id } = task.await.unwrap() else {
            panic!("duplicate")
        };
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 64);
    assert_eq!(store.stats().await.unwrap().pending, 64);
}

#[tokio::test]
async fn replay_refuses_an_item_a_worker_holds_until_its_lease_ends() {
    each_store(|store, clock| async move {
        store.record(delivery(1)).await.unwrap();
        let lease = Duration::from_secs(30);
        let item = store.claim("a", 1, lease).await.unwrap().remove(0);
        assert!(matches!(
            store.replay(item.id).await,
            Err(Error::InProgress { .. })
        ));
        assert!(
            store.claim("b", 1, lease).await.unwrap().is_empty(),
            "no second worker"
        );
        clock.advance(lease);
        store.replay(item.id).await.unwrap();
        assert_eq!(store.claim("b", 1, lease).await.unwrap()[0].attempts, 1);
    })
    .await;
}

#[tokio::test]
async fn a_held_lease_can_be_extended_and_a_lost_one_cannot() {
    each_store(|store, clock| async move {
        store.record(delivery(1)).await.unwrap();
        let lease = Duration::from_secs(10);
        let item = store.claim("a", 1, lease).await.unwrap().remove(0);
        clock.advance(Duration::from_secs(8));
        store.extend(&item, lease).await.unwrap();
        clock.advance(Duration::from_secs(8));
        assert!(
            store.claim("b", 1, lease).await.unwrap().is_empty(),
            "the extended lease still holds"
        );
        clock.advance(Duration::from_secs(3));
        let taken = store.claim("b", 1, lease).await.unwrap().remove(0);
        assert!(matches!(
            store.extend(&item, lease).await,
            Err(Error::LeaseLost { .. })
        ));
        store.complete(&taken).await.unwrap();
    })
    .await;
}

/// A claim that leases one row and then fails on the next one is undone as a
/// whole (its savepoint), and the store goes on working.
#[tokio::test]
async fn a_claim_that_fails_half_way_leases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plane.db");
    let clock = Arc::new(ManualClock::new(T0));
    let store = SqliteStore::open(&path, config(&clock)).unwrap();
    store.record(delivery(1)).await.unwrap();
    store
        .record(NewDelivery {
            event: "poison".into(),
            ..delivery(2)
        })
        .await
        .unwrap();
    // Another connection to the same file makes the second row refuse its lease.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.busy_timeout(Duration::from_secs(30)).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER poison BEFORE UPDATE OF status ON inbox
             WHEN NEW.status = 'processing'
                  AND (SELECT event FROM deliveries WHERE id = OLD.id) = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row refuses its lease'); END;",
        )
        .unwrap();

    let lease = Duration::from_secs(30);
    let err = store.claim("w", 10, lease).await.unwrap_err();
    assert!(
        err.to_string().contains("poisoned row refuses its lease"),
        "{err}"
    );
    let rows: Vec<(Status, u32)> = store
        .list(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.status, r.attempts))
        .collect();
    assert_eq!(rows, [(Status::Pending, 0), (Status::Pending, 0)]);

    other.execute_batch("DROP TRIGGER poison").unwrap();
    assert_eq!(store.claim("w", 10, lease).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_ignored_item_keeps_its_reason_is_purged_like_done_and_replays() {
    each_store(|store, clock| async move {
        let RecordOutcome::New { id } = store.record(delivery(1)).await.unwrap() else {
            panic!("not new")
        };
        let item = store
            .claim("w", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            item.event_key,
            delivery(1).event_key,
            "handlers see the key"
        );
        store
            .ignore(&item, "no handler for issue.updated")
            .await
            .unwrap();
        let row = store
            .list(Some(Status::Ignored), 10)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(row.id, id);
        assert_eq!(row.note.as_deref(), Some("no handler for issue.updated"));
        assert_eq!(row.finished_at, Some(T0));
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.ignored, stats.done, stats.pending), (1, 0, 0));
        assert_eq!(stats.oldest_unfinished, None, "ignored is finished");
        assert!(
            store
                .claim("w", 1, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        // A stale claim cannot ignore an item it lost.
        assert!(matches!(
            store.ignore(&item, "late").await,
            Err(Error::LeaseLost { .. })
        ));

        // replay: back in the inbox, the reason gone, then handled.
        store.replay(id).await.unwrap();
        let row = store.list(None, 10).await.unwrap().remove(0);
        assert_eq!((row.status, row.note), (Status::Pending, None));
        let again = store
            .claim("w", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .remove(0);
        store.ignore(&again, "still nobody").await.unwrap();

        // purge counts from finished_at, as for done.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(store.purge(Duration::from_secs(3601)).await.unwrap(), 0);
        assert_eq!(store.purge(Duration::from_secs(60)).await.unwrap(), 1);
        assert!(matches!(
            store.record(delivery(1)).await.unwrap(),
            RecordOutcome::New { .. }
        ));
    })
    .await;
}

/// JSON strings may hold NUL (`"\u0000"`), which a PostgreSQL text value cannot: such a
/// delivery is still stored (what is shown of it may differ) and deduplicated.
#[tokio::test]
async fn a_delivery_whose_event_name_holds_a_nul_is_stored_and_deduplicated() {
    each_store(|store, _| async move {
            let body = br#"{"event": "issue\u0000x", "action": "updated\u0000", "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979"}}"#;
            let head = EventHead::parse(body).unwrap();
            assert!(head.event.contains('\0'));
            let d = NewDelivery::new(Uuid::new_v4(), &head, body.to_vec());
            let RecordOutcome::New { id } = store.record(d.clone()).await.unwrap() else {
                panic!("not new")
            };
            assert_eq!(
                store.record(d.clone()).await.unwrap(),
                RecordOutcome::Duplicate {
                    id,
                    by: DuplicateBy::DeliveryId
                }
            );
            let item = store
                .claim("w", 1, Duration::from_secs(30))
                .await
                .unwrap()
                .remove(0);
            assert_eq!(item.body, d.body, "the body is kept as it arrived");
            assert!(item.event.starts_with("issue"), "{:?}", item.event);
        },
    )
    .await;
}

#[tokio::test]
async fn a_noted_completion_is_done_with_its_note_and_replay_clears_it() {
    each_store(|store, _clock| async move {
        let RecordOutcome::New { id } = store.record(delivery(1)).await.unwrap() else {
            panic!("not new")
        };
        let item = store
            .claim("w", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .remove(0);
        store
            .complete_noted(&item, "echo of the sync's write")
            .await
            .unwrap();
        let row = store.list(Some(Status::Done), 10).await.unwrap().remove(0);
        assert_eq!(row.id, id);
        assert_eq!(row.note.as_deref(), Some("echo of the sync's write"));
        assert_eq!(row.finished_at, Some(T0));
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.done, stats.ignored, stats.pending), (1, 0, 0));
        // A stale claim cannot finish an item it no longer holds.
        assert!(matches!(
            store.complete_noted(&item, "late").await,
            Err(Error::LeaseLost { .. })
        ));
        store.replay(id).await.unwrap();
        let row = store.list(None, 10).await.unwrap().remove(0);
        assert_eq!((row.status, row.note), (Status::Pending, None));
    })
    .await;
}

// What only PostgreSQL can show: several replicas (pools) on one schema, and a lost
// connection. Each is skipped, with plane_postgres::testing's message, without a URL.

/// A second "replica": a pool of its own on the same schema.
async fn replica(pg: &testing::TestDatabase, clock: &Arc<ManualClock>) -> Arc<PgStore> {
    let db = pg.options().connect().await.unwrap();
    Arc::new(PgStore::open(db, config(clock)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_claiming_together_never_get_the_same_item() {
    let Some(pg) = testing::database("claim_together").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let replicas = [replica(&pg, &clock).await, replica(&pg, &clock).await];
    const N: u32 = 240;
    let recorded: Vec<_> = (0..N)
        .map(|n| {
            let store = replicas[n as usize % 2].clone();
            tokio::spawn(async move { store.record(delivery(n)).await.unwrap() })
        })
        .collect();
    for r in recorded {
        assert!(matches!(r.await.unwrap(), RecordOutcome::New { .. }));
    }
    // Eight workers, four per replica, claim small batches as fast as they can.
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = replicas[w % 2].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut ids = Vec::new();
                loop {
                    let items = store
                        .claim(&format!("w{w}"), 3, Duration::from_secs(60))
                        .await
                        .unwrap();
                    if items.is_empty() {
                        return ids;
                    }
                    ids.extend(items.iter().map(|i| i.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut busy = 0;
    for w in workers {
        let ids = w.await.unwrap();
        busy += usize::from(!ids.is_empty());
        claimed.extend(ids);
    }
    let total = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(total, claimed.len(), "an item was handed to two workers");
    assert_eq!(claimed.len(), N as usize, "every item was claimed");
    assert!(busy > 1, "the claims did not overlap");
    assert_eq!(replicas[0].stats().await.unwrap().processing, u64::from(N));
}

#[tokio::test]
async fn a_claim_skips_rows_another_replica_has_locked_instead_of_waiting() {
    let Some(pg) = testing::database("skip_locked").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let store = replica(&pg, &clock).await;
    for n in 0..3 {
        store.record(delivery(n)).await.unwrap();
    }
    // Another replica's claim, caught in the middle of its transaction.
    let mut other = pg.db().client().await.unwrap();
    let tx = other.transaction().await.unwrap();
    let locked: i64 = tx
        .query_one("SELECT id FROM inbox ORDER BY id LIMIT 1 FOR UPDATE", &[])
        .await
        .unwrap()
        .get(0);
    let lease = Duration::from_secs(30);
    let items = tokio::time::timeout(Duration::from_secs(5), store.claim("w", 10, lease))
        .await
        .expect("the claim waited for a row another transaction holds")
        .unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.id != locked));
    tx.rollback().await.unwrap();
    let rest = store.claim("w", 10, lease).await.unwrap();
    assert_eq!(rest.iter().map(|i| i.id).collect::<Vec<_>>(), [locked]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_recording_one_event_together_store_it_once() {
    let Some(pg) = testing::database("dedupe_together").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let replicas = [replica(&pg, &clock).await, replica(&pg, &clock).await];
    let first = delivery(7);
    // Plane's retries: new delivery ids, the same body; and one delivery sent twice.
    let mut sends: Vec<NewDelivery> = (0..15)
        .map(|_| NewDelivery {
            delivery_id: Uuid::new_v4(),
            ..first.clone()
        })
        .collect();
    sends.push(first.clone());
    let start = Arc::new(tokio::sync::Barrier::new(sends.len()));
    let tasks: Vec<_> = sends
        .into_iter()
        .enumerate()
        .map(|(n, d)| {
            let store = replicas[n % 2].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let delivery_id = d.delivery_id;
                (delivery_id, store.record(d).await.unwrap())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let new: Vec<_> = outcomes
        .iter()
        .filter_map(|(d, o)| match o {
            RecordOutcome::New { id } => Some((*d, *id)),
            RecordOutcome::Duplicate { .. } => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "stored more than once: {outcomes:?}");
    let (stored_as, id) = new[0];
    for (delivery_id, outcome) in &outcomes {
        if let RecordOutcome::Duplicate { id: dup, by } = outcome {
            assert_eq!(*dup, id);
            let expected = if *delivery_id == stored_as {
                DuplicateBy::DeliveryId
            } else {
                DuplicateBy::SameEvent
            };
            assert_eq!(*by, expected, "{delivery_id}");
        }
    }
    assert_eq!(replicas[1].list(None, 10).await.unwrap().len(), 1);
    assert_eq!(replicas[0].stats().await.unwrap().pending, 1);
}

#[tokio::test]
async fn a_dead_replicas_leases_come_back_to_another_when_they_end() {
    let Some(pg) = testing::database("dead_replica").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let survivor = replica(&pg, &clock).await;
    let lease = Duration::from_secs(30);
    let held = {
        let doomed = replica(&pg, &clock).await;
        for n in 0..2 {
            doomed.record(delivery(n)).await.unwrap();
        }
        doomed.claim("doomed", 10, lease).await.unwrap()
        // The replica dies: its pool and connections go.
    };
    assert_eq!(held.len(), 2);
    assert!(
        survivor
            .claim("survivor", 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(lease);
    let back = survivor.claim("survivor", 10, lease).await.unwrap();
    assert_eq!(
        back.iter().map(|i| (i.id, i.attempts)).collect::<Vec<_>>(),
        held.iter().map(|i| (i.id, 2)).collect::<Vec<_>>()
    );
    for item in &held {
        assert!(matches!(
            survivor.complete(item).await,
            Err(Error::LeaseLost { .. })
        ));
    }
    survivor
        .complete_all(&back)
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    assert_eq!(survivor.stats().await.unwrap().done, 2);
}

#[tokio::test]
async fn a_waiting_claim_wakes_for_its_own_record_and_finds_another_replicas_soon() {
    let Some(pg) = testing::database("claim_waiting").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let (a, b) = (replica(&pg, &clock).await, replica(&pg, &clock).await);
    let lease = Duration::from_secs(30);

    // Nothing comes: it waits its time (a worker calling it in a loop does not spin),
    // then answers empty.
    let started = std::time::Instant::now();
    assert!(
        a.claim_waiting("w", 4, lease, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A delivery comes in through the replica's own store, or another replica's: the
    // claim has it long before its 10 s are over.
    for (n, recorder) in [a.clone(), b.clone()].into_iter().enumerate() {
        let started = std::time::Instant::now();
        let (items, ()) = tokio::join!(
            a.claim_waiting("w", 4, lease, Duration::from_secs(10)),
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                recorder.record(delivery(n as u32)).await.unwrap();
            }
        );
        assert_eq!(items.unwrap().len(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_newer_deliveries_schema_is_refused_clearly() {
    let Some(pg) = testing::database("newer_schema").await else {
        return;
    };
    drop(
        PgStore::open(pg.db().clone(), StoreConfig::default())
            .await
            .unwrap(),
    );
    let newer = PgStore::SCHEMA_VERSION + 1;
    pg.db()
        .client()
        .await
        .unwrap()
        .execute(
            "UPDATE schema_migrations SET version = $1 WHERE component = 'deliveries'",
            &[&newer],
        )
        .await
        .unwrap();
    let err = PgStore::open(pg.db().clone(), StoreConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew { found, supported, .. }
                if found == newer && supported == PgStore::SCHEMA_VERSION
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(pg.db().target()), "{message}");
    assert!(message.contains(pg.schema()), "{message}");
    assert!(message.contains("newer"), "{message}");
    assert!(matches!(
        PgStore::inspect_schema_version(pg.db()).await,
        Err(Error::SchemaTooNew { .. })
    ));
}

#[tokio::test]
async fn a_lost_connection_is_unavailable_and_the_store_carries_on() {
    let Some(pg) = testing::database("lost_connection").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let store = replica(&pg, &clock).await;
    store.record(delivery(1)).await.unwrap();
    let item = store
        .claim("w", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    // The server ends the transaction's connection, as a restart would.
    let answer = store
        .complete_with(&item, |tx| {
            Box::pin(async move {
                let _ = tx
                    .execute("SELECT pg_terminate_backend(pg_backend_pid())", &[])
                    .await;
                Ok::<_, ()>(())
            })
        })
        .await;
    let err = answer.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(pg.db().target()), "{message}");
    assert!(message.contains("complete a delivery"), "{message}");
    // Nothing was kept, and the pool connects again by itself.
    store.ping().await.unwrap();
    assert_eq!(
        store.list(None, 1).await.unwrap()[0].status,
        Status::Processing
    );
    store.complete(&item).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_sent_together_share_commits_and_each_gets_its_own_answer() {
    let Some(pg) = testing::database("records_together").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let store = replica(&pg, &clock).await;
    // The database refuses some deliveries: they must fail alone, not their batch.
    pg.db()
        .client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event = 'poison' THEN RAISE EXCEPTION 'poisoned delivery refused'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE INSERT ON deliveries
                 FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .unwrap();
    // 16 events, each sent three times (twice by Plane's retries, once repeated as
    // is), and 8 poisoned deliveries, all at once.
    let mut sends = Vec::new();
    for n in 0..16 {
        let first = delivery(n);
        sends.push(first.clone());
        sends.push(first.clone());
        sends.push(NewDelivery {
            delivery_id: Uuid::new_v4(),
            ..first
        });
    }
    for n in 100..108 {
        sends.push(NewDelivery {
            event: "poison".into(),
            ..delivery(n)
        });
    }
    let start = Arc::new(tokio::sync::Barrier::new(sends.len()));
    let tasks: Vec<_> = sends
        .into_iter()
        .map(|d| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let answer = store.record(d.clone()).await;
                (d, answer)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let mut stored = std::collections::HashMap::new();
    for (d, answer) in &answers {
        if d.event == "poison" {
            let err = answer.as_ref().unwrap_err().to_string();
            assert!(err.contains("poisoned delivery refused"), "{err}");
            assert!(err.contains(pg.db().target()), "{err}");
        } else if let Ok(RecordOutcome::New { id }) = answer {
            assert!(
                stored
                    .insert(d.event_key.clone(), (*id, d.delivery_id))
                    .is_none(),
                "{} stored twice",
                d.event_key
            );
        }
    }
    assert_eq!(stored.len(), 16);
    for (d, answer) in answers.iter().filter(|(d, _)| d.event != "poison") {
        let (id, first) = stored[&d.event_key];
        match answer.as_ref().unwrap() {
            RecordOutcome::New { id: new } => assert_eq!(*new, id),
            RecordOutcome::Duplicate { id: dup, by } => {
                assert_eq!(*dup, id);
                let expected = if d.delivery_id == first {
                    DuplicateBy::DeliveryId
                } else {
                    DuplicateBy::SameEvent
                };
                assert_eq!(*by, expected);
            }
        }
    }
    assert_eq!(store.stats().await.unwrap().pending, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_recording_many_events_in_opposite_orders_store_each_once() {
    let Some(pg) = testing::database("opposite_orders").await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(T0));
    let replicas = [replica(&pg, &clock).await, replica(&pg, &clock).await];
    // Every event goes to both replicas, in opposite orders, all at once: their
    // batches share keys and must neither store one twice nor wait on each other.
    const EVENTS: u32 = 48;
    let start = Arc::new(tokio::sync::Barrier::new(2 * EVENTS as usize));
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for n in 0..EVENTS {
            let n = if r == 0 { n } else { EVENTS - 1 - n };
            let (store, start) = (store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store.record(delivery(n)).await.unwrap()
            }));
        }
    }
    let mut new = 0;
    for t in tasks {
        new += usize::from(matches!(t.await.unwrap(), RecordOutcome::New { .. }));
    }
    assert_eq!(new, EVENTS as usize);
    assert_eq!(
        replicas[0].stats().await.unwrap().pending,
        u64::from(EVENTS)
    );
}

/// A replica's wall clock that is wrong by `.0` ms (no NTP on its host, a VM resumed):
/// the store must not trust it for leases (it is a wall clock), and takes the
/// database's time instead.
#[derive(Debug)]
struct WrongWallClock(i64);

impl Clock for WrongWallClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.0
    }

    fn is_wall_clock(&self) -> bool {
        true
    }
}

/// Two replicas on one schema, each on its own wall clock: `a`'s right, `b`'s wrong by
/// `b_wrong_by` ms.
async fn replicas_on_wall_clocks(
    name: &str,
    b_wrong_by: i64,
    max_attempts: u32,
) -> Option<(testing::TestDatabase, PgStore, PgStore)> {
    let pg = testing::database(name).await?;
    let config = |wrong_by: i64| StoreConfig {
        max_attempts,
        clock: Arc::new(WrongWallClock(wrong_by)),
        ..config(&Arc::new(ManualClock::new(T0)))
    };
    let a = PgStore::open(pg.db().clone(), config(0)).await.unwrap();
    let b = PgStore::open(pg.options().connect().await.unwrap(), config(b_wrong_by))
        .await
        .unwrap();
    Some((pg, a, b))
}

/// A lease lasts as long as asked on the database's clock, whatever a replica's own
/// clock says: a replica whose clock runs ahead by more than the lease takes no item
/// another replica holds under a live lease, and the holder's completion stands.
#[tokio::test]
async fn a_replica_with_a_fast_clock_never_takes_a_live_lease() {
    let Some((_pg, a, b)) = replicas_on_wall_clocks("fast_clock_lease", 90_000, 3).await else {
        return;
    };
    a.record(delivery(1)).await.unwrap();
    let held = a.claim("a", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(held.len(), 1);
    let stolen = b.claim("b", 10, Duration::from_secs(60)).await.unwrap();
    assert!(
        stolen.is_empty(),
        "B took an item A holds under a live lease"
    );
    a.complete(&held[0]).await.unwrap();
    // What the fast replica records is stamped with the database's time too: ready
    // now for the others, not in 90 s.
    b.record(delivery(2)).await.unwrap();
    let received = b.list(Some(Status::Pending), 1).await.unwrap()[0].received_at;
    let off = (received - SystemClock.now_ms()).abs();
    assert!(off < 10_000, "received_at is {off} ms off the time");
    assert_eq!(
        a.claim("a", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// On an item's last attempt, a replica whose clock runs ahead does not bury it as
/// dead while its holder still runs it.
#[tokio::test]
async fn a_replica_with_a_fast_clock_never_buries_a_running_item() {
    let Some((_pg, a, b)) = replicas_on_wall_clocks("fast_clock_bury", 90_000, 1).await else {
        return;
    };
    a.record(delivery(1)).await.unwrap();
    let held = a.claim("a", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(
        b.claim("b", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    let status = a.list(None, 10).await.unwrap()[0].status;
    assert_eq!(status, Status::Processing, "B buried an item A is running");
    a.complete(&held[0]).await.unwrap();
    assert_eq!(a.stats().await.unwrap().done, 1);
}

/// A replica whose clock runs behind sees a lease end when it ends, and the leases it
/// extends and the retries it schedules count from the database's time, not its own.
#[tokio::test]
async fn a_replica_with_a_slow_clock_keeps_the_database_times() {
    let Some((_pg, a, b)) = replicas_on_wall_clocks("slow_clock", -90_000, 3).await else {
        return;
    };
    a.record(delivery(1)).await.unwrap();
    let lease = Duration::from_millis(500);
    let held = a.claim("a", 10, lease).await.unwrap();
    assert_eq!(held.len(), 1);
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let taken = b.claim("b", 10, lease).await.unwrap();
    assert_eq!(
        taken.iter().map(|i| (i.id, i.attempts)).collect::<Vec<_>>(),
        [(held[0].id, 2)],
        "B did not see A's lease end"
    );
    b.extend(&taken[0], Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert!(
        a.claim("a", 10, lease).await.unwrap().is_empty(),
        "B's extension ended in the past"
    );
    let FailOutcome::Retry { at } = b.fail(&taken[0], "boom").await.unwrap() else {
        panic!("retried, not dead")
    };
    // Second attempt: retry_base * 2 from the database's now.
    let wait = at - SystemClock.now_ms();
    assert!((10_000..=30_000).contains(&wait), "retry in {wait} ms");
}
