//! The inbox worker: claims items, runs the handlers that want them, marks them
//! done or failed, and purges old deliveries on a schedule.
//!
//! With the connector switched off it claims nothing: stored deliveries wait,
//! untouched and with all their attempts, until a worker runs with it on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use plane_webhook::{DeliveryStore, Envelope, EventHandler, FailOutcome, InboxItem};
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
                Ok(envelope) => AssertUnwindSafe(self.dispatch(&envelope))
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
        let result = match outcome {
            Ok(()) => match self.store.complete(item).await {
                Ok(()) => "done",
                Err(e) => {
                    tracing::warn!(id = item.id, error = %e, "finished an item whose lease had ended");
                    "lease_lost"
                }
            },
            Err(message) => match self.store.fail(item, &message).await {
                Ok(FailOutcome::Retry { at }) => {
                    tracing::warn!(id = item.id, attempts = item.attempts, retry_at_ms = at, error = %message, "handler failed; will retry");
                    "retry"
                }
                Ok(FailOutcome::Dead) => {
                    tracing::error!(id = item.id, attempts = item.attempts, error = %message, "handler failed for the last time; parked as dead");
                    "dead"
                }
                Err(e) => {
                    tracing::warn!(id = item.id, error = %e, "could not record a failure");
                    "lease_lost"
                }
            },
        };
        self.metrics.processed(result, started.elapsed());
    }

    async fn dispatch(&self, envelope: &Envelope) -> Result<(), String> {
        for handler in self.handlers.iter().filter(|h| h.wants(envelope)) {
            handler
                .handle(envelope)
                .await
                .map_err(|e| format!("handler {}: {e}", handler.name()))?;
        }
        Ok(())
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
