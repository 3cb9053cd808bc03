//! Signature verification, what the receiver and the worker parse of a
//! recorded Plane CE body, and durable record throughput with concurrent writers.
//!
//! `cargo bench -p plane-webhook --bench webhook`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plane_webhook::{
    DeliveryStore, Envelope, EventHead, NewDelivery, SqliteStore, StoreConfig, Verifier,
};
use uuid::Uuid;

fn verify(c: &mut Criterion) {
    let secret = format!("plane_wh_{}", "b".repeat(32));
    let verifier = Verifier::new([secret.as_str()]).expect("secret");
    let mut group = c.benchmark_group("verify");
    for size in [1024usize, 64 * 1024] {
        let body = vec![b'x'; size];
        let signature = Verifier::sign(&secret, &body);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{} KiB", size / 1024)),
            &body,
            |b, body| {
                b.iter(|| {
                    verifier
                        .verify(black_box(body), Some(&signature))
                        .expect("valid")
                })
            },
        );
    }
    group.finish();
}

/// A recorded Plane CE `issue.updated` delivery (1,593 bytes), as it arrived.
const RECORDED: &[u8] =
    include_bytes!("../../../testdata/plane-ce/webhooks/1795614172182_0026_issue.body");

/// Per delivery: the receiver reads the head and builds the record (its key
/// digests the body); the worker parses the whole envelope for the handlers.
fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse (recorded issue.updated, 1,593 B)");
    group.throughput(Throughput::Bytes(RECORDED.len() as u64));
    group.bench_function("EventHead::parse", |b| {
        b.iter(|| EventHead::parse(black_box(RECORDED)).expect("head"))
    });
    let head = EventHead::parse(RECORDED).expect("head");
    let body = bytes::Bytes::from_static(RECORDED);
    group.bench_function("NewDelivery::new", |b| {
        b.iter(|| NewDelivery::new(Uuid::nil(), black_box(&head), body.clone()))
    });
    group.bench_function("Envelope::parse", |b| {
        b.iter(|| Envelope::parse(black_box(RECORDED)).expect("envelope"))
    });
    group.finish();
}

/// A realistic delivery body (~1.5 KiB, like Plane's work item events).
fn delivery(n: u64) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "webhook_id": "9b70f55f-3e40-44a4-a814-f08b4ff86e59", "workspace_id": "94a89513-b7f8-4d70-97aa-ecf2810be8ea", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "1601-C October 2026 #{n}", "description_html": "{}", "priority": "high", "target_date": "2026-11-10", "external_source": "plane-bir", "external_id": "bir:1601-C:2026-10"}}, "activity": {{"field": "name", "new_value": "{n}", "old_value": null}}}}"#,
        "<p>filing</p>".repeat(80)
    );
    NewDelivery::new(
        Uuid::new_v4(),
        &EventHead::parse(body.as_bytes()).expect("envelope"),
        body.into_bytes(),
    )
}

fn record(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir =
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on the target disk");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("bench.db"), StoreConfig::default()).expect("store"),
    );
    let mut group = c.benchmark_group("durable record (SQLite, WAL, synchronous=FULL)");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let mut counter = 0u64;
    for writers in [1u64, 8, 64] {
        let per_writer = 2048 / writers;
        group.throughput(Throughput::Elements(writers * per_writer));
        group.bench_function(BenchmarkId::new("writers", writers), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batches: Vec<Vec<NewDelivery>> = (0..writers)
                        .map(|_| {
                            (0..per_writer)
                                .map(|_| {
                                    counter += 1;
                                    delivery(counter)
                                })
                                .collect()
                        })
                        .collect();
                    let store = store.clone();
                    total += runtime.block_on(async move {
                        let started = Instant::now();
                        let tasks: Vec<_> = batches
                            .into_iter()
                            .map(|batch| {
                                let store = store.clone();
                                tokio::spawn(async move {
                                    for d in batch {
                                        store.record(d).await.expect("recorded");
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("writer");
                        }
                        started.elapsed()
                    });
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify, parse, record);
criterion_main!(benches);
