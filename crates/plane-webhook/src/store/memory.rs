//! An in-memory [`DeliveryStore`] for tests: the same rules, no durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{
    BoxFuture, Clock, DeliveryRecord, DeliveryStore, DuplicateBy, FailOutcome, InboxItem,
    InboxStats, NewDelivery, RecordOutcome, Status, StoreConfig, duration_ms, lease_token,
};
use crate::Error;

#[derive(Debug, Clone)]
struct Row {
    record: DeliveryRecord,
    event_key: String,
    body: bytes::Bytes,
    lease: Option<(String, i64)>,
}

#[derive(Debug, Default)]
struct State {
    rows: BTreeMap<i64, Row>,
    by_event: HashMap<String, i64>,
    next_id: i64,
}

/// Deliveries kept in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    config: StoreConfig,
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State, i64) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state, self.config.clock.now_ms())
    }
}

fn leased_row<'s>(state: &'s mut State, item: &InboxItem) -> Result<&'s mut Row, Error> {
    let id = item.id;
    match state.rows.get_mut(&id) {
        Some(row)
            if row.record.status == Status::Processing
                && row.lease.as_ref().is_some_and(|(l, _)| *l == item.lease) =>
        {
            Ok(row)
        }
        Some(_) => Err(Error::LeaseLost { id }),
        None => Err(Error::UnknownDelivery { id }),
    }
}

impl DeliveryStore for MemoryStore {
    fn clock(&self) -> Arc<dyn Clock> {
        self.config.clock.clone()
    }

    fn record(&self, delivery: NewDelivery) -> BoxFuture<'_, Result<RecordOutcome, Error>> {
        let outcome = self.with(|state, now| {
            if let Some(&id) = state.by_event.get(&delivery.event_key) {
                let by = if state.rows[&id].record.delivery_id == delivery.delivery_id {
                    DuplicateBy::DeliveryId
                } else {
                    DuplicateBy::SameEvent
                };
                return RecordOutcome::Duplicate { id, by };
            }
            state.next_id += 1;
            let id = state.next_id;
            state.by_event.insert(delivery.event_key.clone(), id);
            state.rows.insert(
                id,
                Row {
                    record: DeliveryRecord {
                        id,
                        delivery_id: delivery.delivery_id,
                        event: delivery.event,
                        action: delivery.action,
                        status: Status::Pending,
                        attempts: 0,
                        received_at: now,
                        next_attempt_at: now,
                        finished_at: None,
                        last_error: None,
                        note: None,
                    },
                    event_key: delivery.event_key,
                    body: delivery.body.clone(),
                    lease: None,
                },
            );
            RecordOutcome::New { id }
        });
        Box::pin(async move { Ok(outcome) })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<InboxItem>, Error>> {
        let max_attempts = self.config.max_attempts;
        let token = lease_token(worker);
        let items = self.with(|state, now| {
            // Items whose worker died on every attempt stop being handed out.
            for row in state.rows.values_mut() {
                let expired = row.lease.as_ref().is_some_and(|(_, until)| *until <= now);
                if row.record.status == Status::Processing
                    && expired
                    && row.record.attempts >= max_attempts
                {
                    row.record.status = Status::Dead;
                    row.record.finished_at = Some(now);
                    row.record.last_error =
                        Some(format!("lease expired on attempt {}", row.record.attempts));
                    row.lease = None;
                }
            }
            let mut ready: Vec<(i64, i64)> = state
                .rows
                .values()
                .filter(|row| match row.record.status {
                    Status::Pending | Status::Failed => row.record.next_attempt_at <= now,
                    Status::Processing => {
                        row.lease.as_ref().is_some_and(|(_, until)| *until <= now)
                    }
                    Status::Done | Status::Dead | Status::Ignored => false,
                })
                .map(|row| (row.record.next_attempt_at, row.record.id))
                .collect();
            ready.sort_unstable();
            let mut items = Vec::new();
            for (_, id) in ready {
                if items.len() >= limit {
                    break;
                }
                let Some(row) = state.rows.get_mut(&id) else {
                    continue;
                };
                row.record.status = Status::Processing;
                row.record.attempts += 1;
                row.lease = Some((token.clone(), now + duration_ms(lease)));
                items.push(InboxItem {
                    id,
                    delivery_id: row.record.delivery_id,
                    event: row.record.event.clone(),
                    action: row.record.action.clone(),
                    event_key: row.event_key.clone(),
                    body: row.body.clone(),
                    attempts: row.record.attempts,
                    lease: token.clone(),
                });
            }
            items
        });
        Box::pin(async move { Ok(items) })
    }

    fn complete<'a>(&'a self, item: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.with(|state, now| {
            let row = leased_row(state, item)?;
            row.record.status = Status::Done;
            row.record.finished_at = Some(now);
            row.lease = None;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn ignore<'a>(
        &'a self,
        item: &'a InboxItem,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.with(|state, now| {
            let row = leased_row(state, item)?;
            row.record.status = Status::Ignored;
            row.record.finished_at = Some(now);
            row.record.note = Some(reason.to_owned());
            row.lease = None;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn complete_noted<'a>(
        &'a self,
        item: &'a InboxItem,
        note: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.with(|state, now| {
            let row = leased_row(state, item)?;
            row.record.status = Status::Done;
            row.record.finished_at = Some(now);
            row.record.note = Some(note.to_owned());
            row.lease = None;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn fail<'a>(
        &'a self,
        item: &'a InboxItem,
        error: &'a str,
    ) -> BoxFuture<'a, Result<FailOutcome, Error>> {
        let result = self.with(|state, now| {
            let row = leased_row(state, item)?;
            let outcome = self.config.after_failure(row.record.attempts, now);
            row.record.last_error = Some(error.to_owned());
            row.lease = None;
            match outcome {
                FailOutcome::Retry { at } => {
                    row.record.status = Status::Failed;
                    row.record.next_attempt_at = at;
                }
                FailOutcome::Dead => {
                    row.record.status = Status::Dead;
                    row.record.finished_at = Some(now);
                }
            }
            Ok(outcome)
        });
        Box::pin(async move { result })
    }

    fn extend<'a>(
        &'a self,
        item: &'a InboxItem,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.with(|state, now| {
            let row = leased_row(state, item)?;
            if let Some((_, until)) = row.lease.as_mut() {
                *until = now + duration_ms(lease);
            }
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, item: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>> {
        let result = self.with(|state, now| {
            let row = leased_row(state, item)?;
            row.record.status = Status::Pending;
            row.record.attempts = row.record.attempts.saturating_sub(1);
            row.record.next_attempt_at = now;
            row.lease = None;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeliveryRecord>, Error>> {
        let records = self.with(|state, _| {
            state
                .rows
                .values()
                .rev()
                .filter(|row| status.is_none_or(|s| row.record.status == s))
                .take(limit)
                .map(|row| row.record.clone())
                .collect()
        });
        Box::pin(async move { Ok(records) })
    }

    fn replay(&self, id: i64) -> BoxFuture<'_, Result<(), Error>> {
        let result = self.with(|state, now| {
            let row = state
                .rows
                .get_mut(&id)
                .ok_or(Error::UnknownDelivery { id })?;
            if row.record.status == Status::Processing
                && row.lease.as_ref().is_some_and(|(_, until)| *until > now)
            {
                return Err(Error::InProgress { id });
            }
            row.record.status = Status::Pending;
            row.record.attempts = 0;
            row.record.next_attempt_at = now;
            row.record.finished_at = None;
            row.record.note = None;
            row.lease = None;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn purge(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        let purged = self.with(|state, now| {
            let cutoff = now - duration_ms(older_than);
            let old: Vec<i64> = state
                .rows
                .values()
                .filter(|row| {
                    matches!(
                        row.record.status,
                        Status::Done | Status::Dead | Status::Ignored
                    ) && row.record.finished_at.is_some_and(|f| f < cutoff)
                })
                .map(|row| row.record.id)
                .collect();
            for id in &old {
                if let Some(row) = state.rows.remove(id) {
                    state.by_event.remove(&row.event_key);
                }
            }
            old.len() as u64
        });
        Box::pin(async move { Ok(purged) })
    }

    fn stats(&self) -> BoxFuture<'_, Result<InboxStats, Error>> {
        let stats = self.with(|state, _| {
            let mut stats = InboxStats::default();
            for row in state.rows.values() {
                match row.record.status {
                    Status::Pending => stats.pending += 1,
                    Status::Processing => stats.processing += 1,
                    Status::Failed => stats.failed += 1,
                    Status::Dead => stats.dead += 1,
                    Status::Done => stats.done += 1,
                    Status::Ignored => stats.ignored += 1,
                }
                if matches!(
                    row.record.status,
                    Status::Pending | Status::Processing | Status::Failed
                ) {
                    let at = row.record.received_at;
                    stats.oldest_unfinished =
                        Some(stats.oldest_unfinished.map_or(at, |o| o.min(at)));
                }
            }
            stats
        });
        Box::pin(async move { Ok(stats) })
    }
}
