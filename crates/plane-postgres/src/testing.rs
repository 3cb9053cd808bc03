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
                // Straight to the process's stderr: the test harness captures `eprintln!`,
                // and a skip nobody sees would look like a pass.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
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

/// A PostgreSQL cluster of one test's own, for tests that stop and start the database
/// (which would disturb every other test on the shared one). Started like
/// `scripts/with-postgres.sh` does: `initdb` in a temporary folder, as the `postgres`
/// user when run as root, on a free loopback port. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
}

impl Cluster {
    /// Starts a cluster, or `None` (skipped, with a message) when the shared test database
    /// is not configured: the same switch as [`database`], so CI always runs these.
    ///
    /// # Panics
    /// When the binaries are missing or the cluster does not start.
    pub fn start() -> Option<Self> {
        url()?;
        let bin = std::env::var("PLANE_TEST_PG_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let dir = std::env::temp_dir().join(format!("plane-pg-own.{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {dir:?}: {e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("find a free port: {e}"));
        let cluster = Self { bin, dir, port };
        if is_root() {
            cluster.run_plain("chown", &["postgres:", &cluster.dir.display().to_string()]);
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        cluster.start_server();
        Some(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m immediate`: as a crash would, open connections
    /// cut).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts it again on the same port.
    pub fn start_server(&self) {
        let options = format!("-h 127.0.0.1 -p {} -k {}", self.port, self.dir.display());
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let out = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program:?}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run_plain(&self, program: &str, args: &[&str]) {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(status.success(), "{program} {args:?} failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if is_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&program).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // Without libc: root's home is /root, and `id -u` says 0.
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// `url` with its user replaced by `user` (and no password): to connect as a role a test
/// created.
///
/// # Panics
/// When `url` is not `scheme://...`.
pub fn url_as(url: &str, user: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not a URL: {}", crate::redact(url)));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{rest}")
}

/// A plain connection outside any pool and schema (the test URL's role, which creates
/// roles and schemas in the throwaway cluster), its driver spawned on this runtime.
///
/// # Panics
/// When the connection cannot be made.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test database: {}", crate::describe(&e)));
    tokio::spawn(connection);
    client
}

/// `prefix_` and ten random hex digits: a role or schema name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}
