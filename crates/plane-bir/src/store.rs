//! The deadline store: what the sync pushed to Plane, and each deadline's filing status.
//!
//! [`DeadlineStore`] is the seam, an async trait (boxed futures, as plane-webhook's
//! `DeliveryStore`) with two implementations:
//!
//! - [`SqliteDeadlineStore`] keeps the rows in the same SQLite file as plane-webhook's
//!   deliveries (`plane.db` by default), through a connection of its own (WAL,
//!   `busy_timeout` 5 s, `synchronous=FULL`). Its SQL blocks, so inside a Tokio runtime
//!   it runs on the blocking pool (`spawn_blocking`); outside one (a command line that has
//!   not started its runtime yet, driving the future with `futures::executor::block_on`)
//!   it runs where it is polled.
//! - [`PgDeadlineStore`] keeps the same tables in PostgreSQL, for several `plane-server`
//!   replicas sharing one database: see [`postgres`].
//!
//! Both hold the same rows and answer alike: the one test suite in
//! `tests/deadline_store.rs` runs against each.
//!
//! # Schema
//!
//! The delivery store versions its schema with `PRAGMA user_version`; this store never
//! touches that number. It keeps its own versions in `bir_schema_migrations(version,
//! applied_at)`, one row per applied migration, all applied in one `IMMEDIATE`
//! transaction. A file whose newest version is above [`SCHEMA_VERSION`] is refused with
//! [`Error::SchemaTooNew`] and left as it is.
//!
//! Version 1:
//!
//! - `bir_deadlines`, one row per deadline, keyed by its `external_id` (see
//!   [`crate::sync::external_id`]): `profile`, `form`, `period`, `due_date`,
//!   `payment_date`, `project_id`, `work_item_id`, `pushed` (a fingerprint of what the
//!   sync asked for), `fingerprint` (of what Plane *returned* for the owned fields, so a
//!   description Plane sanitised is not taken for drift), `status`
//!   (`pending | in_progress | filed | void`), `status_by`, `status_at`, `synced_at`.
//! - `bir_status_events`: each status change with the event that caused it (`event`, for
//!   example an inbox delivery id, unique), so an event is applied once.
//!
//! Version 2:
//!
//! - `bir_sync_runs`, one row per profile: the last *successful* sync of that profile
//!   (`profile`, `project_id`, `finished_at`, `requests`, `writes`, `waited_ms`: the time
//!   spent waiting for Plane's rate limit). `bir sync` runs as a process of its own, so
//!   this row is how `serve` (its `/metrics`) learns when the deadlines were last synced.
//!   A dry run or a failed run leaves it as it was.
//!
//! # Status changes inside another transaction
//!
//! [`apply_status_change`] is plain SQL on a [`rusqlite::Transaction`], so the webhook
//! handler can run it inside the delivery store's own writer transaction: the status
//! change and the inbox item that caused it then commit together.
//! [`postgres::apply_status_change`] is its twin on a PostgreSQL transaction.

mod copy;
pub mod postgres;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use plane_webhook::BoxFuture;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};

pub use postgres::PgDeadlineStore;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 2;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE bir_deadlines (
    external_id  TEXT PRIMARY KEY,
    profile      TEXT NOT NULL,
    form         TEXT NOT NULL,
    period       TEXT NOT NULL,
    due_date     TEXT NOT NULL,
    payment_date TEXT,
    project_id   TEXT NOT NULL,
    work_item_id TEXT,
    pushed       TEXT,
    fingerprint  TEXT,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'in_progress', 'filed', 'void')),
    status_by    TEXT,
    status_at    TEXT,
    synced_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX bir_deadlines_work_item ON bir_deadlines (work_item_id)
    WHERE work_item_id IS NOT NULL;
CREATE INDEX bir_deadlines_profile ON bir_deadlines (profile, due_date);
CREATE TABLE bir_status_events (
    id          INTEGER PRIMARY KEY,
    external_id TEXT NOT NULL,
    event       TEXT UNIQUE,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    actor       TEXT,
    at          TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
",
    "
CREATE TABLE bir_sync_runs (
    profile     TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    requests    INTEGER NOT NULL,
    writes      INTEGER NOT NULL,
    waited_ms   INTEGER NOT NULL
);
",
];

/// A deadline's filing status. Plane owns it: the sync never changes a work item's state;
/// the status follows the state's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineStatus {
    /// Not started (Plane's backlog, unstarted or triage groups).
    Pending,
    /// Being worked on (the started group).
    InProgress,
    /// Filed (the completed group).
    Filed,
    /// Not needed (the cancelled group).
    Void,
}

impl DeadlineStatus {
    /// `pending`, `in_progress`, `filed` or `void`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineStatus::Pending => "pending",
            DeadlineStatus::InProgress => "in_progress",
            DeadlineStatus::Filed => "filed",
            DeadlineStatus::Void => "void",
        }
    }

    /// The status a Plane state group stands for.
    ///
    /// ```
    /// use plane_bir::DeadlineStatus;
    /// use plane_core::StateGroup;
    /// assert_eq!(DeadlineStatus::of_group(&StateGroup::Completed), DeadlineStatus::Filed);
    /// assert_eq!(DeadlineStatus::of_group(&StateGroup::Backlog), DeadlineStatus::Pending);
    /// ```
    pub fn of_group(group: &plane_core::StateGroup) -> Self {
        use plane_core::StateGroup as G;
        match group {
            G::Started => DeadlineStatus::InProgress,
            G::Completed => DeadlineStatus::Filed,
            G::Cancelled => DeadlineStatus::Void,
            _ => DeadlineStatus::Pending,
        }
    }

    /// Filed or void: the sync leaves such an item's priority alone.
    pub fn is_closed(self) -> bool {
        matches!(self, DeadlineStatus::Filed | DeadlineStatus::Void)
    }

    /// Still open (pending or in progress) after its due day: what `bir status` and
    /// `/metrics` call `overdue`. `today` is a Manila day ([`manila_date`]).
    ///
    /// ```
    /// use chrono::NaiveDate;
    /// use plane_bir::DeadlineStatus;
    /// let due = NaiveDate::from_ymd_opt(2026, 4, 15).unwrap();
    /// let next_day = due.succ_opt().unwrap();
    /// assert!(!DeadlineStatus::Pending.is_overdue(due, due), "due today is not late yet");
    /// assert!(DeadlineStatus::InProgress.is_overdue(due, next_day));
    /// assert!(!DeadlineStatus::Filed.is_overdue(due, next_day));
    /// ```
    pub fn is_overdue(self, due: NaiveDate, today: NaiveDate) -> bool {
        !self.is_closed() && due < today
    }
}

/// Manila is UTC+8 all year (the Philippines keeps no daylight saving time).
const MANILA_OFFSET_HOURS: i64 = 8;

/// The Manila day at `at`: BIR deadlines are Philippine days.
///
/// ```
/// use plane_bir::store::manila_date;
/// let evening_utc = "2026-04-15T16:00:00Z".parse().unwrap();
/// assert_eq!(manila_date(evening_utc).to_string(), "2026-04-16");
/// ```
pub fn manila_date(at: DateTime<Utc>) -> NaiveDate {
    (at + chrono::Duration::hours(MANILA_OFFSET_HOURS)).date_naive()
}

/// When a due day ends: midnight after it in Manila. From that instant the deadline, if
/// still open, is overdue ([`DeadlineStatus::is_overdue`]).
///
/// ```
/// use chrono::NaiveDate;
/// use plane_bir::store::manila_day_end;
/// let due = NaiveDate::from_ymd_opt(2026, 4, 15).unwrap();
/// assert_eq!(manila_day_end(due).to_rfc3339(), "2026-04-15T16:00:00+00:00");
/// ```
pub fn manila_day_end(due: NaiveDate) -> DateTime<Utc> {
    let next_midnight = due
        .succ_opt()
        .unwrap_or(NaiveDate::MAX)
        .and_time(chrono::NaiveTime::MIN);
    next_midnight.and_utc() - chrono::Duration::hours(MANILA_OFFSET_HOURS)
}

impl fmt::Display for DeadlineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadlineStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pending" => Ok(DeadlineStatus::Pending),
            "in_progress" => Ok(DeadlineStatus::InProgress),
            "filed" => Ok(DeadlineStatus::Filed),
            "void" => Ok(DeadlineStatus::Void),
            other => Err(format!(
                "{other:?} is not a deadline status (pending, in_progress, filed, void)"
            )),
        }
    }
}

/// One deadline as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineRecord {
    /// The work item's `external_id` (with `external_source = "plane-bir"`); the key.
    pub external_id: String,
    /// The profile's key ([`crate::sync::profile_key`]).
    pub profile: String,
    /// The form (`1601-C`).
    pub form: String,
    /// The period label (`2026-03`, `2026-Q1`, `2026`).
    pub period: String,
    /// The filing date last synced.
    pub due_date: NaiveDate,
    /// The payment date, where it differs.
    pub payment_date: Option<NaiveDate>,
    /// The Plane project.
    pub project_id: Uuid,
    /// The Plane work item, once created or adopted.
    pub work_item_id: Option<Uuid>,
    /// Fingerprint of the fields the sync last asked for.
    pub pushed: Option<String>,
    /// Fingerprint of the owned fields as Plane last returned them.
    pub fingerprint: Option<String>,
    /// The filing status.
    pub status: DeadlineStatus,
    /// Who last changed the status (a Plane user's name or id), if known.
    pub status_by: Option<String>,
    /// When the status last changed (Plane's time of the change).
    pub status_at: Option<DateTime<Utc>>,
}

/// A status change seen in Plane: the work item, its new status, who and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The Plane work item.
    pub work_item_id: Uuid,
    /// The status its state group stands for.
    pub status: DeadlineStatus,
    /// Who changed it (display name, email or user id), if known.
    pub by: Option<String>,
    /// When Plane made the change (`updated_at` of the work item).
    pub at: DateTime<Utc>,
    /// The event that carried it (an inbox delivery id): applied at most once. `None` for
    /// a status read from a listing, which is idempotent on its own.
    pub event: Option<String>,
}

/// What [`apply_status_change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusApplied {
    /// The status changed.
    Changed {
        /// Before.
        from: DeadlineStatus,
        /// After.
        to: DeadlineStatus,
    },
    /// The deadline already had that status.
    Unchanged,
    /// The event was applied before (same `event`).
    Duplicate,
    /// The change is older than the status stored (events arrive out of order).
    Stale,
    /// No deadline has that work item: not ours.
    NotOurs,
}

/// A profile's last successful sync, as [`DeadlineStore::record_sync_run`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    /// The profile's key ([`crate::sync::profile_key`]).
    pub profile: String,
    /// The Plane project it was synced to.
    pub project_id: Uuid,
    /// When the sync finished (stored to the microsecond).
    pub finished_at: DateTime<Utc>,
    /// HTTP requests it sent (retries included).
    pub requests: u64,
    /// Of those, writes.
    pub writes: u64,
    /// Time it spent waiting for Plane's rate limit (stored in milliseconds).
    pub waited: Duration,
}

/// Where deadlines and their sync state are kept: [`SqliteDeadlineStore`] or
/// [`PgDeadlineStore`].
///
/// Every method returns a boxed future (as plane-webhook's `DeliveryStore` does), so the
/// sync, the metrics and the command line hold an `Arc<dyn DeadlineStore>` and never know
/// the backend. A store that blocks does its work off the async threads.
pub trait DeadlineStore: Send + Sync {
    /// Every deadline of a profile (by [`crate::sync::profile_key`]), by due date, then
    /// form and period.
    fn deadlines_of<'a>(&'a self, profile: &'a str) -> BoxFuture<'a, Result<Vec<DeadlineRecord>>>;
    /// Every deadline, by due date, then form and period.
    fn all(&self) -> BoxFuture<'_, Result<Vec<DeadlineRecord>>>;
    /// Inserts or updates a deadline's sync columns (everything but the status, which
    /// only [`apply_status`](Self::apply_status) changes; a new row starts `pending`).
    fn record<'a>(&'a self, record: &'a DeadlineRecord) -> BoxFuture<'a, Result<()>>;
    /// Applies a status change in a transaction of its own (see [`apply_status_change`]).
    fn apply_status<'a>(&'a self, change: &'a StatusChange)
    -> BoxFuture<'a, Result<StatusApplied>>;
    /// Records a profile's successful sync, replacing the one before (the sync calls it
    /// last, so a failed or dry run leaves the previous one).
    fn record_sync_run<'a>(&'a self, run: &'a SyncRun) -> BoxFuture<'a, Result<()>>;
    /// The last successful sync of each profile, by profile key; none before the first
    /// (or in a store of schema version 1, read-only).
    fn sync_runs(&self) -> BoxFuture<'_, Result<Vec<SyncRun>>>;
}

/// The SQLite deadline store. See the [module docs](self).
///
/// ```
/// use plane_bir::{DeadlineStore, SqliteDeadlineStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), plane_bir::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteDeadlineStore::open(dir.path().join("plane.db"))?;
/// assert!(store.all().await?.is_empty());
/// # Ok(()) }
/// ```
///
/// Opening (and migrating) blocks: call [`open`](Self::open) off the async threads where
/// that matters. Cloning shares the connection.
#[derive(Clone)]
pub struct SqliteDeadlineStore {
    inner: Arc<Sqlite>,
}

/// The connection and its file: what a call runs on, on the blocking pool.
struct Sqlite {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl fmt::Debug for SqliteDeadlineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDeadlineStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn store_error<'a>(
    path: &'a Path,
    operation: &'static str,
) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |e| Error::Store {
        path: path.display().to_string(),
        operation,
        message: e.to_string(),
    }
}

impl SqliteDeadlineStore {
    /// Opens (creating if needed) the database at `path` and applies the missing
    /// migrations. A schema newer than [`SCHEMA_VERSION`] is [`Error::SchemaTooNew`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Before SQLite creates the shared file, which would make it 0644.
        plane_webhook::prepare_database_file(path);
        let mut connection =
            Connection::open(path).map_err(store_error(path, "open the database"))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(store_error(path, "configure the database"))?;
        migrate(&mut connection, path)?;
        Ok(SqliteDeadlineStore::with(path, connection))
    }

    /// Opens an existing database read-only, creating and migrating nothing (for
    /// `bir status`). A file no sync has written yet reads as empty.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::Store {
                path: path.display().to_string(),
                operation: "open the database read-only",
                message: "no such file (`plane-server bir sync` creates it)".into(),
            });
        }
        let connection = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_error(path, "open the database read-only"))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(store_error(path, "configure the database"))?;
        let version = schema_version(&connection, path)?;
        if version > SCHEMA_VERSION {
            return Err(too_new(path, version));
        }
        Ok(SqliteDeadlineStore::with(path, connection))
    }

    fn with(path: &Path, connection: Connection) -> Self {
        SqliteDeadlineStore {
            inner: Arc::new(Sqlite {
                path: path.to_path_buf(),
                connection: Mutex::new(connection),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the file (0 before the first migration). Blocks (one quick
    /// read).
    pub fn schema_version(&self) -> Result<i64> {
        schema_version(&self.inner.lock(), &self.inner.path)
    }

    /// Runs `f` on the connection: on the blocking pool inside a Tokio runtime, where it
    /// is polled otherwise (nothing async to block there).
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sqlite) -> Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return f(&inner);
            }
            let path = inner.path.display().to_string();
            tokio::task::spawn_blocking(move || f(&inner))
                .await
                .map_err(|e| Error::Store {
                    path,
                    operation: "run a deadline store call",
                    message: e.to_string(),
                })?
        })
    }
}

impl Sqlite {
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn select(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<DeadlineRecord>> {
        let connection = self.lock();
        if schema_version(&connection, &self.path)? == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT external_id, profile, form, period, due_date, payment_date, project_id, \
             work_item_id, pushed, fingerprint, status, status_by, status_at \
             FROM bir_deadlines {filter} ORDER BY due_date, form, period"
        );
        let path = self.path.as_path();
        let mut statement = connection
            .prepare(&sql)
            .map_err(store_error(path, "read the deadlines"))?;
        let rows = statement
            .query_map(args, |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                    row.get::<_, String>(10)?,
                    row.get::<_, Option<String>>(11)?,
                    row.get::<_, Option<String>>(12)?,
                ))
            })
            .map_err(store_error(path, "read the deadlines"))?;
        let bad = |column: &str, value: &str| Error::Store {
            path: path.display().to_string(),
            operation: "read the deadlines",
            message: format!("column {column} holds {value:?}, which this build cannot read"),
        };
        let date = |column: &str, v: &str| v.parse::<NaiveDate>().map_err(|_| bad(column, v));
        let uuid = |column: &str, v: &str| v.parse::<Uuid>().map_err(|_| bad(column, v));
        let mut out = Vec::new();
        for row in rows {
            let r = row.map_err(store_error(path, "read the deadlines"))?;
            out.push(DeadlineRecord {
                external_id: r.0,
                profile: r.1,
                form: r.2,
                period: r.3,
                due_date: date("due_date", &r.4)?,
                payment_date: r
                    .5
                    .as_deref()
                    .map(|v| date("payment_date", v))
                    .transpose()?,
                project_id: uuid("project_id", &r.6)?,
                work_item_id: r
                    .7
                    .as_deref()
                    .map(|v| uuid("work_item_id", v))
                    .transpose()?,
                pushed: r.8,
                fingerprint: r.9,
                status: r.10.parse().map_err(|_| bad("status", &r.10))?,
                status_by: r.11,
                status_at: r
                    .12
                    .as_deref()
                    .map(|v| {
                        DateTime::parse_from_rfc3339(v)
                            .map(|t| t.with_timezone(&Utc))
                            .map_err(|_| bad("status_at", v))
                    })
                    .transpose()?,
            });
        }
        Ok(out)
    }

    fn record(&self, r: &DeadlineRecord) -> Result<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO bir_deadlines (external_id, profile, form, period, due_date, \
                 payment_date, project_id, work_item_id, pushed, fingerprint, synced_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (external_id) DO UPDATE SET profile = excluded.profile, \
                 form = excluded.form, period = excluded.period, due_date = excluded.due_date, \
                 payment_date = excluded.payment_date, project_id = excluded.project_id, \
                 work_item_id = excluded.work_item_id, pushed = excluded.pushed, \
                 fingerprint = excluded.fingerprint, synced_at = excluded.synced_at",
                params![
                    r.external_id,
                    r.profile,
                    r.form,
                    r.period,
                    r.due_date.to_string(),
                    r.payment_date.map(|d| d.to_string()),
                    r.project_id.to_string(),
                    r.work_item_id.map(|id| id.to_string()),
                    r.pushed,
                    r.fingerprint,
                    now(),
                ],
            )
            .map_err(store_error(&self.path, "record a pushed deadline"))?;
        Ok(())
    }

    fn apply_status(&self, change: &StatusChange) -> Result<StatusApplied> {
        let mut connection = self.lock();
        let path = self.path.as_path();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "apply a status change"))?;
        let applied =
            apply_status_change(&tx, change).map_err(store_error(path, "apply a status change"))?;
        tx.commit()
            .map_err(store_error(path, "apply a status change"))?;
        Ok(applied)
    }

    fn record_sync_run(&self, run: &SyncRun) -> Result<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO bir_sync_runs (profile, project_id, finished_at, requests, writes, \
                 waited_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (profile) DO UPDATE SET project_id = excluded.project_id, \
                 finished_at = excluded.finished_at, requests = excluded.requests, \
                 writes = excluded.writes, waited_ms = excluded.waited_ms",
                params![
                    run.profile,
                    run.project_id.to_string(),
                    run.finished_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                    i64::try_from(run.requests).unwrap_or(i64::MAX),
                    i64::try_from(run.writes).unwrap_or(i64::MAX),
                    i64::try_from(run.waited.as_millis()).unwrap_or(i64::MAX),
                ],
            )
            .map_err(store_error(&self.path, "record a sync run"))?;
        Ok(())
    }

    fn sync_runs(&self) -> Result<Vec<SyncRun>> {
        let connection = self.lock();
        let path = self.path.as_path();
        // A read-only opening never migrates: a file an older build wrote has no table yet.
        if schema_version(&connection, path)? < 2 {
            return Ok(Vec::new());
        }
        let read = store_error(path, "read the sync runs");
        let mut statement = connection
            .prepare(
                "SELECT profile, project_id, finished_at, requests, writes, waited_ms \
                 FROM bir_sync_runs ORDER BY profile",
            )
            .map_err(&read)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(&read)?;
        let bad = |column: &str, value: &str| Error::Store {
            path: path.display().to_string(),
            operation: "read the sync runs",
            message: format!("column {column} holds {value:?}, which this build cannot read"),
        };
        let mut out = Vec::new();
        for row in rows {
            let (profile, project, finished, requests, writes, waited_ms) = row.map_err(&read)?;
            out.push(SyncRun {
                profile,
                project_id: project.parse().map_err(|_| bad("project_id", &project))?,
                finished_at: DateTime::parse_from_rfc3339(&finished)
                    .map_err(|_| bad("finished_at", &finished))?
                    .with_timezone(&Utc),
                requests: u64::try_from(requests).unwrap_or(0),
                writes: u64::try_from(writes).unwrap_or(0),
                waited: Duration::from_millis(u64::try_from(waited_ms).unwrap_or(0)),
            });
        }
        Ok(out)
    }
}

impl DeadlineStore for SqliteDeadlineStore {
    fn deadlines_of<'a>(&'a self, profile: &'a str) -> BoxFuture<'a, Result<Vec<DeadlineRecord>>> {
        let profile = profile.to_owned();
        self.run(move |s| s.select("WHERE profile = ?1", &[&profile]))
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<DeadlineRecord>>> {
        self.run(|s| s.select("", &[]))
    }

    fn record<'a>(&'a self, record: &'a DeadlineRecord) -> BoxFuture<'a, Result<()>> {
        let record = record.clone();
        self.run(move |s| s.record(&record))
    }

    fn apply_status<'a>(
        &'a self,
        change: &'a StatusChange,
    ) -> BoxFuture<'a, Result<StatusApplied>> {
        let change = change.clone();
        self.run(move |s| s.apply_status(&change))
    }

    fn record_sync_run<'a>(&'a self, run: &'a SyncRun) -> BoxFuture<'a, Result<()>> {
        let run = run.clone();
        self.run(move |s| s.record_sync_run(&run))
    }

    fn sync_runs(&self) -> BoxFuture<'_, Result<Vec<SyncRun>>> {
        self.run(Sqlite::sync_runs)
    }
}

/// Applies a status change inside `tx`, which the caller commits (for the webhook
/// handler: the delivery store's writer transaction, so the change and its inbox item
/// commit together).
///
/// - a work item no deadline has → [`StatusApplied::NotOurs`];
/// - an `event` applied before → [`StatusApplied::Duplicate`];
/// - a change older than the stored `status_at` → [`StatusApplied::Stale`];
/// - the same status → [`StatusApplied::Unchanged`];
/// - otherwise `status`, `status_by` and `status_at` are set and the change is recorded
///   in `bir_status_events` with its event → [`StatusApplied::Changed`].
pub fn apply_status_change(
    tx: &Transaction<'_>,
    change: &StatusChange,
) -> rusqlite::Result<StatusApplied> {
    let row: Option<(String, String, Option<String>)> = tx
        .query_row(
            "SELECT external_id, status, status_at FROM bir_deadlines WHERE work_item_id = ?1",
            [change.work_item_id.to_string()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((external_id, status, status_at)) = row else {
        return Ok(StatusApplied::NotOurs);
    };
    if let Some(event) = &change.event {
        let seen: Option<i64> = tx
            .query_row(
                "SELECT id FROM bir_status_events WHERE event = ?1",
                [event],
                |row| row.get(0),
            )
            .optional()?;
        if seen.is_some() {
            return Ok(StatusApplied::Duplicate);
        }
    }
    let stored_at = status_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    if stored_at.is_some_and(|t| t > change.at) {
        return Ok(StatusApplied::Stale);
    }
    let from: DeadlineStatus = status.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
    })?;
    if from == change.status {
        return Ok(StatusApplied::Unchanged);
    }
    let at = change.at.to_rfc3339_opts(SecondsFormat::Micros, true);
    tx.execute(
        "UPDATE bir_deadlines SET status = ?1, status_by = ?2, status_at = ?3 \
         WHERE external_id = ?4",
        params![change.status.as_str(), change.by, at, external_id],
    )?;
    tx.execute(
        "INSERT INTO bir_status_events (external_id, event, from_status, to_status, actor, at, \
         recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            external_id,
            change.event,
            from.as_str(),
            change.status.as_str(),
            change.by,
            at,
            now()
        ],
    )?;
    Ok(StatusApplied::Changed {
        from,
        to: change.status,
    })
}

/// The handler's view of a deadline's row: by `work_item_id` or by `external_id` (both
/// unique), inside the handler's transaction.
pub(crate) fn stored_by(
    tx: &Transaction<'_>,
    by: crate::handler::Lookup,
) -> rusqlite::Result<Option<crate::handler::Stored>> {
    use crate::handler::Lookup;
    let select = "SELECT external_id, work_item_id, fingerprint, pushed FROM bir_deadlines";
    let (sql, value) = match by {
        Lookup::WorkItem(id) => (format!("{select} WHERE work_item_id = ?1"), id.to_string()),
        Lookup::ExternalId(ext) => (format!("{select} WHERE external_id = ?1"), ext),
    };
    tx.query_row(&sql, [value], |row| {
        let work_item: Option<String> = row.get(1)?;
        Ok(crate::handler::Stored {
            external_id: row.get(0)?,
            work_item_id: work_item
                .map(|id| {
                    id.parse::<Uuid>().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })
                })
                .transpose()?,
            fingerprint: row.get(2)?,
            pushed: row.get(3)?,
        })
    })
    .optional()
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn too_new(path: &Path, found: i64) -> Error {
    Error::SchemaTooNew {
        path: path.display().to_string(),
        found,
        supported: SCHEMA_VERSION,
    }
}

fn schema_version(connection: &Connection, path: &Path) -> Result<i64> {
    let read = store_error(path, "read the deadline schema version");
    let exists: Option<String> = connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'bir_schema_migrations'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(&read)?;
    if exists.is_none() {
        return Ok(0);
    }
    connection
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM bir_schema_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(&read)
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<()> {
    let fail = store_error(path, "migrate the deadline schema");
    // IMMEDIATE: two processes opening a fresh file at once migrate one after the other.
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&fail)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS bir_schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL
         );",
    )
    .map_err(&fail)?;
    let version = schema_version(&tx, path)?;
    if version > SCHEMA_VERSION {
        return Err(too_new(path, version));
    }
    for (from, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(migration).map_err(&fail)?;
        tx.execute(
            "INSERT INTO bir_schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![from as i64 + 1, now()],
        )
        .map_err(&fail)?;
    }
    tx.commit().map_err(&fail)
}
