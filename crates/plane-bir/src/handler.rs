//! The loop back: a person moving a deadline's work item in Plane changes its filing
//! status.
//!
//! [`BirHandler`] is the [`EventHandler`] `plane-server serve` runs on the inbox. It owns
//! work item (`issue`) events and, for a work item of ours, maps the state **group** to a
//! [`DeadlineStatus`]:
//!
//! | state group            | status        |
//! |------------------------|---------------|
//! | `completed`            | `filed`       |
//! | `cancelled`            | `void`        |
//! | `started`              | `in_progress` |
//! | `backlog`, `unstarted`, `triage` | `pending` (a reopen after filed or void) |
//!
//! The change is applied with [`apply_status_change`] inside
//! [`SqliteStore::complete_with`]: the lease is checked, the status changes and the inbox
//! item is marked done in **one transaction**. So:
//!
//! - **who and when**: the status records the actor (`activity.actor`'s display name, or
//!   its id, or `data.updated_by`) and Plane's time of the change (`data.updated_at`);
//! - **out of order**: an event older than the status stored changes nothing
//!   ([`StatusApplied::Stale`]);
//! - **exactly once**: the change is recorded under the inbox item's event key (unique),
//!   so a `deliveries replay` is a no-op; a worker that lost its lease halfway has its
//!   change rolled back, and the worker that took the item over applies it once.
//!
//! What is *ours*: `external_source = "plane-bir"` and a work item whose id and
//! `external_id` the deadline store knows. Anything else is [`Handled::NotOurs`] (counted as
//! `plane_inbox_processed_total{result="not_ours"}`). An event of ours that changed another
//! field than the state (one delivery per field in Plane CE) changes no status and is
//! [`Handled::Ignored`] with the reason, which `deliveries list --status ignored` shows: for
//! the fields the sync owns (name, dates, description, priority, labels) it is drift that
//! the next `bir sync` restores.
//!
//! # It never writes to Plane
//!
//! The handler holds the delivery store and nothing else: it has no `PlaneClient`, so no
//! event, whoever caused it (a person, or the connector's own PATCH under a key a person
//! shares), can bounce back into a write. Drift is restored by the next sync only.
//!
//! ```no_run
//! use std::sync::Arc;
//! use plane_bir::handler::BirHandler;
//! use plane_webhook::{EventHandler, SqliteStore, StoreConfig};
//! let store = Arc::new(SqliteStore::open("plane.db", StoreConfig::default())?);
//! // Creates (migrates) the deadline tables in the same file first.
//! let handlers: Vec<Arc<dyn EventHandler>> = vec![Arc::new(BirHandler::new(store.clone())?)];
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use plane_webhook::{
    Action, BoxFuture, Envelope, EventHandler, EventKind, Handled, HandlerError, InboxItem,
    SqliteStore, WorkItemData,
};
use rusqlite::OptionalExtension;
use uuid::Uuid;

use crate::error::Result;
use crate::store::{
    DeadlineStatus, SqliteDeadlineStore, StatusApplied, StatusChange, apply_status_change,
};
use crate::sync::EXTERNAL_SOURCE;

/// Work item fields the sync owns: a change to one is drift, restored by the next sync.
pub const OWNED_FIELDS: &[&str] = &[
    "name",
    "description",
    "description_html",
    "target_date",
    "start_date",
    "priority",
    "labels",
];

/// Marks deadlines filed, void or reopened from Plane's work item events. See the
/// [module docs](self).
#[derive(Debug)]
pub struct BirHandler {
    store: Arc<SqliteStore>,
}

impl BirHandler {
    /// A handler applying status changes through `store`, after creating (or migrating)
    /// the deadline tables in the store's file, so they exist before the first event.
    ///
    /// # Errors
    /// The deadline schema could not be opened or migrated ([`crate::Error::Store`],
    /// [`crate::Error::SchemaTooNew`]).
    pub fn new(store: Arc<SqliteStore>) -> Result<Self> {
        SqliteDeadlineStore::open(store.path())?;
        Ok(Self { store })
    }
}

/// What an event asks of the store, decided from the payload alone.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// Not a work item of ours, whatever the store holds.
    NotOurs,
    /// Ours if the store knows it; then the reason it changes no status.
    Ignore {
        work_item: Uuid,
        external_id: String,
        reason: String,
    },
    /// Ours if the store knows it; then apply this status.
    Apply {
        external_id: String,
        change: StatusChange,
    },
}

/// Why the closure in `complete_with` wrote nothing (its savepoint is rolled back and the
/// worker finishes the item with the matching outcome).
#[derive(Debug)]
enum Skip {
    NotOurs,
    Ignored(String),
    Store(rusqlite::Error),
}

fn plan(envelope: &Envelope, event_key: &str) -> Plan {
    let Some(data) = envelope.work_item() else {
        // A delete carries only the id; nothing of ours can be told from it.
        return Plan::NotOurs;
    };
    if data.external_source.as_deref() != Some(EXTERNAL_SOURCE) {
        return Plan::NotOurs;
    }
    let Some(external_id) = data.external_id.clone() else {
        return Plan::NotOurs;
    };
    let ignore = |reason: String| Plan::Ignore {
        work_item: data.id,
        external_id: external_id.clone(),
        reason,
    };
    match &envelope.action {
        Action::Created | Action::Updated => {}
        other => {
            return ignore(format!(
                "{external_id}: a work item {} event changes no filing status (the next \
                 `bir sync` puts the work item back)",
                other.as_str()
            ));
        }
    }
    let field = envelope.activity.as_ref().and_then(|a| a.field.as_deref());
    match field {
        None | Some("state") => {}
        Some(f) if OWNED_FIELDS.contains(&f) => {
            return ignore(format!(
                "{external_id}: {f} changed in Plane; the sync owns it: where it differs \
                 from the deadline it is drift, which the next `bir sync` restores"
            ));
        }
        Some(f) => {
            return ignore(format!(
                "{external_id}: {f} changed in Plane, which does not bear on the filing status"
            ));
        }
    }
    let Some(group) = data.state_group() else {
        return ignore(format!(
            "{external_id}: the event's state has no group (only an id), so the status \
             cannot be told from it"
        ));
    };
    let Some(at) = data
        .updated_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return ignore(format!(
            "{external_id}: the event has no readable updated_at ({:?}), so it cannot be \
             ordered against the status stored",
            data.updated_at
        ));
    };
    let group = match serde_json::from_value(serde_json::Value::from(group)) {
        Ok(plane_core::StateGroup::Other(_)) | Err(_) => {
            return ignore(format!(
                "{external_id}: state group {group:?} is not one this build maps to a filing \
                 status"
            ));
        }
        Ok(known) => known,
    };
    Plan::Apply {
        external_id,
        change: StatusChange {
            work_item_id: data.id,
            status: DeadlineStatus::of_group(&group),
            by: actor(envelope, data),
            at: at.with_timezone(&Utc),
            event: Some(event_key.to_owned()),
        },
    }
}

/// The actor's display name, else its id, else `data.updated_by`.
fn actor(envelope: &Envelope, data: &WorkItemData) -> Option<String> {
    envelope
        .activity
        .as_ref()
        .and_then(|a| a.actor.as_ref())
        .map(|a| {
            a.display_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| a.id.to_string())
        })
        .or_else(|| data.updated_by.map(|id| id.to_string()))
}

/// Whether the store has this work item under this external id.
fn known(
    tx: &rusqlite::Transaction<'_>,
    work_item: Uuid,
    external_id: &str,
) -> std::result::Result<(), Skip> {
    let stored: Option<String> = tx
        .query_row(
            "SELECT external_id FROM bir_deadlines WHERE work_item_id = ?1",
            [work_item.to_string()],
            |row| row.get(0),
        )
        .optional()
        .map_err(Skip::Store)?;
    match stored {
        Some(stored) if stored == external_id => Ok(()),
        _ => Err(Skip::NotOurs),
    }
}

impl EventHandler for BirHandler {
    fn name(&self) -> &str {
        "bir"
    }

    fn wants(&self, envelope: &Envelope) -> bool {
        envelope.kind == EventKind::WorkItem
    }

    fn handle<'a>(
        &'a self,
        item: &'a InboxItem,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, std::result::Result<Handled, HandlerError>> {
        let plan = plan(envelope, &item.event_key);
        Box::pin(async move {
            if plan == Plan::NotOurs {
                return Ok(Handled::NotOurs);
            }
            // One writer command: the ownership check, then (for a status) the change and
            // the completion of the item, in one savepoint. A skip writes nothing.
            let outcome = self
                .store
                .complete_with(item, move |tx| match plan {
                    Plan::NotOurs => Err(Skip::NotOurs),
                    Plan::Ignore {
                        work_item,
                        external_id,
                        reason,
                    } => {
                        known(tx, work_item, &external_id)?;
                        Err(Skip::Ignored(reason))
                    }
                    Plan::Apply {
                        external_id,
                        change,
                    } => {
                        known(tx, change.work_item_id, &external_id)?;
                        let applied = apply_status_change(tx, &change).map_err(Skip::Store)?;
                        Ok((external_id, change, applied))
                    }
                })
                .await
                .map_err(|e| {
                    HandlerError::new(format!(
                        "could not apply the status change of inbox item {}: {e}",
                        item.id
                    ))
                })?;
            match outcome {
                Ok((external_id, change, applied)) => {
                    if !matches!(applied, StatusApplied::Changed { .. }) {
                        tracing::debug!(id = item.id, deadline = %external_id, outcome = ?applied, "no status change");
                        return Ok(Handled::Completed);
                    }
                    tracing::info!(
                        id = item.id,
                        deadline = %external_id,
                        status = %change.status,
                        by = change.by.as_deref().unwrap_or("?"),
                        outcome = ?applied,
                        "deadline status from Plane"
                    );
                    Ok(Handled::Completed)
                }
                Err(Skip::NotOurs) => Ok(Handled::NotOurs),
                Err(Skip::Ignored(reason)) => Ok(Handled::Ignored { reason }),
                Err(Skip::Store(e)) => Err(HandlerError::new(format!(
                    "could not apply the status change of inbox item {}: {e}",
                    item.id
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn envelope(action: &str, data: serde_json::Value, activity: serde_json::Value) -> Envelope {
        let body = serde_json::json!({"event": "issue", "action": action, "data": data, "activity": activity});
        Envelope::parse(body.to_string().as_bytes()).unwrap()
    }

    fn ours(group: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "10726b93-2516-4e16-91f4-d6804b6c9979",
            "external_source": "plane-bir",
            "external_id": "bir:acme:1601-C:2026-01",
            "state": {"id": "4a7c45d4-4e38-47b8-bbb2-40efd5bd9295", "name": "Done", "group": group},
            "updated_at": "2026-02-10T08:30:00.000000Z",
            "updated_by": "6b8d7f7e-0000-4000-8000-000000000001",
        })
    }

    #[test]
    fn state_groups_map_to_statuses_with_actor_and_time() {
        for (group, status) in [
            ("completed", DeadlineStatus::Filed),
            ("cancelled", DeadlineStatus::Void),
            ("started", DeadlineStatus::InProgress),
            ("unstarted", DeadlineStatus::Pending),
            ("backlog", DeadlineStatus::Pending),
        ] {
            let e = envelope(
                "updated",
                ours(group),
                serde_json::json!({"field": "state", "actor": {"id": "6b8d7f7e-0000-4000-8000-000000000002", "display_name": "ana"}}),
            );
            let Plan::Apply { change, .. } = plan(&e, "sha256:k") else {
                panic!("{group}: {:?}", plan(&e, "sha256:k"));
            };
            assert_eq!(change.status, status, "{group}");
            assert_eq!(change.by.as_deref(), Some("ana"));
            assert_eq!(change.event.as_deref(), Some("sha256:k"));
            assert_eq!(change.at.to_rfc3339(), "2026-02-10T08:30:00+00:00");
        }
    }

    #[test]
    fn without_an_actor_the_updater_is_recorded() {
        let e = envelope(
            "updated",
            ours("completed"),
            serde_json::json!({"field": "state"}),
        );
        let Plan::Apply { change, .. } = plan(&e, "k") else {
            panic!()
        };
        assert_eq!(
            change.by.as_deref(),
            Some("6b8d7f7e-0000-4000-8000-000000000001")
        );
    }

    #[test]
    fn owned_fields_are_drift_and_others_change_nothing() {
        let e = envelope(
            "updated",
            ours("completed"),
            serde_json::json!({"field": "target_date"}),
        );
        let Plan::Ignore { reason, .. } = plan(&e, "k") else {
            panic!()
        };
        assert!(
            reason.contains("target_date") && reason.contains("drift"),
            "{reason}"
        );
        let e = envelope(
            "updated",
            ours("completed"),
            serde_json::json!({"field": "assignees"}),
        );
        let Plan::Ignore { reason, .. } = plan(&e, "k") else {
            panic!()
        };
        assert!(reason.contains("does not bear"), "{reason}");
    }

    #[test]
    fn another_source_is_not_ours() {
        let mut data = ours("completed");
        data["external_source"] = "jira".into();
        let e = envelope("updated", data, serde_json::json!({"field": "state"}));
        assert_eq!(plan(&e, "k"), Plan::NotOurs);
        let mut data = ours("completed");
        data["external_id"] = serde_json::Value::Null;
        let e = envelope("updated", data, serde_json::json!({"field": "state"}));
        assert_eq!(plan(&e, "k"), Plan::NotOurs);
    }
}
