//! Pacing under a shared budget, judged two ways so that neither depends on how
//! busy the machine is:
//!
//! * over a real socket against plane-fake, from the fake's request log: never
//!   more than the budget in any window, no 429. A slow machine only spreads the
//!   requests out, so these hold however loaded it is.
//! * with tokio's paused time and no socket: the limiter hands out the whole
//!   budget in every window (it does not idle), to the millisecond.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plane_core::{Budget, PlaneClient, RateLimiter};
use plane_fake::FakePlane;
use tokio::time::Instant;

#[tokio::test]
async fn eight_tasks_share_one_budget_without_a_single_429() {
    let window = Duration::from_secs(1);
    let fake = FakePlane::builder()
        .rate_limit(20, window)
        .start()
        .await
        .unwrap();
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .budget(Budget::new(20, window))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    client.users().me().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let log = fake.request_log();
    assert_eq!(log.len(), 200);
    assert!(
        log.iter().all(|r| r.status == 200),
        "the server refused some requests"
    );
    assert_eq!(client.rate_limit().throttled, 0);

    let times: Vec<_> = log.iter().map(|r| r.at).collect();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|t| **t < *start + window)
            .count();
        assert!(
            in_window <= 20,
            "{in_window} requests within 1 s from request {i}"
        );
    }
    // The floor the rule implies: request 20k can only arrive a window after
    // request 20(k-1), so 200 requests span at least nine windows.
    let (first, last) = (times[0], *times.last().unwrap());
    assert!(
        last - first >= window * 9,
        "200 requests in {:?}: faster than the budget allows",
        last - first
    );
}

/// The same load on the limiter alone, in paused time: each request holds its
/// slot for `latency`, and a slot frees one window after its response. So the
/// k-th group of 20 starts at exactly k × (window + latency): the limiter never
/// waits while the budget has room. Paused time makes the figures exact, however
/// busy the machine.
#[tokio::test(start_paused = true)]
async fn the_limiter_hands_out_the_whole_budget_in_every_window() {
    let window = Duration::from_secs(1);
    let latency = Duration::from_millis(10);
    let limiter = RateLimiter::new(Budget::new(20, window), 0);
    let start = Instant::now();
    let grants = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, grants) = (limiter.clone(), grants.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    let permit = limiter.acquire().await;
                    grants.lock().unwrap().push(start.elapsed());
                    tokio::time::sleep(latency).await;
                    drop(permit);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut grants = grants.lock().unwrap().clone();
    grants.sort();
    // Never more than the budget in any window...
    for (i, start) in grants.iter().enumerate() {
        let in_window = grants[i..]
            .iter()
            .take_while(|t| **t < *start + window)
            .count();
        assert!(
            in_window <= 20,
            "{in_window} grants within 1 s from grant {i}"
        );
    }
    // ...and the whole budget in every one: group k (grants 20k..20k+19) starts
    // when its window frees, at k × (window + latency), and eight tasks that each
    // wait `latency` between requests take their 20 slots within three rounds.
    for (i, t) in grants.iter().enumerate() {
        let from = (window + latency) * (i as u32 / 20);
        assert!(
            *t >= from && *t <= from + latency * 3,
            "grant {i} at {t:?}, expected within {from:?} + {:?}: the limiter idled",
            latency * 3
        );
    }
    assert_eq!(limiter.status().throttled, 0);
}
