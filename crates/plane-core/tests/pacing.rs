//! The pacing test on its own: it judges request timing from plane-fake's log,
//! so it runs in a test binary of its own rather than beside tests that compete
//! for the same two cores.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use plane_core::{Budget, PlaneClient};
use plane_fake::FakePlane;

#[tokio::test]
async fn eight_tasks_share_one_budget_without_a_single_429_and_without_idling() {
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
    let (first, last) = (times[0], *times.last().unwrap());
    let full_windows = ((last - first).as_secs_f64() / window.as_secs_f64()).floor() as u32;
    for k in 0..full_windows.saturating_sub(1) {
        let from = first + window * k;
        let n = times
            .iter()
            .filter(|t| **t >= from && **t < from + window)
            .count();
        assert!(
            n >= 15,
            "only {n} requests in window {k}: the pacing is timid"
        );
    }
}
