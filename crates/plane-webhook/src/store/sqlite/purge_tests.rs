//! Purge walks `inbox_ready` bounded by `next_attempt_at` (schema version 4),
//! which is sound only while every finished row was ready before it finished.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;
use crate::{EventHead, ManualClock};

const T0: i64 = 1_795_614_000_000;

fn delivery(n: u32) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}}}"#
    );
    NewDelivery::new(
        Uuid::new_v4(),
        &EventHead::parse(body.as_bytes()).unwrap(),
        body.into_bytes(),
    )
}

/// Every way a row finishes, with the clock moving between the steps.
#[tokio::test]
async fn every_finished_row_was_ready_before_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purge.db");
    let clock = Arc::new(ManualClock::new(T0));
    let store = SqliteStore::open(
        &path,
        StoreConfig {
            max_attempts: 2,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            clock: clock.clone(),
        },
    )
    .unwrap();
    let lease = Duration::from_secs(30);
    let step = || clock.advance(Duration::from_secs(7));
    let claim_one = || async { store.claim("w", 1, lease).await.unwrap().remove(0) };

    // Done, ignored.
    store.record(delivery(1)).await.unwrap();
    step();
    let item = claim_one().await;
    step();
    store.complete(&item).await.unwrap();
    store.record(delivery(2)).await.unwrap();
    let item = claim_one().await;
    step();
    store.ignore(&item, "not ours").await.unwrap();
    // Dead after failing with a backoff: the retry was due when claimed again.
    store.record(delivery(3)).await.unwrap();
    let item = claim_one().await;
    store.fail(&item, "boom").await.unwrap();
    clock.advance(Duration::from_secs(60));
    let item = claim_one().await;
    step();
    assert!(matches!(
        store.fail(&item, "boom again").await.unwrap(),
        FailOutcome::Dead
    ));
    // Dead because its lease ran out on every attempt.
    store.record(delivery(4)).await.unwrap();
    for _ in 0..2 {
        claim_one().await;
        clock.advance(lease + Duration::from_secs(1));
    }
    assert!(store.claim("w", 1, lease).await.unwrap().is_empty());
    // Leased as it was recorded, then done.
    let waiting = store.claim_waiting("w", 1, lease, Duration::from_secs(5));
    let record = async {
        tokio::task::yield_now().await;
        store.record(delivery(5)).await.unwrap()
    };
    let (items, _) = tokio::join!(waiting, record);
    step();
    store.complete(&items.unwrap()[0]).await.unwrap();
    // Ignored, replayed, then done.
    store.record(delivery(6)).await.unwrap();
    let item = claim_one().await;
    store.ignore(&item, "not yet").await.unwrap();
    step();
    store.replay(item.id).await.unwrap();
    step();
    let item = claim_one().await;
    step();
    store.complete(&item).await.unwrap();
    drop(store);

    let connection = Connection::open(&path).unwrap();
    let rows: Vec<(String, i64, i64)> = connection
        .prepare("SELECT status, next_attempt_at, finished_at FROM inbox ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let statuses: Vec<&str> = rows.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        ["done", "ignored", "dead", "dead", "done", "done"]
    );
    for (status, ready, finished) in &rows {
        assert!(
            ready <= finished,
            "{status}: ready at {ready}, finished at {finished}"
        );
    }
}

#[test]
fn purge_walks_the_ready_index() {
    let dir = tempfile::tempdir().unwrap();
    let connection = open_connection(&dir.path().join("plan.db")).unwrap();
    for sql in [PURGE_DELIVERIES, PURGE_INBOX] {
        let plan: Vec<String> = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([0], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step
                .contains("SEARCH inbox USING INDEX inbox_ready (status=? AND next_attempt_at<?)")),
            "{sql}: {plan:?}"
        );
    }
}
