//! Claims under a database (or role) whose default isolation is REPEATABLE READ: the
//! stores ask for READ COMMITTED on every connection (plane-postgres), so replicas claiming
//! together never meet a serialization failure. The test creates (and drops) a role: run
//! it against a throwaway cluster (`bash scripts/with-postgres.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_postgres::testing;
use plane_webhook::{DeliveryStore, EventHead, ManualClock, NewDelivery, PgStore, StoreConfig};
use uuid::Uuid;

const T0: i64 = 1_795_614_000_000;

fn delivery(n: u32) -> NewDelivery {
    let body = format!(
        r#"{{"event": "issue", "action": "updated", "webhook_id": null, "workspace_id": null, "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}, "activity": {{"field": "name"}}}}"#
    )
    .into_bytes();
    NewDelivery::new(Uuid::new_v4(), &EventHead::parse(&body).unwrap(), body)
}

fn config(clock: &Arc<ManualClock>, max_attempts: u32) -> StoreConfig {
    StoreConfig {
        max_attempts,
        retry_base: Duration::from_secs(10),
        retry_max: Duration::from_secs(60),
        clock: clock.clone(),
    }
}

/// Claims are one statement with `FOR UPDATE SKIP LOCKED`; under a server (or role)
/// default of REPEATABLE READ a row another replica claimed and committed after the
/// statement's snapshot raises a serialization failure instead of being skipped, so
/// replicas claiming together fail (and the worker backs off, 1 s doubling to 30 s).
#[tokio::test]
async fn replicas_claim_together_under_a_repeatable_read_default() {
    let Some(url) = testing::url() else { return };
    let (admin, connection) =
        plane_postgres::tokio_postgres::connect(&url, plane_postgres::tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let suffix = &Uuid::new_v4().simple().to_string()[..10];
    let role = format!("rv_claim_{suffix}");
    let schema = format!("rv_claim_{suffix}");
    let db_name: String = admin
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE {db_name} TO {role}; \
             ALTER ROLE {role} SET default_transaction_isolation = 'repeatable read';"
        ))
        .await
        .unwrap();
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    let options = plane_postgres::Options::from_url(&format!("{scheme}://{role}@{rest}"), None)
        .unwrap()
        .schema(&schema)
        .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let first = PgStore::open(options.connect().await.unwrap(), config(&clock, 3))
        .await
        .unwrap();
    for n in 0..400 {
        first.record(delivery(n)).await.unwrap();
    }
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(Arc::new(
            PgStore::open(options.connect_existing().await.unwrap(), config(&clock, 3))
                .await
                .unwrap(),
        ));
    }
    let mut tasks = Vec::new();
    for (i, store) in replicas.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut claimed, mut errors) = (0, Vec::new());
            for _ in 0..50 {
                match store
                    .claim(&format!("r{i}"), 2, Duration::from_secs(60))
                    .await
                {
                    Ok(items) => claimed += items.len(),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (claimed, errors)
        }));
    }
    let (mut claimed, mut errors) = (0, Vec::new());
    for t in tasks {
        let (c, e) = t.await.unwrap();
        claimed += c;
        errors.extend(e);
    }
    let _ = admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; \
             REVOKE CREATE ON DATABASE {db_name} FROM {role}; DROP ROLE {role}"
        ))
        .await;
    assert!(
        errors.is_empty(),
        "{} of 200 claims failed ({claimed} items claimed); the first: {}",
        errors.len(),
        errors[0]
    );
}
