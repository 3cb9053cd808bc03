//! Counters for `/metrics`, rendered in the Prometheus text format.
//!
//! Labels are fixed words (outcomes, reasons, event kinds): never a secret,
//! never an id.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plane_core::PlaneClient;
use plane_webhook::InboxStats;

/// Processing latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    deliveries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    processed: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts a delivery by outcome (`accepted`, `duplicate`, `rejected`) and reason.
    pub fn delivery(&self, outcome: &'static str, reason: &'static str) {
        *lock(&self.deliveries).entry((outcome, reason)).or_default() += 1;
    }

    /// Counts a processed inbox item by result (`done`, `retry`, `dead`) and its latency.
    pub fn processed(&self, result: &'static str, took: Duration) {
        *lock(&self.processed).entry(result).or_default() += 1;
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// How many deliveries ended with this outcome and reason.
    pub fn delivery_count(&self, outcome: &str, reason: &str) -> u64 {
        lock(&self.deliveries)
            .iter()
            .filter(|((o, r), _)| *o == outcome && *r == reason)
            .map(|(_, n)| *n)
            .sum()
    }

    /// The text format, with the inbox and Plane client figures read now.
    pub fn render(
        &self,
        inbox: Option<&InboxStats>,
        now_ms: i64,
        client: Option<&PlaneClient>,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP plane_webhook_deliveries_total Webhook deliveries received, by outcome and reason."
        );
        let _ = writeln!(out, "# TYPE plane_webhook_deliveries_total counter");
        for ((outcome, reason), n) in lock(&self.deliveries).iter() {
            let _ = writeln!(
                out,
                "plane_webhook_deliveries_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP plane_inbox_processed_total Inbox items processed, by result."
        );
        let _ = writeln!(out, "# TYPE plane_inbox_processed_total counter");
        for (result, n) in lock(&self.processed).iter() {
            let _ = writeln!(
                out,
                "plane_inbox_processed_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP plane_inbox_processing_seconds Time to run the handlers of one inbox item."
        );
        let _ = writeln!(out, "# TYPE plane_inbox_processing_seconds histogram");
        for (bucket, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "plane_inbox_processing_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "plane_inbox_processing_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "plane_inbox_processing_seconds_sum {sum}");
        let _ = writeln!(out, "plane_inbox_processing_seconds_count {count}");
        if let Some(inbox) = inbox {
            let _ = writeln!(out, "# HELP plane_inbox_items Stored deliveries by status.");
            let _ = writeln!(out, "# TYPE plane_inbox_items gauge");
            for (status, n) in [
                ("pending", inbox.pending),
                ("processing", inbox.processing),
                ("failed", inbox.failed),
                ("dead", inbox.dead),
                ("done", inbox.done),
            ] {
                let _ = writeln!(out, "plane_inbox_items{{status=\"{status}\"}} {n}");
            }
            let age = inbox
                .oldest_unfinished
                .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
            let _ = writeln!(
                out,
                "# HELP plane_inbox_oldest_unfinished_age_seconds Age of the oldest item not yet done."
            );
            let _ = writeln!(
                out,
                "# TYPE plane_inbox_oldest_unfinished_age_seconds gauge"
            );
            let _ = writeln!(out, "plane_inbox_oldest_unfinished_age_seconds {age}");
        }
        if let Some(client) = client {
            let stats = client.stats();
            let limit = client.rate_limit();
            let _ = writeln!(
                out,
                "# HELP plane_api_responses_total Plane API answers by HTTP status."
            );
            let _ = writeln!(out, "# TYPE plane_api_responses_total counter");
            for (status, n) in &stats.responses {
                let _ = writeln!(out, "plane_api_responses_total{{status=\"{status}\"}} {n}");
            }
            let _ = writeln!(out, "# TYPE plane_api_requests_total counter");
            let _ = writeln!(out, "plane_api_requests_total {}", stats.requests);
            let _ = writeln!(out, "# TYPE plane_api_retries_total counter");
            let _ = writeln!(out, "plane_api_retries_total {}", stats.retries);
            let _ = writeln!(out, "# TYPE plane_api_rate_limit_waits_total counter");
            let _ = writeln!(out, "plane_api_rate_limit_waits_total {}", limit.waits);
            let _ = writeln!(
                out,
                "# TYPE plane_api_rate_limit_wait_seconds_total counter"
            );
            let _ = writeln!(
                out,
                "plane_api_rate_limit_wait_seconds_total {}",
                limit.waited.as_secs_f64()
            );
            if let Some(remaining) = limit.remaining {
                let _ = writeln!(out, "# TYPE plane_api_rate_limit_remaining gauge");
                let _ = writeln!(out, "plane_api_rate_limit_remaining {remaining}");
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
