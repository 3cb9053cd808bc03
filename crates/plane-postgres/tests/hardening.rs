//! What a review of the PostgreSQL side found, each kept as a test: a password that holds
//! `/` or `?` never shows, a role that owns its schema (and may not create schemas) starts,
//! replicas starting together on a new database all start, the URL's own `options` are
//! kept, migrations hold under a REPEATABLE READ default, and a lock whose connection
//! ended says so.
//!
//! They create (and drop) roles in the test cluster: run them against a throwaway one
//! (`bash scripts/with-postgres.sh`), never a database you care about.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use plane_postgres::{Options, testing};

/// `redact` cuts the authority at the first `/` or `?`, which may be inside the password
/// (base64 passwords hold `/`): every `BadUrl` error then prints the password whole.
#[test]
fn a_url_error_never_shows_a_password_holding_a_slash_or_a_question_mark() {
    for (url, password) in [
        // sslmode=require is refused by name: the message carries the redacted URL.
        (
            "postgres://app:Zm9v/YmFy@db:5432/odoo?sslmode=require",
            "Zm9v/YmFy",
        ),
        // A libpq mode tokio-postgres does not know.
        (
            "postgres://app:Zm9v/YmFy@db:5432/odoo?sslmode=verify-full",
            "Zm9v/YmFy",
        ),
        // No database named.
        ("postgres://app:Zm9v/YmFy@db:5432", "Zm9v/YmFy"),
        ("postgres://app:pa?ss@db:5432/odoo?sslmode=require", "pa"),
    ] {
        let e = Options::from_url(url, None).unwrap_err().to_string();
        eprintln!("{url} -> {e}");
        assert!(!e.contains(password), "the password shows: {e}");
    }
}

/// `connect()` always runs `CREATE SCHEMA IF NOT EXISTS`, and PostgreSQL checks CREATE on
/// the database before it looks whether the schema exists. A role that owns its schema
/// (made by a DBA, beside Odoo's tables) but may not create schemas cannot start.
#[tokio::test]
async fn a_role_owning_its_schema_connects_without_create_on_the_database() {
    let Some(url) = testing::url() else { return };
    let admin = testing::admin(&url).await;
    let role = testing::unique("rv_app");
    let schema = testing::unique("rv_owned");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; CREATE SCHEMA {schema} AUTHORIZATION {role};"
        ))
        .await
        .unwrap();
    let options = Options::from_url(&testing::url_as(&url, &role), None)
        .unwrap()
        .schema(&schema)
        .unwrap();
    let result = options.connect().await;
    // What it can do: migrate its tables in its own schema.
    let existing = options.connect_existing().await.unwrap();
    let migrated = existing
        .migrate("widgets", &["CREATE TABLE widgets (id bigint PRIMARY KEY)"])
        .await;
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE; DROP ROLE {role};"))
        .await;
    assert_eq!(migrated.unwrap(), 1, "the role can create its tables");
    let e = result.err().map(|e| e.to_string());
    assert!(
        e.is_none(),
        "connect() refused a role owning its schema: {e:?}"
    );
}

/// Replicas starting together on a database without the schema each run
/// `CREATE SCHEMA IF NOT EXISTS` outside any lock; PostgreSQL's IF NOT EXISTS is not
/// safe against a concurrent creator (a unique violation on pg_namespace).
#[tokio::test]
async fn replicas_connecting_together_to_a_new_schema_all_start() {
    let Some(url) = testing::url() else { return };
    let mut failures = Vec::new();
    for _round in 0..10 {
        // Eight replicas start at once on a new schema.
        let schema2 = testing::unique("rv_race2");
        let options2 = Options::from_url(&url, None)
            .unwrap()
            .schema(&schema2)
            .unwrap()
            .pool_size(1);
        let mut replicas = Vec::new();
        for _ in 0..8 {
            let options = options2.clone();
            replicas.push(tokio::spawn(
                async move { options.connect().await.map(drop) },
            ));
        }
        for r in replicas {
            if let Err(e) = r.await.unwrap() {
                failures.push(e.to_string());
            }
        }
        let admin = testing::admin(&url).await;
        let _ = admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema2} CASCADE"))
            .await;
    }
    assert!(
        failures.is_empty(),
        "{} of 80 replicas failed to start; the first: {}",
        failures.len(),
        failures[0]
    );
}

/// `Options::schema` replaces the URL's `options` (a `-c statement_timeout=…` the
/// operator set) with its own `-c search_path=…`: silently dropped.
#[tokio::test]
async fn options_in_the_url_are_kept() {
    let Some(url) = testing::url() else { return };
    let sep = if url.contains('?') { '&' } else { '?' };
    let with_options = format!("{url}{sep}options=-c%20statement_timeout%3D4321");
    let pg = Options::from_url(&with_options, None)
        .unwrap()
        .schema(&testing::unique("rv_opts"))
        .unwrap();
    let db = pg.connect_existing().await.unwrap();
    let client = db.client().await.unwrap();
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "4321ms", "the URL's options were dropped");
}

/// Migrations assume READ COMMITTED: the transaction's first statement waits for the
/// migration lock, and under a server default of REPEATABLE READ its snapshot predates
/// the other replica's commit, so `schema_migrations` reads 0 and step 1 runs again.
#[tokio::test]
async fn replicas_migrate_together_under_a_repeatable_read_default() {
    let Some(url) = testing::url() else { return };
    let admin = testing::admin(&url).await;
    let role = testing::unique("rv_rr");
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
    let steps: &[&str] = &[
        "CREATE TABLE widgets (id bigint PRIMARY KEY)",
        "ALTER TABLE widgets ADD COLUMN name text",
    ];
    let mut failures = Vec::new();
    let mut schemas = Vec::new();
    for _round in 0..5 {
        let schema = testing::unique("rv_rrmig");
        schemas.push(schema.clone());
        let options = Options::from_url(&testing::url_as(&url, &role), None)
            .unwrap()
            .schema(&schema)
            .unwrap();
        options.connect().await.unwrap();
        let mut replicas = Vec::new();
        for _ in 0..4 {
            let db = options.connect_existing().await.unwrap();
            replicas.push(tokio::spawn(
                async move { db.migrate("widgets", steps).await },
            ));
        }
        for r in replicas {
            if let Err(e) = r.await.unwrap() {
                failures.push(e.to_string());
            }
        }
    }
    for schema in schemas {
        let _ = admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
    let _ = admin
        .batch_execute(&format!(
            "REVOKE CREATE ON DATABASE {db_name} FROM {role}; DROP ROLE {role}"
        ))
        .await;
    assert!(
        failures.is_empty(),
        "{} of 20 migrations failed; the first: {}",
        failures.len(),
        failures[0]
    );
}

/// An advisory lock lives on its own idle connection. When that connection ends (a
/// database restart, `pg_terminate_backend`, `idle_session_timeout`, a NAT dropping it)
/// the lock is gone and another `bir sync` may take it: the first holder learns it
/// (`lost()`), and `bir sync` stops on it.
#[tokio::test]
async fn a_lock_whose_connection_ended_says_it_is_lost() {
    let Some(pg) = testing::database("rv_lock").await else {
        return;
    };
    let first = pg.db().try_lock("bir-sync:p1").await.unwrap().unwrap();
    let other = pg.options().connect_existing().await.unwrap();
    let holder = other.try_lock("bir-sync:p1").await.unwrap().unwrap_err();
    let admin = pg.db().client().await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&holder.backend_pid])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), first.lost())
        .await
        .expect("the first holder learns its lock is gone");
    assert!(!first.is_held());
    assert!(other.try_lock("bir-sync:p1").await.unwrap().is_ok());
}
