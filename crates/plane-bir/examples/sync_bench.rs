//! Benchmark: a first sync of about 1,000 BIR deadlines into plane-fake under a per-key rate
//! limit, then a no-op run, with the wall time set against the minimum the limit allows.
//!
//! ```sh
//! # Plane's 60 requests per minute, scaled to 60 per second (same arithmetic, ~17 s):
//! cargo run --release -p plane-bir --example sync_bench
//! # The real thing, 60 per 60 s (about 17 minutes):
//! cargo run --release -p plane-bir --example sync_bench -- --window 60
//! ```
//!
//! Options: `--budget N` (requests per window, default 60), `--window SECS` (default 1),
//! `--companies N` (default 8), `--years 2025,2026` (default 2026).
//!
//! The deadlines: an accountant's `N` companies, each with every form of the catalog that has
//! a schedule ([`Profile::whole_catalog`], named `Company 01`, `Company 02`, ...), for the
//! years given: 8 × 122 = 976 deadlines for 2026. They are synced one company after another
//! into one project through one client, as `plane-server bir sync` does with several profiles
//! (so each company's run lists the project once: 3 listings per company).
//!
//! The fake enforces the budget as Plane does (a sliding log per key, counted when a request
//! arrives) and the client is configured with the same budget. Under a sliding window the
//! earliest request `j` (counting from 0) may arrive is `floor(j / budget)` windows after
//! the first, so `n` requests need at least `floor((n - 1) / budget) × window` from the first
//! arrival to the last: that is the minimum printed, and `actual / min` is measured against
//! it. The run fails (exit 1) if a 429 was answered, a window held more than the budget, or
//! the second run wrote anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use plane_bir::{Holidays, Overrides, Profile, SqliteDeadlineStore, SyncRequest, calendar, sync};
use plane_core::{Budget, PlaneClient};
use plane_fake::{FakePlane, RequestRecord};

struct Args {
    budget: u32,
    window: Duration,
    companies: usize,
    years: Vec<i32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        budget: 60,
        window: Duration::from_secs(1),
        companies: 8,
        years: vec![2026],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--budget" => {
                args.budget =
                    value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("--budget {value}: expected a whole number above 0")
                    })?;
            }
            "--window" => {
                args.window = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| {
                        format!("--window {value}: expected seconds above 0, e.g. 60")
                    })?;
            }
            "--companies" => {
                args.companies = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("--companies {value}: expected a whole number above 0")
                })?;
            }
            "--years" => {
                args.years = value
                    .split(',')
                    .map(|y| y.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--years {value}: expected years, e.g. 2025,2026"))?;
            }
            other => {
                return Err(format!(
                    "unknown option {other}; options: --budget N, --window SECS, --companies N, --years Y,Y,..."
                ));
            }
        }
    }
    Ok(args)
}

/// The most requests the log holds in any `window` (a sliding window, by arrival).
fn busiest_window(log: &[RequestRecord], window: Duration) -> usize {
    let mut start = 0;
    let mut most = 0;
    for end in 0..log.len() {
        while log[end].at.duration_since(log[start].at) >= window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("sync_bench: {e}"))?;
    let (budget, window) = (args.budget, args.window);

    let holidays = Holidays::builtin();
    let mut companies = Vec::new();
    for c in 1..=args.companies {
        let mut profile = Profile::whole_catalog();
        profile.name = format!("Company {c:02}");
        let mut deadlines = Vec::new();
        for &year in &args.years {
            deadlines.extend(calendar(&profile, year, &holidays, &Overrides::none())?);
        }
        companies.push((profile, deadlines));
    }
    let total: usize = companies.iter().map(|(_, d)| d.len()).sum();

    let fake = FakePlane::builder()
        .rate_limit(budget, window)
        .start()
        .await?;
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .budget(Budget::new(budget, window))
        .build()?;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteDeadlineStore::open(dir.path().join("plane.db"))?);
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).ok_or("bad date")?;
    let run = |profile, deadlines| SyncRequest {
        profile,
        deadlines,
        project: fake.project_id(),
        today,
        dry_run: false,
    };

    println!(
        "{total} deadlines: {} companies x whole catalog ({} forms) x years {:?}; budget {budget} per {}",
        companies.len(),
        companies[0].0.forms.len(),
        args.years,
        secs(window)
    );

    // First run: everything is created.
    let started = Instant::now();
    let (mut created, mut labels, mut writes, mut requests, mut waited, mut throttled) =
        (0, 0, 0, 0, Duration::ZERO, 0);
    for (profile, deadlines) in &companies {
        let report = sync(
            &client,
            store.clone(),
            &run(profile, deadlines),
            &mut |_| {},
        )
        .await?;
        created += report.created;
        labels += report.labels_created;
        writes += report.writes;
        requests += report.requests;
        waited += report.waited;
        throttled += report.throttled;
        eprintln!(
            "  {}: {} created, {} requests, {} since the start",
            profile.name,
            report.created,
            report.requests,
            secs(started.elapsed())
        );
    }
    let wall = started.elapsed();
    let log = fake.request_log();
    let n = log.len();
    let span = match (log.first(), log.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at),
        _ => Duration::ZERO,
    };
    let windows = u32::try_from(n.saturating_sub(1) / budget as usize)?;
    let min = window * windows;
    let naive = window.mul_f64(n as f64 / f64::from(budget));
    let refused = log.iter().filter(|r| r.status == 429).count();
    let busiest = busiest_window(&log, window);
    let ratio = |d: Duration| d.as_secs_f64() / min.as_secs_f64();

    println!("first run: {created} work items created, {labels} labels created");
    println!(
        "  requests: {n} at the fake ({requests} counted by the client: {writes} writes, {} listings)",
        requests - writes
    );
    println!(
        "  429 answered: {refused}; busiest {} window: {busiest} requests",
        secs(window)
    );
    println!(
        "  minimum under the sliding window: floor(({n} - 1) / {budget}) x {} = {}  (n / budget x window = {})",
        secs(window),
        secs(min),
        secs(naive)
    );
    println!(
        "  first to last request at the fake: {}  actual/min = {:.4}",
        secs(span),
        ratio(span)
    );
    println!(
        "  wall time of the run (listings, writes, store): {}  actual/min = {:.4}",
        secs(wall),
        ratio(wall)
    );
    println!(
        "  waited on the rate limit: {}; beyond the minimum, per window: {:.1} ms",
        secs(waited),
        span.saturating_sub(min).as_secs_f64() * 1000.0 / f64::from(windows.max(1))
    );

    // Second run: nothing changed.
    fake.clear_request_log();
    let started = Instant::now();
    let (mut unchanged, mut noop_writes) = (0, 0);
    for (profile, deadlines) in &companies {
        let report = sync(
            &client,
            store.clone(),
            &run(profile, deadlines),
            &mut |_| {},
        )
        .await?;
        unchanged += report.unchanged;
        noop_writes += report.writes;
    }
    let noop_wall = started.elapsed();
    let noop_log = fake.request_log();
    println!(
        "no-op run: {} requests ({noop_writes} writes) for {} companies, {unchanged} unchanged, {}",
        noop_log.len(),
        companies.len(),
        secs(noop_wall)
    );
    for r in noop_log.iter().take(3) {
        println!(
            "  {} {}?{}",
            r.method,
            r.path,
            r.query.as_deref().unwrap_or("")
        );
    }

    if refused > 0 || throttled > 0 || busiest > budget as usize || noop_writes > 0 {
        return Err("the run broke the budget or the no-op run wrote: see above".into());
    }
    Ok(())
}
