//! Files written by older versions, with their own schema and insert, migrate
//! to the current version without losing or changing anything: version 1
//! (one table), version 2 (one table, with `ignored` and the key's text).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;
use crate::{DeliveryStore, EventHead, ManualClock};

const T0: i64 = 1_795_614_000_000;

const V1_ROW: &str = "SELECT id, delivery_id, event_key, event, action, body, status, attempts, received_at, \
                      next_attempt_at, lease_owner, lease_until, finished_at, last_error FROM deliveries ORDER BY id";

type V1Row = (
    i64,
    Vec<u8>,
    Vec<u8>,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    (
        i64,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    ),
);

/// The version 1 columns of a migrated file: what arrived from `deliveries`,
/// where it is from `inbox`.
const CURRENT_ROW: &str = "SELECT d.id, d.delivery_id, d.event_key, d.event, d.action, d.body, i.status, i.attempts, \
                           d.received_at, i.next_attempt_at, i.lease_owner, i.lease_until, i.finished_at, i.last_error \
                           FROM deliveries d JOIN inbox i USING (id) ORDER BY d.id";

fn v1_rows(connection: &Connection) -> Vec<V1Row> {
    rows(connection, V1_ROW)
}

fn current_rows(connection: &Connection) -> Vec<V1Row> {
    rows(connection, CURRENT_ROW)
}

fn rows(connection: &Connection, sql: &str) -> Vec<V1Row> {
    let mut stmt = connection.prepare(sql).unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            (
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
            ),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn v1_delivery(n: u32) -> NewDelivery {
    let body = if n == 6 {
        // Plane Cloud's v2 body: the key is its stable event id.
        r#"{"version": "v2", "event": "workitem.updated", "event_id": "evt-6", "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "six"}}"#.to_owned()
    } else {
        format!(
            r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}", "updated_at": "2026-11-25T13:42:0{n}.086386Z"}}}}"#
        )
    };
    NewDelivery::new(
        Uuid::new_v4(),
        &EventHead::parse(body.as_bytes()).unwrap(),
        body.into_bytes(),
    )
}

/// What version 1's `plane-server` left: one row in each status.
fn write_v1_file(path: &Path) -> Vec<NewDelivery> {
    let connection = Connection::open(path).unwrap();
    connection.execute_batch(SCHEMA_V1).unwrap();
    connection.pragma_update(None, "user_version", 1).unwrap();
    let rows = [
        ("pending", 0, None, None, None),
        ("processing", 1, Some("w/old"), None, None),
        ("done", 1, None, Some(T0 - 10), None),
        ("failed", 2, None, None, Some("boom")),
        ("dead", 8, None, Some(T0 - 5), Some("gave up")),
        ("pending", 0, None, None, None),
    ];
    let mut deliveries = Vec::new();
    for (n, (status, attempts, owner, finished, error)) in (1..).zip(rows) {
        let d = v1_delivery(n);
        connection
            .execute(
                "INSERT INTO deliveries (delivery_id, event_key, event, action, body, status, attempts, received_at,
                                         next_attempt_at, lease_owner, lease_until, finished_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12)",
                params![
                    d.delivery_id.as_bytes(),
                    key_digest(&d.event_key),
                    d.event,
                    d.action,
                    &d.body[..],
                    status,
                    attempts,
                    T0 - 100 + i64::from(n),
                    owner,
                    owner.map(|_| T0 + 30_000),
                    finished,
                    error
                ],
            )
            .unwrap();
        deliveries.push(d);
    }
    deliveries
}

#[tokio::test]
async fn a_v1_file_with_data_migrates_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let deliveries = write_v1_file(&path);
    let before = v1_rows(&Connection::open(&path).unwrap());
    assert_eq!(SqliteStore::inspect_schema_version(&path).unwrap(), 1);

    let store = SqliteStore::open(
        &path,
        StoreConfig {
            clock: Arc::new(ManualClock::new(T0)),
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let connection = Connection::open(&path).unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    // Every column is as it was, but the key, which is now ordered.
    let rekeyed: Vec<V1Row> = before
        .iter()
        .cloned()
        .zip(&deliveries)
        .map(|(mut row, d)| {
            row.2 = index_key(d.order, &d.event_key).to_vec();
            row
        })
        .collect();
    assert_eq!(current_rows(&connection), rekeyed, "a v1 column changed");
    assert_eq!(deliveries[0].order, 20261125134201086);
    assert_eq!(deliveries[5].order, 0, "an event id's key is not ordered");
    let keys: Vec<(String, Option<String>)> = connection
        .prepare("SELECT event_key_text, note FROM deliveries JOIN inbox USING (id) ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<(String, Option<String>)> = deliveries
        .iter()
        .map(|d| (d.event_key.clone(), None))
        .collect();
    assert_eq!(keys, expected);
    assert!(deliveries[5].event_key.starts_with("event:"));
    // Version 4 dropped `inbox_finished`: purge walks `inbox_ready`.
    let indexes: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'inbox' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(indexes, ["inbox_ready"]);

    // The dedupe still knows every old event, under its old row id.
    for (d, row) in deliveries.iter().zip(&before) {
        let again = NewDelivery {
            delivery_id: Uuid::new_v4(),
            ..d.clone()
        };
        assert_eq!(
            store.record(again).await.unwrap(),
            RecordOutcome::Duplicate {
                id: row.0,
                by: DuplicateBy::SameEvent
            }
        );
    }
    // The old rows work as current rows: claimed with their keys, and `ignored` is allowed.
    let items = store.claim("w", 10, Duration::from_secs(30)).await.unwrap();
    let claimed: Vec<(i64, &str)> = items.iter().map(|i| (i.id, i.event_key.as_str())).collect();
    assert_eq!(
        claimed,
        [
            (1, deliveries[0].event_key.as_str()),
            (4, deliveries[3].event_key.as_str()),
            (6, deliveries[5].event_key.as_str())
        ]
    );
    store
        .ignore(&items[0], "no handler for issue.updated")
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.ignored, stats.done, stats.dead, stats.processing),
        (1, 1, 1, 3)
    );
    // Opening again does not migrate twice.
    drop(store);
    drop(SqliteStore::open(&path, StoreConfig::default()).unwrap());
    assert_eq!(current_rows(&connection).len(), before.len());
}

#[test]
fn a_failed_migration_leaves_the_v1_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    write_v1_file(&path);
    let before = v1_rows(&Connection::open(&path).unwrap());
    // Something already holds the name the rebuild needs: the migration fails.
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE deliveries_v2 (x)")
        .unwrap();
    let err = SqliteStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(err.to_string().contains("migrate the schema"), "{err}");
    let connection = Connection::open(&path).unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(v1_rows(&connection), before);
}

/// What version 2's `plane-server` left: rows in every status, one of them
/// ignored with its note, written with version 2's schema and insert.
fn write_v2_file(path: &Path) -> Vec<(NewDelivery, &'static str, Option<&'static str>)> {
    let mut connection = Connection::open(path).unwrap();
    let tx = connection.transaction().unwrap();
    for migration in &MIGRATIONS[..2] {
        migration(&tx).unwrap();
    }
    tx.pragma_update(None, "user_version", 2).unwrap();
    tx.commit().unwrap();
    let rows = [
        ("pending", None),
        ("processing", None),
        ("done", None),
        ("ignored", Some("no handler for issue.updated")),
        ("failed", None),
        ("dead", None),
    ];
    let mut written = Vec::new();
    for (n, (status, note)) in (1..).zip(rows) {
        let d = v1_delivery(n);
        connection
            .execute(
                "INSERT INTO deliveries (delivery_id, event_key, event_key_text, event, action, body, status, attempts,
                                         received_at, next_attempt_at, lease_owner, lease_until, finished_at, last_error, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    d.delivery_id.as_bytes(),
                    key_digest(&d.event_key),
                    d.event_key,
                    d.event,
                    d.action,
                    &d.body[..],
                    status,
                    u32::from(status != "pending"),
                    T0 - 100 + i64::from(n),
                    (status == "processing").then_some("w/old"),
                    (status == "processing").then_some(T0 - 1),
                    matches!(status, "done" | "ignored" | "dead").then_some(T0 - 10),
                    (status == "failed").then_some("boom"),
                    note,
                ],
            )
            .unwrap();
        written.push((d, status, note));
    }
    written
}

const V2_ROW: &str = "SELECT id, delivery_id, event_key, event_key_text, event, action, body, status, attempts, \
                      received_at, next_attempt_at, lease_owner, lease_until, finished_at, last_error, note \
                      FROM deliveries ORDER BY id";
const V2_COLUMNS_NOW: &str = "SELECT d.id, d.delivery_id, d.event_key, d.event_key_text, d.event, d.action, d.body, \
                              i.status, i.attempts, d.received_at, i.next_attempt_at, i.lease_owner, i.lease_until, \
                              i.finished_at, i.last_error, i.note FROM deliveries d JOIN inbox i USING (id) ORDER BY d.id";

/// Every column of every row, as text, so two layouts compare field by field.
fn all_columns(connection: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let mut stmt = connection.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_v2_file_moves_its_state_into_the_inbox_table_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let written = write_v2_file(&path);
    let before = all_columns(&Connection::open(&path).unwrap(), V2_ROW);
    assert_eq!(before.len(), 6);
    assert_eq!(SqliteStore::inspect_schema_version(&path).unwrap(), 2);

    let store = SqliteStore::open(
        &path,
        StoreConfig {
            clock: Arc::new(ManualClock::new(T0)),
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let connection = Connection::open(&path).unwrap();
    assert_eq!(
        SqliteStore::inspect_schema_version(&path).unwrap(),
        SqliteStore::SCHEMA_VERSION
    );
    // Every value is as it was, but the key, which is now ordered.
    let rekeyed: Vec<Vec<rusqlite::types::Value>> = before
        .iter()
        .cloned()
        .zip(&written)
        .map(|(mut row, (d, _, _))| {
            row[2] = rusqlite::types::Value::Blob(index_key(d.order, &d.event_key).to_vec());
            row
        })
        .collect();
    assert_eq!(
        all_columns(&connection, V2_COLUMNS_NOW),
        rekeyed,
        "a version 2 value changed"
    );
    assert!(written[..5].iter().all(|(d, _, _)| d.order > 0));
    // The body-holding table has no state columns left to update.
    // The page size a file was made with stays: only new files get 8 KiB pages.
    assert_eq!(page_size(&connection), 4096);
    let state_columns: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('deliveries') WHERE name IN ('status','attempts','lease_owner','note')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state_columns, 0);

    // Deduped, listed with its note, claimable (pending, the expired lease, the
    // retry that is due).
    let (first, _, _) = &written[0];
    let again = NewDelivery {
        delivery_id: Uuid::new_v4(),
        ..first.clone()
    };
    assert_eq!(
        store.record(again).await.unwrap(),
        RecordOutcome::Duplicate {
            id: 1,
            by: DuplicateBy::SameEvent
        }
    );
    let ignored = store.list(Some(Status::Ignored), 10).await.unwrap();
    assert_eq!(
        ignored
            .iter()
            .map(|r| (r.id, r.note.as_deref()))
            .collect::<Vec<_>>(),
        [(4, Some("no handler for issue.updated"))]
    );
    let items = store.claim("w", 10, Duration::from_secs(30)).await.unwrap();
    let claimed: Vec<(i64, &[u8])> = items.iter().map(|i| (i.id, &i.body[..])).collect();
    assert_eq!(
        claimed,
        [
            (1, &written[0].0.body[..]),
            (2, &written[1].0.body[..]),
            (5, &written[4].0.body[..])
        ]
    );
    assert_eq!(items[1].attempts, 2, "the expired lease's attempt counts");
    store.complete(&items[0]).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.done,
            stats.ignored,
            stats.failed,
            stats.dead,
            stats.processing
        ),
        (2, 1, 0, 1, 2)
    );
}

#[test]
fn a_failed_v3_migration_leaves_the_v2_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    write_v2_file(&path);
    let before = all_columns(&Connection::open(&path).unwrap(), V2_ROW);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE inbox (x)")
        .unwrap();
    let err = SqliteStore::open(&path, StoreConfig::default()).unwrap_err();
    assert!(err.to_string().contains("migrate the schema"), "{err}");
    assert_eq!(SqliteStore::inspect_schema_version(&path).unwrap(), 2);
    assert_eq!(
        all_columns(&Connection::open(&path).unwrap(), V2_ROW),
        before
    );
}

fn page_size(connection: &Connection) -> i64 {
    connection
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_new_file_has_8_kib_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = SqliteStore::open(&path, StoreConfig::default()).unwrap();
    store.record(v1_delivery(1)).await.unwrap();
    assert_eq!(page_size(&Connection::open(&path).unwrap()), 8192);
}
