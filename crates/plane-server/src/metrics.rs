//! `/metrics`: counters and gauges kept in memory and updated as deliveries
//! and inbox items change state, encoded by `prometheus-client` (every family
//! with `HELP` and `TYPE`).
//!
//! A scrape reads memory only: it never asks the delivery store anything. The
//! inbox gauges are seeded from [`DeliveryStore::stats`](plane_webhook::DeliveryStore::stats)
//! once at start-up and re-synchronised after each purge (daily by default),
//! which also takes in what `plane-server deliveries replay` did from another
//! process.
//!
//! Labels are fixed words (outcomes, reasons, results, HTTP statuses): never a
//! secret, never an id.

use std::fmt;
use std::time::Duration;

use plane_core::PlaneClient;
use plane_webhook::InboxStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Processing latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    processed: Family<ResultLabels, Counter>,
    processing_seconds: Histogram,
    backlog: Gauge,
    dead: Gauge,
    in_progress: Gauge,
    in_flight: Gauge,
    waiting: Gauge,
    in_flight_limit: Gauge,
    enabled: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// The metrics of a service; with a Plane client, its request, retry and
    /// rate-limit figures are included (read from the client at each scrape).
    pub fn new(client: Option<&PlaneClient>) -> Self {
        let mut registry = Registry::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "plane_webhook_deliveries",
            "Webhook deliveries received, by outcome and reason",
            deliveries.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "plane_webhook_requests_in_flight",
            "Webhook requests being read, verified or stored now",
            in_flight.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "plane_webhook_requests_waiting",
            "Webhook requests waiting for an in-flight slot, their bodies not yet read",
            waiting.clone(),
        );
        let in_flight_limit = Gauge::default();
        registry.register(
            "plane_webhook_requests_in_flight_limit",
            "server.max_in_flight: past it, webhook requests wait before their body is read",
            in_flight_limit.clone(),
        );
        let processed = Family::<ResultLabels, Counter>::default();
        registry.register(
            "plane_inbox_processed",
            "Inbox items processed, by result: done, not_ours (done; about an object no handler owns), echo (done; the connector's own write coming back, note kept), ignored (no handler acted; reason kept, e.g. drift: a person's edit of a field the sync owns), failed (retried later), dead, lease_lost",
            processed.clone(),
        );
        let processing_seconds = Histogram::new(BUCKETS);
        registry.register_with_unit(
            "plane_inbox_processing",
            "Time to run the handlers of one inbox item",
            Unit::Seconds,
            processing_seconds.clone(),
        );
        let backlog = Gauge::default();
        registry.register(
            "plane_inbox_backlog_items",
            "Stored deliveries not yet finished (pending, being processed, or waiting to retry)",
            backlog.clone(),
        );
        let dead = Gauge::default();
        registry.register(
            "plane_inbox_dead_items",
            "Deliveries parked as dead after their last attempt (replay them)",
            dead.clone(),
        );
        let in_progress = Gauge::default();
        registry.register(
            "plane_inbox_in_progress_items",
            "Inbox items this process's worker is handling now",
            in_progress.clone(),
        );
        let enabled = Gauge::default();
        registry.register(
            "plane_connector_enabled",
            "1 when the connector is on; 0 when off (deliveries are stored and held)",
            enabled.clone(),
        );
        if let Some(client) = client {
            registry.register_collector(Box::new(PlaneClientCollector(client.clone())));
        }
        Self {
            registry,
            deliveries,
            processed,
            processing_seconds,
            backlog,
            dead,
            in_progress,
            in_flight,
            waiting,
            in_flight_limit,
            enabled,
        }
    }

    /// Counts a delivery by outcome (`accepted`, `duplicate`, `rejected`) and
    /// reason; an accepted new delivery joins the backlog.
    pub fn delivery(&self, outcome: &'static str, reason: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels { outcome, reason })
            .inc();
        if (outcome, reason) == ("accepted", "new") {
            self.backlog.inc();
        }
    }

    /// A worker started handling an item.
    pub fn started(&self) {
        self.in_progress.inc();
    }

    /// Counts a processed inbox item by result (`done`, `not_ours`, `echo`,
    /// `ignored`, `failed`, `dead`, `lease_lost`) and its latency; finished
    /// items (all but `failed` and `lease_lost`) leave the backlog.
    pub fn processed(&self, result: &'static str, took: Duration) {
        self.in_progress.dec();
        self.processed.get_or_create(&ResultLabels { result }).inc();
        self.processing_seconds.observe(took.as_secs_f64());
        match result {
            "done" | "not_ours" | "echo" | "ignored" => {
                self.backlog.dec();
            }
            "dead" => {
                self.backlog.dec();
                self.dead.inc();
            }
            _ => {}
        }
    }

    /// Sets the inbox gauges from the store's counts (start-up, after a purge).
    pub fn seed(&self, stats: &InboxStats) {
        let unfinished = stats.pending + stats.processing + stats.failed;
        self.backlog
            .set(i64::try_from(unfinished).unwrap_or(i64::MAX));
        self.dead.set(i64::try_from(stats.dead).unwrap_or(i64::MAX));
    }

    /// Whether the connector is on.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.set(i64::from(on));
    }

    /// The gauges of webhook requests in flight, waiting, and the limit.
    pub(crate) fn in_flight_gauges(&self) -> (Gauge, Gauge, Gauge) {
        (
            self.in_flight.clone(),
            self.waiting.clone(),
            self.in_flight_limit.clone(),
        )
    }

    /// How many deliveries ended with this outcome and reason.
    pub fn delivery_count(&self, outcome: &'static str, reason: &'static str) -> u64 {
        self.deliveries
            .get(&DeliveryLabels { outcome, reason })
            .map_or(0, |c| c.get())
    }

    /// How many inbox items were processed with this result.
    pub fn processed_count(&self, result: &'static str) -> u64 {
        self.processed
            .get(&ResultLabels { result })
            .map_or(0, |c| c.get())
    }

    /// Stored deliveries not yet finished, as the gauge has it.
    pub fn backlog(&self) -> i64 {
        self.backlog.get()
    }

    /// The text exposition format (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The Plane client's own counters, read when scraped (they live in the client).
#[derive(Debug)]
struct PlaneClientCollector(PlaneClient);

impl Collector for PlaneClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let stats = self.0.stats();
        let limit = self.0.rate_limit();
        let responses = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "plane_api_responses",
            "Plane API answers by HTTP status",
            None,
            responses.metric_type(),
        )?;
        for (status, n) in &stats.responses {
            let labels = [("status", status.to_string())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, value) in [
            (
                "plane_api_requests",
                "Requests sent to Plane (retries included)",
                stats.requests,
            ),
            (
                "plane_api_retries",
                "Requests to Plane sent again after a retryable failure",
                stats.retries,
            ),
            (
                "plane_api_rate_limit_waits",
                "Times a request waited for the rate budget",
                limit.waits,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let waited = ConstCounter::new(limit.waited.as_secs_f64());
        waited.encode(encoder.encode_descriptor(
            "plane_api_rate_limit_wait",
            "Time spent waiting for the rate budget",
            Some(&Unit::Seconds),
            waited.metric_type(),
        )?)?;
        if let Some(remaining) = limit.remaining {
            let gauge = ConstGauge::new(i64::from(remaining));
            gauge.encode(encoder.encode_descriptor(
                "plane_api_rate_limit_remaining",
                "X-RateLimit-Remaining from Plane's last answer",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
