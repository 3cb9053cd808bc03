//! Decoding a page and walking a project, against plane-fake.
//!
//! `cargo bench -p plane-core --bench pagination`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::TryStreamExt;
use plane_core::{ListParams, Page, PlaneClient, WorkItem};
use plane_fake::FakePlane;

/// A real 100-item page recorded from Plane CE.
fn recorded_page() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/plane-ce/api/30_list_issues_per_page_100_page1.json"
    );
    let capture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("capture present")).expect("json");
    serde_json::to_vec(&capture["response"]["body_json"]).expect("serialise")
}

fn decode(c: &mut Criterion) {
    let body = recorded_page();
    c.bench_function("decode 100-item page (Plane CE capture)", |b| {
        b.iter(|| {
            let page: Page<WorkItem> = serde_json::from_slice(black_box(&body)).expect("decodes");
            assert_eq!(page.results.len(), 100);
            page
        })
    });
}

fn walk(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(async {
        FakePlane::builder()
            .seed_work_items(10_000)
            .no_rate_limit()
            .start()
            .await
            .expect("fake starts")
    });
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .budget(plane_core::Budget::new(1_000_000, Duration::from_secs(1)))
        .build()
        .expect("client");
    let mut group = c.benchmark_group("walk 10,000 work items (plane-fake, loopback)");
    group.sample_size(10);
    for per_page in [100, 1000] {
        group.bench_function(format!("per_page={per_page}"), |b| {
            b.to_async(&runtime).iter(|| async {
                let n = client
                    .work_items(fake.project_id())
                    .stream(ListParams::new().per_page(per_page))
                    .try_fold(0usize, |n, _| async move { Ok(n + 1) })
                    .await
                    .expect("walk");
                assert_eq!(n, 10_000);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, walk);
criterion_main!(benches);
