//! A load generator for `POST /webhooks/plane`: signed, unique deliveries from
//! N concurrent senders (each awaits its answer, as Plane's workers do), with
//! throughput and latency percentiles.
//!
//! ```sh
//! PLANE_WEBHOOK_SECRET=... cargo run --release -p plane-server --example loadgen -- \
//!     http://127.0.0.1:8080/webhooks/plane 64 20000
//! ```
//! Arguments: URL, concurrency (default 64), deliveries in all (default 20000).
//! `scripts/load.sh` starts a server and runs this at several concurrency levels.

use std::time::{Duration, Instant};

use anyhow::Context;
use plane_webhook::Verifier;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .context("usage: loadgen URL [CONCURRENCY] [TOTAL]")?;
    let concurrency: usize = args
        .next()
        .map_or(Ok(64), |v| v.parse())
        .context("CONCURRENCY")?;
    let total: usize = args
        .next()
        .map_or(Ok(20_000), |v| v.parse())
        .context("TOTAL")?;
    let secret =
        std::env::var("PLANE_WEBHOOK_SECRET").context("PLANE_WEBHOOK_SECRET is not set")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let run = uuid::Uuid::new_v4();

    // Bodies and signatures are prepared up front: the load is the server's.
    let requests: Vec<(String, Vec<u8>, String)> = (0..total)
        .map(|n| {
            let body = format!(
                r#"{{"event": "issue", "action": "updated", "webhook_id": "9b70f55f-3e40-44a4-a814-f08b4ff86e59", "workspace_id": "94a89513-b7f8-4d70-97aa-ecf2810be8ea", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "load {run} #{n}", "priority": "high", "target_date": "2026-11-10", "external_source": "plane-bir", "external_id": "bir:1601-C:2026-10"}}, "activity": {{"field": "name", "new_value": "{n}", "old_value": null}}}}"#
            )
            .into_bytes();
            let signature = Verifier::sign(&secret, &body);
            (uuid::Uuid::new_v4().to_string(), body, signature)
        })
        .collect();
    let mut chunks: Vec<Vec<(String, Vec<u8>, String)>> =
        (0..concurrency).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        chunks[i % concurrency].push(r);
    }

    let started = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                let mut failures = 0usize;
                for (delivery, body, signature) in chunk {
                    let t = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-plane-event", "issue")
                        .header("x-plane-delivery", delivery)
                        .header("x-plane-signature", signature)
                        .body(body)
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => latencies.push(t.elapsed()),
                        _ => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::ZERO)
    };
    println!(
        "concurrency {concurrency:>3}: {} deliveries in {:.2} s = {:>7.0}/s, p50 {:.2} ms, p99 {:.2} ms, failures {failures}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    anyhow::ensure!(failures == 0, "{failures} deliveries were not acknowledged");
    Ok(())
}
