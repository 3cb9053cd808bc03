//! Figures criterion does not give: peak heap of a 10,000-item walk, and the wall
//! time of 200 requests under a 20-per-second budget.
//!
//! `cargo bench -p plane-core --bench walk_memory_and_pacing`

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use plane_core::{Budget, ListParams, PlaneClient, WorkItem};
use plane_fake::{FakePlane, RunningFake};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn client(fake: &RunningFake, budget: Budget) -> PlaneClient {
    PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .budget(budget)
        .build()
        .expect("client")
}

/// Peak heap growth (bytes) while `walk` runs. The in-process fake's response
/// buffers are included, so this is an upper bound for the client.
async fn peak_during<F, Fut>(walk: F) -> (usize, u64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let profiler = dhat::Profiler::builder().testing().build();
    let n = walk().await;
    let stats = dhat::HeapStats::get();
    drop(profiler);
    (n, stats.max_bytes as u64)
}

#[tokio::main]
async fn main() {
    let fake = FakePlane::builder()
        .seed_work_items(10_000)
        .no_rate_limit()
        .start()
        .await
        .expect("fake");
    let fast = client(&fake, Budget::new(1_000_000, Duration::from_secs(1)));
    for per_page in [100, 1000] {
        let items = fast.work_items(fake.project_id());
        let (n, streamed) = peak_during(|| async {
            items
                .stream(ListParams::new().per_page(per_page))
                .try_fold(0usize, |n, _| async move { Ok(n + 1) })
                .await
                .expect("walk")
        })
        .await;
        let (m, collected) = peak_during(|| async {
            let all: Vec<WorkItem> = items
                .stream(ListParams::new().per_page(per_page))
                .try_collect()
                .await
                .expect("walk");
            all.len()
        })
        .await;
        assert_eq!((n, m), (10_000, 10_000));
        println!(
            "walk 10,000 items per_page={per_page}: peak heap streaming {:.1} MiB, collecting into a Vec {:.1} MiB",
            streamed as f64 / 1048576.0,
            collected as f64 / 1048576.0
        );
    }

    let window = Duration::from_secs(1);
    let limited = FakePlane::builder()
        .rate_limit(20, window)
        .start()
        .await
        .expect("fake");
    let paced = client(&limited, Budget::new(20, window));
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = paced.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    client.users().me().await.expect("request");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let wall = started.elapsed();
    let refused = limited
        .request_log()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    println!(
        "200 requests, 8 tasks, 20 per 1 s window: {:.2} s wall ({:+.1} % against 10 s), {refused} answered 429",
        wall.as_secs_f64(),
        (wall.as_secs_f64() / 10.0 - 1.0) * 100.0
    );
}
