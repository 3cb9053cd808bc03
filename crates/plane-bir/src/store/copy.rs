//! Moving the deadline store from a SQLite file into PostgreSQL, for `plane-server db
//! migrate` ([`PgDeadlineStore::copy_from_sqlite`]).
//!
//! Both stores hold the same three tables; SQLite keeps dates, times and ids as text,
//! PostgreSQL as `date`, `timestamptz` and `uuid`. Each value is parsed as the SQLite
//! store reads it, so a row that store could not read is refused by column rather than
//! copied wrong. Times are stored to the microsecond on both sides, so they copy exactly.
//!
//! Running it again is safe: rows already in PostgreSQL are left as they are, matched on
//! their natural keys: a deadline by `external_id`, a sync run by `profile`, a status
//! event by its `event` (or its id, for a change read from a listing, which has no
//! event). So an event applied on the SQLite file stays applied once: a replica that
//! receives it again finds it and answers `Duplicate`. Status events keep their ids, and
//! the identity is moved past them. An id PostgreSQL already uses for another change is
//! refused by name: the schema was written to before the copy.

use chrono::{DateTime, NaiveDate, Utc};
use plane_postgres::tokio_postgres;
use plane_postgres::{Database, Transaction};
use rusqlite::Connection;
use uuid::Uuid;

use super::{PgDeadlineStore, SCHEMA_VERSION, schema_version};
use crate::error::{Error, Result};

/// Moves the identity of `bir_status_events.id` past every id in the table, never back.
/// `setval` is not undone by a rollback: a failed copy may leave it ahead, which only
/// skips ids.
const ADVANCE_IDS: &str = "SELECT setval(seq, GREATEST(top, 1), top > 0)
    FROM (SELECT pg_get_serial_sequence('bir_status_events', 'id')::regclass AS seq) s,
    LATERAL (SELECT GREATEST(COALESCE((SELECT max(id) FROM bir_status_events), 0),
                             COALESCE(pg_sequence_last_value(s.seq), 0)) AS top) t";

impl PgDeadlineStore {
    /// Copies the deadlines, their status events and the sync runs from `from`, a SQLite
    /// file's connection (read only; open it read-only, inside a read transaction for one
    /// consistent snapshot), into `db`'s schema through `to`, a transaction the caller
    /// commits. The tables must exist at this build's version ([`super::postgres::migrate`]).
    /// See the module docs for what "already there" means.
    ///
    /// Returns the rows inserted per table (`bir_deadlines`, `bir_status_events`,
    /// `bir_sync_runs`): 0 for rows already there, and for a file without deadlines.
    ///
    /// # Errors
    /// [`Error::Store`] when the file's deadline tables are older than this build (`serve`
    /// or `bir sync` migrates them) or hold a value this build cannot read;
    /// [`Error::SchemaTooNew`] for newer ones; [`Error::Postgres`] when PostgreSQL refuses
    /// a row (another status change under a copied id, a work item another deadline
    /// holds) or the connection is lost. Nothing is committed here.
    pub async fn copy_from_sqlite(
        from: &Connection,
        db: &Database,
        to: &Transaction<'_>,
    ) -> Result<Vec<(&'static str, u64)>> {
        let path = std::path::PathBuf::from(from.path().unwrap_or("(SQLite)"));
        let mut copied = vec![
            ("bir_deadlines", 0),
            ("bir_status_events", 0),
            ("bir_sync_runs", 0),
        ];
        match schema_version(from, &path)? {
            0 => return Ok(copied),
            SCHEMA_VERSION => {}
            found if found > SCHEMA_VERSION => {
                return Err(Error::SchemaTooNew {
                    path: path.display().to_string(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            found => {
                return Err(Error::Store {
                    path: path.display().to_string(),
                    operation: "copy the deadlines",
                    message: format!(
                        "the deadline tables are at schema version {found}, older than this \
                         build's {SCHEMA_VERSION}: run this build's `plane-server serve` (or \
                         `bir sync`) on the file once (it migrates it), stop it, and copy again"
                    ),
                });
            }
        }
        let reader = Reader {
            from,
            path: path.display().to_string(),
        };
        let pg = |operation: &'static str| {
            move |e: tokio_postgres::Error| Error::Postgres(db.error(operation, &e))
        };

        let deadlines = reader.deadlines()?;
        copied[0].1 = to
            .execute(
                "INSERT INTO bir_deadlines (external_id, profile, form, period, due_date, \
                 payment_date, project_id, work_item_id, pushed, fingerprint, status, status_by, \
                 status_at, synced_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], \
                 $6::date[], $7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], \
                 $12::text[], $13::timestamptz[], $14::timestamptz[]) \
                 ON CONFLICT (external_id) DO NOTHING",
                &[
                    &deadlines.iter().map(|d| &d.external_id).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.profile).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.form).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.period).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| d.due_date).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| d.payment_date).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| d.project_id).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| d.work_item_id).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.pushed).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.fingerprint).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.status).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| &d.status_by).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| d.status_at).collect::<Vec<_>>(),
                    &deadlines.iter().map(|d| d.synced_at).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(pg("copy the deadlines"))?;

        let events = reader.events()?;
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let external: Vec<&String> = events.iter().map(|e| &e.external_id).collect();
        let event: Vec<&Option<String>> = events.iter().map(|e| &e.event).collect();
        let taken = to
            .query_opt(
                "SELECT e.id FROM bir_status_events e \
                 JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS c(id, external_id, event) \
                 ON e.id = c.id \
                 WHERE e.external_id <> c.external_id OR e.event IS DISTINCT FROM c.event \
                 ORDER BY e.id LIMIT 1",
                &[&ids, &external, &event],
            )
            .await
            .map_err(pg("copy the status events"))?;
        if let Some(row) = taken {
            let id: i64 = row.get(0);
            return Err(Error::Store {
                path: format!("{} (schema {})", db.target(), db.schema()),
                operation: "copy the status events",
                message: format!(
                    "status event {id} of {} is another change in PostgreSQL: the schema was \
                     written to before the copy (a replica ran on it?). Copy into an empty \
                     schema (--schema), or drop this one first",
                    reader.path
                ),
            });
        }
        // No conflict target: an event already there (by `event`, or by id for one without
        // an event) is left as it is.
        copied[1].1 = to
            .execute(
                "INSERT INTO bir_status_events (id, external_id, event, from_status, to_status, \
                 actor, at, recorded_at) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[]) AS c \
                 ORDER BY 1 ON CONFLICT DO NOTHING",
                &[
                    &ids,
                    &external,
                    &event,
                    &events.iter().map(|e| &e.from_status).collect::<Vec<_>>(),
                    &events.iter().map(|e| &e.to_status).collect::<Vec<_>>(),
                    &events.iter().map(|e| &e.actor).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.at).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.recorded_at).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(pg("copy the status events"))?;
        to.query_one(ADVANCE_IDS, &[])
            .await
            .map_err(pg("move the status event ids past the copied ones"))?;

        let runs = reader.sync_runs()?;
        copied[2].1 = to
            .execute(
                "INSERT INTO bir_sync_runs (profile, project_id, finished_at, requests, writes, \
                 waited_ms) \
                 SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::bigint[], \
                 $5::bigint[], $6::bigint[]) \
                 ON CONFLICT (profile) DO NOTHING",
                &[
                    &runs.iter().map(|r| &r.profile).collect::<Vec<_>>(),
                    &runs.iter().map(|r| r.project_id).collect::<Vec<_>>(),
                    &runs.iter().map(|r| r.finished_at).collect::<Vec<_>>(),
                    &runs.iter().map(|r| r.requests).collect::<Vec<_>>(),
                    &runs.iter().map(|r| r.writes).collect::<Vec<_>>(),
                    &runs.iter().map(|r| r.waited_ms).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(pg("copy the sync runs"))?;
        Ok(copied)
    }
}

/// A `bir_deadlines` row in PostgreSQL's types (every column, `synced_at` included).
struct Deadline {
    external_id: String,
    profile: String,
    form: String,
    period: String,
    due_date: NaiveDate,
    payment_date: Option<NaiveDate>,
    project_id: Uuid,
    work_item_id: Option<Uuid>,
    pushed: Option<String>,
    fingerprint: Option<String>,
    status: String,
    status_by: Option<String>,
    status_at: Option<DateTime<Utc>>,
    synced_at: DateTime<Utc>,
}

struct Event {
    id: i64,
    external_id: String,
    event: Option<String>,
    from_status: String,
    to_status: String,
    actor: Option<String>,
    at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

struct Run {
    profile: String,
    project_id: Uuid,
    finished_at: DateTime<Utc>,
    requests: i64,
    writes: i64,
    waited_ms: i64,
}

/// Reads the SQLite tables, parsing their text as the SQLite store does.
struct Reader<'c> {
    from: &'c Connection,
    path: String,
}

impl Reader<'_> {
    fn fail(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |e| Error::Store {
            path: self.path.clone(),
            operation,
            message: e.to_string(),
        }
    }

    fn bad(&self, table: &str, column: &str, value: &str) -> Error {
        Error::Store {
            path: self.path.clone(),
            operation: "copy the deadlines",
            message: format!(
                "{table}.{column} holds {value:?}, which this build cannot read; nothing was copied"
            ),
        }
    }

    fn date(&self, table: &str, column: &str, v: &str) -> Result<NaiveDate> {
        v.parse().map_err(|_| self.bad(table, column, v))
    }

    fn uuid(&self, table: &str, column: &str, v: &str) -> Result<Uuid> {
        v.parse().map_err(|_| self.bad(table, column, v))
    }

    fn time(&self, table: &str, column: &str, v: &str) -> Result<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| self.bad(table, column, v))
    }

    /// Every row of `sql`, as text columns (`None` for NULL) and integers as text.
    fn rows(&self, sql: &str, columns: usize) -> Result<Vec<Vec<Option<String>>>> {
        let read = self.fail("read the deadline tables");
        let mut statement = self.from.prepare(sql).map_err(&read)?;
        let rows = statement
            .query_map([], |row| {
                (0..columns)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                            other => Some(other.as_str()?.to_owned()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(&read)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&read)
    }

    fn deadlines(&self) -> Result<Vec<Deadline>> {
        const T: &str = "bir_deadlines";
        let rows = self.rows(
            "SELECT external_id, profile, form, period, due_date, payment_date, project_id, \
             work_item_id, pushed, fingerprint, status, status_by, status_at, synced_at \
             FROM bir_deadlines ORDER BY external_id",
            14,
        )?;
        rows.into_iter()
            .map(|mut r| {
                let mut take = |i: usize| r[i].take();
                let need = |v: Option<String>| v.unwrap_or_default();
                let (external_id, profile, form, period) =
                    (need(take(0)), need(take(1)), need(take(2)), need(take(3)));
                let (due, payment, project, work_item) = (take(4), take(5), take(6), take(7));
                let (pushed, fingerprint, status, status_by) =
                    (take(8), take(9), take(10), take(11));
                let (status_at, synced_at) = (take(12), take(13));
                let status = need(status);
                status
                    .parse::<super::DeadlineStatus>()
                    .map_err(|_| self.bad(T, "status", &status))?;
                Ok(Deadline {
                    due_date: self.date(T, "due_date", &need(due))?,
                    payment_date: payment
                        .map(|v| self.date(T, "payment_date", &v))
                        .transpose()?,
                    project_id: self.uuid(T, "project_id", &need(project))?,
                    work_item_id: work_item
                        .map(|v| self.uuid(T, "work_item_id", &v))
                        .transpose()?,
                    status_at: status_at
                        .map(|v| self.time(T, "status_at", &v))
                        .transpose()?,
                    synced_at: self.time(T, "synced_at", &need(synced_at))?,
                    external_id,
                    profile,
                    form,
                    period,
                    pushed,
                    fingerprint,
                    status,
                    status_by,
                })
            })
            .collect()
    }

    fn events(&self) -> Result<Vec<Event>> {
        const T: &str = "bir_status_events";
        let rows = self.rows(
            "SELECT id, external_id, event, from_status, to_status, actor, at, recorded_at \
             FROM bir_status_events ORDER BY id",
            8,
        )?;
        rows.into_iter()
            .map(|mut r| {
                let mut take = |i: usize| r[i].take().unwrap_or_default();
                let id = take(0);
                Ok(Event {
                    id: id.parse().map_err(|_| self.bad(T, "id", &id))?,
                    external_id: take(1),
                    event: r[2].take(),
                    from_status: r[3].take().unwrap_or_default(),
                    to_status: r[4].take().unwrap_or_default(),
                    actor: r[5].take(),
                    at: self.time(T, "at", &r[6].take().unwrap_or_default())?,
                    recorded_at: self.time(T, "recorded_at", &r[7].take().unwrap_or_default())?,
                })
            })
            .collect()
    }

    fn sync_runs(&self) -> Result<Vec<Run>> {
        const T: &str = "bir_sync_runs";
        let rows = self.rows(
            "SELECT profile, project_id, finished_at, requests, writes, waited_ms \
             FROM bir_sync_runs ORDER BY profile",
            6,
        )?;
        rows.into_iter()
            .map(|r| {
                let text = |i: usize| r[i].clone().unwrap_or_default();
                let number = |i: usize, column: &str| {
                    let v = text(i);
                    v.parse::<i64>().map_err(|_| self.bad(T, column, &v))
                };
                Ok(Run {
                    profile: text(0),
                    project_id: self.uuid(T, "project_id", &text(1))?,
                    finished_at: self.time(T, "finished_at", &text(2))?,
                    requests: number(3, "requests")?,
                    writes: number(4, "writes")?,
                    waited_ms: number(5, "waited_ms")?,
                })
            })
            .collect()
    }
}
