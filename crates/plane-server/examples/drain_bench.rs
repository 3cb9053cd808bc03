//! How fast the worker drains a backlog: fills a fresh SQLite inbox with
//! distinct deliveries (the 2.2 KiB body of the load runs by default), then
//! runs the worker with a handler that completes every item at once, and
//! reports the drain rate and the claim sizes it grew to.
//!
//! ```sh
//! cargo run --release -p plane-server --example drain_bench -- --total 100000 --body 2k
//! ```
//!
//! What it leaves out: HTTP (the deliveries are recorded straight into the
//! store, 64 at a time, which is also reported as the store's own record
//! rate), and any real handler's work: it measures the inbox, not Plane.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use plane_server::metrics::Metrics;
use plane_server::worker::{Worker, WorkerConfig};
use plane_webhook::{
    BoxFuture, DeliveryStore, Envelope, EventHandler, EventHead, Handled, HandlerError, InboxItem,
    NewDelivery, SqliteStore, StoreConfig,
};
use tokio::sync::{Notify, watch};

#[path = "support/bodies.rs"]
mod bodies;
#[path = "support/cpu.rs"]
mod cpu;
use bodies::BodyArgs;

#[derive(Debug, Parser)]
struct Args {
    /// Deliveries in the backlog.
    #[arg(long, default_value_t = 100_000)]
    total: usize,
    #[command(flatten)]
    bodies: BodyArgs,
}

/// Completes every item at once.
#[derive(Debug)]
struct Instant_;

impl EventHandler for Instant_ {
    fn name(&self) -> &str {
        "instant"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    fn handle<'a>(
        &'a self,
        _: &'a InboxItem,
        _: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        Box::pin(async { Ok(Handled::Done) })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(
        dir.path().join("drain.db"),
        StoreConfig::default(),
    )?);
    let run = uuid::Uuid::new_v4();

    let started = Instant::now();
    let cpu_before = cpu::own_cpu();
    let senders = 64;
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let store = store.clone();
            let bodies = args.bodies;
            let total = args.total;
            tokio::spawn(async move {
                for n in (s..total).step_by(senders) {
                    let body = bodies.make(run, n);
                    let head = EventHead::parse(&body)?;
                    store
                        .record(NewDelivery::new(uuid::Uuid::new_v4(), &head, body))
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let filled = started.elapsed();
    let cpu_filled = cpu::own_cpu();

    let metrics = Arc::new(Metrics::default());
    metrics.seed(&store.stats().await?);
    let worker = Worker {
        store: store.clone(),
        handlers: vec![Arc::new(Instant_)],
        metrics: metrics.clone(),
        queued: Arc::new(Notify::new()),
        enabled: true,
        config: WorkerConfig {
            name: "drain".into(),
            lease: Duration::from_secs(60),
            batch: 512,
            poll: Duration::from_millis(100),
            retention: Duration::from_secs(7 * 86_400),
            purge_interval: Duration::from_secs(86_400),
        },
    };
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(worker.run(stopped));
    while metrics.backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = started.elapsed();
    let cpu_drained = cpu::own_cpu();
    stop.send(true)?;
    running.await?;
    let stats = store.stats().await?;
    anyhow::ensure!(
        stats.done as usize == args.total,
        "{} of {} done",
        stats.done,
        args.total
    );
    // CPU per item, the figure least sensitive to the machine's other load.
    let per_item = |from: Option<f64>, to: Option<f64>| match (from, to) {
        (Some(from), Some(to)) => format!("{:.0} us", (to - from) / args.total as f64 * 1e6),
        _ => "?".into(),
    };
    println!(
        "body {} B: recorded {} in {:.2} s ({:.0}/s, 64 at a time, no HTTP, CPU {}/item); \
         drained in {:.2} s = {:.0} items/s (CPU {}/item)",
        args.bodies.make(run, 0).len(),
        args.total,
        filled.as_secs_f64(),
        args.total as f64 / filled.as_secs_f64(),
        per_item(cpu_before, cpu_filled),
        drained.as_secs_f64(),
        args.total as f64 / drained.as_secs_f64(),
        per_item(cpu_filled, cpu_drained),
    );
    Ok(())
}
