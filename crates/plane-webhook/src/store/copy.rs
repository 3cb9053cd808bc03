//! Moving the deliveries and their inbox state from a SQLite file into PostgreSQL, for
//! `plane-server db migrate` ([`PgStore::copy_from_sqlite`]).
//!
//! The copy lives here, beside both stores' SQL, because only this crate knows the two
//! layouts (SQLite's version 4, PostgreSQL's version 1: the same columns). It keeps what
//! makes a delivery the same delivery on the other side:
//!
//! * **Ids** are copied as they are (the PostgreSQL ids are identities `BY DEFAULT`), so
//!   `deliveries replay ID` and the logs keep meaning the same row; the identity is then
//!   moved past the highest id, so the first delivery recorded on PostgreSQL gets a new
//!   one.
//! * **The dedupe key** (`event_key`, the 40 bytes of order and digest) and **the body**
//!   are copied byte for byte: a re-send of a copied event is a duplicate on PostgreSQL
//!   too. Text cannot hold NUL in PostgreSQL: in `event`, `action`, the key's text,
//!   `last_error` and `note` a NUL becomes U+FFFD, as [`PgStore`] stores it on `record`.
//! * **Inbox state**: status, attempts, `next_attempt_at`, `finished_at`, `last_error` and
//!   `note`. A lease is not: it belonged to a worker on the SQLite file. An item leased
//!   when the file was last written (a `serve` killed mid-handling) is copied as
//!   `pending`, its attempt counted, as an ended lease is taken again.
//!
//! Running it again is safe: a delivery whose `event_key` is already in PostgreSQL is
//! left as it is (`ON CONFLICT (event_key) DO NOTHING`), its inbox row too, so a second
//! run copies nothing, and one after a replica has handled some items never puts them
//! back. An id PostgreSQL already uses for *another* event means the schema was written
//! to before the copy; that is refused by name rather than merged.

use plane_postgres::tokio_postgres;
use plane_postgres::{Database, Transaction};
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Error;

/// The most rows, and about the most body bytes, read and inserted at a time: bounded
/// memory whatever the file holds (a body may be up to the receiver's 1 MiB limit).
const BATCH_ROWS: usize = 500;
const BATCH_BYTES: usize = 8 << 20;

/// A delivery and its inbox row as read from SQLite, in PostgreSQL's types.
struct Row {
    id: i64,
    delivery_id: Uuid,
    event_key: Vec<u8>,
    event_key_text: String,
    event: String,
    action: String,
    received_at: i64,
    body: Vec<u8>,
    inbox: Option<Inbox>,
}

struct Inbox {
    status: String,
    attempts: i32,
    next_attempt_at: i64,
    finished_at: Option<i64>,
    last_error: Option<String>,
    note: Option<String>,
}

/// Refuses ids PostgreSQL holds for another event (`$1` ids, `$2` their keys).
const TAKEN_IDS: &str = "SELECT d.id FROM deliveries d
    JOIN unnest($1::bigint[], $2::bytea[]) AS c(id, event_key) ON d.id = c.id
    WHERE d.event_key <> c.event_key ORDER BY d.id LIMIT 1";

/// Inserts a batch: the deliveries whose key is new, then the inbox rows of those only.
/// Returns how many of each were inserted.
const INSERT: &str = "WITH copied AS (
        SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bytea[], $4::text[], $5::text[],
                             $6::text[], $7::bigint[], $8::bytea[])
            AS c(id, delivery_id, event_key, event_key_text, event, action, received_at, body)
    ), new AS (
        INSERT INTO deliveries (id, delivery_id, event_key, event_key_text, event, action, received_at, body)
        SELECT * FROM copied ORDER BY id
        ON CONFLICT (event_key) DO NOTHING
        RETURNING id
    ), state AS (
        SELECT * FROM unnest($9::bigint[], $10::text[], $11::integer[], $12::bigint[],
                             $13::bigint[], $14::text[], $15::text[])
            AS s(id, status, attempts, next_attempt_at, finished_at, last_error, note)
    ), queued AS (
        INSERT INTO inbox (id, status, attempts, next_attempt_at, finished_at, last_error, note)
        SELECT s.* FROM state s JOIN new USING (id) ORDER BY s.id
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM queued)";

/// Moves the identity of `deliveries.id` past every id in the table, never back.
/// `setval` is not undone by a rollback: a failed copy may leave it ahead, which only
/// skips ids.
const ADVANCE_IDS: &str = "SELECT setval(seq, GREATEST(top, 1), top > 0)
    FROM (SELECT pg_get_serial_sequence('deliveries', 'id')::regclass AS seq) s,
    LATERAL (SELECT GREATEST(COALESCE((SELECT max(id) FROM deliveries), 0),
                             COALESCE(pg_sequence_last_value(s.seq), 0)) AS top) t";

impl PgStore {
    /// Copies the deliveries and their inbox state from `from`, a SQLite file's
    /// connection (read only; open it read-only, inside a read transaction for one
    /// consistent snapshot), into the `deliveries` tables of `db`'s schema through `to`,
    /// a transaction the caller commits. The tables must exist at this build's version
    /// (open a [`PgStore`] once first). What is copied and how: see the module docs.
    ///
    /// Returns the rows inserted per table (`deliveries`, `inbox`): 0 for rows already
    /// there, and for a file without a delivery store.
    ///
    /// # Errors
    /// [`Error::Store`] when the file's delivery store is older than this build (`serve`
    /// migrates it) or a row cannot be read, when PostgreSQL holds another delivery under
    /// a copied id, or when a statement fails; [`Error::SchemaTooNew`] for a newer file;
    /// [`Error::Unavailable`] when the connection is lost. Nothing is committed here.
    pub async fn copy_from_sqlite(
        from: &Connection,
        db: &Database,
        to: &Transaction<'_>,
    ) -> Result<Vec<(&'static str, u64)>, Error> {
        let path = from.path().unwrap_or("(SQLite)").to_owned();
        let read_err = |operation: &'static str| {
            let path = path.clone();
            move |e: rusqlite::Error| Error::Store {
                path: path.clone(),
                operation,
                message: e.to_string(),
            }
        };
        let version: i64 = from
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(read_err("read the schema version"))?;
        let mut copied = [("deliveries", 0), ("inbox", 0)];
        if version == 0 {
            return Ok(copied.to_vec());
        }
        if version != SqliteStore::SCHEMA_VERSION {
            return Err(stale(&path, version));
        }
        let pg =
            |operation: &'static str| move |e: tokio_postgres::Error| pg_error(db, operation, &e);
        let taken = to
            .prepare(TAKEN_IDS)
            .await
            .map_err(pg("copy the deliveries"))?;
        let insert = to
            .prepare(INSERT)
            .await
            .map_err(pg("copy the deliveries"))?;
        let mut after = i64::MIN;
        loop {
            let rows = read_batch(from, after).map_err(read_err("read the deliveries"))?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let keys: Vec<&[u8]> = rows.iter().map(|r| r.event_key.as_slice()).collect();
            if let Some(row) = to
                .query_opt(&taken, &[&ids, &keys])
                .await
                .map_err(pg("copy the deliveries"))?
            {
                let id: i64 = row.get(0);
                return Err(Error::Store {
                    path: described(db),
                    operation: "copy the deliveries",
                    message: format!(
                        "delivery {id} of {path} is another event in PostgreSQL: the schema was \
                         written to before the copy (a replica ran on it?). Copy into an empty \
                         schema (--schema), or drop this one first"
                    ),
                });
            }
            let with_inbox: Vec<(&Row, &Inbox)> = rows
                .iter()
                .filter_map(|r| Some((r, r.inbox.as_ref()?)))
                .collect();
            let counts = to
                .query_one(
                    &insert,
                    &[
                        &ids,
                        &rows.iter().map(|r| r.delivery_id).collect::<Vec<_>>(),
                        &keys,
                        &rows
                            .iter()
                            .map(|r| r.event_key_text.as_str())
                            .collect::<Vec<_>>(),
                        &rows.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
                        &rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
                        &rows.iter().map(|r| r.received_at).collect::<Vec<_>>(),
                        &rows.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>(),
                        &with_inbox.iter().map(|(r, _)| r.id).collect::<Vec<_>>(),
                        &with_inbox
                            .iter()
                            .map(|(_, i)| i.status.as_str())
                            .collect::<Vec<_>>(),
                        &with_inbox
                            .iter()
                            .map(|(_, i)| i.attempts)
                            .collect::<Vec<_>>(),
                        &with_inbox
                            .iter()
                            .map(|(_, i)| i.next_attempt_at)
                            .collect::<Vec<_>>(),
                        &with_inbox
                            .iter()
                            .map(|(_, i)| i.finished_at)
                            .collect::<Vec<_>>(),
                        &with_inbox
                            .iter()
                            .map(|(_, i)| i.last_error.as_deref())
                            .collect::<Vec<_>>(),
                        &with_inbox
                            .iter()
                            .map(|(_, i)| i.note.as_deref())
                            .collect::<Vec<_>>(),
                    ],
                )
                .await
                .map_err(pg("copy the deliveries"))?;
            copied[0].1 += u64::try_from(counts.get::<_, i64>(0)).unwrap_or(0);
            copied[1].1 += u64::try_from(counts.get::<_, i64>(1)).unwrap_or(0);
        }
        to.query_one(ADVANCE_IDS, &[])
            .await
            .map_err(pg("move the delivery ids past the copied ones"))?;
        Ok(copied.to_vec())
    }
}

/// The deliveries after id `after`, oldest first, with their inbox rows: at most
/// [`BATCH_ROWS`], and no more once [`BATCH_BYTES`] of bodies are read.
fn read_batch(from: &Connection, after: i64) -> rusqlite::Result<Vec<Row>> {
    let mut statement = from.prepare_cached(
        "SELECT d.id, d.delivery_id, d.event_key, d.event_key_text, d.event, d.action,
                d.received_at, d.body, i.status, i.attempts, i.next_attempt_at, i.finished_at,
                i.last_error, i.note
         FROM deliveries d LEFT JOIN inbox i ON i.id = d.id
         WHERE d.id > ?1 ORDER BY d.id LIMIT ?2",
    )?;
    let mut rows = statement.query(params![after, BATCH_ROWS as i64])?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let uuid: Vec<u8> = r.get(1)?;
        let body: Vec<u8> = r.get(7)?;
        bytes += body.len();
        let status: Option<String> = r.get(8)?;
        let inbox = match status {
            None => None,
            Some(status) => Some(Inbox {
                // A lease is the old file's worker's: the item waits for a new claim.
                status: if status == "processing" {
                    "pending".to_owned()
                } else {
                    status
                },
                attempts: r.get(9)?,
                next_attempt_at: r.get(10)?,
                finished_at: r.get(11)?,
                last_error: r.get::<_, Option<String>>(12)?.map(pg_text),
                note: r.get::<_, Option<String>>(13)?.map(pg_text),
            }),
        };
        out.push(Row {
            id: r.get(0)?,
            delivery_id: Uuid::from_slice(&uuid).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, e.into())
            })?,
            event_key: r.get(2)?,
            event_key_text: pg_text(r.get(3)?),
            event: pg_text(r.get(4)?),
            action: pg_text(r.get(5)?),
            received_at: r.get(6)?,
            body,
            inbox,
        });
        if bytes >= BATCH_BYTES {
            break;
        }
    }
    Ok(out)
}

/// The file's delivery store is older than this build: whoever copies must not guess
/// at an old layout, and `serve` migrates it.
fn stale(path: &str, version: i64) -> Error {
    Error::Store {
        path: path.to_owned(),
        operation: "copy the deliveries",
        message: format!(
            "the deliveries are at schema version {version}, older than this build's {}: run \
             this build's `plane-server serve` on the file once (it migrates it), stop it, and \
             copy again",
            SqliteStore::SCHEMA_VERSION
        ),
    }
}

/// Text as PostgreSQL can hold it: NUL becomes U+FFFD (as [`PgStore`] does on `record`).
fn pg_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

fn described(db: &Database) -> String {
    format!("{} (schema {})", db.target(), db.schema())
}

/// A driver error as the store's: [`Error::Unavailable`] when the connection is gone.
fn pg_error(db: &Database, operation: &'static str, e: &tokio_postgres::Error) -> Error {
    match db.error(operation, e) {
        plane_postgres::Error::Unavailable { target, message } => Error::Unavailable {
            target,
            operation,
            message,
        },
        other => Error::Store {
            path: described(db),
            operation,
            message: match other {
                plane_postgres::Error::Query { message, .. } => message,
                other => other.to_string(),
            },
        },
    }
}
