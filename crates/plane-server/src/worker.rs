//! The inbox worker: claims items, runs the handlers that want them, marks them
//! done, ignored or failed, and purges old deliveries on a schedule.
//!
//! An item is marked done only after a handler that owns its event ran (and
//! said [`Handled::Done`] or [`Handled::NotOurs`]); one that no handler wants
//! is marked ignored with the reason ("no handler for issue.updated"). A
//! handler that answers [`Handled::Completed`] finished the item itself, in
//! the transaction of its own change.
//!
//! With the connector switched off it claims nothing: stored deliveries wait,
//! untouched and with all their attempts, until a worker runs with it on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use plane_webhook::{DeliveryStore, Envelope, EventHandler, FailOutcome, Handled, InboxItem};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker's leases (for people reading the table).
    pub name: String,
    /// How long a claimed item is held; renewed every third of it while a handler runs.
    pub lease: Duration,
    /// Items claimed at a time.
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
    /// back, the one in progress is finished.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut next_purge = tokio::time::Instant::now();
        // `start` seeded the gauges just before serving; later purges re-count.
        let mut recount = false;
        if !self.enabled {
            tracing::warn!(
                "the connector is off (plane.enabled = false): deliveries are stored and held \
                 until it is switched on"
            );
        }
        loop {
            if *shutdown.borrow() {
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
            let items = match self
                .store
                .claim(&self.config.name, self.config.batch, self.config.lease)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "could not claim inbox items");
                    Vec::new()
                }
            };
            if items.is_empty() {
                tokio::select! {
                    () = self.queued.notified() => {}
                    () = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let mut items = items.into_iter();
            for item in items.by_ref() {
                self.process(&item).await;
                if *shutdown.borrow() {
                    break;
                }
            }
            for unstarted in items {
                if let Err(e) = self.store.release(&unstarted).await {
                    tracing::warn!(id = unstarted.id, error = %e, "could not release an item at shutdown");
                }
            }
        }
        tracing::info!("inbox worker stopped");
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

    async fn process(&self, item: &InboxItem) {
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
        let mut heartbeat = tokio::time::interval(self.config.lease / 3);
        heartbeat.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                _ = heartbeat.tick() => {
                    if let Err(e) = self.store.extend(item, self.config.lease).await {
                        tracing::warn!(id = item.id, error = %e, "could not extend the lease");
                    }
                }
            }
        };
        let finished = match outcome {
            Ok(Handled::Done) => self.store.complete(item).await.map(|()| "done"),
            Ok(Handled::NotOurs) => self.store.complete(item).await.map(|()| "not_ours"),
            Ok(Handled::Completed) => Ok("done"),
            Ok(Handled::Ignored { reason }) => {
                tracing::info!(id = item.id, event = %item.event, action = %item.action, reason = %reason, "inbox item ignored");
                self.store.ignore(item, &reason).await.map(|()| "ignored")
            }
            Err(message) => match self.store.fail(item, &message).await {
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
        let result = finished.unwrap_or_else(|e| {
            tracing::warn!(id = item.id, error = %e, "could not finish an item (its lease had ended?)");
            "lease_lost"
        });
        self.metrics.processed(result, started.elapsed());
    }

    /// Runs every handler that owns the event, in order. The item's outcome is
    /// the strongest of theirs: `Completed` (no later handler runs), then
    /// `Done`, `NotOurs`, `Ignored`; with no handler at all, it is ignored.
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

fn strongest(a: Handled, b: Handled) -> Handled {
    let rank = |h: &Handled| match h {
        Handled::Completed => 3,
        Handled::Done => 2,
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
