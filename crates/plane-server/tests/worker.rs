//! The inbox worker under tokio's paused clock: no socket, no wall time, so
//! these hold on a machine of any speed or load.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
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

/// Counts each item it handles; `item N` with `slow(N)` takes `delay` (tokio time).
#[derive(Debug)]
struct SlowFor {
    slow: fn(u32) -> bool,
    delay: Duration,
    handled: std::sync::Mutex<Vec<u32>>,
}

impl SlowFor {
    fn new(slow: fn(u32) -> bool, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            slow,
            delay,
            handled: std::sync::Mutex::default(),
        })
    }

    fn handled(&self) -> Vec<u32> {
        let mut handled = self.handled.lock().unwrap().clone();
        handled.sort_unstable();
        handled
    }
}

impl EventHandler for SlowFor {
    fn name(&self) -> &str {
        "slow-for"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    fn handle<'a>(
        &'a self,
        _: &'a InboxItem,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        let n: u32 = envelope
            .work_item()
            .and_then(|item| item.name.as_deref()?.strip_prefix("item ")?.parse().ok())
            .unwrap();
        Box::pin(async move {
            if (self.slow)(n) {
                tokio::time::sleep(self.delay).await;
            }
            self.handled.lock().unwrap().push(n);
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
    handler: &Arc<SlowFor>,
    metrics: &Arc<Metrics>,
    enabled: bool,
    lease: Duration,
    batch: usize,
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
            batch,
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
    let handler = SlowFor::new(|_| false, Duration::ZERO);
    let metrics = Arc::new(Metrics::default());
    metrics.seed(&store.stats().await.unwrap());
    let (stop, stopped) = watch::channel(false);
    let off = tokio::spawn(
        worker(
            &store,
            &handler,
            &metrics,
            false,
            Duration::from_secs(60),
            4,
        )
        .run(stopped),
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
    assert_eq!(handler.handled().len(), 0);
    stop.send(true).unwrap();
    off.await.unwrap();

    // Switched on (a restart with plane.enabled = true): everything is handled once.
    let (stop, stopped) = watch::channel(false);
    let on = tokio::spawn(
        worker(&store, &handler, &metrics, true, Duration::from_secs(60), 4).run(stopped),
    );
    while store.stats().await.unwrap().done < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(handler.handled().len(), 3);
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
    let handler = SlowFor::new(|_| true, lease * 5 / 2);
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker(&store, &handler, &metrics, true, lease, 4).run(stopped));
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
    assert_eq!(handler.handled().len(), 1);
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
    let handler = SlowFor::new(|_| false, Duration::ZERO);
    let metrics = Arc::new(Metrics::default());
    metrics.seed(&memory.stats().await.unwrap());
    let mut worker = worker(
        &memory,
        &handler,
        &metrics,
        true,
        Duration::from_secs(60),
        4,
    );
    worker.store = probe.clone();
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    while memory.stats().await.unwrap().done < 12 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(handler.handled().len(), 12);
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

/// Waits (in tokio time) until `ready` holds, for at most a minute.
async fn until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !ready().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within a minute"));
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_the_claim_sent_ahead_gives_its_items_back() {
    let store = store();
    for n in 0..8 {
        record(&store, n).await;
    }
    // The first claim goes fast, so the worker starts sending claims ahead;
    // from item 2 on each item takes 10 s.
    let handler = SlowFor::new(|n| n >= 2, Duration::from_secs(10));
    let metrics = Arc::new(Metrics::default());
    let worker = worker(&store, &handler, &metrics, true, Duration::from_secs(60), 2);
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    // Items 2 and 3 are being handled and the next claim was sent ahead:
    // more than two items are leased.
    until("a claim sent ahead", async || {
        store.stats().await.unwrap().processing > 2
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.processing, 0,
        "a leased item was left behind: {stats:?}"
    );
    assert_eq!((stats.done, stats.pending), (4, 4), "{stats:?}");
    assert_eq!(handler.handled(), [0, 1, 2, 3]);
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

#[tokio::test(start_paused = true)]
async fn items_held_by_a_claim_sent_ahead_keep_their_lease_while_the_one_before_runs_long() {
    let store = store();
    for n in 0..4 {
        record(&store, n).await;
    }
    // Claims of one item; item 2 takes 2.5 leases, while item 3 waits in the
    // claim sent ahead.
    let lease = Duration::from_secs(1);
    let handler = SlowFor::new(|n| n == 2, lease * 5 / 2);
    let metrics = Arc::new(Metrics::default());
    let worker = worker(&store, &handler, &metrics, true, lease, 1);
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    until("items 0 and 1 to be done", async || {
        store.stats().await.unwrap().done >= 2
    })
    .await;
    // Another worker keeps trying, every 10 ms, until all is done.
    let mut stolen = Vec::new();
    until("the inbox to drain", async || {
        stolen.extend(store.claim("intruder", 10, lease).await.unwrap());
        store.stats().await.unwrap().done + stolen.len() as u64 >= 4
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap();
    assert!(
        stolen.is_empty(),
        "a lease ran out while its item waited: {:?}",
        stolen.iter().map(|i| i.id).collect::<Vec<_>>()
    );
    assert_eq!(handler.handled(), [0, 1, 2, 3], "each item handled once");
    assert_eq!(metrics.processed_count("lease_lost"), 0);
}
