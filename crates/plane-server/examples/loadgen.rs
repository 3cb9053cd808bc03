//! A load generator for `POST /webhooks/plane`: signed, distinct deliveries
//! from N concurrent senders (each awaits its answer, as Plane's workers do),
//! with throughput, latency percentiles and the inbox backlog seen meanwhile.
//!
//! ```sh
//! PLANE_WEBHOOK_SECRET=... cargo run --release -p plane-server --example loadgen -- \
//!     http://127.0.0.1:8080/webhooks/plane --senders 64 --total 100000 --body 2k
//! ```
//!
//! Bodies come from `support/bodies.rs`: the recorded Plane CE delivery as it
//! is (`--body fixture`), grown to 2.2 KiB (`2k`, the default) or 8 KiB
//! (`8k`), or the 413-byte body of earlier runs (`small`). Each is distinct
//! and signed separately.
//!
//! `scripts/load.sh` starts a server per body and runs this at several sender
//! counts, adding the server's CPU time per delivery. What it leaves out: TLS
//! (Plane's deliveries to a receiver behind a proxy arrive in plain HTTP on
//! loopback only in this run), and Plane's own pacing of retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use plane_webhook::Verifier;

#[path = "support/bodies.rs"]
mod bodies;
use bodies::BodyArgs;

#[derive(Debug, Parser)]
struct Args {
    /// The receiver's webhook URL.
    url: String,
    /// Concurrent senders, each waiting for its answer before the next send.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Deliveries in all.
    #[arg(long, default_value_t = 100_000)]
    total: usize,
    #[command(flatten)]
    bodies: BodyArgs,
}

/// The inbox backlog gauge from the server's `/metrics`.
async fn backlog(client: &reqwest::Client, metrics_url: &str) -> Option<i64> {
    let text = client
        .get(metrics_url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("plane_inbox_backlog_items "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret =
        std::env::var("PLANE_WEBHOOK_SECRET").context("PLANE_WEBHOOK_SECRET is not set")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.senders + 1)
        .build()?;
    let run = uuid::Uuid::new_v4();

    // Bodies and signatures are prepared up front: the load is the server's.
    let requests: Vec<(String, Vec<u8>, String)> = (0..args.total)
        .map(|n| {
            let body = args.bodies.make(run, n);
            let signature = Verifier::sign(&secret, &body);
            (uuid::Uuid::new_v4().to_string(), body, signature)
        })
        .collect();
    let body_bytes = requests.first().map_or(0, |r| r.1.len());
    let mut chunks: Vec<Vec<(String, Vec<u8>, String)>> =
        (0..args.senders).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        chunks[i % args.senders].push(r);
    }

    // The backlog, sampled every 50 ms while the senders run (a scrape is a
    // read of in-memory gauges, it never touches the store).
    let metrics_url = args
        .url
        .rsplit_once("/webhooks/")
        .map_or_else(|| args.url.clone(), |(base, _)| format!("{base}/metrics"));
    let max_backlog = Arc::new(AtomicI64::new(-1));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (client, max_backlog, done) = (client.clone(), max_backlog.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(n) = backlog(&client, &metrics_url).await {
                    max_backlog.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            backlog(&client, &metrics_url).await
        }
    });

    let started = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (client, url) = (client.clone(), args.url.clone());
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
    let mut latencies = Vec::with_capacity(args.total);
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let backlog_after = sampler.await?.unwrap_or(-1);
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
            * 1e3
    };
    println!(
        "body {body_bytes:>5} B, senders {:>3}: {} deliveries in {:.2} s = {:>6.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, backlog max {} (at the end {backlog_after}), failures {failures}",
        args.senders,
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        max_backlog.load(Ordering::Relaxed),
    );
    anyhow::ensure!(failures == 0, "{failures} deliveries were not acknowledged");
    Ok(())
}
