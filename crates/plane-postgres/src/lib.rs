//! The PostgreSQL side of plane-connector's stores.
//!
//! SQLite is the embedded default; PostgreSQL is for several `plane-server` replicas (or
//! a team whose Odoo already runs on it). This crate holds what every store needs from
//! the engine, so that each store (`plane-webhook`'s deliveries, `plane-bir`'s
//! deadlines, `plane-server`'s tokens) only writes its own SQL:
//!
//! | item | what it does |
//! |---|---|
//! | [`Options`] | a `postgres://` URL, the password (the URL, else one given: `PGPASSWORD` or its `_FILE`), the schema (default `plane`) |
//! | [`Database`] | a pool whose connections all work in that schema (`search_path`) |
//! | [`Database::migrate`] | versioned, append-only migrations per component, one replica at a time; a newer schema is refused |
//! | [`Database::try_lock`] / [`Database::lock`] | a named advisory lock held by a connection of its own, and who holds it |
//! | [`testing`] | a throwaway schema per test, from `PLANE_TEST_DATABASE_URL` |
//!
//! **Why tokio-postgres and deadpool-postgres** (not sqlx): the stores are async already,
//! and every query here is plain SQL over a handful of tables. tokio-postgres gives
//! explicit transactions, `FOR UPDATE SKIP LOCKED`, advisory locks and pipelining with no
//! macros that need a database (or checked-in query data) at build time; deadpool adds a
//! small pool and nothing else. sqlx's compile-time checks would cost a database in every
//! build for little gain over the one test suite both backends run.
//!
//! Connections go without TLS: run the database on loopback or a private network. A URL
//! asking for TLS (`sslmode=require`) is refused rather than silently downgraded.
//!
//! ```no_run
//! # async fn demo() -> Result<(), plane_postgres::Error> {
//! use plane_postgres::Options;
//! let db = Options::from_url("postgres://plane@127.0.0.1:5432/plane", None)?
//!     .connect()
//!     .await?;
//! let version = db
//!     .migrate("example", &["CREATE TABLE example (id bigint PRIMARY KEY)"])
//!     .await?;
//! assert_eq!(version, 1);
//! # Ok(()) }
//! ```

pub mod testing;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

pub use deadpool_postgres::{self, Object as Client};
pub use tokio_postgres::{self, Row, Transaction};

/// The schema the tables live in unless told otherwise, so they can share a database
/// with Odoo's without a name clash.
pub const DEFAULT_SCHEMA: &str = "plane";

/// Every way a PostgreSQL store can fail. Messages name the database (never its
/// password), what was being done, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be read.
    #[error("the PostgreSQL URL {target} cannot be used: {message}")]
    BadUrl {
        /// The URL with any password left out.
        target: String,
        /// What was wrong.
        message: String,
    },
    /// The schema name is not a plain lower-case identifier.
    #[error(
        "the PostgreSQL schema name {0:?} cannot be used: use lower-case letters, digits and \
         `_`, starting with a letter or `_`, at most 63 characters"
    )]
    BadSchema(String),
    /// No connection could be made or taken from the pool: the database is down,
    /// unreachable, or refused us.
    #[error(
        "PostgreSQL at {target} is unavailable: {message} (is it running, and does the URL \
         name it?)"
    )]
    Unavailable {
        /// The URL with any password left out.
        target: String,
        /// What the driver said.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL at {target}: could not {operation}: {message}")]
    Query {
        /// The URL with any password left out.
        target: String,
        /// What was being done.
        operation: &'static str,
        /// What the server (or driver) said.
        message: String,
    },
    /// A newer build migrated these tables: this one must not touch them.
    #[error(
        "the {component} tables in schema {schema} at {target} are at version {found}, newer \
         than this build knows ({supported}): a newer plane-server migrated them. Run that \
         version (or newer) on every replica"
    )]
    SchemaTooNew {
        /// The URL with any password left out.
        target: String,
        /// The schema.
        schema: String,
        /// The component (`deliveries`, `bir`, `oauth`...).
        component: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

impl Error {
    /// Whether the database could not be reached (as opposed to refusing a statement):
    /// what a health check reports as a lost connection, and worth retrying.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

/// Where and how to connect. See the [crate docs](crate).
#[derive(Clone)]
pub struct Options {
    config: tokio_postgres::Config,
    target: String,
    schema: String,
    pool_size: usize,
    url_password: bool,
    /// The URL's own `options` (`-c statement_timeout=...`), kept beside ours.
    url_options: Option<String>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not `config`: it holds the password.
        f.debug_struct("Options")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Reads a `postgres://` (or `postgresql://`) URL. The password is the URL's own,
    /// else `password` (the caller reads `PGPASSWORD` or a `_FILE`), else none (trust or
    /// peer authentication).
    ///
    /// ```
    /// let o = plane_postgres::Options::from_url("postgres://app:s3cret@db:5432/odoo", None)?;
    /// assert_eq!(o.target(), "postgres://app@db:5432/odoo");
    /// assert!(!format!("{o:?}").contains("s3cret"));
    /// # Ok::<(), plane_postgres::Error>(())
    /// ```
    pub fn from_url(url: &str, password: Option<&str>) -> Result<Self, Error> {
        let redacted = redact(url);
        let bad = |message: String| Error::BadUrl {
            target: redacted.clone(),
            message,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad("it must start with postgres:// or postgresql://".into()));
        }
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| bad(e.to_string()))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(bad(
                "sslmode=require: this build connects without TLS; run PostgreSQL on \
                 loopback or a private network and drop sslmode (or set sslmode=disable)"
                    .into(),
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(bad("it names no host".into()));
        }
        if config.get_dbname().is_none() {
            return Err(bad(
                "it names no database (postgres://user@host:port/DATABASE)".into(),
            ));
        }
        let url_password = config.get_password().is_some();
        if !url_password && let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name(application_name());
        }
        let target = target_of(&config);
        let url_options = config.get_options().map(str::to_owned);
        let mut options = Self {
            config,
            target,
            schema: String::new(),
            pool_size: 16,
            url_password,
            url_options,
        };
        options = options.schema(DEFAULT_SCHEMA)?;
        Ok(options)
    }

    /// Puts the tables in `schema` instead of [`DEFAULT_SCHEMA`].
    pub fn schema(mut self, schema: &str) -> Result<Self, Error> {
        let ok = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit()
            && !schema.starts_with("pg_");
        if !ok {
            return Err(Error::BadSchema(schema.to_owned()));
        }
        // Every connection works in the schema: the stores' SQL names bare tables. READ
        // COMMITTED whatever the database's default: the stores' "take an advisory lock,
        // then read" steps need each statement to see what committed before it. Notices
        // (`relation ... already exists, skipping`) would reach the logs at INFO. The
        // URL's own `options` come first; ours win where they overlap.
        let ours = format!(
            "-c search_path={schema} -c client_min_messages=warning \
             -c default_transaction_isolation=read\\ committed"
        );
        self.config.options(match &self.url_options {
            Some(theirs) => format!("{theirs} {ours}"),
            None => ours,
        });
        self.schema = schema.to_owned();
        Ok(self)
    }

    /// At most this many connections per process (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Whether the URL itself holds a password (a config file must not).
    pub fn has_url_password(&self) -> bool {
        self.url_password
    }

    /// The URL without its password, for logs and errors.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema the tables live in.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// Builds the pool and makes one connection, so a wrong URL or a database that is
    /// down is known now, then creates the schema if it is missing.
    pub async fn connect(&self) -> Result<Database, Error> {
        let db = self.connect_existing().await?;
        let client = db.client().await?;
        let fail = db.query("create the schema");
        // Only when it is missing: PostgreSQL checks CREATE on the database before it
        // looks for the schema, and a role that owns a schema a DBA made may lack it.
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&db.schema],
            )
            .await
            .map_err(&fail)?
            .get(0);
        if !exists {
            // Replicas starting together on a new database: one creates, the others find
            // it made (`IF NOT EXISTS` alone still races on the catalog's unique index).
            match client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", db.schema))
                .await
            {
                Ok(()) => {}
                Err(e)
                    if e.code()
                        .is_some_and(|c| matches!(c.code(), "23505" | "42P06")) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        drop((fail, client));
        Ok(db)
    }

    /// As [`connect`](Self::connect), creating nothing (for `check` and other readers): a
    /// missing schema reads as one with no tables.
    pub async fn connect_existing(&self) -> Result<Database, Error> {
        let manager = Manager::from_config(
            self.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::BadUrl {
                target: self.target.clone(),
                message: e.to_string(),
            })?;
        let db = Database {
            pool,
            target: self.target.clone(),
            schema: self.schema.clone(),
            config: self.config.clone(),
        };
        db.ping().await?;
        Ok(db)
    }
}

/// A pool of connections working in one schema. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    target: String,
    schema: String,
    config: tokio_postgres::Config,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The URL without its password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection from the pool; [`Error::Unavailable`] when none can be had.
    pub async fn client(&self) -> Result<Object, Error> {
        self.pool.get().await.map_err(|e| match e {
            // Every connection of ours stayed busy: the database answers, we are
            // saturated. Not a lost connection, whatever a health check makes of it.
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                Error::Query {
                    target: self.target.clone(),
                    operation: "take a connection from the pool",
                    message: format!(
                        "all {} connections stayed busy; the load is more than the pool \
                         takes",
                        self.pool.status().max_size
                    ),
                }
            }
            e => Error::Unavailable {
                target: self.target.clone(),
                message: pool_error(&e),
            },
        })
    }

    /// Maps a driver error of `operation` to [`Error::Query`], or to
    /// [`Error::Unavailable`] when the connection is gone.
    pub fn query(&self, operation: &'static str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| self.error(operation, &e)
    }

    /// As [`query`](Self::query), for one error.
    pub fn error(&self, operation: &'static str, e: &tokio_postgres::Error) -> Error {
        if is_lost(e) {
            return Error::Unavailable {
                target: self.target.clone(),
                message: format!("the connection was lost while trying to {operation}"),
            };
        }
        Error::Query {
            target: self.target.clone(),
            operation,
            message: describe(e),
        }
    }

    /// Answers when the database takes a statement now (health checks).
    pub async fn ping(&self) -> Result<(), Error> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(self.query("check the connection"))
    }

    /// The version of `component`'s tables, `None` before its first migration.
    pub async fn schema_version(&self, component: &str) -> Result<Option<i64>, Error> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 \
                 AND tablename = 'schema_migrations')",
                &[&self.schema],
            )
            .await
            .map_err(self.query("read the schema version"))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = client
            .query_opt(
                "SELECT version FROM schema_migrations WHERE component = $1",
                &[&component],
            )
            .await
            .map_err(self.query("read the schema version"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Brings `component`'s tables up to date: runs the `steps` (SQL batches, one per
    /// version) not run yet, in one transaction, and returns the version.
    ///
    /// Replicas starting together migrate one after the other (a transaction-scoped
    /// advisory lock). Steps are append-only: never edit a shipped one, add the next. Tables
    /// at a higher version than `steps.len()` are [`Error::SchemaTooNew`] and nothing runs.
    pub async fn migrate(&self, component: &str, steps: &[&str]) -> Result<i64, Error> {
        let mut client = self.client().await?;
        let fail = self.query("migrate the schema");
        let tx = client.transaction().await.map_err(&fail)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("{}:migrate", self.schema)],
        )
        .await
        .map_err(&fail)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 component  text PRIMARY KEY,
                 version    bigint NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(&fail)?;
        let found: i64 = tx
            .query_opt(
                "SELECT version FROM schema_migrations WHERE component = $1",
                &[&component],
            )
            .await
            .map_err(&fail)?
            .map_or(0, |r| r.get(0));
        let supported = i64::try_from(steps.len()).unwrap_or(i64::MAX);
        if found > supported {
            return Err(Error::SchemaTooNew {
                target: self.target.clone(),
                schema: self.schema.clone(),
                component: component.to_owned(),
                found,
                supported,
            });
        }
        for step in steps.iter().skip(usize::try_from(found).unwrap_or(0)) {
            tx.batch_execute(step).await.map_err(&fail)?;
        }
        if found < supported {
            tx.execute(
                "INSERT INTO schema_migrations (component, version) VALUES ($1, $2) \
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version, \
                 applied_at = now()",
                &[&component, &supported],
            )
            .await
            .map_err(&fail)?;
            tracing::info!(component, from = found, to = supported, schema = %self.schema, "migrated");
        }
        tx.commit().await.map_err(&fail)?;
        Ok(supported)
    }

    /// Takes the advisory lock `name` (scoped to this schema) if it is free: `Ok(Err(who))`
    /// says who holds it. The lock lives as long as the returned guard (its own connection,
    /// outside the pool), and ends with that connection if the process dies.
    pub async fn try_lock(&self, name: &str) -> Result<Result<AdvisoryLock, Holder>, Error> {
        let lock = self.lock_connection(name).await?;
        let got: bool = lock
            .client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&lock.key],
            )
            .await
            .map_err(self.query("take an advisory lock"))?
            .get(0);
        if got {
            return Ok(Ok(lock));
        }
        let holder = self.holder(&lock).await?;
        Ok(Err(holder))
    }

    /// Waits for the advisory lock `name`, then holds it as [`try_lock`](Self::try_lock) does.
    pub async fn lock(&self, name: &str) -> Result<AdvisoryLock, Error> {
        let lock = self.lock_connection(name).await?;
        lock.client
            .execute(
                "SELECT pg_advisory_lock(hashtextextended($1, 0))",
                &[&lock.key],
            )
            .await
            .map_err(self.query("wait for an advisory lock"))?;
        Ok(lock)
    }

    async fn lock_connection(&self, name: &str) -> Result<AdvisoryLock, Error> {
        let (client, connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|e| Error::Unavailable {
                    target: self.target.clone(),
                    message: describe(&e),
                })?;
        let task = tokio::spawn(async move {
            // Ends when the client is dropped (or the server goes away).
            let _ = connection.await;
        });
        Ok(AdvisoryLock {
            client,
            task,
            key: format!("{}:{name}", self.schema),
            name: name.to_owned(),
        })
    }

    async fn holder(&self, lock: &AdvisoryLock) -> Result<Holder, Error> {
        let row = lock
            .client
            .query_opt(
                "SELECT a.application_name, a.pid, host(a.client_addr), \
                 to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                 AND l.classid::bigint = ((hashtextextended($1, 0) >> 32) & 4294967295) \
                 AND l.objid::bigint = (hashtextextended($1, 0) & 4294967295) LIMIT 1",
                &[&lock.key],
            )
            .await
            .map_err(self.query("find who holds an advisory lock"))?;
        Ok(match row {
            Some(row) => Holder {
                application: row.get::<_, Option<String>>(0).unwrap_or_default(),
                backend_pid: row.get(1),
                client_addr: row.get(2),
                since: row.get::<_, Option<String>>(3).unwrap_or_default(),
            },
            // Released between the two statements: say so rather than invent a holder.
            None => Holder {
                application: "(released just now; try again)".into(),
                backend_pid: 0,
                client_addr: None,
                since: String::new(),
            },
        })
    }
}

/// A held advisory lock; dropping it closes its connection, which releases the lock.
pub struct AdvisoryLock {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    key: String,
    name: String,
}

impl fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AdvisoryLock {
    /// Whether the connection holding the lock is still open (a database restart ends it,
    /// and the lock with it).
    pub fn is_held(&self) -> bool {
        !self.client.is_closed()
    }

    /// Resolves once the lock is lost: its connection closed (a database restart, a
    /// network cut, the server ending the session). Race it against the work the lock
    /// guards, so that work stops rather than go on unguarded.
    pub async fn lost(&self) {
        while !self.client.is_closed() {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Releases the lock now.
    pub async fn release(self) {
        let _ = self
            .client
            .execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                &[&self.key],
            )
            .await;
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who holds an advisory lock, as PostgreSQL knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's `application_name` (`plane-server <command> pid N on HOST`).
    pub application: String,
    /// The server process serving the holder's connection.
    pub backend_pid: i32,
    /// The holder's address (`None` over a Unix socket).
    pub client_addr: Option<String>,
    /// When its connection began (UTC, ISO 8601).
    pub since: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.application)?;
        if let Some(addr) = &self.client_addr {
            write!(f, " from {addr}")?;
        }
        if !self.since.is_empty() {
            write!(f, ", connected since {}", self.since)?;
        }
        Ok(())
    }
}

/// `plane-server pid N on HOST`: what `pg_stat_activity` and a lock's [`Holder`] show.
fn application_name() -> String {
    let command = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut name = format!("plane-server{command} pid {}", std::process::id());
    if !host.is_empty() {
        name.push_str(" on ");
        name.push_str(&host);
    }
    // PostgreSQL keeps 63 bytes; cut on a character boundary.
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// `postgres://user@host:port/db` from a parsed config: never the password.
fn target_of(config: &tokio_postgres::Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{host}{port}/{db}")
}

/// A URL with any `:password@` cut out, for errors about a URL that did not parse.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    // A password may hold `/`, `?` or `#` unencoded: everything before the last `@` is
    // the user and password (at worst more), and only the user is kept.
    let (user, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            (format!("{user}@"), rest)
        }
        None => (String::new(), rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{user}{rest}")
}

/// Whether `e` means the database went away rather than refused the statement: a closed
/// connection, an I/O error, a connection-class SQL state (`08…`), or the server shutting
/// sessions down (`57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect
/// now), as a restart does.
pub fn is_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        None => e.as_db_error().is_none() && is_io(e),
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The server's message with its code, or the driver's chain of causes.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut message = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        return message;
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection could be made or freed in time".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_url_never_shows_its_password() {
        let o = Options::from_url("postgres://app:hunter2@db.internal:6543/odoo", None).unwrap();
        assert_eq!(o.target(), "postgres://app@db.internal:6543/odoo");
        assert!(!format!("{o:?}").contains("hunter2"));
        let e = Options::from_url("postgres://app:hunter2@db/odoo?sslmode=require", None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("sslmode=require"), "{e}");
        let e = Options::from_url("postgres://app:hunter2@db/odoo?bogus=1", None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("postgres://app@db/odoo"), "{e}");
    }

    #[test]
    fn the_password_given_is_used_only_when_the_url_has_none() {
        let o = Options::from_url("postgres://app@db/odoo", Some("from-env")).unwrap();
        assert_eq!(o.config.get_password(), Some(&b"from-env"[..]));
        let o = Options::from_url("postgres://app:in-url@db/odoo", Some("from-env")).unwrap();
        assert_eq!(o.config.get_password(), Some(&b"in-url"[..]));
    }

    #[test]
    fn bad_urls_and_schema_names_say_what_is_wrong() {
        let e = Options::from_url("mysql://x@db/odoo", None).unwrap_err();
        assert!(e.to_string().contains("must start with postgres://"), "{e}");
        let e = Options::from_url("postgres://x@db", None).unwrap_err();
        assert!(e.to_string().contains("names no database"), "{e}");
        let o = Options::from_url("postgres://x@db/odoo", None).unwrap();
        assert_eq!(o.schema_name(), "plane");
        for bad in [
            "",
            "Plane",
            "1plane",
            "pg_catalog",
            "a-b",
            "x;drop",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(o.clone().schema(bad), Err(Error::BadSchema(_))),
                "{bad:?} was taken"
            );
        }
        assert_eq!(o.schema("plane_2").unwrap().schema_name(), "plane_2");
    }

    #[test]
    fn redact_cuts_the_password_and_the_query() {
        assert_eq!(redact("postgres://u:p@h:1/d?x=y"), "postgres://u@h:1/d");
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
        assert_eq!(redact("nonsense"), "(not a URL)");
        // Unencoded `/`, `?` and `@` in a password never show.
        assert_eq!(redact("postgres://u:Zm9v/YmFy@h:1/d"), "postgres://u@h:1/d");
        assert_eq!(
            redact("postgres://u:pa?ss@h/d?sslmode=x"),
            "postgres://u@h/d"
        );
        assert_eq!(redact("postgres://u:p@ss@h/d"), "postgres://u@h/d");
    }
}
