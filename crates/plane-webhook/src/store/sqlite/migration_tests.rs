//! A version 1 file, written with the version 1 schema and the version 1
//! insert, migrates to version 2 without losing or changing anything.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;
use crate::{DeliveryStore, Envelope, ManualClock};

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

fn v1_rows(connection: &Connection) -> Vec<V1Row> {
    let mut stmt = connection.prepare(V1_ROW).unwrap();
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
            r#"{{"event": "issue", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "item {n}"}}}}"#
        )
    };
    NewDelivery::new(
        Uuid::new_v4(),
        &Envelope::parse(body.as_bytes()).unwrap(),
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
                    d.body,
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
    assert_eq!(version, 2);
    assert_eq!(v1_rows(&connection), before, "a v1 column changed");
    let keys: Vec<(String, Option<String>)> = connection
        .prepare("SELECT event_key_text, note FROM deliveries ORDER BY id")
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
    let indexes: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('deliveries_ready','deliveries_finished')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2);

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
    // The old rows work as v2 rows: claimed with their keys, and `ignored` is allowed.
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
    assert_eq!(v1_rows(&connection).len(), before.len());
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
