//! `record`: deliveries recorded together share one statement and one commit.
//!
//! A caller queues its delivery and waits for its answer. If fewer than [`IN_FLIGHT`]
//! batches are being committed, it starts one: a task that takes what is queued (up to
//! [`MAX_BATCH`]), inserts it with one statement, answers each delivery after the
//! commit, and goes on while more is queued. Nothing lingers: a delivery that arrives
//! when the store is idle goes out at once, alone; under load the queue fills while
//! batches are in flight and the next one takes it all. The batch runs in a task of
//! its own, so a caller that stops waiting (its HTTP connection closed) never cuts short
//! the others' commit.
//!
//! A batch that fails for a reason other than a lost connection is tried again one
//! delivery at a time, so one delivery the database refuses fails alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use plane_postgres::Database;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use uuid::Uuid;

use super::{described, driver_error, from_pg, now_param, pg_text};
use crate::Error;
use crate::store::sqlite::index_key;
use crate::store::{Clock, DuplicateBy, NewDelivery, RecordOutcome};

/// The most deliveries in one statement.
pub(super) const MAX_BATCH: usize = 64;
/// The most batches committing at once (each holds a pooled connection meanwhile).
pub(super) const IN_FLIGHT: usize = 4;

/// Inserts the batch (`$1`.. arrays, one element per delivery; `$7` now, see
/// `now_ms!`) and returns
/// the key and id of each row it inserted. In key order: batches committing at once
/// (on this replica or another) that share keys then wait for each other's inserts in
/// one order, never in a cycle (a deadlock PostgreSQL would break only after a second);
/// among equal keys the first sent comes first, and is the one stored.
const INSERT: &str = concat!(
    "WITH batch AS (
        SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::bytea[])
            WITH ORDINALITY AS b(delivery_id, event_key, event_key_text, event, action, body, n)
    ), new AS (
        INSERT INTO deliveries (delivery_id, event_key, event_key_text, event, action, received_at, body)
        SELECT delivery_id, event_key, event_key_text, event, action, ",
    now_ms!("$7"),
    ", body FROM batch
        ORDER BY event_key, n
        ON CONFLICT (event_key) DO NOTHING
        RETURNING id, event_key
    ), queued AS (
        INSERT INTO inbox (id, status, next_attempt_at) SELECT id, 'pending', ",
    now_ms!("$7"),
    " FROM new
    )
    SELECT id, event_key FROM new"
);

/// The rows that hold the keys `$1` already.
const FIND: &str = "SELECT id, event_key, delivery_id FROM deliveries WHERE event_key = ANY($1)";

/// A delivery waiting for a batch.
struct Request {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<RecordOutcome, Error>>,
}

/// The queue and what a batch needs; shared with the batch tasks.
pub(super) struct Recorder {
    db: Database,
    clock: Arc<dyn Clock>,
    /// Told after each commit that stored something new: wakes waiting claims.
    pub(super) recorded: Notify,
    queue: Mutex<Vec<Request>>,
    batches: Arc<Semaphore>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("db", &self.db)
            .field("queued", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub(super) fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            recorded: Notify::new(),
            queue: Mutex::new(Vec::new()),
            batches: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `delivery` and answers once the commit that stored it (or found it) is done.
    pub(super) async fn record(
        self: &Arc<Self>,
        delivery: NewDelivery,
    ) -> Result<RecordOutcome, Error> {
        let (reply, answer) = oneshot::channel();
        self.lock().push(Request { delivery, reply });
        if let Ok(permit) = self.batches.clone().try_acquire_owned() {
            tokio::spawn(self.clone().commit_batches(permit));
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Store {
                path: described(&self.db),
                operation: "record a delivery",
                message: "the batch task stopped before answering (a bug: see the log)".into(),
            })
        })
    }

    /// Commits what is queued, batch after batch, until the queue is empty.
    async fn commit_batches(self: Arc<Self>, mut permit: OwnedSemaphorePermit) {
        loop {
            let batch: Vec<Request> = {
                let mut queue = self.lock();
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                drop(permit);
                // A delivery queued while every batch was busy started none: look
                // again now that this one is free.
                if self.lock().is_empty() {
                    return;
                }
                match self.batches.clone().try_acquire_owned() {
                    Ok(again) => permit = again,
                    // Another batch task holds it and will find the queue.
                    Err(_) => return,
                }
                continue;
            }
            let deliveries: Vec<&NewDelivery> = batch.iter().map(|r| &r.delivery).collect();
            let mut answers = self.insert(&deliveries).await;
            let refused = answers.as_ref().is_err_and(|e| !e.is_unavailable());
            if refused && deliveries.len() > 1 {
                // Find the one the database refuses: the others are still stored.
                let mut one_by_one = Vec::with_capacity(deliveries.len());
                for delivery in &deliveries {
                    one_by_one.push(match self.insert(&[delivery]).await {
                        Ok(mut answer) => answer.remove(0),
                        Err(e) => Err(e),
                    });
                }
                answers = Ok(one_by_one);
            }
            let answers =
                answers.unwrap_or_else(|e| deliveries.iter().map(|_| Err(e.clone())).collect());
            if answers
                .iter()
                .any(|a| matches!(a, Ok(RecordOutcome::New { .. })))
            {
                self.recorded.notify_waiters();
            }
            for (request, answer) in batch.into_iter().zip(answers) {
                let _ = request.reply.send(answer);
            }
        }
    }

    /// One statement (one commit) for the batch, then one read for the duplicates:
    /// the answers in order, as recording them one after the other would give.
    /// `Err` when the statement failed: nothing of the batch was stored (or, when the
    /// connection was lost during it, perhaps all of it).
    async fn insert(
        &self,
        batch: &[&NewDelivery],
    ) -> Result<Vec<Result<RecordOutcome, Error>>, Error> {
        let operation = "record a delivery";
        let fail = |e: plane_postgres::tokio_postgres::Error| driver_error(&self.db, operation, &e);
        let client = self
            .db
            .client()
            .await
            .map_err(|e| from_pg(&self.db, operation, e))?;
        let keys: Vec<Vec<u8>> = batch
            .iter()
            .map(|d| index_key(d.order, &d.event_key).to_vec())
            .collect();
        let ids: Vec<Uuid> = batch.iter().map(|d| d.delivery_id).collect();
        let key_texts: Vec<_> = batch.iter().map(|d| pg_text(&d.event_key)).collect();
        let events: Vec<_> = batch.iter().map(|d| pg_text(&d.event)).collect();
        let actions: Vec<_> = batch.iter().map(|d| pg_text(&d.action)).collect();
        let bodies: Vec<&[u8]> = batch.iter().map(|d| &d.body[..]).collect();
        let now = now_param(&*self.clock);
        let insert = client.prepare_cached(INSERT).await.map_err(fail)?;
        let mut inserted: HashMap<Vec<u8>, i64> = client
            .query(
                &insert,
                &[&ids, &keys, &key_texts, &events, &actions, &bodies, &now],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| (r.get(1), r.get(0)))
            .collect();
        // Committed. The rest are duplicates: of rows stored before, or of one stored
        // earlier in this batch.
        let mut answers: Vec<Option<RecordOutcome>> = keys
            .iter()
            .map(|key| inserted.remove(key).map(|id| RecordOutcome::New { id }))
            .collect();
        let missing: Vec<&Vec<u8>> = keys
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
            .map(|(k, _)| k)
            .collect();
        // Read after the commit: a failure here leaves the new ones new, and only the
        // duplicates without an answer (an error answer never loses an event: Plane
        // sends it again, and it is then a duplicate).
        let found: Result<HashMap<Vec<u8>, (i64, Uuid)>, Error> = if missing.is_empty() {
            Ok(HashMap::new())
        } else {
            self.find(&client, &missing).await
        };
        let mut out = Vec::with_capacity(batch.len());
        for ((answer, key), delivery) in answers.iter_mut().zip(&keys).zip(batch) {
            out.push(match (answer.take(), &found) {
                (Some(new), _) => Ok(new),
                (None, Err(e)) => Err(e.clone()),
                (None, Ok(found)) => match found.get(key) {
                    Some(&(id, stored)) => Ok(RecordOutcome::Duplicate {
                        id,
                        by: if stored == delivery.delivery_id {
                            DuplicateBy::DeliveryId
                        } else {
                            DuplicateBy::SameEvent
                        },
                    }),
                    // Stored, then purged before the read: rare enough to ask again.
                    None => Err(Error::Store {
                        path: described(&self.db),
                        operation,
                        message: "the event was purged while recording it again; send it again"
                            .into(),
                    }),
                },
            });
        }
        Ok(out)
    }

    /// The rows holding `keys`: key, then id and delivery id.
    async fn find(
        &self,
        client: &plane_postgres::Client,
        keys: &[&Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, (i64, Uuid)>, Error> {
        let fail = |e: plane_postgres::tokio_postgres::Error| {
            driver_error(&self.db, "record a delivery", &e)
        };
        let find = client.prepare_cached(FIND).await.map_err(fail)?;
        Ok(client
            .query(&find, &[&keys])
            .await
            .map_err(fail)?
            .iter()
            .map(|r| (r.get(1), (r.get(0), r.get(2))))
            .collect())
    }
}
