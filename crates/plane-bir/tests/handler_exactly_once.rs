//! The BIR handler on the real delivery store: a status event is applied once, even when
//! the worker that first claimed it lost its lease halfway, and even when it is replayed.
//! Time is a `ManualClock`, so no test waits on the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use plane_bir::handler::BirHandler;
use plane_bir::{DeadlineRecord, DeadlineStatus, DeadlineStore, SqliteDeadlineStore};
use plane_webhook::{
    DeliveryStore, Envelope, EventHandler, Handled, InboxItem, ManualClock, NewDelivery,
    SqliteStore, Status, StoreConfig,
};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Arc<SqliteStore>,
    deadlines: SqliteDeadlineStore,
    handler: BirHandler,
    work_item: Uuid,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let store = Arc::new(
        SqliteStore::open(
            &db,
            StoreConfig {
                clock: clock.clone(),
                ..StoreConfig::default()
            },
        )
        .unwrap(),
    );
    // The handler creates the deadline tables in the deliveries' file.
    let handler = BirHandler::new(store.clone()).unwrap();
    let deadlines = SqliteDeadlineStore::open(&db).unwrap();
    let work_item = Uuid::new_v4();
    deadlines
        .record(&DeadlineRecord {
            external_id: "bir:acme:1601-C:2026-01".into(),
            profile: "acme".into(),
            form: "1601-C".into(),
            period: "2026-01".into(),
            due_date: NaiveDate::from_ymd_opt(2026, 2, 10).unwrap(),
            payment_date: None,
            project_id: Uuid::new_v4(),
            work_item_id: Some(work_item),
            pushed: None,
            fingerprint: None,
            status: DeadlineStatus::Pending,
            status_by: None,
            status_at: None,
        })
        .unwrap();
    Env {
        _dir: dir,
        clock,
        store,
        deadlines,
        handler,
        work_item,
    }
}

fn body(work_item: Uuid, group: &str, updated_at: &str) -> Vec<u8> {
    serde_json::json!({
        "event": "issue", "action": "updated",
        "data": {
            "id": work_item, "name": "1601-C · January 2026",
            "external_source": "plane-bir", "external_id": "bir:acme:1601-C:2026-01",
            "state": {"id": Uuid::new_v4(), "name": group, "group": group},
            "updated_at": updated_at,
        },
        "activity": {"field": "state", "actor": {"id": Uuid::new_v4(), "display_name": "ana"}},
    })
    .to_string()
    .into_bytes()
}

impl Env {
    async fn deliver(&self, body: &[u8]) -> (InboxItem, Envelope) {
        let envelope = Envelope::parse(body).unwrap();
        self.store
            .record(NewDelivery::new(
                Uuid::new_v4(),
                &envelope.head(),
                body.to_vec(),
            ))
            .await
            .unwrap();
        let item = self.claim("worker-a").await;
        (item, envelope)
    }

    async fn claim(&self, worker: &str) -> InboxItem {
        self.store
            .claim(worker, 1, LEASE)
            .await
            .unwrap()
            .pop()
            .expect("an item to claim")
    }

    fn deadline(&self) -> DeadlineRecord {
        self.deadlines.all().unwrap().pop().unwrap()
    }

    fn events(&self) -> i64 {
        rusqlite::Connection::open(self.deadlines.path())
            .unwrap()
            .query_row("SELECT count(*) FROM bir_status_events", [], |r| r.get(0))
            .unwrap()
    }
}

#[tokio::test]
async fn a_lost_lease_rolls_the_change_back_and_the_new_owner_applies_it_once() {
    let e = env();
    let (first, envelope) = e
        .deliver(&body(e.work_item, "completed", "2026-02-09T08:00:00Z"))
        .await;

    // Worker A stalls past its lease; worker B takes the item over.
    e.clock.advance(LEASE + Duration::from_secs(1));
    let second = e.claim("worker-b").await;
    assert_eq!(first.id, second.id);

    let late = e.handler.handle(&first, &envelope).await;
    let message = late
        .expect_err("a lost lease must fail the stale claim")
        .message;
    assert!(message.contains("lease"), "{message}");
    assert_eq!(e.deadline().status, DeadlineStatus::Pending);
    assert_eq!(e.events(), 0, "nothing of the stale claim was kept");

    assert_eq!(
        e.handler.handle(&second, &envelope).await.unwrap(),
        Handled::Completed
    );
    let d = e.deadline();
    assert_eq!(d.status, DeadlineStatus::Filed);
    assert_eq!(d.status_by.as_deref(), Some("ana"));
    assert_eq!(
        d.status_at.unwrap().to_rfc3339(),
        "2026-02-09T08:00:00+00:00"
    );
    assert_eq!(e.events(), 1);
    // Completed in the same transaction: the item is done.
    assert_eq!(e.store.list(Some(Status::Done), 10).await.unwrap().len(), 1);

    // `deliveries replay` runs it again: the event key was recorded, nothing changes.
    e.store.replay(second.id).await.unwrap();
    let again = e.claim("worker-c").await;
    assert_eq!(
        e.handler.handle(&again, &envelope).await.unwrap(),
        Handled::Completed
    );
    assert_eq!(e.events(), 1);
    assert_eq!(e.deadline().status, DeadlineStatus::Filed);
}

#[tokio::test]
async fn an_older_event_changes_nothing_and_reopening_is_recorded() {
    let e = env();
    let (item, envelope) = e
        .deliver(&body(e.work_item, "cancelled", "2026-02-09T09:00:00Z"))
        .await;
    e.handler.handle(&item, &envelope).await.unwrap();
    assert_eq!(e.deadline().status, DeadlineStatus::Void);

    // Delivered late: a close that happened before the cancel.
    let (item, envelope) = e
        .deliver(&body(e.work_item, "completed", "2026-02-09T08:00:00Z"))
        .await;
    assert_eq!(
        e.handler.handle(&item, &envelope).await.unwrap(),
        Handled::Completed
    );
    assert_eq!(e.deadline().status, DeadlineStatus::Void);

    let (item, envelope) = e
        .deliver(&body(e.work_item, "unstarted", "2026-02-09T10:00:00Z"))
        .await;
    e.handler.handle(&item, &envelope).await.unwrap();
    assert_eq!(e.deadline().status, DeadlineStatus::Pending);
    assert_eq!(e.events(), 2, "void, then reopened");
}

#[tokio::test]
async fn a_work_item_the_store_does_not_know_is_not_ours_and_nothing_is_written() {
    let e = env();
    let stranger = Uuid::new_v4();
    let (item, envelope) = e
        .deliver(&body(stranger, "completed", "2026-02-09T08:00:00Z"))
        .await;
    assert_eq!(
        e.handler.handle(&item, &envelope).await.unwrap(),
        Handled::NotOurs
    );
    assert_eq!(e.events(), 0);
    // The worker finishes a not-ours item; the handler left it leased for that.
    e.store.complete(&item).await.unwrap();
    assert_eq!(e.deadline().status, DeadlineStatus::Pending);
}
