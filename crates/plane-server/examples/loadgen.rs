//! A load generator for `POST /webhooks/plane`: signed, distinct deliveries
//! from N concurrent senders (each awaits its answer, as Plane's workers do),
//! with throughput, latency percentiles and the inbox backlog seen meanwhile.
//!
//! ```sh
//! PLANE_WEBHOOK_SECRET=... cargo run --release -p plane-server --example loadgen -- \
//!     http://127.0.0.1:8080/webhooks/plane --senders 64 --total 100000 --body 2k
//! ```
//!
//! Several receiver URLs spread the deliveries over several servers (replicas on
//! one PostgreSQL), round robin: delivery `n` goes to URL `n mod k`, as a load
//! balancer would hand them out, and each sender keeps a keep-alive connection
//! to each URL. `scripts/load-backends.sh` runs it so against three replicas.
//!
//! ```sh
//! PLANE_WEBHOOK_SECRET=... cargo run --release -p plane-server --example loadgen -- \
//!     http://127.0.0.1:8081/webhooks/plane http://127.0.0.1:8082/webhooks/plane \
//!     http://127.0.0.1:8083/webhooks/plane --senders 64 --total 20000 --body fixture
//! ```
//!
//! Bodies come from `support/bodies.rs`: the recorded Plane CE delivery as it
//! is (`--body fixture`), grown to 2.2 KiB (`2k`, the default) or 8 KiB
//! (`8k`), or the 413-byte body of earlier runs (`small`). Each is distinct
//! and signed separately.
//!
//! Besides throughput and latency it reports its own CPU time per delivery
//! (user and system, from `/proc/self/stat`, during the timed part only).
//! `scripts/load.sh` starts a server per body and runs this at several sender
//! counts, adding the server's CPU time per delivery. What it leaves out: TLS
//! (Plane's deliveries to a receiver behind a proxy arrive in plain HTTP on
//! loopback only in this run), and Plane's own pacing of retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use plane_webhook::Verifier;

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/cpu.rs"]
mod cpu;
use bodies::BodyArgs;
use cpu::own_cpu;

#[derive(Debug, Parser)]
struct Args {
    /// The receiver's webhook URL. Give several (the same path on several servers)
    /// to spread the deliveries over them: delivery `n` goes to URL `n mod k`.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Concurrent senders, each waiting for its answer before the next send.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Deliveries in all.
    #[arg(long, default_value_t = 100_000)]
    total: usize,
    #[command(flatten)]
    bodies: BodyArgs,
}

/// Which of `receivers` URLs delivery `n` goes to: round robin, so each gets
/// its share in turn whatever sender takes the delivery.
fn receiver(n: usize, receivers: usize) -> usize {
    n % receivers.max(1)
}

/// The server's `/metrics` beside its webhook URL.
fn metrics_url(url: &str) -> String {
    url.rsplit_once("/webhooks/")
        .map_or_else(|| url.to_owned(), |(base, _)| format!("{base}/metrics"))
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
    // For the backlog samples only.
    let client = reqwest::Client::new();
    let run = uuid::Uuid::new_v4();

    // Requests are prepared up front, signed and written out byte for byte:
    // the load is the server's. Each sender writes a request on its own
    // keep-alive connection and reads the answer: about 20 µs of CPU per
    // delivery, where reqwest took about 48 µs of the same two cores.
    let authorities = args
        .urls
        .iter()
        .map(|url| authority(url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let receivers = authorities.len();
    let requests: Vec<Vec<u8>> = (0..args.total)
        .map(|n| {
            let authority = &authorities[receiver(n, receivers)];
            let body = args.bodies.make(run, n);
            let signature = Verifier::sign(&secret, &body);
            let mut request = format!(
                "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
                 x-plane-event: issue\r\nx-plane-delivery: {}\r\nx-plane-signature: {signature}\r\n\
                 content-length: {}\r\n\r\n",
                authority.path,
                authority.address,
                uuid::Uuid::new_v4(),
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&body);
            request
        })
        .collect();
    let body_bytes = args.bodies.make(run, 0).len();
    // One queue in the order the events happened, and the next free sender
    // takes the next delivery, as Plane's webhook workers take the next task.
    // (Fixed shares per sender let the senders drift apart in event time, so
    // the deliveries in flight together spread over the dedupe index, which no
    // real stream of events does.)
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));

    // The backlog, sampled every 50 ms while the senders run (a scrape is a
    // read of in-memory gauges, it never touches the store). With several
    // servers it is the sum of their gauges: each counts what its receiver
    // accepted less what its worker finished, whichever replica received it.
    let mut metrics_urls: Vec<String> = args.urls.iter().map(|u| metrics_url(u)).collect();
    metrics_urls.sort();
    metrics_urls.dedup();
    let max_backlog = Arc::new(AtomicI64::new(-1));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (client, max_backlog, done) = (client.clone(), max_backlog.clone(), done.clone());
        async move {
            let total = || async {
                let mut sum = 0;
                for url in &metrics_urls {
                    sum += backlog(&client, url).await?;
                }
                Some(sum)
            };
            while !done.load(Ordering::Relaxed) {
                if let Some(n) = total().await {
                    max_backlog.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            total().await
        }
    });

    let started = Instant::now();
    let cpu_before = own_cpu();
    let tasks: Vec<_> = (0..args.senders)
        .map(|_| {
            let addresses: Vec<String> = authorities.iter().map(|a| a.address.clone()).collect();
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len() / args.senders + 1);
                let mut failures = 0usize;
                // A keep-alive connection to each receiver.
                let mut connections = Vec::with_capacity(addresses.len());
                for address in &addresses {
                    connections.push(Connection::open(address).await?);
                }
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(n) else {
                        break;
                    };
                    let to = receiver(n, addresses.len());
                    let t = Instant::now();
                    match connections[to].send(request).await {
                        Ok(200..=299) => latencies.push(t.elapsed()),
                        Ok(_) => failures += 1,
                        Err(e) => {
                            // The connection is gone: count it and start another.
                            eprintln!("loadgen: {e}");
                            failures += 1;
                            connections[to] = Connection::open(&addresses[to]).await?;
                        }
                    }
                }
                anyhow::Ok((latencies, failures))
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(args.total);
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await??;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    let own_cpu_us = own_cpu()
        .zip(cpu_before)
        .map(|(after, before)| (after - before) / latencies.len().max(1) as f64 * 1e6);
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
    let spread = if receivers > 1 {
        format!(", receivers {receivers}")
    } else {
        String::new()
    };
    println!(
        "body {body_bytes:>5} B, senders {:>3}{spread}: {} deliveries in {:.2} s = {:>6.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, backlog max {} (at the end {backlog_after}), failures {failures}, loadgen CPU {} us/delivery",
        args.senders,
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        max_backlog.load(Ordering::Relaxed),
        own_cpu_us.map_or_else(|| "?".into(), |us| format!("{us:.0}")),
    );
    anyhow::ensure!(failures == 0, "{failures} deliveries were not acknowledged");
    Ok(())
}

/// Where the URL points: `host:port` (to connect to, and the `host` header) and the path.
struct Authority {
    address: String,
    path: String,
}

fn authority(url: &str) -> anyhow::Result<Authority> {
    let url = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    anyhow::ensure!(
        url.scheme() == "http",
        "the load generator speaks plain HTTP only, not {}",
        url.scheme()
    );
    let host = url.host_str().context("the URL has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    Ok(Authority {
        address: format!("{host}:{port}"),
        path: url.path().to_owned(),
    })
}

/// One keep-alive HTTP/1.1 connection: writes a prepared request, reads the
/// answer's status line, headers and `content-length` body.
struct Connection {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connect to {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(1024),
        })
    }

    /// Sends `request` and returns the answer's status.
    async fn send(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(request).await?;
        self.buffer.clear();
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])?;
                let status: u16 = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("not an HTTP answer: {head:?}"))?;
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .context("the answer has no content-length")?;
                let whole = end + 4 + length;
                while self.buffer.len() < whole {
                    self.read().await?;
                }
                anyhow::ensure!(
                    self.buffer.len() == whole,
                    "the server answered more than was asked"
                );
                return Ok(status);
            }
            self.read().await?;
        }
    }

    async fn read(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 1024];
        let n = self.stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_share_the_deliveries_in_turn() {
        let args = Args::try_parse_from([
            "loadgen",
            "http://127.0.0.1:8081/webhooks/plane",
            "http://127.0.0.1:8082/webhooks/plane",
            "http://127.0.0.1:8083/webhooks/plane",
            "--senders",
            "4",
        ])
        .expect("several URLs parse");
        assert_eq!(args.urls.len(), 3);
        assert_eq!(args.senders, 4);
        let order: Vec<usize> = (0..7).map(|n| receiver(n, 3)).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
        let mut shares = [0usize; 3];
        for n in 0..20_000 {
            shares[receiver(n, 3)] += 1;
        }
        assert_eq!(shares, [6_667, 6_667, 6_666]);
        assert_eq!(metrics_url(&args.urls[1]), "http://127.0.0.1:8082/metrics");
    }

    #[test]
    fn one_url_is_still_enough_and_none_is_refused() {
        let args = Args::try_parse_from(["loadgen", "http://127.0.0.1:8080/webhooks/plane"])
            .expect("one URL parses");
        assert_eq!(args.urls.len(), 1);
        assert!((0..5).all(|n| receiver(n, 1) == 0));
        assert!(Args::try_parse_from(["loadgen", "--senders", "4"]).is_err());
    }
}
