//! What a domain crate sharing the database file gets from [`SqliteStore`]:
//! its own migrations ([`SqliteStore::migrate`]), plain writes
//! ([`SqliteStore::write`]), and a change applied together with the inbox item
//! that caused it ([`SqliteStore::complete_with`]).
//!
//! Each runs on the writer thread as one command of its group commit, inside
//! the command's savepoint: a closure that fails (or panics) is rolled back
//! alone, and the other commands of the batch still commit. Nothing is
//! answered before the commit that contains it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::{Applied, Command, SqliteStore, check_lease, mark_done, store_error};
use crate::{BoxFuture, Error, InboxItem};

/// A command built outside the writer: runs once, or is refused.
pub(super) trait Job: Send {
    fn run(self: Box<Self>, tx: &Transaction<'_>, now: i64, path: &Path) -> Applied;
    fn refuse(self: Box<Self>, error: &Error);
}

/// A job from a closure that says whether its savepoint may be kept.
struct FnJob<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T, Error>>,
}

impl<F, T> Job for FnJob<F, T>
where
    F: FnOnce(&Transaction<'_>, i64, &Path) -> (bool, Result<T, Error>) + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, tx: &Transaction<'_>, now: i64, path: &Path) -> Applied {
        let Self { f, reply } = *self;
        // A panicking closure must not take the writer thread (and with it the
        // whole store) down: it fails its own command, which is rolled back.
        let (ok, result) =
            catch_unwind(AssertUnwindSafe(|| f(tx, now, path))).unwrap_or_else(|panic| {
                (
                    false,
                    Err(Error::Store {
                        path: path.display().to_string(),
                        operation: "run a domain change",
                        message: format!(
                            "the closure panicked: {}",
                            crate::store::panic_message(&*panic)
                        ),
                    }),
                )
            });
        Applied {
            ok,
            broken: None,
            reply: Box::new(move |commit_error: Option<&Error>| {
                let result = match commit_error {
                    Some(e) => Err(e.clone()),
                    None => result,
                };
                let _ = reply.send(result);
            }),
        }
    }

    fn refuse(self: Box<Self>, error: &Error) {
        let _ = self.reply.send(Err(error.clone()));
    }
}

/// A job's body: given the transaction, now and the database path, it says
/// whether its savepoint may be kept, and what to answer.
pub(super) trait JobFn<T>:
    FnOnce(&Transaction<'_>, i64, &Path) -> (bool, Result<T, Error>) + Send + 'static
{
}

impl<T, F> JobFn<T> for F where
    F: FnOnce(&Transaction<'_>, i64, &Path) -> (bool, Result<T, Error>) + Send + 'static
{
}

/// The command that runs `f` (given the transaction, now and the path; it
/// says whether its savepoint may be kept) and answers on `reply`.
pub(super) fn job<T: Send + 'static>(
    f: impl FnOnce(&Transaction<'_>, i64, &Path) -> (bool, Result<T, Error>) + Send + 'static,
    reply: oneshot::Sender<Result<T, Error>>,
) -> Command {
    Command::Job(Box::new(FnJob { f, reply }))
}

/// `complete_with` as a job body: lease check, `f`, mark done.
pub(super) fn complete_with<T, E>(
    id: i64,
    lease: String,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
) -> impl JobFn<Result<T, E>> {
    move |tx, now, path| {
        if let Err(e) = check_lease(tx, id, &lease, path) {
            return (false, Err(e));
        }
        match f(tx) {
            Ok(value) => match mark_done(tx, id, now) {
                Ok(()) => (true, Ok(Ok(value))),
                Err(e) => (false, Err(store_error(path, "complete a delivery")(e))),
            },
            Err(e) => (false, Ok(Err(e))),
        }
    }
}

impl SqliteStore {
    fn job<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>, i64, &Path) -> (bool, Result<T, Error>) + Send + 'static,
    ) -> BoxFuture<'_, Result<T, Error>> {
        self.call(|reply| job(f, reply))
    }

    /// Applies a domain change on the writer thread, in its own savepoint of
    /// the next group commit, and answers once it is on disk.
    ///
    /// The outer `Result` is the store's (it could not run or commit: nothing
    /// was kept); the inner one is `f`'s: on `Err` everything `f` wrote is
    /// rolled back and the rest of the batch is untouched. A panic in `f` is
    /// rolled back too and answered as [`Error::Store`].
    ///
    /// `f` runs on the writer thread: keep it to SQL, never wait on anything
    /// in it (no `.await`, no network), or every delivery waits behind it.
    pub fn write<T, E, F>(&self, f: F) -> BoxFuture<'_, Result<Result<T, E>, Error>>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.job(move |tx, _, _| {
            let result = f(tx);
            (result.is_ok(), Ok(result))
        })
    }

    /// Applies the change an inbox item caused and marks the item done, in one
    /// savepoint of one transaction: an event is applied exactly once.
    ///
    /// First the lease is checked: if this claim no longer holds `item` (it
    /// ended and another worker took it), `f` does not run and the answer is
    /// [`Error::LeaseLost`]. Otherwise `f` runs; on `Ok` the item is marked
    /// done with it, on `Err` (or a panic) everything `f` wrote is rolled back
    /// and the item stays leased, for the worker to `fail` (retried with
    /// backoff). If the commit fails, neither the change nor the completion
    /// is kept. The result nests as in [`SqliteStore::write`].
    ///
    /// A handler that calls this returns `Handled::Completed`, so the worker
    /// leaves the item alone.
    pub fn complete_with<'a, T, E, F>(
        &'a self,
        item: &InboxItem,
        f: F,
    ) -> BoxFuture<'a, Result<Result<T, E>, Error>>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.job(complete_with(item.id, item.lease.clone(), f))
    }

    /// Brings a domain component's tables up to date: runs the `steps` (SQL
    /// batches, one per version) it has not run yet, in one savepoint, and
    /// returns the component's version.
    ///
    /// Versions are kept per component in `schema_migrations`; `PRAGMA
    /// user_version` stays the deliveries schema's own. Steps are append-only:
    /// never edit a shipped one, add the next. A file whose component is at a
    /// higher version than `steps.len()` (written by a newer build) is refused
    /// with [`Error::ComponentSchemaTooNew`] and nothing runs.
    pub fn migrate(&self, component: &str, steps: &[&str]) -> BoxFuture<'_, Result<i64, Error>> {
        let component = component.to_owned();
        let steps: Vec<String> = steps.iter().map(|s| (*s).to_owned()).collect();
        self.job(move |tx, _, path| {
            let result = migrate_component(tx, path, &component, &steps);
            (result.is_ok(), result)
        })
    }
}

fn migrate_component(
    tx: &Transaction<'_>,
    path: &Path,
    component: &str,
    steps: &[String],
) -> Result<i64, Error> {
    let err = |operation| store_error(path, operation);
    let found: i64 = tx
        .query_row(
            "SELECT version FROM schema_migrations WHERE component = ?1",
            [component],
            |r| r.get(0),
        )
        .optional()
        .map_err(err("read a component's schema version"))?
        .unwrap_or(0);
    let supported = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    if found > supported {
        return Err(Error::ComponentSchemaTooNew {
            path: path.display().to_string(),
            component: component.to_owned(),
            found,
            supported,
        });
    }
    for (done, step) in steps
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.execute_batch(step).map_err(|e| Error::Store {
            path: path.display().to_string(),
            operation: "migrate a component's schema",
            message: format!("{component} step {}: {e}", done + 1),
        })?;
    }
    tx.execute(
        "INSERT INTO schema_migrations (component, version) VALUES (?1, ?2)
         ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        params![component, supported],
    )
    .map_err(err("record a component's schema version"))?;
    Ok(supported)
}
