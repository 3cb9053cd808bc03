//! Walks every work item of a project and reports how many requests it took.
//!
//! ```sh
//! PLANE_BASE_URL=https://api.plane.so PLANE_API_KEY=... PLANE_WORKSPACE_SLUG=acme \
//! PLANE_PROJECT_ID=<uuid> cargo run -p plane-core --example walk
//! ```
//!
//! Optional: `PLANE_PER_PAGE` (default 100; Plane CE accepts up to 1000) and
//! `PLANE_RATE_LIMIT` (requests per minute, default 60).

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Context;
use futures::TryStreamExt;
use plane_core::{Budget, ListParams, PlaneClient};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "plane_core=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let project: uuid::Uuid = std::env::var("PLANE_PROJECT_ID")
        .context("PLANE_PROJECT_ID is not set")?
        .parse()
        .context("PLANE_PROJECT_ID is not a UUID")?;
    let per_page = match std::env::var("PLANE_PER_PAGE") {
        Ok(v) => v.parse().context("PLANE_PER_PAGE is not a number")?,
        Err(_) => plane_core::DEFAULT_PER_PAGE,
    };
    let budget = match std::env::var("PLANE_RATE_LIMIT") {
        Ok(v) => Budget::per_minute(v.parse().context("PLANE_RATE_LIMIT is not a number")?),
        Err(_) => Budget::default(),
    };
    let client = PlaneClient::builder().from_env().budget(budget).build()?;

    let started = Instant::now();
    let mut ids = HashSet::new();
    let mut items = client
        .work_items(project)
        .stream(ListParams::new().per_page(per_page));
    while let Some(item) = items.try_next().await? {
        ids.insert(item.id);
    }
    let stats = client.stats();
    println!("work items: {}", ids.len());
    println!(
        "requests: {} ({} retries) in {:.1?}",
        stats.requests,
        stats.retries,
        started.elapsed()
    );
    Ok(())
}
