//! A throwaway schema per test, for the store tests that run against PostgreSQL.
//!
//! `PLANE_TEST_DATABASE_URL` names a database the tests may write to
//! (`scripts/with-postgres.sh` starts a cluster and sets it; `.ci/run` always does). Each
//! test gets a schema of its own (`t_<random>`), so tests run in parallel, and the schema
//! is dropped when the test ends. Without the variable a PostgreSQL test is skipped with a
//! message on stderr, unless `PLANE_TEST_REQUIRE_POSTGRES=1` (set by the script), which
//! turns the skip into a failure so CI can never pass by skipping.
//!
//! ```no_run
//! # async fn demo() {
//! let Some(pg) = plane_postgres::testing::database("my_test").await else { return };
//! pg.db().ping().await.unwrap();
//! # }
//! ```

use std::sync::Once;

use crate::{Database, Options};

/// The variable naming the test database.
pub const URL_VAR: &str = "PLANE_TEST_DATABASE_URL";
/// Set to `1` to fail instead of skip when [`URL_VAR`] is missing.
pub const REQUIRE_VAR: &str = "PLANE_TEST_REQUIRE_POSTGRES";

/// A schema of one test's own, dropped at the end of the test.
#[derive(Debug)]
pub struct TestDatabase {
    db: Database,
    options: Options,
    url: String,
}

impl TestDatabase {
    /// The pool, working in the test's schema.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Options for the same schema, to open another pool (another "replica").
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The URL of the database (with its password, if the URL has one: tests only), for a
    /// child process; pair it with [`schema`](Self::schema).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The test's schema.
    pub fn schema(&self) -> &str {
        self.db.schema()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run outside (or inside) a runtime: use a thread with one of its own. The
        // test's runtime is blocked meanwhile, so a transaction it left open cannot roll
        // back: give up on the lock after a while and leave the schema behind.
        let url = self.url.clone();
        let schema = self.db.schema().to_owned();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                let task = tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!(
                        "SET lock_timeout = '3s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                    ))
                    .await;
                drop(client);
                let _ = task.await;
            });
        })
        .join();
    }
}

/// The test URL, or `None` after saying once on stderr why PostgreSQL tests are skipped.
///
/// # Panics
/// When [`REQUIRE_VAR`] is `1` and there is no URL: CI must run these tests.
pub fn url() -> Option<String> {
    static SKIP: Once = Once::new();
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
                "{REQUIRE_VAR}=1 but {URL_VAR} is not set: the PostgreSQL tests cannot run"
            );
            SKIP.call_once(|| {
                eprintln!(
                    "note: PostgreSQL tests skipped: {URL_VAR} is not set. Run them with \
                     `bash scripts/with-postgres.sh cargo test --workspace` (starts a \
                     throwaway PostgreSQL 15), or set {URL_VAR}=postgres://..."
                );
            });
            None
        }
    }
}

/// A fresh schema for the test `name`, or `None` (skipped) without a test database.
///
/// # Panics
/// When the test database is named but cannot be used: a test must not pass by skipping.
pub async fn database(name: &str) -> Option<TestDatabase> {
    let url = url()?;
    let schema = format!(
        "t_{}_{}",
        name.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
            .to_ascii_lowercase(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let options = Options::from_url(&url, std::env::var("PGPASSWORD").ok().as_deref())
        .and_then(|o| o.schema(&schema))
        .unwrap_or_else(|e| panic!("{URL_VAR} cannot be used: {e}"));
    let db = options
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the test database cannot be used: {e}"));
    Some(TestDatabase { db, options, url })
}
