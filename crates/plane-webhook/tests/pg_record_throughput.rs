//! A quick measurement, not a test (ignored): is a batching writer worth building for
//! `PgStore::record`, and what would LISTEN/NOTIFY cost it? Prints durable records per
//! second for
//!
//! * `PgStore::record` (one autocommit statement each) at 1, 8 and 64 concurrent callers,
//!   on pools of 16 (the default) and 64 connections: PostgreSQL's own group commit;
//! * one writer committing batches of 8 and 64 records per transaction (what a batching
//!   writer would do at best);
//! * 64 callers each committing one record in an explicit transaction, without and with
//!   a `NOTIFY` in it.
//!
//! ```text
//! bash scripts/with-postgres.sh cargo test -p plane-webhook --test pg_record_throughput -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use plane_postgres::testing;
use plane_webhook::{DeliveryStore, EventHead, NewDelivery, PgStore, StoreConfig};
use uuid::Uuid;

const RECORDS: u32 = 2000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A body like Plane's (about 2 KiB), a new event each time.
fn delivery() -> NewDelivery {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}", "updated_at": "2026-11-25T13:42:52.{n:06}Z", "description_html": "{}"}}}}"#,
        "x".repeat(1800)
    )
    .into_bytes();
    NewDelivery::new(Uuid::new_v4(), &EventHead::parse(&body).unwrap(), body)
}

/// Records per second, and the p50 and p99 of one record's answer.
async fn store_rate(
    pg: &testing::TestDatabase,
    pool: usize,
    callers: u32,
) -> (f64, Duration, Duration) {
    let db = pg
        .options()
        .clone()
        .pool_size(pool)
        .connect()
        .await
        .unwrap();
    let store = Arc::new(PgStore::open(db, StoreConfig::default()).await.unwrap());
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut took = Vec::new();
                for _ in 0..RECORDS / callers {
                    let d = delivery();
                    let one = Instant::now();
                    store.record(d).await.unwrap();
                    took.push(one.elapsed());
                }
                took
            })
        })
        .collect();
    let mut took = Vec::new();
    for t in tasks {
        took.extend(t.await.unwrap());
    }
    let rate = took.len() as f64 / started.elapsed().as_secs_f64();
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    (rate, at(0.5), at(0.99))
}

/// A batch of records in one statement: the best a batching writer could send.
const RECORD_BATCH: &str = "WITH new AS (
        INSERT INTO deliveries (delivery_id, event_key, event_key_text, event, action, received_at, body)
        SELECT d, sha256(convert_to(k, 'UTF8')), k, e, a, 0, b
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[]) AS t(d, k, e, a, b)
        ON CONFLICT (event_key) DO NOTHING RETURNING id
    ), queued AS (
        INSERT INTO inbox (id, status, next_attempt_at) SELECT id, 'pending', 0 FROM new
    )
    SELECT count(*) FROM new";

/// `callers` tasks, each committing `per_tx` records per explicit transaction (with a
/// NOTIFY in it when `notify`), on a pool of `callers` connections.
async fn raw_rate(pg: &testing::TestDatabase, callers: u32, per_tx: u32, notify: bool) -> f64 {
    let db = pg
        .options()
        .clone()
        .pool_size(callers as usize)
        .connect()
        .await
        .unwrap();
    drop(
        PgStore::open(db.clone(), StoreConfig::default())
            .await
            .unwrap(),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut client = db.client().await.unwrap();
                let transactions = RECORDS / callers / per_tx;
                for _ in 0..transactions {
                    let batch: Vec<NewDelivery> = (0..per_tx).map(|_| delivery()).collect();
                    let ids: Vec<Uuid> = batch.iter().map(|d| d.delivery_id).collect();
                    let keys: Vec<&str> = batch.iter().map(|d| d.event_key.as_str()).collect();
                    let events: Vec<&str> = batch.iter().map(|d| d.event.as_str()).collect();
                    let actions: Vec<&str> = batch.iter().map(|d| d.action.as_str()).collect();
                    let bodies: Vec<&[u8]> = batch.iter().map(|d| &d.body[..]).collect();
                    let tx = client.transaction().await.unwrap();
                    let statement = tx.prepare_cached(RECORD_BATCH).await.unwrap();
                    let stored: i64 = tx
                        .query_one(&statement, &[&ids, &keys, &events, &actions, &bodies])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(stored, i64::from(per_tx));
                    if notify {
                        tx.execute("SELECT pg_notify('plane_inbox', '')", &[])
                            .await
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                }
                transactions * per_tx
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    f64::from(done) / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with a test database"]
async fn record_throughput() {
    let Some(pg) = testing::database("throughput").await else {
        return;
    };
    let client = pg.db().client().await.unwrap();
    for setting in [
        "fsync",
        "synchronous_commit",
        "commit_delay",
        "wal_sync_method",
    ] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        println!("{setting} = {value}");
    }
    println!("records per second ({RECORDS} records, ~2 KiB bodies):");
    for (pool, callers) in [(16, 1), (16, 8), (16, 64), (64, 64)] {
        let fresh = testing::database("throughput").await.unwrap();
        let (rate, p50, p99) = store_rate(&fresh, pool, callers).await;
        println!(
            "  PgStore::record, pool {pool:>2}, {callers:>2} callers: {rate:>7.0} (p50 {p50:.1?}, p99 {p99:.1?})"
        );
    }
    for (callers, per_tx) in [(1, 8), (1, 64), (8, 8)] {
        let fresh = testing::database("throughput").await.unwrap();
        let rate = raw_rate(&fresh, callers, per_tx, false).await;
        println!("  batch of {per_tx:>2} per transaction, {callers} writer(s): {rate:>7.0}");
    }
    for notify in [false, true] {
        let fresh = testing::database("throughput").await.unwrap();
        let rate = raw_rate(&fresh, 64, 1, notify).await;
        println!("  64 callers, one record per transaction, NOTIFY {notify:>5}: {rate:>7.0}");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
