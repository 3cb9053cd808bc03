//! The inbox worker: claims items, runs the handlers that want them, marks them
//! done, ignored or failed, and purges old deliveries on a schedule.
//!
//! An item is marked done only after a handler that owns its event ran (and
//! said [`Handled::Done`], [`Handled::NotOurs`] or [`Handled::Echo`], the
//! last kept with its note); one that no handler wants is marked ignored with
//! the reason ("no handler for issue.updated"). A handler that answers
//! [`Handled::Completed`] finished the item itself, in the transaction of its
//! own change.
//!
//! With the connector switched off it claims nothing: stored deliveries wait,
//! untouched and with all their attempts, until a worker runs with it on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use plane_webhook::{
    BoxFuture, DeliveryStore, Envelope, EventHandler, FailOutcome, Handled, InboxItem,
};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker's leases (for people reading the table).
    pub name: String,
    /// How long a claimed item is held; renewed every third of it while a handler runs.
    pub lease: Duration,
    /// The most items claimed at a time. A claim starts at a few items and
    /// doubles while whole claims are handled in a small part of the lease, up
    /// to this; it halves when one runs long, so items waiting their turn in a
    /// claim never outlive their lease.
    pub batch: usize,
    /// How often to look for due retries when nothing wakes the worker.
    pub poll: Duration,
    /// Finished deliveries older than this are purged.
    pub retention: Duration,
    /// How often to purge.
    pub purge_interval: Duration,
}

/// Drains the inbox until told to stop.
#[derive(Debug)]
pub struct Worker {
    /// Where the inbox is.
    pub store: Arc<dyn DeliveryStore>,
    /// Each item goes to every handler that wants it.
    pub handlers: Vec<Arc<dyn EventHandler>>,
    /// Counts results and keeps the inbox gauges.
    pub metrics: Arc<Metrics>,
    /// Notified by the receiver when it stored something.
    pub queued: Arc<Notify>,
    /// The connector switch: off, nothing is claimed.
    pub enabled: bool,
    /// Lease, batch, polling and purge settings.
    pub config: WorkerConfig,
}

impl Worker {
    /// Runs until `shutdown` turns true; items claimed but not started are given
    /// back, those in progress are finished.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut next_purge = tokio::time::Instant::now();
        let mut claim_size = ClaimSize::new(self.config.batch, self.config.lease);
        // `start` seeded the gauges just before serving; later purges re-count.
        let mut recount = false;
        if !self.enabled {
            tracing::warn!(
                "the connector is off (plane.enabled = false): deliveries are stored and held \
                 until it is switched on"
            );
        }
        // The items of the claim sent ahead, held (their leases renewed)
        // while the claim before them was handled.
        let mut held: Option<Vec<InboxItem>> = None;
        // Whether the last claim was handled within an eighth of the lease.
        let mut fast = false;
        // Claims that failed in a row (a lost database): the pause before the next grows.
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                // What the claim sent ahead holds is given back untouched.
                if let Some(items) = held.take() {
                    self.release_all(items).await;
                }
                break;
            }
            if tokio::time::Instant::now() >= next_purge {
                self.purge(recount).await;
                recount = true;
                next_purge = tokio::time::Instant::now() + self.config.purge_interval;
            }
            if !self.enabled {
                tokio::select! {
                    () = tokio::time::sleep_until(next_purge) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // With nothing ready, the claim waits in the store a moment: what
            // arrives meanwhile is leased to it as it is recorded, with no
            // second write and no read.
            let items = match held.take() {
                Some(items) => items,
                None => match self.claim(claim_size).await {
                    Ok(items) => {
                        self.metrics.set_store_up(true);
                        if failures > 0 {
                            tracing::info!(failures, "the inbox answers again");
                            failures = 0;
                        }
                        items
                    }
                    Err(e) => {
                        // The database is down or unreachable: try again later, a little
                        // later each time, and say so once rather than every poll.
                        failures += 1;
                        self.metrics.set_store_up(false);
                        let pause = claim_backoff(self.config.poll, failures);
                        if failures == 1 {
                            tracing::error!(error = %e, "could not claim inbox items; retrying with backoff");
                        } else {
                            tracing::debug!(error = %e, failures, "the inbox still does not answer");
                        }
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                },
            };
            if items.is_empty() {
                tokio::select! {
                    () = self.queued.notified() => {}
                    () = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // While claims go fast, the next one goes out now and waits in the
            // store while these are handled: under load too, deliveries are
            // then leased as they are recorded. Its items are held, their
            // leases renewed, until these are done.
            let ahead = (fast && !*shutdown.borrow()).then(|| self.claim(claim_size));
            let claimed = items.len();
            let started = tokio::time::Instant::now();
            // Up to `HANDLED_AT_ONCE` items are handled at a time: a handler that commits its own
            // change (`complete_with`) waits for a commit, and changes waiting
            // together share one. Each outcome goes to the store as soon as its
            // handlers are done, without waiting for the commit: completions are
            // gathered and sent together, one `complete_all` in flight at a time
            // (those that finish meanwhile wait for the next), and ride along in the
            // store's group commits; a crash re-runs only those not committed yet.
            // Items not started when a shutdown comes are given back.
            let completions = Completions::default();
            let recorded = std::sync::Mutex::new(Vec::new());
            let (stopping, this, finishing, done) = (&shutdown, &self, &recorded, &completions);
            let handling = futures::stream::iter(items).for_each_concurrent(
                HANDLED_AT_ONCE,
                |item| async move {
                    if *stopping.borrow() {
                        if let Err(e) = this.store.release(&item).await {
                            tracing::warn!(id = item.id, error = %e, "could not release an item at shutdown");
                        }
                        return;
                    }
                    let (outcome, took) = this.process(&item).await;
                    let unfinished = match outcome {
                        Ok(Handled::Done) => return done.push(item, "done", took),
                        Ok(Handled::NotOurs) => return done.push(item, "not_ours", took),
                        Ok(Handled::Completed) => return this.metrics.processed("done", took),
                        Ok(Handled::Ignored { reason }) => Unfinished::Ignored(reason),
                        Ok(Handled::Echo { note }) => Unfinished::Echo(note),
                        Err(message) => Unfinished::Failed(message),
                    };
                    let recorded = tokio::spawn(finish(
                        this.store.clone(),
                        this.metrics.clone(),
                        item,
                        unfinished,
                        took,
                    ));
                    finishing
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(recorded);
                },
            );
            let handled = Notify::new();
            let handling = async {
                handling.await;
                completions.close();
                handled.notify_one();
            };
            let holding = async {
                let mut items = self.claimed(ahead?).await;
                self.hold(&mut items, &handled).await;
                Some(items)
            };
            let (_, _, ahead_items) = tokio::join!(
                handling,
                completions.send(&*self.store, &self.metrics),
                holding
            );
            // An empty answer (nothing came, or every lease was lost) is not
            // held: the next claim is a fresh one.
            held = ahead_items.filter(|items| !items.is_empty());
            let finishing = recorded
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            futures::future::join_all(finishing).await;
            claim_size.after(claimed, started.elapsed());
            fast = started.elapsed() < self.config.lease / 8;
        }
        tracing::info!("inbox worker stopped");
    }

    /// Sends a claim of `size` items, which waits in the store a moment when
    /// nothing is ready.
    fn claim(&self, size: ClaimSize) -> Claim<'_> {
        self.store.claim_waiting(
            &self.config.name,
            size.get(),
            self.config.lease,
            self.config.poll.min(CLAIM_WAIT),
        )
    }

    /// The items a claim brought; none when it failed (logged).
    async fn claimed(&self, claim: Claim<'_>) -> Vec<InboxItem> {
        claim.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not claim inbox items");
            Vec::new()
        })
    }

    /// Renews the leases of `items` every third of a lease until `handled`
    /// is notified; an item whose lease was lost meanwhile is dropped.
    async fn hold(&self, items: &mut Vec<InboxItem>, handled: &Notify) {
        let beat = self.config.lease / 3;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        while !items.is_empty() {
            tokio::select! {
                biased;
                () = handled.notified() => return,
                _ = heartbeat.tick() => {
                    let mut kept = Vec::with_capacity(items.len());
                    for item in items.drain(..) {
                        match self.store.extend(&item, self.config.lease).await {
                            Ok(()) => kept.push(item),
                            Err(e) => tracing::warn!(id = item.id, error = %e, "a held item's lease could not be renewed; it is left to its new holder"),
                        }
                    }
                    *items = kept;
                }
            }
        }
    }

    /// Gives leased items back untouched (at shutdown).
    async fn release_all(&self, items: Vec<InboxItem>) {
        for item in items {
            if let Err(e) = self.store.release(&item).await {
                tracing::warn!(id = item.id, error = %e, "could not release an item at shutdown");
            }
        }
    }

    /// Deletes what is past retention, then re-synchronises the inbox gauges
    /// (the `deliveries` commands may have changed the store from another process).
    async fn purge(&self, recount: bool) {
        match self.store.purge(self.config.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged finished deliveries past retention"),
            Err(e) => tracing::error!(error = %e, "purge failed"),
        }
        if !recount {
            return;
        }
        match self.store.stats().await {
            Ok(stats) => self.metrics.seed(&stats),
            Err(e) => tracing::warn!(error = %e, "could not re-count the inbox for /metrics"),
        }
    }

    /// Runs the handlers of one item, keeping its lease alive meanwhile; the
    /// outcome is recorded through [`Completions`] or [`finish`].
    async fn process(&self, item: &InboxItem) -> Outcome {
        self.metrics.started();
        let started = Instant::now();
        let work = async {
            match Envelope::parse(&item.body) {
                // A panicking handler fails its item (retried, then dead) instead of
                // taking the worker down while the receiver keeps filling the inbox.
                Ok(envelope) => AssertUnwindSafe(self.dispatch(item, &envelope))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(format!("a handler panicked: {}", panic_text(&panic)))
                    }),
                Err(e) => Err(format!("stored body no longer parses: {e}")),
            }
        };
        tokio::pin!(work);
        // Keep the lease alive while a handler runs long (it calls Plane, which
        // paces at about one request a second), so no other worker takes the item.
        // The first beat a third of a lease from now. (`interval`'s immediate first
        // tick goes through the timer, which has a 1 ms resolution: awaited per
        // item, it capped the worker at under 1,000 items a second.)
        let beat = self.config.lease / 3;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        let outcome = loop {
            tokio::select! {
                // Work first: a handler that finishes at once never touches the
                // timer (registering and dropping the heartbeat costs a lock each).
                biased;
                outcome = &mut work => break outcome,
                _ = heartbeat.tick() => {
                    if let Err(e) = self.store.extend(item, self.config.lease).await {
                        tracing::warn!(id = item.id, error = %e, "could not extend the lease");
                    }
                }
            }
        };
        // What the crash test counts: a handler run, whatever became of it.
        tracing::debug!(id = item.id, attempts = item.attempts, "inbox item handled");
        (outcome, started.elapsed())
    }

    /// Runs every handler that owns the event, in order. The item's outcome is
    /// the strongest of theirs: `Completed` (no later handler runs), then
    /// `Done`, `Echo`, `NotOurs`, `Ignored`; with no handler at all, it is ignored.
    async fn dispatch(&self, item: &InboxItem, envelope: &Envelope) -> Result<Handled, String> {
        let mut outcome: Option<Handled> = None;
        for handler in self.handlers.iter().filter(|h| h.wants(envelope)) {
            if outcome == Some(Handled::Completed) {
                tracing::warn!(
                    id = item.id,
                    handler = handler.name(),
                    "an earlier handler completed the item; this one does not run"
                );
                continue;
            }
            let handled = handler
                .handle(item, envelope)
                .await
                .map_err(|e| format!("handler {}: {e}", handler.name()))?;
            outcome = Some(match (outcome, handled) {
                (None, handled) => handled,
                (Some(a), b) => strongest(a, b),
            });
        }
        Ok(outcome.unwrap_or_else(|| Handled::Ignored {
            reason: format!(
                "no handler for {}.{}",
                envelope.event,
                envelope.action.as_str()
            ),
        }))
    }
}

/// Items whose handlers are done (or said not ours), waiting to be marked done
/// in the store together.
#[derive(Default)]
struct Completions {
    waiting: std::sync::Mutex<Vec<Done>>,
    closed: std::sync::atomic::AtomicBool,
    more: Notify,
}

impl Completions {
    fn push(&self, item: InboxItem, result: &'static str, took: Duration) {
        self.lock().push((item, result, took));
        self.more.notify_one();
    }

    /// No more items will come: `send` ends once it has sent the last.
    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.more.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Done>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends what has gathered, one `complete_all` at a time, until closed and
    /// empty; counts each item once the store answered for it.
    async fn send(&self, store: &dyn DeliveryStore, metrics: &Metrics) {
        loop {
            // Read before taking the items: a close seen here was made after the last push.
            let closed = self.closed.load(std::sync::atomic::Ordering::Acquire);
            let batch = std::mem::take(&mut *self.lock());
            if batch.is_empty() {
                if closed {
                    return;
                }
                self.more.notified().await;
                continue;
            }
            let (items, counted): (Vec<InboxItem>, Vec<_>) = batch
                .into_iter()
                .map(|(item, result, took)| (item, (result, took)))
                .unzip();
            let answers = store.complete_all(&items).await;
            for ((item, (result, took)), answer) in items.iter().zip(counted).zip(answers) {
                let result = answer.map(|()| result).unwrap_or_else(|e| {
                    tracing::warn!(id = item.id, error = %e, "could not finish an item (its lease had ended?)");
                    "lease_lost"
                });
                metrics.processed(result, took);
            }
        }
    }
}

/// An item to mark done, the result it is counted under, and how long its
/// handlers took.
type Done = (InboxItem, &'static str, Duration);

/// An outcome that is not a plain completion (those go through [`Completions`]).
enum Unfinished {
    Ignored(String),
    /// Done, with a note: rare enough (the connector's own writes) to skip the batching.
    Echo(String),
    Failed(String),
}

/// Records an ignored, echoed or failed item in the store (failed or dead), and counts it.
async fn finish(
    store: Arc<dyn DeliveryStore>,
    metrics: Arc<Metrics>,
    item: InboxItem,
    outcome: Unfinished,
    took: Duration,
) {
    let recorded = match &outcome {
        Unfinished::Ignored(reason) => {
            tracing::info!(id = item.id, event = %item.event, action = %item.action, reason = %reason, "inbox item ignored");
            store.ignore(&item, reason).await.map(|()| "ignored")
        }
        Unfinished::Echo(note) => {
            tracing::debug!(id = item.id, event = %item.event, action = %item.action, note = %note, "inbox item is the echo of the connector's own write");
            store.complete_noted(&item, note).await.map(|()| "echo")
        }
        Unfinished::Failed(message) => match store.fail(&item, message).await {
            Ok(FailOutcome::Retry { at }) => {
                tracing::warn!(id = item.id, attempts = item.attempts, retry_at_ms = at, error = %message, "handler failed; will retry");
                Ok("failed")
            }
            Ok(FailOutcome::Dead) => {
                tracing::error!(id = item.id, attempts = item.attempts, error = %message, "handler failed for the last time; parked as dead");
                Ok("dead")
            }
            Err(e) => Err(e),
        },
    };
    let result = recorded.unwrap_or_else(|e| {
        tracing::warn!(id = item.id, error = %e, "could not finish an item (its lease had ended?)");
        "lease_lost"
    });
    metrics.processed(result, took);
}

fn strongest(a: Handled, b: Handled) -> Handled {
    // An echo outranks `NotOurs`: one handler recognised the event as its own.
    let rank = |h: &Handled| match h {
        Handled::Completed => 4,
        Handled::Done => 3,
        Handled::Echo { .. } => 2,
        Handled::NotOurs => 1,
        Handled::Ignored { .. } => 0,
    };
    match (a, b) {
        (Handled::Ignored { reason: x }, Handled::Ignored { reason: y }) => Handled::Ignored {
            reason: format!("{x}; {y}"),
        },
        (a, b) if rank(&b) > rank(&a) => b,
        (a, _) => a,
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// A claim sent to the store, answered when awaited.
type Claim<'a> = BoxFuture<'a, Result<Vec<InboxItem>, plane_webhook::Error>>;

/// What the handlers said about an item, and how long they took.
type Outcome = (Result<Handled, String>, Duration);

/// The longest a claim waits in the store for deliveries to arrive: short, so
/// a shutdown never waits long for it.
const CLAIM_WAIT: Duration = Duration::from_millis(250);

/// Items of a claim handled at once: enough that handlers committing their own
/// change (the BIR handler's `complete_with`) keep up with 64 senders.
const HANDLED_AT_ONCE: usize = 64;

/// How many items the next claim takes: it starts small, doubles while whole
/// claims go by in an eighth of the lease, and halves when one takes more
/// than a quarter of it. A claim's last item waits for all before it, and
/// only the item being handled has its lease renewed.
#[derive(Debug, Clone, Copy)]
struct ClaimSize {
    current: usize,
    max: usize,
    lease: Duration,
}

impl ClaimSize {
    fn new(max: usize, lease: Duration) -> Self {
        let max = max.max(1);
        Self {
            current: max.min(4),
            max,
            lease,
        }
    }

    fn get(self) -> usize {
        self.current
    }

    fn after(&mut self, claimed: usize, took: Duration) {
        if took > self.lease / 4 {
            self.current = (self.current / 2).max(1);
        } else if claimed == self.current && took < self.lease / 8 {
            self.current = (self.current * 2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_grow_while_fast_and_shrink_when_slow() {
        let lease = Duration::from_secs(60);
        let mut size = ClaimSize::new(512, lease);
        assert_eq!(size.get(), 4);
        for _ in 0..20 {
            let n = size.get();
            size.after(n, Duration::from_millis(5));
        }
        assert_eq!(size.get(), 512, "a fast handler reaches the cap");
        size.after(100, Duration::from_millis(5));
        assert_eq!(
            size.get(),
            512,
            "a short claim (the backlog ran out) keeps the size"
        );
        size.after(512, Duration::from_secs(16));
        assert_eq!(
            size.get(),
            256,
            "a claim over a quarter of the lease halves it"
        );
        for _ in 0..20 {
            size.after(1, Duration::from_secs(20));
        }
        assert_eq!(size.get(), 1, "a slow handler takes one item at a time");
        size.after(1, Duration::from_secs(10));
        assert_eq!(size.get(), 1, "between an eighth and a quarter: unchanged");
    }
}

/// The pause after `failures` failed claims in a row: the poll interval, doubling, at most
/// 30 s.
fn claim_backoff(poll: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(5);
    poll.saturating_mul(factor).min(Duration::from_secs(30))
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn failed_claims_back_off_doubling_up_to_30_seconds() {
        let poll = Duration::from_secs(1);
        let pauses: Vec<u64> = (1..=8).map(|n| claim_backoff(poll, n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            claim_backoff(Duration::from_millis(250), 1).as_millis(),
            250
        );
    }
}
