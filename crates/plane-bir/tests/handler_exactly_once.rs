//! The BIR handler on the real delivery stores, SQLite and PostgreSQL: a status event is
//! applied once, even when the worker that first claimed it lost its lease halfway, when
//! two replicas handle one item at once, when Plane sends it again, and when it is
//! replayed. Each test body runs once per backend (`<test>::sqlite`, `<test>::postgres`;
//! the PostgreSQL ones need `PLANE_TEST_DATABASE_URL`, else they are skipped with a note:
//! `bash scripts/with-postgres.sh cargo test -p plane-bir --test handler_exactly_once`).
//!
//! A "replica" is a delivery store of its own (a connection to the SQLite file, or a
//! pool on the PostgreSQL schema) with a `BirHandler` on it, as each `plane-server
//! serve` has. Time is one `ManualClock` for all, so no test waits on the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use plane_bir::handler::BirHandler;
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, PgDeadlineStore, SqliteDeadlineStore,
};
use plane_postgres::testing::TestDatabase;
use plane_webhook::{
    DeliveryStore, Envelope, EventHandler, Handled, HandlerError, InboxItem, ManualClock,
    NewDelivery, PgStore, RecordOutcome, SqliteStore, Status, StoreConfig,
};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The backends.

/// A replica: its own delivery store on the shared database, and a handler on it.
struct Replica {
    store: Arc<dyn DeliveryStore>,
    handler: BirHandler,
}

trait Backend {
    /// Another replica on the shared database (the first one creates the tables).
    async fn replica(&self, clock: &Arc<ManualClock>) -> Replica;
    /// The deadline store on the shared database.
    async fn deadlines(&self) -> Arc<dyn DeadlineStore>;
    /// The status changes recorded (`bir_status_events`).
    async fn events(&self) -> i64;
}

struct Sqlite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Sqlite {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane.db");
        Sqlite { _dir: dir, path }
    }
}

impl Backend for Sqlite {
    async fn replica(&self, clock: &Arc<ManualClock>) -> Replica {
        let config = StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        };
        let store = Arc::new(SqliteStore::open(&self.path, config).unwrap());
        // The handler creates the deadline tables in the deliveries' file.
        let handler = BirHandler::new(store.clone()).unwrap();
        Replica { store, handler }
    }

    async fn deadlines(&self) -> Arc<dyn DeadlineStore> {
        Arc::new(SqliteDeadlineStore::open(&self.path).unwrap())
    }

    async fn events(&self) -> i64 {
        rusqlite::Connection::open(&self.path)
            .unwrap()
            .query_row("SELECT count(*) FROM bir_status_events", [], |r| r.get(0))
            .unwrap()
    }
}

struct Postgres {
    test: TestDatabase,
}

impl Backend for Postgres {
    async fn replica(&self, clock: &Arc<ManualClock>) -> Replica {
        let config = StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        };
        // A pool of its own, as another process has.
        let db = self.test.options().connect().await.unwrap();
        let store = Arc::new(PgStore::open(db, config).await.unwrap());
        // The handler creates the deadline tables in the store's schema.
        let handler = BirHandler::postgres(store.clone()).await.unwrap();
        Replica { store, handler }
    }

    async fn deadlines(&self) -> Arc<dyn DeadlineStore> {
        Arc::new(PgDeadlineStore::open(self.test.db().clone()).await.unwrap())
    }

    async fn events(&self) -> i64 {
        self.test
            .db()
            .client()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM bir_status_events", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// Each test body, once per backend: `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Env::new(super::Sqlite::new()).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(test) = plane_postgres::testing::database(stringify!($name)).await
                else {
                    return;
                };
                super::$name(super::Env::new(super::Postgres { test }).await).await;
            }
        }
    )*};
}

on_both_backends!(
    a_lost_lease_rolls_the_change_back_and_the_new_owner_applies_it_once,
    an_older_event_changes_nothing_and_reopening_is_recorded,
    a_work_item_the_store_does_not_know_is_not_ours_and_nothing_is_written,
    two_replicas_handling_one_item_at_once_apply_it_once,
    a_redelivery_and_a_replay_on_another_replica_change_nothing,
);

// ---------------------------------------------------------------------------------------
// The environment: two replicas on one database, one deadline of ours.

struct Env<B> {
    backend: B,
    clock: Arc<ManualClock>,
    /// Replica one, where deliveries arrive.
    one: Replica,
    /// Replica two.
    two: Replica,
    deadlines: Arc<dyn DeadlineStore>,
    work_item: Uuid,
}

impl<B: Backend> Env<B> {
    async fn new(backend: B) -> Self {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let one = backend.replica(&clock).await;
        let two = backend.replica(&clock).await;
        let deadlines = backend.deadlines().await;
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
            .await
            .unwrap();
        Env {
            backend,
            clock,
            one,
            two,
            deadlines,
            work_item,
        }
    }

    /// Records a delivery on replica one (not claimed).
    async fn arrive(&self, body: &[u8]) -> (RecordOutcome, Envelope) {
        let envelope = Envelope::parse(body).unwrap();
        let outcome = self
            .one
            .store
            .record(NewDelivery::new(
                Uuid::new_v4(),
                &envelope.head(),
                body.to_vec(),
            ))
            .await
            .unwrap();
        (outcome, envelope)
    }

    /// Records a delivery on replica one and claims it there.
    async fn deliver(&self, body: &[u8]) -> (InboxItem, Envelope) {
        let (_, envelope) = self.arrive(body).await;
        let item = claim(&self.one, "worker-a").await;
        (item, envelope)
    }

    async fn deadline(&self) -> DeadlineRecord {
        self.deadlines.all().await.unwrap().pop().unwrap()
    }

    async fn events(&self) -> i64 {
        self.backend.events().await
    }
}

async fn claim(replica: &Replica, worker: &str) -> InboxItem {
    replica
        .store
        .claim(worker, 1, LEASE)
        .await
        .unwrap()
        .pop()
        .expect("an item to claim")
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

fn lease_lost(result: Result<Handled, HandlerError>) -> String {
    let message = result
        .expect_err("a claim that no longer holds the item must fail")
        .message;
    assert!(message.contains("lease"), "{message}");
    message
}

// ---------------------------------------------------------------------------------------
// The suite.

async fn a_lost_lease_rolls_the_change_back_and_the_new_owner_applies_it_once(
    e: Env<impl Backend>,
) {
    let (first, envelope) = e
        .deliver(&body(e.work_item, "completed", "2026-02-09T08:00:00Z"))
        .await;

    // Worker A stalls past its lease; replica two's worker takes the item over.
    e.clock.advance(LEASE + Duration::from_secs(1));
    let second = claim(&e.two, "worker-b").await;
    assert_eq!(first.id, second.id);

    lease_lost(e.one.handler.handle(&first, &envelope).await);
    assert_eq!(e.deadline().await.status, DeadlineStatus::Pending);
    assert_eq!(e.events().await, 0, "nothing of the stale claim was kept");

    assert_eq!(
        e.two.handler.handle(&second, &envelope).await.unwrap(),
        Handled::Completed
    );
    let d = e.deadline().await;
    assert_eq!(d.status, DeadlineStatus::Filed);
    assert_eq!(d.status_by.as_deref(), Some("ana"));
    assert_eq!(
        d.status_at.unwrap().to_rfc3339(),
        "2026-02-09T08:00:00+00:00"
    );
    assert_eq!(e.events().await, 1);
    // Completed in the same transaction: the item is done.
    assert_eq!(
        e.one
            .store
            .list(Some(Status::Done), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // `deliveries replay` runs it again: the event key was recorded, nothing changes.
    e.one.store.replay(second.id).await.unwrap();
    let again = claim(&e.one, "worker-c").await;
    assert_eq!(
        e.one.handler.handle(&again, &envelope).await.unwrap(),
        Handled::Completed
    );
    assert_eq!(e.events().await, 1);
    assert_eq!(e.deadline().await.status, DeadlineStatus::Filed);
}

async fn an_older_event_changes_nothing_and_reopening_is_recorded(e: Env<impl Backend>) {
    let (item, envelope) = e
        .deliver(&body(e.work_item, "cancelled", "2026-02-09T09:00:00Z"))
        .await;
    e.one.handler.handle(&item, &envelope).await.unwrap();
    assert_eq!(e.deadline().await.status, DeadlineStatus::Void);

    // Delivered late: a close that happened before the cancel.
    let (item, envelope) = e
        .deliver(&body(e.work_item, "completed", "2026-02-09T08:00:00Z"))
        .await;
    assert_eq!(
        e.one.handler.handle(&item, &envelope).await.unwrap(),
        Handled::Completed
    );
    assert_eq!(e.deadline().await.status, DeadlineStatus::Void);

    let (item, envelope) = e
        .deliver(&body(e.work_item, "unstarted", "2026-02-09T10:00:00Z"))
        .await;
    e.one.handler.handle(&item, &envelope).await.unwrap();
    assert_eq!(e.deadline().await.status, DeadlineStatus::Pending);
    assert_eq!(e.events().await, 2, "void, then reopened");
}

async fn a_work_item_the_store_does_not_know_is_not_ours_and_nothing_is_written(
    e: Env<impl Backend>,
) {
    let stranger = Uuid::new_v4();
    let (item, envelope) = e
        .deliver(&body(stranger, "completed", "2026-02-09T08:00:00Z"))
        .await;
    assert_eq!(
        e.one.handler.handle(&item, &envelope).await.unwrap(),
        Handled::NotOurs
    );
    assert_eq!(e.events().await, 0);
    // The worker finishes a not-ours item; the handler left it leased for that.
    e.one.store.complete(&item).await.unwrap();
    assert_eq!(e.deadline().await.status, DeadlineStatus::Pending);
}

/// Both replicas run the handler on one item at the same moment, round after round
/// (the same claim handed to both, and a stale claim racing its successor): one applies
/// the change and completes the item, the other is refused, and the change is recorded
/// once.
async fn two_replicas_handling_one_item_at_once_apply_it_once(e: Env<impl Backend>) {
    let groups = ["completed", "unstarted"];
    for round in 0..8 {
        let group = groups[round % 2];
        let (item, envelope) = e
            .deliver(&body(
                e.work_item,
                group,
                &format!("2026-02-09T08:00:{round:02}Z"),
            ))
            .await;
        // Odd rounds: the claim is stale, replica two holds the item now.
        let other = if round % 2 == 1 {
            e.clock.advance(LEASE + Duration::from_secs(1));
            claim(&e.two, "worker-b").await
        } else {
            item.clone()
        };
        let (a, b) = tokio::join!(
            e.one.handler.handle(&item, &envelope),
            e.two.handler.handle(&other, &envelope),
        );
        let (won, lost) = match (a, b) {
            (Ok(won), lost @ Err(_)) | (lost @ Err(_), Ok(won)) => (won, lost),
            (a, b) => panic!("round {round}: exactly one must win: {a:?} / {b:?}"),
        };
        assert_eq!(won, Handled::Completed, "round {round}");
        lease_lost(lost);
        assert_eq!(e.events().await, round as i64 + 1, "round {round}");
        let expected = if group == "completed" {
            DeadlineStatus::Filed
        } else {
            DeadlineStatus::Pending
        };
        assert_eq!(e.deadline().await.status, expected, "round {round}");
    }
    let done = e.two.store.list(Some(Status::Done), 100).await.unwrap();
    assert_eq!(done.len(), 8, "every item done, once");
}

/// Plane CE sends an event again with a new delivery id (its retry) to whichever
/// replica the load balancer picks: a duplicate, not a second item. A replay of the
/// handled item on the other replica changes nothing either.
async fn a_redelivery_and_a_replay_on_another_replica_change_nothing(e: Env<impl Backend>) {
    let sent = body(e.work_item, "completed", "2026-02-09T08:00:00Z");
    let (item, envelope) = e.deliver(&sent).await;
    assert_eq!(
        e.one.handler.handle(&item, &envelope).await.unwrap(),
        Handled::Completed
    );
    assert_eq!(e.events().await, 1);

    let again = e
        .two
        .store
        .record(NewDelivery::new(
            Uuid::new_v4(),
            &envelope.head(),
            sent.clone(),
        ))
        .await
        .unwrap();
    assert!(
        matches!(again, RecordOutcome::Duplicate { .. }),
        "{again:?}"
    );
    assert!(
        e.two
            .store
            .claim("worker-b", 1, LEASE)
            .await
            .unwrap()
            .is_empty()
    );

    // A person reopens it meanwhile; then someone replays the first event.
    let (reopen, reopened) = e
        .deliver(&body(e.work_item, "unstarted", "2026-02-09T09:00:00Z"))
        .await;
    e.one.handler.handle(&reopen, &reopened).await.unwrap();
    assert_eq!(e.deadline().await.status, DeadlineStatus::Pending);
    e.two.store.replay(item.id).await.unwrap();
    let replayed = claim(&e.two, "worker-b").await;
    assert_eq!(replayed.id, item.id);
    assert_eq!(
        e.two.handler.handle(&replayed, &envelope).await.unwrap(),
        Handled::Completed
    );
    assert_eq!(
        e.events().await,
        2,
        "filed, reopened; the replay recorded nothing"
    );
    assert_eq!(e.deadline().await.status, DeadlineStatus::Pending);
    // Nothing waits.
    let (outcome, _) = e.arrive(&sent).await;
    assert!(
        matches!(outcome, RecordOutcome::Duplicate { .. }),
        "{outcome:?}"
    );
}
