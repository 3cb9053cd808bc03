//! The durable [`DeliveryStore`]: SQLite in WAL mode with `synchronous=FULL`,
//! written by one thread that commits concurrent requests together.
//!
//! Group commit: the writer takes every request waiting in its queue, runs them
//! in one transaction and answers them all after the single commit (one fsync).
//! No request is answered before the commit that contains it, so "recorded"
//! still means "on disk".
//!
//! Each command runs inside a savepoint of its own: a command that fails
//! half-way (a claim that leased some rows, then hit an error) is rolled back to
//! where it started, answers its error, and the other commands of the batch
//! still commit. The hot path's commands (record, complete, ignore) write with
//! one statement each, which SQLite applies whole or not at all, and skip it.
//!
//! A claim that finds fewer items ready than it asks for may wait
//! ([`DeliveryStore::claim_waiting`]): deliveries recorded meanwhile, and those
//! sent before it in its own batch, are inserted already leased to it, and it
//! is answered after the commit that stored them. Completions of many items
//! are one command ([`DeliveryStore::complete_all`]).
//!
//! Layout (schema version 3): a delivery's bytes are written once. `deliveries`
//! holds what arrived (ids, event, key, body) and is never updated after
//! `record`; `inbox` holds where each delivery is in its life, in rows of about
//! 60 bytes that claims and completions rewrite. The unique dedupe key starts
//! with the delivery's [`order`](super::NewDelivery::order) (its
//! `data.updated_at`), so the keys of deliveries that arrive together share
//! index pages. A file of an older version is migrated when it is opened, in
//! one transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    BoxFuture, Clock, DeliveryRecord, DeliveryStore, DuplicateBy, FailOutcome, InboxItem,
    InboxSnapshot, InboxStats, NewDelivery, RecordOutcome, Status, StoreConfig, duration_ms,
    lease_token,
};
use crate::Error;

/// The schema version this build writes (`PRAGMA user_version`, owned by the
/// deliveries schema). Each entry of `MIGRATIONS` moves the database one
/// version up; a shipped step never changes, so a file written by an old build
/// goes through the same steps a new file does.
const SCHEMA_VERSION: i64 = 4;
const MIGRATIONS: [fn(&Transaction<'_>) -> rusqlite::Result<()>; 4] = [
    |tx| tx.execute_batch(SCHEMA_V1),
    migrate_v1_to_v2,
    migrate_v2_to_v3,
    |tx| tx.execute_batch(SCHEMA_V4),
];

/// Version 1, as shipped.
const SCHEMA_V1: &str = r#"
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    delivery_id     BLOB    NOT NULL,         -- the UUID's 16 bytes
    event_key       BLOB    NOT NULL UNIQUE,  -- SHA-256 of NewDelivery::event_key
    event           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending','processing','done','failed','dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    received_at     INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    finished_at     INTEGER,
    last_error      TEXT
);
CREATE INDEX deliveries_ready ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;
"#;

/// Version 2: the `ignored` status with its `note`, the event key as text (for
/// handlers), and `schema_migrations` for domain components sharing the file.
/// SQLite cannot alter a CHECK constraint, so the table is rebuilt and copied
/// row for row (ids kept); this runs inside the migration's transaction, so a
/// failure leaves the version 1 table as it was.
const SCHEMA_V2: &str = r#"
CREATE TABLE deliveries_v2 (
    id              INTEGER PRIMARY KEY,
    delivery_id     BLOB    NOT NULL,         -- the UUID's 16 bytes
    event_key       BLOB    NOT NULL UNIQUE,  -- SHA-256 of NewDelivery::event_key
    event_key_text  TEXT    NOT NULL,         -- NewDelivery::event_key itself
    event           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending','processing','done','failed','dead','ignored')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    received_at     INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    finished_at     INTEGER,
    last_error      TEXT,
    note            TEXT                      -- why an ignored item was not handled
);
INSERT INTO deliveries_v2 (id, delivery_id, event_key, event_key_text, event, action, body, status,
                           attempts, received_at, next_attempt_at, lease_owner, lease_until, finished_at, last_error)
    SELECT id, delivery_id, event_key, '', event, action, body, status,
           attempts, received_at, next_attempt_at, lease_owner, lease_until, finished_at, last_error
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_ready ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE schema_migrations (
    component TEXT    PRIMARY KEY,  -- a domain crate sharing this file, such as `bir`
    version   INTEGER NOT NULL      -- how many of its steps have run
);
"#;

fn migrate_v1_to_v2(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(SCHEMA_V2)?;
    // Version 1 kept only the key's digest; the key is rebuilt from the body,
    // exactly as `NewDelivery::new` built it, and checked against that digest.
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = tx
        .prepare("SELECT id, event_key, body FROM deliveries WHERE event_key_text = ''")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare("UPDATE deliveries SET event_key_text = ?2 WHERE id = ?1")?;
    for (id, digest, body) in rows {
        let event_id = crate::Envelope::parse(&body).ok().and_then(|e| e.event_id);
        let candidates = [
            event_id
                .as_deref()
                .map(|id| super::event_key(Some(id), &body)),
            Some(super::event_key(None, &body)),
        ];
        let key = candidates
            .iter()
            .flatten()
            .find(|key| key_digest(key).as_slice() == digest.as_slice())
            .or(candidates.iter().flatten().next())
            .cloned()
            .unwrap_or_default();
        update.execute(params![id, key])?;
    }
    Ok(())
}

/// Version 3: a delivery's bytes are written once, and the dedupe index grows
/// at its end. `deliveries` keeps what
/// arrived, never updated after its insert; `inbox` keeps where each delivery
/// is in its life, in narrow rows. A status change rewrites only an `inbox`
/// row (about 60 bytes), where version 2 rewrote the whole row with its body
/// (2 KiB and more) into the WAL at every claim and completion. The unique
/// `event_key` is [`index_key`]: the delivery's order, then the digest, where
/// version 2 had the digest alone, whose random order made every insert write
/// its own index page. Rows are copied with their ids, inside the migration's
/// transaction.
const SCHEMA_V3: &str = r#"
CREATE TABLE deliveries_v3 (
    id              INTEGER PRIMARY KEY,
    delivery_id     BLOB    NOT NULL,         -- the UUID's 16 bytes
    event_key       BLOB    NOT NULL UNIQUE,  -- NewDelivery::order (8 bytes) and SHA-256 of NewDelivery::event_key
    event_key_text  TEXT    NOT NULL,         -- NewDelivery::event_key itself
    event           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    body            BLOB    NOT NULL          -- last, so reading the other columns never reads it
);
CREATE TABLE inbox (
    id              INTEGER PRIMARY KEY,      -- the delivery's id
    status          TEXT    NOT NULL CHECK (status IN ('pending','processing','done','failed','dead','ignored')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    finished_at     INTEGER,
    last_error      TEXT,
    note            TEXT                      -- why an ignored item was not handled
);
INSERT INTO deliveries_v3 (id, delivery_id, event_key, event_key_text, event, action, received_at, body)
    SELECT id, delivery_id, event_key, event_key_text, event, action, received_at, body FROM deliveries;
INSERT INTO inbox (id, status, attempts, next_attempt_at, lease_owner, lease_until, finished_at, last_error, note)
    SELECT id, status, attempts, next_attempt_at, lease_owner, lease_until, finished_at, last_error, note FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries;
CREATE INDEX inbox_ready ON inbox (status, next_attempt_at);
CREATE INDEX inbox_finished ON inbox (finished_at) WHERE finished_at IS NOT NULL;
"#;

fn migrate_v2_to_v3(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(SCHEMA_V3)?;
    // The new key needs the order, which comes from the body, exactly as
    // `NewDelivery::new` computes it.
    let rows: Vec<(i64, String, Vec<u8>)> = tx
        .prepare("SELECT id, event_key_text, body FROM deliveries")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare("UPDATE deliveries SET event_key = ?2 WHERE id = ?1")?;
    for (id, key, body) in rows {
        let order = match crate::EventHead::parse(&body) {
            Ok(head) if !key.starts_with("event:") => {
                head.updated_at.as_deref().map_or(0, super::order_of)
            }
            _ => 0,
        };
        update.execute(params![id, index_key(order, &key)])?;
    }
    Ok(())
}

/// Version 4: no index on `finished_at`. Only purge read it, and every
/// completion paid for it with one more b-tree insert and, per commit, one more
/// page in the WAL. Purge walks `inbox_ready` instead: a finished row was ready
/// before it finished, so its `next_attempt_at` is at most its `finished_at`.
const SCHEMA_V4: &str = "DROP INDEX IF EXISTS inbox_finished;";

/// Finished deliveries older than `?1`, then their inbox rows.
/// `next_attempt_at < ?1` lets `inbox_ready` bound the walk (see SCHEMA_V4).
const PURGE_DELIVERIES: &str = "DELETE FROM deliveries WHERE id IN
    (SELECT id FROM inbox WHERE status IN ('done','ignored','dead')
       AND next_attempt_at < ?1 AND finished_at < ?1)";
const PURGE_INBOX: &str = "DELETE FROM inbox WHERE status IN ('done','ignored','dead')
    AND next_attempt_at < ?1 AND finished_at < ?1";

#[cfg(test)]
mod batch_tests;
mod domain;
#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod purge_tests;

use domain::Job;

/// Requests handled by the writer thread.
enum Command {
    Record(NewDelivery, oneshot::Sender<Result<RecordOutcome, Error>>),
    /// Lease token, limit, lease length, how long it may wait for deliveries.
    Claim(
        String,
        usize,
        Duration,
        Duration,
        oneshot::Sender<Result<Vec<InboxItem>, Error>>,
    ),
    /// Ids and lease tokens; one answer per item, in order.
    Complete(
        Vec<(i64, String)>,
        oneshot::Sender<Result<Vec<Result<(), Error>>, Error>>,
    ),
    /// Id, lease token, the status it ends in ([`Status::Ignored`], or
    /// [`Status::Done`] for a noted completion), the note.
    Finish(
        i64,
        String,
        Status,
        String,
        oneshot::Sender<Result<(), Error>>,
    ),
    /// A domain change: `write`, `complete_with`, `migrate`.
    Job(Box<dyn Job>),
    Fail(
        i64,
        String,
        String,
        oneshot::Sender<Result<FailOutcome, Error>>,
    ),
    Release(i64, String, oneshot::Sender<Result<(), Error>>),
    Extend(i64, String, Duration, oneshot::Sender<Result<(), Error>>),
    List(
        Option<Status>,
        usize,
        oneshot::Sender<Result<Vec<DeliveryRecord>, Error>>,
    ),
    Replay(i64, oneshot::Sender<Result<(), Error>>),
    Purge(Duration, oneshot::Sender<Result<u64, Error>>),
    Stats(oneshot::Sender<Result<InboxStats, Error>>),
    /// Runs an empty write transaction: the write lock could be taken.
    Ping(oneshot::Sender<Result<(), Error>>),
}

/// A SQLite-backed delivery store.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    sender: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    stop_checkpoints: Option<mpsc::Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
    /// The writer thread's clock, shared (see [`DeliveryStore::clock`]).
    clock: Arc<dyn Clock>,
}

/// How often the checkpoint thread copies the WAL back into the database: often,
/// so the writer's own checkpoint (every 250 ms) finds little left to copy
/// (at 500 ms it stalled commits for 30 ms and more under load).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// How often the writer finishes a checkpoint between two transactions.
const WRITER_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies committed WAL frames into the database file from a connection of its
/// own. A PASSIVE checkpoint never blocks the writer, so the fsyncs of the
/// database file stay out of the receiver's latency; the writer restarts the
/// WAL from the top once everything in it has been copied.
fn checkpoint(path: &Path, stop: &mpsc::Receiver<()>) {
    let connection = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "checkpoint thread cannot open the database; the WAL will grow");
            return;
        }
    };
    // Runs until the store closes (the sender is dropped).
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(path = %path.display(), error = %e, "WAL checkpoint failed; will try again");
        }
    }
    // A last full copy on the way out, so the next open starts with a short WAL.
    let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

/// The most requests committed together.
const MAX_BATCH: usize = 1024;
/// The longest a shared batch keeps collecting: a fraction of one fsync.
const LINGER: Duration = Duration::from_micros(500);
/// A gap this long between requests ends the collecting early.
const QUIET: Duration = Duration::from_micros(50);

impl SqliteStore {
    /// Opens (creating or migrating) the database at `path`. A new file is
    /// created private, mode 0600 ([`prepare_database_file`](crate::prepare_database_file)).
    ///
    /// A database written by a newer version of this crate is refused with
    /// [`Error::SchemaTooNew`] rather than risked.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let connection = open_connection(&path)?;
        let (sender, receiver) = mpsc::channel();
        let thread_path = path.clone();
        let clock = config.clock.clone();
        let writer = std::thread::Builder::new()
            .name("plane-webhook-sqlite".into())
            .spawn(move || {
                Writer {
                    connection,
                    config,
                    path: thread_path,
                    parked: None,
                }
                .run(receiver)
            })
            .map_err(|e| Error::Store {
                path: path.display().to_string(),
                operation: "start the writer thread",
                message: e.to_string(),
            })?;
        let (stop_checkpoints, stopped) = mpsc::channel::<()>();
        let checkpoint_path = path.clone();
        let checkpointer = std::thread::Builder::new()
            .name("plane-webhook-checkpoint".into())
            .spawn(move || checkpoint(&checkpoint_path, &stopped))
            .map_err(|e| Error::Store {
                path: path.display().to_string(),
                operation: "start the checkpoint thread",
                message: e.to_string(),
            })?;
        Ok(Self {
            path,
            sender: Some(sender),
            writer: Some(writer),
            stop_checkpoints: Some(stop_checkpoints),
            checkpointer: Some(checkpointer),
            clock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> BoxFuture<'_, Result<T, Error>> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|s| s.send(make(tx)).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(self.closed());
            }
            rx.await.unwrap_or_else(|_| Err(self.closed()))
        })
    }

    fn closed(&self) -> Error {
        Error::Store {
            path: self.path.display().to_string(),
            operation: "reach the writer thread",
            message: "the store is closed (its writer stopped)".into(),
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds, then stop.
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.stop_checkpoints.take();
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

fn store_error<'p>(
    path: &'p Path,
    operation: &'static str,
) -> impl Fn(rusqlite::Error) -> Error + 'p {
    move |e| Error::Store {
        path: path.display().to_string(),
        operation,
        message: e.to_string(),
    }
}

fn open_connection(path: &Path) -> Result<Connection, Error> {
    // Before SQLite creates the file, which would make it 0644.
    super::prepare_database_file(path);
    let mut connection = Connection::open(path).map_err(store_error(path, "open the database"))?;
    // synchronous=FULL: a commit is on disk when it returns. Checkpoints run on
    // their own thread (see `checkpoint`), never inside a commit the receiver
    // is waiting for.
    // 8 KiB pages hold three 2.2 KiB bodies where 4 KiB pages held one, so a
    // commit writes fewer WAL frames (a third fewer write calls, 10% less CPU
    // per delivery at 64 senders; docs/BENCHMARKS.md). It only takes on a new
    // file, and only before `journal_mode = WAL` writes the header, so it comes
    // first: an existing database keeps the page size it was created with.
    connection
        .execute_batch(
            "PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
             PRAGMA wal_autocheckpoint = 0;",
        )
        .map_err(store_error(path, "configure the database"))?;
    // Every statement of the hot paths stays prepared (the default keeps 16).
    connection.set_prepared_statement_cache_capacity(64);
    let version = schema_version(&connection, path)?;
    let tx = connection
        .transaction()
        .map_err(store_error(path, "migrate the schema"))?;
    for (from, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        migration(&tx).map_err(store_error(path, "migrate the schema"))?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(store_error(path, "migrate the schema"))?;
    }
    tx.commit()
        .map_err(store_error(path, "migrate the schema"))?;
    Ok(connection)
}

struct Writer {
    connection: Connection,
    config: StoreConfig,
    path: PathBuf,
    parked: Option<Parked>,
}

/// A claim that found fewer items ready than its limit and waits for
/// deliveries: each delivery recorded meanwhile is inserted already leased to
/// it (one write, where a pending row claimed later is written twice) and
/// joins its answer, body and all, with nothing read back. It is answered
/// after the first commit that gave it items, or empty at its deadline. One at
/// a time: a second waiting claim is answered with what is ready.
struct Parked {
    token: String,
    limit: usize,
    lease_ms: i64,
    deadline: std::time::Instant,
    reply: oneshot::Sender<Result<Vec<InboxItem>, Error>>,
    items: Vec<InboxItem>,
}

impl Parked {
    /// The lease a delivery recorded now gets, if this claim can take one more.
    fn offer(&self, now: i64) -> Option<(&str, i64)> {
        (self.items.len() < self.limit && !self.reply.is_closed())
            .then(|| (self.token.as_str(), now + self.lease_ms))
    }
}

/// A reply held back until the batch's commit succeeds.
type Reply = Box<dyn FnOnce(Option<&Error>) + Send>;

/// What a command did, and its reply.
struct Applied {
    /// False when the command failed: its savepoint is rolled back.
    ok: bool,
    reply: Reply,
    /// Set when the command left the transaction in a state that must not be
    /// committed: the whole batch is rolled back.
    broken: Option<Error>,
}

fn reply<T: Send + 'static>(
    tx: oneshot::Sender<Result<T, Error>>,
    result: Result<T, Error>,
) -> Applied {
    Applied {
        ok: result.is_ok(),
        broken: None,
        reply: Box::new(move |commit_error: Option<&Error>| {
            let result = match commit_error {
                Some(e) => Err(e.clone()),
                None => result,
            };
            let _ = tx.send(result);
        }),
    }
}

/// Runs `sql` (a savepoint statement) through the statement cache: it runs
/// twice per command, so it is not parsed each time.
fn savepoint(tx: &Transaction<'_>, sql: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `command` inside a savepoint: if it fails, everything it wrote is
/// rolled back and the rest of the batch is untouched. `Err` means the
/// savepoint itself failed (SQLite may have ended the whole transaction, as it
/// does on a full disk), so the batch cannot be trusted and must not commit.
fn apply_atomically(
    tx: &Transaction<'_>,
    config: &StoreConfig,
    path: &Path,
    now: i64,
    command: Command,
    parked: &mut Option<Parked>,
) -> Result<Reply, (Option<Reply>, Error)> {
    // The hot path's commands need no savepoint: each writes with one
    // statement, which SQLite applies whole or not at all (a record undoes its
    // first insert itself if the second fails). A savepoint would copy every
    // page they touch into the statement journal first.
    if matches!(
        command,
        Command::Record(..) | Command::Complete(..) | Command::Finish(..)
    ) {
        let applied = apply(tx, config, path, now, command, parked);
        return match applied.broken {
            None => Ok(applied.reply),
            Some(error) => Err((Some(applied.reply), error)),
        };
    }
    if let Err(e) = savepoint(tx, "SAVEPOINT command") {
        let error = store_error(path, "start a command")(e);
        command.refuse(&error);
        return Err((None, error));
    }
    let applied = apply(tx, config, path, now, command, parked);
    let end = if applied.ok {
        savepoint(tx, "RELEASE command")
    } else {
        savepoint(tx, "ROLLBACK TO command").and_then(|()| savepoint(tx, "RELEASE command"))
    };
    match end {
        Ok(()) => Ok(applied.reply),
        Err(e) => Err((
            Some(applied.reply),
            store_error(path, "end a command's savepoint")(e),
        )),
    }
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Command>) {
        // Writers that just got their answer come straight back with their next
        // request. When the last batch was shared, keep collecting while requests
        // keep arriving (gaps under QUIET, at most LINGER in all): many small
        // commits become one.
        let mut shared = false;
        let mut last_checkpoint = std::time::Instant::now();
        loop {
            let first = match &self.parked {
                Some(parked) => match receiver.recv_timeout(
                    parked
                        .deadline
                        .saturating_duration_since(std::time::Instant::now()),
                ) {
                    Ok(command) => command,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.unpark_if_due();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match receiver.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            let deadline = std::time::Instant::now() + LINGER;
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if !shared || left.is_zero() {
                            break;
                        }
                        match receiver.recv_timeout(left.min(QUIET)) {
                            Ok(command) => batch.push(command),
                            Err(_) => break,
                        }
                    }
                }
            }
            shared = batch.len() > 1;
            self.run_batch(batch);
            self.unpark_if_due();
            // The checkpoint thread copies frames while commits go on, so under
            // steady load it never finishes one and the WAL grows without end.
            // Here, between transactions and after the replies went out, nothing
            // else writes: the checkpoint completes (it is short, the other thread
            // did most of the copying) and the next commit starts the WAL over.
            if last_checkpoint.elapsed() >= WRITER_CHECKPOINT_EVERY {
                if let Err(e) =
                    self.connection
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
                }
                last_checkpoint = std::time::Instant::now();
            }
        }
    }

    /// Answers a parked claim (empty: it is between batches) whose deadline
    /// passed or whose worker stopped waiting.
    fn unpark_if_due(&mut self) {
        let due = |p: &Parked| p.reply.is_closed() || p.deadline <= std::time::Instant::now();
        if let Some(parked) = self.parked.take_if(|p| due(p)) {
            let _ = parked.reply.send(Ok(parked.items));
        }
    }

    fn run_batch(&mut self, mut batch: Vec<Command>) {
        // A waiting claim moves ahead of the records sent before it: it then
        // takes them as they are recorded (no second write, no read back),
        // where after them it would lease them with an update each and read
        // their bodies again. Only records: a completion, release or renewal
        // sent before it still comes first, or a lease that just ran out would
        // be taken from under it. A claim that does not wait keeps its place.
        for at in 1..batch.len() {
            let mut i = at;
            while i > 0
                && matches!(&batch[i], Command::Claim(.., wait, _) if !wait.is_zero())
                && matches!(batch[i - 1], Command::Record(..))
            {
                batch.swap(i - 1, i);
                i -= 1;
            }
        }
        let now = self.config.clock.now_ms();
        let Writer {
            connection,
            config,
            path,
            parked,
        } = self;
        let path = &*path;
        // IMMEDIATE: take the write lock up front, so a batch that reads first
        // cannot fail half-way when another process (the CLI) wrote meanwhile.
        let tx =
            match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) => {
                    let error = store_error(path, "begin a transaction")(e);
                    for command in batch {
                        command.refuse(&error);
                    }
                    return;
                }
            };
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let mut broken: Option<Error> = None;
        for command in batch {
            if let Some(error) = &broken {
                command.refuse(error);
                continue;
            }
            match apply_atomically(&tx, config, path, now, command, parked) {
                Ok(reply) => replies.push(reply),
                Err((reply, error)) => {
                    replies.extend(reply);
                    broken = Some(error);
                }
            }
        }
        // A parked claim given items in this batch is answered with the
        // batch, after its commit; if the batch is rolled back, the items it
        // was given were never stored.
        match (&broken, parked.as_mut()) {
            (Some(_), Some(p)) => p.items.clear(),
            (None, Some(p)) if !p.items.is_empty() => {
                if let Some(Parked { reply, items, .. }) = parked.take() {
                    replies.push(Box::new(move |commit_error: Option<&Error>| {
                        let _ = reply.send(match commit_error {
                            Some(e) => Err(e.clone()),
                            None => Ok(items),
                        });
                    }));
                }
            }
            _ => {}
        }
        let commit_error = match broken {
            Some(error) => {
                // Rolled back: nothing of this batch is kept, and every
                // command in it gets the error.
                drop(tx);
                Some(error)
            }
            None => tx.commit().err().map(store_error(path, "commit")),
        };
        if let Some(e) = &commit_error {
            tracing::error!(error = %e, "delivery store commit failed; nothing in this batch was acknowledged");
        }
        for reply in replies {
            reply(commit_error.as_ref());
        }
    }
}

impl Command {
    fn refuse(self, error: &Error) {
        let e = error.clone();
        match self {
            Command::Record(_, tx) => drop(tx.send(Err(e))),
            Command::Claim(_, _, _, _, tx) => drop(tx.send(Err(e))),
            Command::Complete(_, tx) => drop(tx.send(Err(e))),
            Command::Release(_, _, tx) | Command::Extend(_, _, _, tx) | Command::Replay(_, tx) => {
                drop(tx.send(Err(e)))
            }
            Command::Fail(_, _, _, tx) => drop(tx.send(Err(e))),
            Command::Finish(_, _, _, _, tx) => drop(tx.send(Err(e))),
            Command::Job(job) => job.refuse(error),
            Command::List(_, _, tx) => drop(tx.send(Err(e))),
            Command::Purge(_, tx) => drop(tx.send(Err(e))),
            Command::Stats(tx) => drop(tx.send(Err(e))),
            Command::Ping(tx) => drop(tx.send(Err(e))),
        }
    }
}

fn apply(
    tx: &Transaction<'_>,
    config: &StoreConfig,
    path: &Path,
    now: i64,
    command: Command,
    parked: &mut Option<Parked>,
) -> Applied {
    let err = |operation| store_error(path, operation);
    match command {
        Command::Record(d, reply_to) => {
            let lease = parked.as_ref().and_then(|p| p.offer(now));
            let (outcome, broken) = match record(tx, now, &d, lease) {
                Ok(outcome) => (Ok(outcome), None),
                Err(RecordFailure::Failed(e)) => (Err(err("record a delivery")(e)), None),
                Err(RecordFailure::UndoFailed(e)) => {
                    let e = err("undo a failed record (the whole batch is rolled back)")(e);
                    (Err(e.clone()), Some(e))
                }
            };
            if let (Ok(RecordOutcome::New { id }), Some((token, _))) = (&outcome, lease) {
                let item = InboxItem {
                    id: *id,
                    delivery_id: d.delivery_id,
                    event: d.event,
                    action: d.action,
                    event_key: d.event_key,
                    body: d.body,
                    attempts: 1,
                    lease: token.to_owned(),
                };
                if let Some(p) = parked.as_mut() {
                    p.items.push(item);
                }
            }
            Applied {
                broken,
                ..reply(reply_to, outcome)
            }
        }
        Command::Claim(token, limit, lease, wait, reply_to) => {
            match claim(tx, config, now, &token, limit, lease).map_err(err("claim inbox items")) {
                // Short of its limit, a waiting claim also takes what the rest
                // of this batch records (answered after the commit, as any
                // parked claim); with nothing at all, it waits for more.
                Ok(items) if items.len() < limit && !wait.is_zero() && parked.is_none() => {
                    *parked = Some(Parked {
                        token,
                        limit,
                        lease_ms: duration_ms(lease),
                        deadline: std::time::Instant::now() + wait,
                        reply: reply_to,
                        items,
                    });
                    Applied {
                        ok: true,
                        reply: Box::new(|_| {}),
                        broken: None,
                    }
                }
                result => reply(reply_to, result),
            }
        }
        Command::Complete(items, reply_to) => {
            let results = items
                .iter()
                .map(|(id, lease)| complete_leased(tx, *id, lease, now, path))
                .collect();
            reply(reply_to, Ok(results))
        }
        Command::Finish(id, lease, status, note, reply_to) => {
            let changed = tx
                .prepare_cached(
                    "UPDATE inbox SET status = ?5, finished_at = ?2, note = ?3, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 AND status = 'processing' AND lease_owner = ?4",
                )
                .and_then(|mut update| {
                    update.execute(params![id, now, note, lease, status.as_str()])
                })
                .map_err(err(if status == Status::Done {
                    "complete a delivery"
                } else {
                    "ignore a delivery"
                }));
            let result = match changed {
                Ok(1) => Ok(()),
                // Not held: say why (unknown, or leased again).
                Ok(_) => check_lease(tx, id, &lease, path),
                Err(e) => Err(e),
            };
            reply(reply_to, result)
        }
        Command::Job(job) => job.run(tx, now, path),
        Command::Fail(id, lease, message, reply_to) => {
            let mut outcome = FailOutcome::Dead;
            let result = finish_leased(tx, id, &lease, path, |tx| {
                let attempts: u32 =
                    tx.query_row("SELECT attempts FROM inbox WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
                outcome = config.after_failure(attempts, now);
                match outcome {
                    FailOutcome::Retry { at } => tx.execute(
                        "UPDATE inbox SET status = 'failed', next_attempt_at = ?2, last_error = ?3, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                        params![id, at, message],
                    ),
                    FailOutcome::Dead => tx.execute(
                        "UPDATE inbox SET status = 'dead', finished_at = ?2, last_error = ?3, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                        params![id, now, message],
                    ),
                }
                .map(drop)
            });
            reply(reply_to, result.map(|()| outcome))
        }
        Command::Release(id, lease, reply_to) => reply(
            reply_to,
            finish_leased(tx, id, &lease, path, |tx| {
                tx.execute(
                    "UPDATE inbox SET status = 'pending', attempts = MAX(attempts - 1, 0), next_attempt_at = ?2, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                    params![id, now],
                )
                .map(drop)
            }),
        ),
        Command::Extend(id, lease, length, reply_to) => reply(
            reply_to,
            finish_leased(tx, id, &lease, path, |tx| {
                tx.execute(
                    "UPDATE inbox SET lease_until = ?2 WHERE id = ?1",
                    params![id, now + duration_ms(length)],
                )
                .map(drop)
            }),
        ),
        Command::List(status, limit, reply_to) => reply(
            reply_to,
            list(tx, status, limit).map_err(err("list deliveries")),
        ),
        Command::Replay(id, reply_to) => {
            let result = tx
                .query_row(
                    "SELECT status = 'processing' AND lease_until > ?2 FROM inbox WHERE id = ?1",
                    params![id, now],
                    |r| r.get::<_, bool>(0),
                )
                .optional()
                .map_err(err("replay a delivery"))
                .and_then(|leased| match leased {
                    None => Err(Error::UnknownDelivery { id }),
                    Some(true) => Err(Error::InProgress { id }),
                    Some(false) => tx
                        .execute(
                            "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = ?2, finished_at = NULL, note = NULL, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                            params![id, now],
                        )
                        .map(drop)
                        .map_err(err("replay a delivery")),
                });
            reply(reply_to, result)
        }
        Command::Purge(older_than, reply_to) => {
            let cutoff = now - duration_ms(older_than);
            let result = tx
                .execute(PURGE_DELIVERIES, [cutoff])
                .and_then(|n| {
                    tx.execute(PURGE_INBOX, [cutoff])?;
                    Ok(n as u64)
                })
                .map_err(err("purge deliveries"));
            reply(reply_to, result)
        }
        Command::Stats(reply_to) => reply(reply_to, stats(tx).map_err(err("count deliveries"))),
        Command::Ping(reply_to) => reply(reply_to, Ok(())),
    }
}

/// Why a record failed.
enum RecordFailure {
    /// Nothing of it was written (or what was, was undone).
    Failed(rusqlite::Error),
    /// Its inbox row failed, and so did deleting its delivery row: the
    /// transaction holds a delivery without an inbox row and must not commit.
    UndoFailed(rusqlite::Error),
}

impl From<rusqlite::Error> for RecordFailure {
    fn from(e: rusqlite::Error) -> Self {
        RecordFailure::Failed(e)
    }
}

/// Inserts a delivery and its inbox row: pending, or, with `lease` (a token
/// and when it ends), already claimed by a parked claim.
fn record(
    tx: &Transaction<'_>,
    now: i64,
    d: &NewDelivery,
    lease: Option<(&str, i64)>,
) -> Result<RecordOutcome, RecordFailure> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO deliveries (delivery_id, event_key, event_key_text, event, action, received_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            d.delivery_id.as_bytes(),
            index_key(d.order, &d.event_key),
            d.event_key,
            d.event,
            d.action,
            now,
            &d.body[..],
        ])?;
    if inserted == 1 {
        let id = tx.last_insert_rowid();
        let queued = match lease {
            None => tx
                .prepare_cached(
                    "INSERT INTO inbox (id, status, next_attempt_at) VALUES (?1, 'pending', ?2)",
                )
                .and_then(|mut insert| insert.execute(params![id, now])),
            Some((token, until)) => tx
                .prepare_cached(
                    "INSERT INTO inbox (id, status, attempts, next_attempt_at, lease_owner, lease_until)
                     VALUES (?1, 'processing', 1, ?2, ?3, ?4)",
                )
                .and_then(|mut insert| insert.execute(params![id, now, token, until])),
        };
        if let Err(e) = queued {
            // No savepoint around a record (see `apply_atomically`): undo the
            // delivery's row, so a delivery is never stored without its inbox row.
            // If that fails too, the batch must not commit at all.
            tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")
                .and_then(|mut delete| delete.execute([id]))
                .map_err(RecordFailure::UndoFailed)?;
            return Err(RecordFailure::Failed(e));
        }
        return Ok(RecordOutcome::New { id });
    }
    let (id, delivery_id): (i64, Vec<u8>) = tx
        .prepare_cached("SELECT id, delivery_id FROM deliveries WHERE event_key = ?1")?
        .query_row([index_key(d.order, &d.event_key)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let by = if delivery_id == d.delivery_id.as_bytes() {
        DuplicateBy::DeliveryId
    } else {
        DuplicateBy::SameEvent
    };
    Ok(RecordOutcome::Duplicate { id, by })
}

fn claim(
    tx: &Transaction<'_>,
    config: &StoreConfig,
    now: i64,
    token: &str,
    limit: usize,
    lease: Duration,
) -> rusqlite::Result<Vec<InboxItem>> {
    // Items whose lease died on every attempt stop being handed out.
    tx.prepare_cached(
        "UPDATE inbox SET status = 'dead', finished_at = ?1, lease_owner = NULL, lease_until = NULL,
                last_error = 'lease expired on attempt ' || attempts
         WHERE status = 'processing' AND lease_until <= ?1 AND attempts >= ?2",
    )?
    .execute(params![now, config.max_attempts])?;
    // One query per status, each walking the (status, next_attempt_at) index in
    // order and stopping at `limit`: a single OR query would sort the whole
    // backlog on every claim, and the backlog is largest exactly under load.
    let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut ready: Vec<(i64, i64)> = Vec::new();
    for sql in [
        "SELECT next_attempt_at, id FROM inbox WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
        "SELECT next_attempt_at, id FROM inbox WHERE status = 'failed' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
        "SELECT next_attempt_at, id FROM inbox WHERE status = 'processing' AND lease_until <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
    ] {
        let mut select = tx.prepare_cached(sql)?;
        for row in select.query_map(params![now, limit_sql], |r| Ok((r.get(0)?, r.get(1)?)))? {
            ready.push(row?);
        }
    }
    ready.sort_unstable();
    let ids: Vec<i64> = ready.into_iter().take(limit).map(|(_, id)| id).collect();
    let mut lease_one = tx.prepare_cached(
        "UPDATE inbox SET status = 'processing', attempts = attempts + 1, lease_owner = ?2, lease_until = ?3
         WHERE id = ?1 RETURNING attempts",
    )?;
    // Read only: the body is never written again after `record`.
    let mut read = tx.prepare_cached(
        "SELECT delivery_id, event, action, event_key_text, body FROM deliveries WHERE id = ?1",
    )?;
    let until = now + duration_ms(lease);
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        let attempts: u32 = lease_one.query_row(params![id, token, until], |r| r.get(0))?;
        let item = read.query_row([id], |r| {
            Ok(InboxItem {
                id,
                delivery_id: parse_uuid(&r.get::<_, Vec<u8>>(0)?)?,
                event: r.get(1)?,
                action: r.get(2)?,
                event_key: r.get(3)?,
                body: r.get::<_, Vec<u8>>(4)?.into(),
                attempts,
                lease: token.to_owned(),
            })
        })?;
        items.push(item);
    }
    Ok(items)
}

/// Runs `change` if the claim holding `lease` still holds `id`.
fn finish_leased(
    tx: &Transaction<'_>,
    id: i64,
    lease: &str,
    path: &Path,
    change: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
) -> Result<(), Error> {
    check_lease(tx, id, lease, path)?;
    change(tx).map_err(store_error(path, "update a delivery"))
}

/// Marks `id` done if the claim holding `lease` still holds it: one statement
/// on the hot path, the lease check only to explain a refusal.
fn complete_leased(
    tx: &Transaction<'_>,
    id: i64,
    lease: &str,
    now: i64,
    path: &Path,
) -> Result<(), Error> {
    let changed = tx
        .prepare_cached(
            "UPDATE inbox SET status = 'done', finished_at = ?2, lease_owner = NULL, lease_until = NULL
             WHERE id = ?1 AND status = 'processing' AND lease_owner = ?3",
        )
        .and_then(|mut update| update.execute(params![id, now, lease]))
        .map_err(store_error(path, "complete a delivery"))?;
    match changed {
        1 => Ok(()),
        // Not held: say why (unknown, or leased again).
        _ => check_lease(tx, id, lease, path),
    }
}

fn mark_done(tx: &Transaction<'_>, id: i64, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE inbox SET status = 'done', finished_at = ?2, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
    )?
    .execute(params![id, now])
    .map(drop)
}

/// `Ok` if the claim holding `lease` still holds `id`.
fn check_lease(tx: &Transaction<'_>, id: i64, lease: &str, path: &Path) -> Result<(), Error> {
    let row: Option<(String, Option<String>)> = tx
        .prepare_cached("SELECT status, lease_owner FROM inbox WHERE id = ?1")
        .and_then(|mut select| {
            select
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(store_error(path, "read a delivery"))?;
    match row {
        None => Err(Error::UnknownDelivery { id }),
        Some((status, owner)) if status == "processing" && owner.as_deref() == Some(lease) => {
            Ok(())
        }
        Some(_) => Err(Error::LeaseLost { id }),
    }
}

fn parse_uuid(bytes: &[u8]) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// The digest of an event key: what versions 1 and 2 indexed.
fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The dedupe index's key: the order (big-endian, so bytes sort as numbers),
/// then the digest. Deliveries arriving together have close orders, so their
/// keys share index pages; the same event always gets the same key.
pub(super) fn index_key(order: u64, key: &str) -> [u8; 40] {
    let mut out = [0; 40];
    out[..8].copy_from_slice(&order.to_be_bytes());
    out[8..].copy_from_slice(&key_digest(key));
    out
}

fn list(
    tx: &Transaction<'_>,
    status: Option<Status>,
    limit: usize,
) -> rusqlite::Result<Vec<DeliveryRecord>> {
    let mut stmt = tx.prepare_cached(
        "SELECT d.id, d.delivery_id, d.event, d.action, i.status, i.attempts, d.received_at, i.next_attempt_at,
                i.finished_at, i.last_error, i.note
         FROM deliveries d JOIN inbox i USING (id) WHERE (?1 IS NULL OR i.status = ?1) ORDER BY d.id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![
            status.map(Status::as_str),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        delivery_record,
    )?;
    rows.collect()
}

fn stats(tx: &Transaction<'_>) -> rusqlite::Result<InboxStats> {
    let mut stats = InboxStats::default();
    let mut stmt = tx.prepare_cached("SELECT status, COUNT(*) FROM inbox GROUP BY status")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))? {
        let (status, n) = row?;
        match Status::parse(&status) {
            Some(Status::Pending) => stats.pending = n,
            Some(Status::Processing) => stats.processing = n,
            Some(Status::Failed) => stats.failed = n,
            Some(Status::Dead) => stats.dead = n,
            Some(Status::Done) => stats.done = n,
            Some(Status::Ignored) => stats.ignored = n,
            None => {}
        }
    }
    stats.oldest_unfinished = tx.query_row(
        "SELECT MIN(d.received_at) FROM inbox i JOIN deliveries d USING (id) WHERE i.status IN ('pending','processing','failed')",
        [],
        |r| r.get(0),
    )?;
    Ok(stats)
}

impl DeliveryStore for SqliteStore {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn record(&self, delivery: NewDelivery) -> BoxFuture<'_, Result<RecordOutcome, Error>> {
        self.call(|tx| Command::Record(delivery, tx))
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<InboxItem>, Error>> {
        self.call(|tx| Command::Claim(lease_token(worker), limit, lease, Duration::ZERO, tx))
    }

    fn claim_waiting<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<InboxItem>, Error>> {
        self.call(|tx| Command::Claim(lease_token(worker), limit, lease, wait, tx))
    }

    fn complete<'a>(&'a self, item: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let answer = self.complete_all(std::slice::from_ref(item)).await;
            answer
                .into_iter()
                .next()
                .unwrap_or_else(|| Err(self.closed()))
        })
    }

    /// One command and one answer for all of them, committed with whatever
    /// else the writer's batch holds.
    fn complete_all<'a>(&'a self, items: &'a [InboxItem]) -> BoxFuture<'a, Vec<Result<(), Error>>> {
        let leases = items.iter().map(|i| (i.id, i.lease.clone())).collect();
        let call = self.call(|tx| Command::Complete(leases, tx));
        Box::pin(async move {
            call.await
                .unwrap_or_else(|e| items.iter().map(|_| Err(e.clone())).collect())
        })
    }

    fn ignore<'a>(
        &'a self,
        item: &'a InboxItem,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.call(|tx| {
            Command::Finish(
                item.id,
                item.lease.clone(),
                Status::Ignored,
                reason.to_owned(),
                tx,
            )
        })
    }

    fn complete_noted<'a>(
        &'a self,
        item: &'a InboxItem,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.call(|tx| {
            Command::Finish(
                item.id,
                item.lease.clone(),
                Status::Done,
                note.to_owned(),
                tx,
            )
        })
    }

    fn fail<'a>(
        &'a self,
        item: &'a InboxItem,
        error: &'a str,
    ) -> BoxFuture<'a, Result<FailOutcome, Error>> {
        self.call(|tx| Command::Fail(item.id, item.lease.clone(), error.to_owned(), tx))
    }

    fn release<'a>(&'a self, item: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>> {
        self.call(|tx| Command::Release(item.id, item.lease.clone(), tx))
    }

    fn extend<'a>(
        &'a self,
        item: &'a InboxItem,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.call(|tx| Command::Extend(item.id, item.lease.clone(), lease, tx))
    }

    fn list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeliveryRecord>, Error>> {
        self.call(|tx| Command::List(status, limit, tx))
    }

    fn replay(&self, id: i64) -> BoxFuture<'_, Result<(), Error>> {
        self.call(|tx| Command::Replay(id, tx))
    }

    fn purge(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        self.call(|tx| Command::Purge(older_than, tx))
    }

    fn stats(&self) -> BoxFuture<'_, Result<InboxStats, Error>> {
        self.call(Command::Stats)
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.call(Command::Ping)
    }
}

impl SqliteStore {
    /// The schema version this build writes; [`SqliteStore::open`] migrates
    /// older files up to it.
    pub const SCHEMA_VERSION: i64 = SCHEMA_VERSION;

    /// Reads the schema version of the database at `path` without changing
    /// anything: the file is opened read-only, a missing file is an error (not
    /// created), and nothing is migrated. For `plane-server check`.
    ///
    /// 0 means a SQLite file that no store has set up yet.
    /// [`Error::SchemaTooNew`] when a newer build wrote it.
    pub fn inspect_schema_version(path: impl AsRef<Path>) -> Result<i64, Error> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::Store {
                path: path.display().to_string(),
                operation: "open the database read-only",
                message: "no such file (`plane-server serve` creates it)".into(),
            });
        }
        let connection = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_error(path, "open the database read-only"))?;
        let version = schema_version(&connection, path)?;
        if version > 0 {
            // The table is readable, not only the header.
            connection
                .query_row("SELECT 1 FROM deliveries LIMIT 1", [], |_| Ok(()))
                .optional()
                .map_err(store_error(path, "read the deliveries table"))?;
        }
        Ok(version)
    }

    /// Counts by status, the oldest waiting deliveries (pending, processing, failed;
    /// oldest first) and the dead ones (newest first), at most `limit` of each, read
    /// from an existing database opened read-only: no writer thread, nothing created
    /// or migrated, no body read. For `plane-server mcp`.
    ///
    /// `None` for a SQLite file no store has set up yet; an error for a missing file,
    /// or one written by an older build (`plane-server serve` migrates it) or a newer one.
    pub fn inspect_inbox(
        path: impl AsRef<Path>,
        limit: usize,
    ) -> Result<Option<InboxSnapshot>, Error> {
        let path = path.as_ref();
        let version = Self::inspect_schema_version(path)?;
        if version == 0 {
            return Ok(None);
        }
        if version < SCHEMA_VERSION {
            return Err(Error::Store {
                path: path.display().to_string(),
                operation: "read the inbox",
                message: format!(
                    "deliveries schema version {version}, older than {SCHEMA_VERSION}; `plane-server serve` migrates it"
                ),
            });
        }
        let connection = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_error(path, "open the database read-only"))?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(store_error(path, "configure the database"))?;
        let tx = connection
            .unchecked_transaction()
            .map_err(store_error(path, "read the inbox"))?;
        let read = || -> rusqlite::Result<InboxSnapshot> {
            Ok(InboxSnapshot {
                stats: stats(&tx)?,
                waiting: oldest_waiting(&tx, limit)?,
                dead: list(&tx, Some(Status::Dead), limit)?,
            })
        };
        read()
            .map(Some)
            .map_err(store_error(path, "read the inbox"))
    }
}

fn oldest_waiting(tx: &Transaction<'_>, limit: usize) -> rusqlite::Result<Vec<DeliveryRecord>> {
    let mut stmt = tx.prepare_cached(
        "SELECT d.id, d.delivery_id, d.event, d.action, i.status, i.attempts, d.received_at, i.next_attempt_at,
                i.finished_at, i.last_error, i.note
         FROM deliveries d JOIN inbox i USING (id)
         WHERE i.status IN ('pending','processing','failed') ORDER BY d.received_at, d.id LIMIT ?1",
    )?;
    let rows = stmt.query_map(
        params![i64::try_from(limit).unwrap_or(i64::MAX)],
        delivery_record,
    )?;
    rows.collect()
}

/// A row of the listing queries (`list`, `oldest_waiting`: the same eleven columns) as a
/// [`DeliveryRecord`].
fn delivery_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = r.get(4)?;
    Ok(DeliveryRecord {
        id: r.get(0)?,
        delivery_id: parse_uuid(&r.get::<_, Vec<u8>>(1)?)?,
        event: r.get(2)?,
        action: r.get(3)?,
        status: Status::parse(&status).unwrap_or(Status::Dead),
        attempts: r.get(5)?,
        received_at: r.get(6)?,
        next_attempt_at: r.get(7)?,
        finished_at: r.get(8)?,
        last_error: r.get(9)?,
        note: r.get(10)?,
    })
}

/// The deliveries schema's version (`PRAGMA user_version`); a newer one than this code
/// knows is refused, so an older binary never writes into a newer layout.
fn schema_version(connection: &Connection, path: &Path) -> Result<i64, Error> {
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(store_error(path, "read the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}
