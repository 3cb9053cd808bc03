//! The inbox worker under tokio's paused clock: no socket, no wall time, so
//! these hold on a machine of any speed or load.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plane_server::metrics::Metrics;
use plane_server::worker::{Worker, WorkerConfig};
use plane_webhook::{
    BoxFuture, Clock, DeliveryStore, Envelope, EventHandler, Handled, HandlerError, InboxItem,
    MemoryStore, NewDelivery, Status, StoreConfig,
};
use tokio::sync::{Notify, watch};

mod support;
use support::ProbeStore;

/// The store's clock follows tokio's, so paused time moves leases too.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        1_700_000_000_000 + i64::try_from(self.0.elapsed().as_millis()).unwrap()
    }
}

/// Sleeps `delay` (tokio time), then counts.
#[derive(Debug, Default)]
struct Slow {
    delay: Duration,
    handled: AtomicUsize,
}

impl EventHandler for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    fn handle<'a>(
        &'a self,
        _: &'a InboxItem,
        _: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.handled.fetch_add(1, Ordering::SeqCst);
            Ok(Handled::Done)
        })
    }
}

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(StoreConfig {
        clock: Arc::new(TokioClock(tokio::time::Instant::now())),
        ..StoreConfig::default()
    }))
}

async fn record(store: &MemoryStore, n: u32) {
    let body = format!(
        r#"{{"event": "issue", "action": "created", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c99{n:02}", "name": "item {n}"}}}}"#
    )
    .into_bytes();
    let envelope = Envelope::parse(&body).unwrap();
    store
        .record(NewDelivery::new(
            uuid::Uuid::new_v4(),
            &envelope.head(),
            body,
        ))
        .await
        .unwrap();
}

fn worker(
    store: &Arc<MemoryStore>,
    handler: &Arc<Slow>,
    metrics: &Arc<Metrics>,
    enabled: bool,
    lease: Duration,
) -> Worker {
    Worker {
        store: store.clone(),
        handlers: vec![handler.clone()],
        metrics: metrics.clone(),
        queued: Arc::new(Notify::new()),
        enabled,
        config: WorkerConfig {
            name: "test".into(),
            lease,
            batch: 4,
            poll: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 86_400),
            purge_interval: Duration::from_secs(86_400),
        },
    }
}

#[tokio::test(start_paused = true)]
async fn a_switched_off_connector_holds_the_inbox_until_it_is_on() {
    let store = store();
    for n in 0..3 {
        record(&store, n).await;
    }
    let handler = Arc::new(Slow::default());
    let metrics = Arc::new(Metrics::default());
    metrics.seed(&store.stats().await.unwrap());
    let (stop, stopped) = watch::channel(false);
    let off = tokio::spawn(
        worker(&store, &handler, &metrics, false, Duration::from_secs(60)).run(stopped),
    );
    // A hundred poll intervals of (paused) time: an enabled worker would have
    // claimed everything at its first poll.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let held = store.list(None, 10).await.unwrap();
    assert_eq!(held.len(), 3);
    assert!(
        held.iter()
            .all(|r| r.status == Status::Pending && r.attempts == 0),
        "{held:?}"
    );
    assert_eq!(handler.handled.load(Ordering::SeqCst), 0);
    stop.send(true).unwrap();
    off.await.unwrap();

    // Switched on (a restart with plane.enabled = true): everything is handled once.
    let (stop, stopped) = watch::channel(false);
    let on = tokio::spawn(
        worker(&store, &handler, &metrics, true, Duration::from_secs(60)).run(stopped),
    );
    while store.stats().await.unwrap().done < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(handler.handled.load(Ordering::SeqCst), 3);
    assert_eq!(metrics.backlog(), 0, "the gauge followed the items");
    stop.send(true).unwrap();
    on.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_long_handler_keeps_its_lease_so_no_other_worker_takes_the_item() {
    let store = store();
    record(&store, 1).await;
    // 2.5 leases long; the heartbeat extends the lease every third of it.
    let lease = Duration::from_secs(1);
    let handler = Arc::new(Slow {
        delay: lease * 5 / 2,
        ..Slow::default()
    });
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker(&store, &handler, &metrics, true, lease).run(stopped));
    while store.stats().await.unwrap().processing == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another worker keeps trying for twice the lease, every tenth of it.
    for _ in 0..20 {
        assert!(
            store.claim("intruder", 1, lease).await.unwrap().is_empty(),
            "the lease ran out while its handler was still running"
        );
        tokio::time::sleep(lease / 10).await;
    }
    while store.stats().await.unwrap().done == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handler.handled.load(Ordering::SeqCst), 1);
    stop.send(true).unwrap();
    running.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_completions_of_a_claim_go_to_the_store_together() {
    let memory = store();
    for n in 0..12 {
        record(&memory, n).await;
    }
    let probe = Arc::new(ProbeStore::new(memory.clone()));
    let handler = Arc::new(Slow::default());
    let metrics = Arc::new(Metrics::default());
    metrics.seed(&memory.stats().await.unwrap());
    let mut worker = worker(&memory, &handler, &metrics, true, Duration::from_secs(60));
    worker.store = probe.clone();
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    while memory.stats().await.unwrap().done < 12 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(handler.handled.load(Ordering::SeqCst), 12);
    assert_eq!(metrics.backlog(), 0, "each item was counted once stored");
    assert_eq!(
        probe.complete_calls.load(Ordering::SeqCst),
        0,
        "no item was completed on its own"
    );
    assert_eq!(probe.completed_together.load(Ordering::SeqCst), 12);
    let calls = probe.complete_all_calls.load(Ordering::SeqCst);
    assert!(
        calls < 12,
        "{calls} calls for 12 items: completions finishing together share one"
    );
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_the_claim_sent_ahead_gives_its_items_back() {
    let store = store();
    for n in 0..8 {
        record(&store, n).await;
    }
    let handler = Arc::new(Slow {
        delay: Duration::from_secs(10),
        ..Slow::default()
    });
    let metrics = Arc::new(Metrics::default());
    // Claims of 2 items.
    let mut worker = worker(&store, &handler, &metrics, true, Duration::from_secs(60));
    worker.config.batch = 2;
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    // The first claim is being handled and the next one was sent ahead: four
    // items are leased.
    while store.stats().await.unwrap().processing < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.processing, 0,
        "a leased item was left behind: {stats:?}"
    );
    assert_eq!((stats.done, stats.pending), (2, 6), "{stats:?}");
    assert_eq!(handler.handled.load(Ordering::SeqCst), 2);
    assert!(
        store
            .list(Some(Status::Pending), 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.attempts == 0),
        "what was given back has its attempt returned"
    );
}
