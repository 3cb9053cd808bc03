//! What a review of the PostgreSQL side found in plane-server, each kept as a test: the
//! shared budget holds under a REPEATABLE READ default, and listing the tokens (`check`,
//! `oauth status`) creates nothing. They create (and drop) roles and schemas: run them
//! against a throwaway cluster (`bash scripts/with-postgres.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_core::{Budget, SharedBudget};
use plane_postgres::{Options, testing, tokio_postgres};
use plane_server::shared_budget::PgBudget;

async fn schema_exists(admin: &tokio_postgres::Client, schema: &str) -> bool {
    admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0)
}

/// `PgBudget::take` counts the slots after waiting for a transaction-scoped advisory
/// lock, in a transaction begun with the server's default isolation. Under REPEATABLE
/// READ (a database or role default some DBAs set) the snapshot is taken by the lock
/// statement itself, before the wait: the count misses the slots the replicas ahead of
/// it just committed, and more than N requests get a slot.
#[tokio::test]
async fn replicas_never_take_more_slots_than_the_budget_under_a_repeatable_read_default() {
    let Some(url) = testing::url() else { return };
    let admin = testing::admin(&url).await;
    let role = testing::unique("rv_budget");
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
    let schema = testing::unique("rv_budget");
    let options = Options::from_url(&testing::url_as(&url, &role), None)
        .unwrap()
        .schema(&schema)
        .unwrap();
    let budget = Budget::new(3, Duration::from_secs(60));
    let replicas: Vec<Arc<dyn SharedBudget>> = (0..3)
        .map(|_| PgBudget::new(options.clone(), "plane:acme").shared())
        .collect();
    // Warm up: the pools and the table exist before the race.
    for r in &replicas {
        let _ = r
            .try_take(Budget::new(1000, Duration::from_millis(1)))
            .await;
    }
    admin
        .batch_execute(&format!("DELETE FROM {schema}.plane_budget_slots"))
        .await
        .unwrap();
    let mut asks = Vec::new();
    for i in 0..30 {
        let replica = replicas[i % 3].clone();
        asks.push(tokio::spawn(async move { replica.try_take(budget).await }));
    }
    let mut taken = 0;
    let mut errors = Vec::new();
    for ask in asks {
        match ask.await.unwrap() {
            Ok(Ok(_)) => taken += 1,
            Ok(Err(_)) => {}
            Err(e) => errors.push(e),
        }
    }
    let _ = admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; \
             REVOKE CREATE ON DATABASE {db_name} FROM {role}; DROP ROLE {role}"
        ))
        .await;
    eprintln!("slots taken: {taken} of a budget of 3; errors: {errors:?}");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(taken <= 3, "{taken} requests got a slot in a budget of 3");
}

/// `check` and `oauth status` list the tokens through `open_for_listing`, documented as
/// "creating nothing"; it connects with `Options::connect`, which creates the schema
/// (and so needs CREATE on the database: a read-only role cannot run `check`).
#[tokio::test]
async fn listing_the_tokens_creates_nothing() {
    let Some(url) = testing::url() else { return };
    let admin = testing::admin(&url).await;
    let schema = testing::unique("rv_listing");
    let env = |name: &str| match name {
        "PLANE_DATABASE_URL" => Some(url.clone()),
        "PLANE_DATABASE_SCHEMA" => Some(schema.clone()),
        _ => None,
    };
    let config =
        plane_server::config::Config::load(&plane_server::config::Overrides::default(), &env)
            .unwrap();
    assert!(config.postgres.is_some());
    assert!(!schema_exists(&admin, &schema).await);
    let store = plane_server::token_store::open_for_listing(&config)
        .await
        .unwrap();
    assert!(store.list().await.unwrap().is_empty());
    let created = schema_exists(&admin, &schema).await;
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await;
    assert!(!created, "listing the tokens created schema {schema}");
}
