//! Property: whatever the interleaving of records (including re-sends),
//! claims, completions, failures, crashes (expired leases) and time, every
//! distinct event is queued once and, once drained, handled exactly once.
//! Run against every store: memory, SQLite, and PostgreSQL when
//! `PLANE_TEST_DATABASE_URL` names a test database.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use plane_webhook::{
    DeliveryStore, Error, EventHead, ManualClock, MemoryStore, NewDelivery, PgStore, RecordOutcome,
    SqliteStore, StoreConfig,
};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    /// Plane sends event `n` (a new delivery id each time, like its retries).
    Record(u8),
    /// The same delivery id again.
    Repeat(u8),
    Claim {
        worker: u8,
        limit: u8,
    },
    Complete(prop::sample::Index),
    Fail(prop::sample::Index),
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8).prop_map(Op::Record),
        1 => (0u8..8).prop_map(Op::Repeat),
        3 => (0u8..3, 1u8..4).prop_map(|(worker, limit)| Op::Claim { worker, limit }),
        3 => any::<prop::sample::Index>().prop_map(Op::Complete),
        1 => any::<prop::sample::Index>().prop_map(Op::Fail),
        1 => (0u8..50).prop_map(Op::Advance),
    ]
}

fn delivery(n: u8, id: Uuid) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "created", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "event {n}"}}}}"#
    );
    NewDelivery::new(
        id,
        &EventHead::parse(body.as_bytes()).unwrap(),
        body.into_bytes(),
    )
}

async fn run(
    store: &dyn DeliveryStore,
    clock: &ManualClock,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let lease = Duration::from_secs(30);
    let mut first_delivery: HashMap<u8, Uuid> = HashMap::new();
    let mut new_ids: HashMap<i64, u8> = HashMap::new();
    let mut held: Vec<plane_webhook::InboxItem> = Vec::new();
    let mut completions: HashMap<i64, u32> = HashMap::new();
    for op in ops {
        match op {
            Op::Record(n) | Op::Repeat(n) => {
                let id = match op {
                    Op::Repeat(_) => *first_delivery.get(n).unwrap_or(&Uuid::new_v4()),
                    _ => Uuid::new_v4(),
                };
                first_delivery.entry(*n).or_insert(id);
                if let RecordOutcome::New { id } = store.record(delivery(*n, id)).await.unwrap() {
                    prop_assert!(
                        !new_ids.values().any(|m| m == n),
                        "event {} queued twice",
                        n
                    );
                    new_ids.insert(id, *n);
                }
            }
            Op::Claim { worker, limit } => {
                let name = format!("w{worker}");
                // Earlier holders of a re-leased item stay in `held`: their
                // late completions must be refused, not counted.
                held.extend(
                    store
                        .claim(&name, usize::from(*limit), lease)
                        .await
                        .unwrap(),
                );
            }
            Op::Complete(i) | Op::Fail(i) if !held.is_empty() => {
                let item = held.remove(i.index(held.len()));
                let result = match op {
                    Op::Complete(_) => store.complete(&item).await.map(|()| true),
                    _ => store.fail(&item, "handler failed").await.map(|_| false),
                };
                match result {
                    Ok(true) => *completions.entry(item.id).or_default() += 1,
                    Ok(false) | Err(Error::LeaseLost { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            Op::Complete(_) | Op::Fail(_) => {}
            Op::Advance(secs) => clock.advance(Duration::from_secs(u64::from(*secs))),
        }
    }
    // Drain: every crashed lease and pending retry comes back and is handled.
    for _ in 0..100 {
        clock.advance(Duration::from_secs(3600));
        let items = store.claim("drain", 1000, lease).await.unwrap();
        if items.is_empty() {
            break;
        }
        for item in items {
            store.complete(&item).await.unwrap();
            *completions.entry(item.id).or_default() += 1;
        }
    }
    let distinct: std::collections::HashSet<_> = first_delivery.keys().collect();
    prop_assert_eq!(new_ids.len(), distinct.len());
    for id in new_ids.keys() {
        prop_assert_eq!(
            completions.get(id).copied(),
            Some(1),
            "delivery {} handled {:?} times",
            id,
            completions.get(id)
        );
    }
    prop_assert_eq!(completions.len(), new_ids.len());
    Ok(())
}

fn config(clock: &Arc<ManualClock>) -> StoreConfig {
    StoreConfig {
        max_attempts: 10_000,
        clock: clock.clone(),
        ..StoreConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #[test]
    fn memory_store_handles_every_event_exactly_once(ops in prop::collection::vec(op(), 1..80)) {
        let clock = Arc::new(ManualClock::new(0));
        let store = MemoryStore::new(config(&clock));
        runtime().block_on(run(&store, &clock, &ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn sqlite_store_handles_every_event_exactly_once(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let store = SqliteStore::open(dir.path().join("p.db"), config(&clock)).unwrap();
        runtime().block_on(run(&store, &clock, &ops))?;
    }
}

proptest! {
    // Each case is a schema of its own: fewer cases than SQLite's, same operations.
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn postgres_store_handles_every_event_exactly_once(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = runtime();
        // Skipped (with plane_postgres::testing's message) without a test database.
        let Some(pg) = runtime.block_on(plane_postgres::testing::database("props")) else {
            return Ok(());
        };
        let clock = Arc::new(ManualClock::new(0));
        let store = runtime.block_on(PgStore::open(pg.db().clone(), config(&clock))).unwrap();
        runtime.block_on(run(&store, &clock, &ops))?;
    }
}
