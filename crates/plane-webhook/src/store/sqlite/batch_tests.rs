//! Group commit with a savepoint per command: batches are built by hand and run
//! through [`Writer::run_batch`], so which commands share a transaction is
//! certain rather than left to the writer thread's timing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;
use crate::ManualClock;

const T0: i64 = 1_795_614_000_000;

fn writer(dir: &tempfile::TempDir) -> Writer {
    let path = dir.path().join("batch.db");
    let connection = open_connection(&path).unwrap();
    // A row whose event is `poison` cannot be leased: a claim that reaches it
    // fails after it has already leased the rows before it.
    connection
        .execute_batch(
            "CREATE TEMP TRIGGER poison BEFORE UPDATE OF status ON inbox
             WHEN NEW.status = 'processing'
                  AND (SELECT event FROM deliveries WHERE id = OLD.id) = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row refuses its lease'); END;",
        )
        .unwrap();
    Writer {
        connection,
        config: StoreConfig {
            clock: Arc::new(ManualClock::new(T0)),
            ..StoreConfig::default()
        },
        path,
        parked: None,
    }
}

fn delivery(event: &str, n: u32) -> NewDelivery {
    NewDelivery {
        delivery_id: Uuid::new_v4(),
        event: event.to_owned(),
        action: "updated".to_owned(),
        event_key: format!("test:{event}:{n}"),
        body: format!("{{\"n\": {n}}}").into(),
        order: u64::from(n),
    }
}

type Answer<T> = oneshot::Receiver<Result<T, Error>>;

fn record(d: NewDelivery) -> (Command, Answer<RecordOutcome>) {
    let (tx, rx) = oneshot::channel();
    (Command::Record(d, tx), rx)
}

fn claim(limit: usize) -> (Command, Answer<Vec<InboxItem>>) {
    let (tx, rx) = oneshot::channel();
    (
        Command::Claim(
            "w/batch".into(),
            limit,
            Duration::from_secs(30),
            Duration::ZERO,
            tx,
        ),
        rx,
    )
}

/// A claim that waits up to `wait` when nothing is ready.
fn claim_waiting(limit: usize, wait: Duration) -> (Command, Answer<Vec<InboxItem>>) {
    let (tx, rx) = oneshot::channel();
    (
        Command::Claim("w/waiting".into(), limit, Duration::from_secs(30), wait, tx),
        rx,
    )
}

fn new_id(rx: &mut Answer<RecordOutcome>) -> i64 {
    match rx.try_recv().unwrap() {
        Ok(RecordOutcome::New { id }) => id,
        other => panic!("expected a new delivery, got {other:?}"),
    }
}

/// (status, attempts, lease_owner) of every row, by id.
fn rows(writer: &Writer) -> Vec<(i64, String, u32, Option<String>)> {
    let mut stmt = writer
        .connection
        .prepare("SELECT id, status, attempts, lease_owner FROM inbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_command_that_fails_half_way_leaves_nothing_and_its_batch_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    let (a, mut a_rx) = record(delivery("issue", 1));
    let (p, mut p_rx) = record(delivery("poison", 2));
    writer.run_batch(vec![a, p]);
    let (a_id, p_id) = (new_id(&mut a_rx), new_id(&mut p_rx));

    // One batch: a good record, a claim that leases `a` and then fails on the
    // poisoned row, another good record.
    let (before, mut before_rx) = record(delivery("issue", 3));
    let (bad, mut bad_rx) = claim(10);
    let (after, mut after_rx) = record(delivery("issue", 4));
    writer.run_batch(vec![before, bad, after]);

    let err = bad_rx.try_recv().unwrap().unwrap_err();
    assert!(
        err.to_string().contains("poisoned row refuses its lease"),
        "{err}"
    );
    let (before_id, after_id) = (new_id(&mut before_rx), new_id(&mut after_rx));
    // The claim's first lease (of `a`) was undone with it; the records around
    // it are on disk.
    assert_eq!(
        rows(&writer),
        [
            (a_id, "pending".to_owned(), 0, None),
            (p_id, "pending".to_owned(), 0, None),
            (before_id, "pending".to_owned(), 0, None),
            (after_id, "pending".to_owned(), 0, None),
        ]
    );
}

#[test]
fn each_command_of_a_batch_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    let d = delivery("issue", 1);
    let (first, mut first_rx) = record(d.clone());
    let (again, mut again_rx) = record(d);
    let (ok_claim, mut claim_rx) = claim(1);
    writer.run_batch(vec![first, again, ok_claim]);
    let id = new_id(&mut first_rx);
    assert_eq!(
        again_rx.try_recv().unwrap().unwrap(),
        RecordOutcome::Duplicate {
            id,
            by: DuplicateBy::DeliveryId
        }
    );
    let items = claim_rx.try_recv().unwrap().unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    assert_eq!(
        rows(&writer),
        [(id, "processing".to_owned(), 1, Some(items[0].lease.clone()))]
    );
}

fn complete_with(
    item: &InboxItem,
    lease: &str,
    key: &'static str,
    fail: bool,
) -> (Command, Answer<Result<usize, rusqlite::Error>>) {
    let (tx, rx) = oneshot::channel();
    let change = move |t: &Transaction<'_>| {
        let n = t.execute("INSERT INTO toy VALUES (?1)", [key])?;
        if fail {
            // A constraint error after a write: the write must go too.
            t.execute("INSERT INTO toy VALUES (?1)", [key])?;
        }
        Ok(n)
    };
    (
        domain::job(domain::complete_with(item.id, lease.to_owned(), change), tx),
        rx,
    )
}

fn toy(writer: &Writer) -> Vec<String> {
    let mut stmt = writer
        .connection
        .prepare("SELECT key FROM toy ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn domain_changes_in_one_batch_each_stand_or_fall_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    writer
        .connection
        .execute_batch("CREATE TABLE toy (key TEXT PRIMARY KEY)")
        .unwrap();
    let (a, _) = record(delivery("issue", 1));
    let (b, _) = record(delivery("issue", 2));
    let (c, mut claim_rx) = claim(2);
    writer.run_batch(vec![a, b, c]);
    let items = claim_rx.try_recv().unwrap().unwrap();
    let (one, two) = (&items[0], &items[1]);

    // One batch: a good change, a failing one, a record, and a change from a
    // claim that no longer holds its item.
    let (good, mut good_rx) = complete_with(one, &one.lease, "one", false);
    let (bad, mut bad_rx) = complete_with(two, &two.lease, "two", true);
    let (rec, mut rec_rx) = record(delivery("issue", 3));
    let (stale, mut stale_rx) = complete_with(two, "w/stale", "stale", false);
    writer.run_batch(vec![good, bad, rec, stale]);

    assert_eq!(good_rx.try_recv().unwrap().unwrap().unwrap(), 1);
    assert!(bad_rx.try_recv().unwrap().unwrap().is_err());
    let rec_id = new_id(&mut rec_rx);
    assert!(matches!(
        stale_rx.try_recv().unwrap(),
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(toy(&writer), ["one"]);
    assert_eq!(
        rows(&writer),
        [
            (one.id, "done".to_owned(), 1, None),
            (two.id, "processing".to_owned(), 1, Some(two.lease.clone())),
            (rec_id, "pending".to_owned(), 0, None),
        ]
    );
}

#[test]
fn a_waiting_claim_gets_deliveries_leased_as_they_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    let (waiting, mut claim_rx) = claim_waiting(2, Duration::from_secs(60));
    writer.run_batch(vec![waiting]);
    assert!(
        matches!(
            claim_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ),
        "nothing ready: the claim waits"
    );

    let (one, two, three) = (
        delivery("issue", 1),
        delivery("issue", 2),
        delivery("issue", 3),
    );
    let (a, mut a_rx) = record(one.clone());
    let (again, mut again_rx) = record(one.clone());
    let (b, mut b_rx) = record(two.clone());
    let (c, mut c_rx) = record(three);
    writer.run_batch(vec![a, again, b, c]);
    let (a_id, b_id, c_id) = (new_id(&mut a_rx), new_id(&mut b_rx), new_id(&mut c_rx));
    assert!(matches!(
        again_rx.try_recv().unwrap(),
        Ok(RecordOutcome::Duplicate { .. })
    ));

    // Answered after the batch's commit, with the first two (its limit), as
    // a claim would have read them back; the third waits as pending.
    let items = claim_rx.try_recv().unwrap().unwrap();
    let lease = items[0].lease.clone();
    assert_eq!(lease, "w/waiting");
    for (item, (id, sent)) in items.iter().zip([(a_id, &one), (b_id, &two)]) {
        assert_eq!(
            (
                item.id,
                item.delivery_id,
                &item.event_key,
                &item.body,
                item.attempts
            ),
            (id, sent.delivery_id, &sent.event_key, &sent.body, 1)
        );
        assert_eq!(item.lease, lease);
    }
    assert_eq!(items.len(), 2);
    assert_eq!(
        rows(&writer),
        [
            (a_id, "processing".to_owned(), 1, Some(lease.clone())),
            (b_id, "processing".to_owned(), 1, Some(lease.clone())),
            (c_id, "pending".to_owned(), 0, None),
        ]
    );
    // The lease holds like any claim's: completing with it works, and in one
    // command each item gets its own answer (c was never leased).
    let (tx, mut done_rx) = oneshot::channel();
    writer.run_batch(vec![Command::Complete(
        vec![(a_id, lease.clone()), (c_id, lease)],
        tx,
    )]);
    let answers = done_rx.try_recv().unwrap().unwrap();
    assert!(answers[0].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(Error::LeaseLost { id }) if id == c_id),
        "{answers:?}"
    );
    assert_eq!(rows(&writer)[0].1, "done");
    assert_eq!(rows(&writer)[2].1, "pending");
}

#[test]
fn a_record_that_fails_is_not_handed_to_the_waiting_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    writer
        .connection
        .execute_batch(
            "CREATE TEMP TRIGGER poison_lease BEFORE INSERT ON inbox
             WHEN NEW.status = 'processing'
                  AND (SELECT event FROM deliveries WHERE id = NEW.id) = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row refuses its lease'); END;",
        )
        .unwrap();
    let (waiting, mut claim_rx) = claim_waiting(10, Duration::from_secs(60));
    let (bad, mut bad_rx) = record(delivery("poison", 1));
    let (good, mut good_rx) = record(delivery("issue", 2));
    writer.run_batch(vec![waiting, bad, good]);
    assert!(bad_rx.try_recv().unwrap().is_err());
    let good_id = new_id(&mut good_rx);
    let items = claim_rx.try_recv().unwrap().unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [good_id]);
    assert_eq!(rows(&writer).len(), 1, "the failed record left no row");
}

#[test]
fn a_waiting_claim_ends_empty_at_its_deadline_or_when_its_worker_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    let (waiting, mut claim_rx) = claim_waiting(10, Duration::from_millis(1));
    writer.run_batch(vec![waiting]);
    std::thread::sleep(Duration::from_millis(5));
    writer.unpark_if_due();
    assert_eq!(claim_rx.try_recv().unwrap().unwrap(), []);

    // A worker that stopped waiting is given nothing: what arrives stays pending.
    let (waiting, claim_rx) = claim_waiting(10, Duration::from_secs(60));
    writer.run_batch(vec![waiting]);
    drop(claim_rx);
    let (a, mut a_rx) = record(delivery("issue", 1));
    writer.run_batch(vec![a]);
    let id = new_id(&mut a_rx);
    assert_eq!(rows(&writer), [(id, "pending".to_owned(), 0, None)]);
    writer.unpark_if_due();
    assert!(writer.parked.is_none(), "the abandoned claim was dropped");
}

#[test]
fn a_waiting_claim_goes_first_in_its_batch_and_tops_up_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    let (x, mut x_rx) = record(delivery("issue", 1));
    writer.run_batch(vec![x]);
    let x_id = new_id(&mut x_rx);

    // Sent after `y`, but it runs first: it takes `x`, stored before, then `y`
    // as it is recorded (up to its limit of 2); `z` stays pending.
    // Which inbox rows get updated: a delivery leased as it is recorded is
    // inserted leased, one claimed from the inbox is updated.
    writer
        .connection
        .execute_batch(
            "CREATE TEMP TABLE updated (id INTEGER);
             CREATE TEMP TRIGGER count_updates AFTER UPDATE OF status ON inbox
             BEGIN INSERT INTO updated VALUES (NEW.id); END;",
        )
        .unwrap();
    let (y, mut y_rx) = record(delivery("issue", 2));
    let (waiting, mut claim_rx) = claim_waiting(2, Duration::from_secs(60));
    let (z, mut z_rx) = record(delivery("issue", 3));
    writer.run_batch(vec![y, waiting, z]);
    let (y_id, z_id) = (new_id(&mut y_rx), new_id(&mut z_rx));
    let items = claim_rx.try_recv().unwrap().unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [x_id, y_id]);
    let updated: Vec<i64> = writer
        .connection
        .prepare("SELECT id FROM updated")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(updated, [x_id], "y was leased as it was recorded");
    assert_eq!(
        rows(&writer),
        [
            (
                x_id,
                "processing".to_owned(),
                1,
                Some("w/waiting".to_owned())
            ),
            (
                y_id,
                "processing".to_owned(),
                1,
                Some("w/waiting".to_owned())
            ),
            (z_id, "pending".to_owned(), 0, None),
        ]
    );

    // A claim that does not wait keeps its place: it takes only what is
    // stored before it.
    let (w, mut w_rx) = record(delivery("issue", 4));
    let (now, mut now_rx) = claim(10);
    writer.run_batch(vec![now, w]);
    let w_id = new_id(&mut w_rx);
    let items = now_rx.try_recv().unwrap().unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [z_id]);
    assert_eq!(rows(&writer)[3], (w_id, "pending".to_owned(), 0, None));
}

#[test]
fn a_waiting_claim_does_not_overtake_a_completion_sent_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    let clock = Arc::new(ManualClock::new(T0));
    writer.config.clock = clock.clone();
    let (a, mut a_rx) = record(delivery("issue", 1));
    let (first, mut first_rx) = claim(1);
    writer.run_batch(vec![a, first]);
    let a_id = new_id(&mut a_rx);
    let item = first_rx.try_recv().unwrap().unwrap().remove(0);
    // The lease runs out; its completion is on its way when a waiting claim
    // (which takes expired leases) comes in the same batch.
    clock.advance(Duration::from_secs(31));
    let (tx, mut done_rx) = oneshot::channel();
    let done = Command::Complete(vec![(a_id, item.lease.clone())], tx);
    let (b, mut b_rx) = record(delivery("issue", 2));
    let (waiting, mut claim_rx) = claim_waiting(10, Duration::from_secs(60));
    writer.run_batch(vec![done, b, waiting]);
    let answers = done_rx.try_recv().unwrap().unwrap();
    assert!(answers[0].is_ok(), "{answers:?}");
    let b_id = new_id(&mut b_rx);
    let items = claim_rx.try_recv().unwrap().unwrap();
    assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), [b_id]);
    assert_eq!(rows(&writer)[0].1, "done");
}

#[test]
fn a_record_whose_undo_fails_rolls_back_its_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = writer(&dir);
    // A poisoned delivery's inbox row is refused, and so is the undo of its
    // delivery row: the transaction would hold a delivery without inbox row.
    writer
        .connection
        .execute_batch(
            "CREATE TEMP TRIGGER poison_queue BEFORE INSERT ON inbox
             WHEN (SELECT event FROM deliveries WHERE id = NEW.id) = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row refuses its inbox row'); END;
             CREATE TEMP TRIGGER poison_undo BEFORE DELETE ON deliveries
             WHEN OLD.event = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned row refuses its undo'); END;",
        )
        .unwrap();
    let (before, mut before_rx) = record(delivery("issue", 1));
    let (bad, mut bad_rx) = record(delivery("poison", 2));
    let (after, mut after_rx) = record(delivery("issue", 3));
    writer.run_batch(vec![before, bad, after]);
    for rx in [&mut before_rx, &mut bad_rx, &mut after_rx] {
        let err = rx.try_recv().unwrap().unwrap_err();
        assert!(
            err.to_string().contains("poisoned row refuses its undo"),
            "{err}"
        );
    }
    let count = |table: &str| -> i64 {
        writer
            .connection
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(
        (count("deliveries"), count("inbox")),
        (0, 0),
        "nothing of the batch was kept"
    );

    // The next batch is unaffected.
    let (next, mut next_rx) = record(delivery("issue", 4));
    writer.run_batch(vec![next]);
    let id = new_id(&mut next_rx);
    assert_eq!(rows(&writer), [(id, "pending".to_owned(), 0, None)]);
}
