//! A load generator for `POST /webhooks/plane`: signed, distinct deliveries
//! from N concurrent senders (each awaits its answer, as Plane's workers do),
//! with throughput, latency percentiles and the inbox backlog seen meanwhile.
//!
//! ```sh
//! PLANE_WEBHOOK_SECRET=... cargo run --release -p plane-server --example loadgen -- \
//!     http://127.0.0.1:8080/webhooks/plane --senders 64 --total 100000 --body 2k
//! ```
//!
//! Bodies are built from a delivery recorded from a running Plane CE
//! (`testdata/plane-ce/webhooks/…_0026_issue.body`, an `issue.updated` of
//! 1,593 bytes) with its byte layout kept: Python's `", "` and `": "`
//! separators, `\u` escapes, every field Plane sends. Each delivery gets its
//! own work item id (the one field changed), so every body is distinct and
//! signed separately. `--body 2k` and `--body 8k` grow the description to
//! 2.2 KiB and 8 KiB bodies, as an item with a real description does;
//! `--body small` is the 413-byte body of earlier runs, kept for comparison.
//!
//! `scripts/load.sh` starts a server per body and runs this at several sender
//! counts, adding the server's CPU time per delivery. What it leaves out: TLS
//! (Plane's deliveries to a receiver behind a proxy arrive in plain HTTP on
//! loopback only in this run), and Plane's own pacing of retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use plane_webhook::Verifier;

/// The recorded `issue.updated` delivery the bodies are made from.
const FIXTURE: &str =
    include_str!("../../../testdata/plane-ce/webhooks/1795614172182_0026_issue.body");
/// The fixture's work item id: the field each delivery changes.
const FIXTURE_ITEM_ID: &str = "49804e6a-23dc-4630-ba9f-f8f5742e3c7c";
/// The fixture's description, grown for the larger bodies.
const FIXTURE_DESCRIPTION: &str =
    r#""description_html": "<p>hello from peer</p>", "description_stripped": "hello from peer""#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BodyKind {
    /// The recorded delivery as it is (1,593 bytes).
    Fixture,
    /// The recorded delivery with a description, 2.2 KiB (2,253 bytes).
    #[value(name = "2k")]
    TwoK,
    /// The recorded delivery with a long description, 8 KiB (8,192 bytes).
    #[value(name = "8k")]
    EightK,
    /// The 413-byte body of earlier runs.
    Small,
}

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
    /// Which body to send.
    #[arg(long, value_enum, default_value_t = BodyKind::TwoK)]
    body: BodyKind,
}

/// The body of delivery `n` of run `run`.
fn body(kind: BodyKind, run: uuid::Uuid, n: usize) -> Vec<u8> {
    // Same length as the fixture's id, so every body of a kind has one size.
    let item_id = uuid::Uuid::from_u128(run.as_u128() ^ n as u128).to_string();
    let target = match kind {
        BodyKind::Small => {
            return format!(
                r#"{{"event": "issue", "action": "updated", "webhook_id": "9b70f55f-3e40-44a4-a814-f08b4ff86e59", "workspace_id": "94a89513-b7f8-4d70-97aa-ecf2810be8ea", "data": {{"id": "{item_id}", "name": "load {run} #{n}", "priority": "high", "target_date": "2026-11-10", "external_source": "plane-bir", "external_id": "bir:1601-C:2026-10"}}, "activity": {{"field": "name", "new_value": "{n}", "old_value": null}}}}"#
            )
            .into_bytes();
        }
        BodyKind::Fixture => None,
        BodyKind::TwoK => Some(2253),
        BodyKind::EightK => Some(8192),
    };
    let mut text = FIXTURE.trim_end().replacen(FIXTURE_ITEM_ID, &item_id, 1);
    if let Some(target) = target {
        // The description appears twice (HTML and stripped): grow both by the
        // same amount of prose until the body has the target size.
        let prose = "Quarterly withholding on compensation for the Makati branch: \
                     reconcile payroll with 1601-C, attach the alphalist, file through eFPS. ";
        let wrapper = FIXTURE_DESCRIPTION.len() - 2 * "hello from peer".len();
        let rest = text.len() - FIXTURE_DESCRIPTION.len();
        let grow = (target - rest - wrapper) / 2;
        // ASCII prose: one char is one byte.
        let words: String = prose.chars().cycle().take(grow).collect();
        let grown =
            format!(r#""description_html": "<p>{words}</p>", "description_stripped": "{words}""#);
        text = text.replacen(FIXTURE_DESCRIPTION, &grown, 1);
        // Odd remainders: pad the stripped text by the bytes still missing.
        let short = target.saturating_sub(text.len());
        if short > 0 {
            let pad = ".".repeat(short);
            text = text.replacen(
                &format!(r#""description_stripped": "{words}""#),
                &format!(r#""description_stripped": "{words}{pad}""#),
                1,
            );
        }
    }
    text.into_bytes()
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
            let body = body(args.body, run, n);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_their_sizes_parse_and_differ() {
        let run = uuid::Uuid::new_v4();
        for (kind, size) in [
            (BodyKind::Fixture, FIXTURE.trim_end().len()),
            (BodyKind::TwoK, 2253),
            (BodyKind::EightK, 8192),
        ] {
            let (a, b) = (body(kind, run, 1), body(kind, run, 2));
            assert_eq!((a.len(), b.len()), (size, size), "{kind:?}");
            assert_ne!(a, b, "{kind:?}: each delivery is distinct");
            let envelope = plane_webhook::Envelope::parse(&a).expect("a body Plane would send");
            assert_eq!(envelope.event, "issue");
        }
    }
}
