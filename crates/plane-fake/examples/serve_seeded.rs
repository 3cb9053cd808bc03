//! Starts a fake with many work items and walks them once, printing timings.
//!
//! `cargo run --release -p plane-fake --example serve_seeded -- 10000`

use plane_fake::FakePlane;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let t = Instant::now();
    let fake = FakePlane::builder()
        .no_rate_limit()
        .seed_work_items(n)
        .start()
        .await?;
    println!("seeded {n} work items in {:?}", t.elapsed());
    let client = reqwest::Client::new();
    let t = Instant::now();
    let (mut seen, mut page) = (0, 0);
    loop {
        let url = format!(
            "{}/api/v1/workspaces/{}/projects/{}/work-items/?per_page=100&cursor=100:{page}:0",
            fake.base_url(),
            fake.workspace_slug(),
            fake.project_id()
        );
        let body: serde_json::Value = client
            .get(&url)
            .header("X-API-Key", fake.api_key())
            .send()
            .await?
            .json()
            .await?;
        seen += body["count"].as_u64().unwrap_or(0);
        if body["next_page_results"] != true {
            break;
        }
        page += 1;
    }
    println!(
        "walked {seen} items in {} pages in {:?}",
        page + 1,
        t.elapsed()
    );
    fake.shutdown().await;
    Ok(())
}
