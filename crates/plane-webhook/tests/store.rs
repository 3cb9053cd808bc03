//! The store rules, run against both stores, plus what only SQLite can show
//! (durability across a crash, schema versions).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_webhook::{
    DeliveryStore, DuplicateBy, Error, EventHead, FailOutcome, ManualClock, MemoryStore,
    NewDelivery, RecordOutcome, SqliteStore, Status, StoreConfig,
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

/// Runs `check` against a memory store and a SQLite store.
async fn both<F, Fut>(check: F)
where
    F: Fn(Box<dyn DeliveryStore>, Arc<ManualClock>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let clock = Arc::new(ManualClock::new(T0));
    check(Box::new(MemoryStore::new(config(&clock))), clock).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let store = SqliteStore::open(dir.path().join("deliveries.db"), config(&clock)).unwrap();
    check(Box::new(store), clock).await;
}

#[tokio::test]
async fn new_then_duplicate_by_delivery_id_and_by_a_resent_event() {
    both(|store, _| async move {
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
    both(|store, _| async move {
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
    both(|store, clock| async move {
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
    both(|store, clock| async move {
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
    both(|store, clock| async move {
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
    both(|store, clock| async move {
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
    both(|store, _| async move {
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
    both(|store, clock| async move {
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
    both(|store, clock| async move {
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
    both(|store, clock| async move {
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
    both(|store, clock| async move {
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

#[tokio::test]
async fn a_noted_completion_is_done_with_its_note_and_replay_clears_it() {
    both(|store, _clock| async move {
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
