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
//! The change is applied inside the delivery store's own `complete_with`, on SQLite
//! ([`SqliteStore`], one machine) or PostgreSQL ([`PgStore`], several `plane-server`
//! replicas sharing one database): the lease is checked, the status changes and the inbox
//! item is marked done in **one transaction**. So:
//!
//! - **who and when**: the status records the actor (`activity.actor`'s display name, or
//!   its id, or `data.updated_by`) and Plane's time of the change (`data.updated_at`);
//! - **out of order**: an event older than the status stored changes nothing
//!   ([`StatusApplied::Stale`]);
//! - **exactly once**: the change is recorded under the inbox item's event key (unique),
//!   so a `deliveries replay` is a no-op; a worker that lost its lease halfway has its
//!   change rolled back, and the worker that took the item over applies it once;
//! - **across replicas** (PostgreSQL): Plane's retry of an event reaching another replica
//!   is a duplicate of the inbox, not a second item; a replica whose lease ended and the
//!   one that took the item over run one after the other (the item's row is locked while
//!   its lease is checked, and the loser is refused); and two changes of one deadline take
//!   turns on its row ([`crate::store::postgres::apply_status_change`] locks it), so the
//!   newer always wins, from the handler or from `bir sync`.
//!
//! What is *ours*: `external_source = "plane-bir"` and a work item whose id and
//! `external_id` the deadline store knows (a `created` event needs less: see the create
//! race below). Anything else is [`Handled::NotOurs`] (counted as
//! `plane_inbox_processed_total{result="not_ours"}`).
//!
//! # The connector's own writes: echo or drift
//!
//! Every create and PATCH of `bir sync` comes back as webhooks: Plane CE sends a `created`
//! delivery per create and one `updated` delivery per changed field (`activity.field`),
//! each with the whole work item as `data`. The store knows what the sync wrote:
//! `fingerprint`, the digest of the owned fields (name, `description_html`, `target_date`)
//! as Plane returned them after the sync's last write, and `pushed`, which ends in the
//! priority the sync last set. An event of ours is judged against them:
//!
//! | event | against the store | outcome |
//! |-------|-------------------|---------|
//! | `updated` name, `description(_html)`, `target_date` | the data's fingerprint is `fingerprint` | [`Handled::Echo`] |
//! | the same | it is not | [`Handled::Ignored`]: drift, which the next `bir sync` restores |
//! | `updated` priority | the data's priority is the one in `pushed` | [`Handled::Echo`] |
//! | the same | it is not | [`Handled::Ignored`]: drift, left until the priority's bucket moves |
//! | `updated` `start_date`, labels | nothing kept to compare | [`Handled::Ignored`]: drift |
//! | `updated` another field | | [`Handled::Ignored`]: no bearing on the status |
//! | `updated` state | | the status change above |
//! | `created` | no row yet, or the row of this work item | [`Handled::Echo`] |
//! | `created` | the deadline's row holds another work item | [`Handled::NotOurs`] |
//!
//! An echo is finished as done with a note (`deliveries list` shows it) and counted as
//! `plane_inbox_processed_total{result="echo"}`, apart from drift (`ignored`) and
//! `not_ours`. Whose write it was is told from the data, never from the actor: a small team
//! may share the connector's API key. An echo means the work item *is* what the sync last
//! wrote, so a person changing a field back to it is an echo too (and rightly not drift).
//!
//! **The create race.** The sync records a work item only once Plane has answered the
//! create, and the webhook can be handled first (with plane-fake, which sends as it
//! answers, about 2 creates in 5). So a `created` event is not judged by the store: with
//! our `external_source` it is the sync's own whichever way the race went, because
//! `external_source` is set through the API only (not in the web app) and the sync is the
//! one writer that sets `plane-bir`. It is an echo, and its note says when the store did
//! not know the work item yet; only a row holding *another* work item for the deadline
//! makes it `not_ours`. A `created` event changes no status: its state is the one the
//! sync chose, or a later change that comes as a `state` delivery of its own.
//!
//! **Updates** are judged against the store as it is when handled. A drift restore is safe
//! from the race (the fingerprint is the same before and after it). A PATCH that changes
//! what the sync asks for (a moved date, a new priority bucket) and whose webhook is
//! handled before the sync records Plane's answer is taken for drift: the cautious side,
//! since nothing is written either way and the next sync finds no drift. Cloud's v2
//! deliveries carry no `activity.field` and are read as status events, as before.
//!
//! # One decision, either backend
//!
//! The handler never asks which store it runs on. What an event means is decided once,
//! here: from the payload alone (`plan`: not ours, ignored, a create, an owned field, a
//! status), then against the deadline's row (`Plan::decide`: the ownership check,
//! `judge_created`, `judge_owned`). A backend only supplies the transaction (the crate's
//! `Settle` trait, implemented by `SqliteStore` and `PgStore` through their
//! `complete_with`): look up the row the plan names (by work item, or for a create by
//! external id), hand it to the decision, apply the status change it lets through with
//! its own `apply_status_change` ([`crate::store::apply_status_change`] or
//! [`crate::store::postgres::apply_status_change`]), and complete the item; anything the
//! decision skips is rolled back. The same tests (`tests/handler_exactly_once.rs`) run on
//! both.
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
//!
//! On PostgreSQL, each replica the same way, with the deadline tables in the store's
//! schema (component `bir`, migrated by one replica at a time):
//!
//! ```no_run
//! use std::sync::Arc;
//! use plane_bir::handler::BirHandler;
//! use plane_webhook::{EventHandler, PgStore, StoreConfig};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let db = plane_postgres::Options::from_url("postgres://plane@db/odoo", None)?
//!     .connect()
//!     .await?;
//! let store = Arc::new(PgStore::open(db, StoreConfig::default()).await?);
//! let handler = BirHandler::postgres(store.clone()).await?;
//! let handlers: Vec<Arc<dyn EventHandler>> = vec![Arc::new(handler)];
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use plane_webhook::{
    Action, BoxFuture, Envelope, EventHandler, EventKind, Handled, HandlerError, InboxItem,
    PgStore, SqliteStore, WorkItemData,
};
use uuid::Uuid;

use crate::error::Result;
use crate::store::{DeadlineStatus, SqliteDeadlineStore, StatusApplied, StatusChange};
use crate::sync::{EXTERNAL_SOURCE, fingerprint};

/// Work item fields the sync owns: a change to one is drift, restored by the next sync,
/// unless the work item is what the sync last wrote (then it is the sync's own echo).
pub const OWNED_FIELDS: &[&str] = &[
    "name",
    "description",
    "description_html",
    "target_date",
    "start_date",
    "priority",
    "labels",
];

/// The owned fields the store's `fingerprint` covers (`description` is the JSON twin of
/// `description_html`; the data carries both).
const FINGERPRINTED: &[&str] = &["name", "description", "description_html", "target_date"];

/// Marks deadlines filed, void or reopened from Plane's work item events, and tells the
/// echo of the sync's own writes from a person's edits. See the [module docs](self).
#[derive(Debug)]
pub struct BirHandler {
    /// The delivery store, SQLite or PostgreSQL: the handler never asks which.
    inbox: Arc<dyn Settle>,
}

impl BirHandler {
    /// A handler applying status changes through the SQLite `store`, after creating (or
    /// migrating) the deadline tables in the store's file, so they exist before the first
    /// event.
    ///
    /// # Errors
    /// The deadline schema could not be opened or migrated ([`crate::Error::Store`],
    /// [`crate::Error::SchemaTooNew`]).
    pub fn new(store: Arc<SqliteStore>) -> Result<Self> {
        SqliteDeadlineStore::open(store.path())?;
        Ok(Self { inbox: store })
    }

    /// A handler applying status changes through the PostgreSQL `store` (several
    /// replicas may share it), after creating (or migrating) the deadline tables in the
    /// store's schema (component `bir`, [`crate::store::postgres::migrate`]), so they
    /// exist before the first event.
    ///
    /// # Errors
    /// The database is unavailable, or the deadline tables could not be migrated or are
    /// newer than this build ([`crate::Error::Postgres`]).
    pub async fn postgres(store: Arc<PgStore>) -> Result<Self> {
        crate::store::postgres::migrate(store.database()).await?;
        Ok(Self { inbox: store })
    }
}

/// A delivery store the handler settles an inbox item in. In **one transaction** it
/// looks up the deadline's row that [`Plan::lookup`] names, lets [`Plan::decide`] (the
/// one decision, shared by every backend) judge the event against it, applies the status
/// change the decision lets through with its backend's `apply_status_change`, and
/// completes the item; on a [`Skip`] it rolls everything back and leaves the item leased
/// for the worker to finish. The lease is checked first: a claim that lost it writes
/// nothing ([`plane_webhook::Error::LeaseLost`]).
///
/// Implemented by the delivery stores themselves (`SqliteStore` here, `PgStore` with
/// PostgreSQL), through their `complete_with`.
pub(crate) trait Settle: Send + Sync + fmt::Debug {
    fn settle<'a>(
        &'a self,
        item: &'a InboxItem,
        plan: Plan,
    ) -> BoxFuture<'a, std::result::Result<Settled, plane_webhook::Error>>;
}

/// What a settlement ended with: the change applied (the item is done, in the same
/// commit), or why nothing was written (rolled back, the item still leased).
pub(crate) type Settled = std::result::Result<Applied, Skip>;

/// A status change applied, and what the store made of it.
#[derive(Debug)]
pub(crate) struct Applied {
    external_id: String,
    change: StatusChange,
    applied: StatusApplied,
}

impl Settle for SqliteStore {
    fn settle<'a>(
        &'a self,
        item: &'a InboxItem,
        plan: Plan,
    ) -> BoxFuture<'a, std::result::Result<Settled, plane_webhook::Error>> {
        // One command of the writer's group commit, in its own savepoint.
        self.complete_with(item, move |tx| {
            let row = match plan.lookup() {
                Some(by) => crate::store::stored_by(tx, by).map_err(Skip::store)?,
                None => None,
            };
            let StatusToApply {
                external_id,
                change,
            } = plan.decide(row)?;
            let applied = crate::store::apply_status_change(tx, &change).map_err(Skip::store)?;
            Ok(Applied {
                external_id,
                change,
                applied,
            })
        })
    }
}

impl Settle for PgStore {
    fn settle<'a>(
        &'a self,
        item: &'a InboxItem,
        plan: Plan,
    ) -> BoxFuture<'a, std::result::Result<Settled, plane_webhook::Error>> {
        use crate::store::postgres::{apply_status_change, stored_by};
        // For the errors' messages (the pool is shared, the clone cheap).
        let db = self.database().clone();
        // One transaction: the item's row locked and its lease checked, then this.
        Box::pin(self.complete_with(item, move |tx| {
            Box::pin(async move {
                let row = match plan.lookup() {
                    Some(by) => stored_by(tx, by)
                        .await
                        .map_err(|e| Skip::store(db.error("look up a deadline", &e)))?,
                    None => None,
                };
                let StatusToApply {
                    external_id,
                    change,
                } = plan.decide(row)?;
                let applied = apply_status_change(tx, &change)
                    .await
                    .map_err(|e| Skip::store(db.error("apply a status change", &e)))?;
                Ok(Applied {
                    external_id,
                    change,
                    applied,
                })
            })
        }))
    }
}

/// What an event asks of the store, decided from the payload alone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Not a work item of ours, whatever the store holds.
    NotOurs,
    /// Ours if the store knows it; then the reason it changes no status.
    Ignore {
        work_item: Uuid,
        external_id: String,
        reason: String,
    },
    /// A create with our source: the sync's own, unless the store holds another work item
    /// for the deadline.
    Created {
        work_item: Uuid,
        external_id: String,
    },
    /// An owned field changed: ours if the store knows it; then an echo if the data is
    /// what the sync last wrote, drift if not.
    Owned {
        work_item: Uuid,
        external_id: String,
        field: String,
        data: Written,
    },
    /// Ours if the store knows it; then apply this status.
    Apply {
        external_id: String,
        change: StatusChange,
    },
}

/// What of an owned-field event can be held against what the sync wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    /// The fingerprint of the data's name, `description_html` and `target_date`, made as
    /// the sync makes the store's.
    Content(String),
    /// The data's priority.
    Priority(Option<String>),
    /// A field the store keeps nothing of (`start_date`, labels).
    Unknown,
}

impl Written {
    fn of(field: &str, data: &WorkItemData) -> Self {
        if FINGERPRINTED.contains(&field) {
            // An unreadable date counts as none; the sync always sets one, so it never
            // matches.
            let target = data
                .target_date
                .as_deref()
                .and_then(|d| d.parse::<NaiveDate>().ok());
            Written::Content(fingerprint(
                data.name.as_deref(),
                data.description_html.as_deref(),
                target,
            ))
        } else if field == "priority" {
            Written::Priority(data.priority.clone())
        } else {
            Written::Unknown
        }
    }
}

/// The store's row, as far as the handler reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) external_id: String,
    pub(crate) work_item_id: Option<Uuid>,
    pub(crate) fingerprint: Option<String>,
    pub(crate) pushed: Option<String>,
}

/// The row a decision needs, by one of the two unique columns of `bir_deadlines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// By `work_item_id`: is this work item one of ours?
    WorkItem(Uuid),
    /// By `external_id`: which work item holds this deadline?
    ExternalId(String),
}

/// The status change a decision lets through, for the backend to apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusToApply {
    external_id: String,
    change: StatusChange,
}

impl Stored {
    /// The priority the sync last set: the end of `pushed` (`<content>:<priority>`).
    fn pushed_priority(&self) -> Option<&str> {
        self.pushed.as_deref()?.split_once(':').map(|(_, p)| p)
    }
}

/// Why a settlement wrote nothing (its transaction, or savepoint, is rolled back and the
/// worker finishes the item with the matching outcome).
#[derive(Debug)]
pub(crate) enum Skip {
    NotOurs,
    Ignored(String),
    Echo(String),
    /// The backend failed to read or write (its message).
    Store(String),
}

impl Skip {
    fn store(e: impl fmt::Display) -> Self {
        Skip::Store(e.to_string())
    }
}

impl Plan {
    /// The row [`decide`](Self::decide) needs: a create is judged by the deadline's row
    /// (which work item holds it), anything else by the work item's row (is it ours).
    pub(crate) fn lookup(&self) -> Option<Lookup> {
        match self {
            Plan::NotOurs => None,
            Plan::Created { external_id, .. } => Some(Lookup::ExternalId(external_id.clone())),
            Plan::Ignore { work_item, .. } | Plan::Owned { work_item, .. } => {
                Some(Lookup::WorkItem(*work_item))
            }
            Plan::Apply { change, .. } => Some(Lookup::WorkItem(change.work_item_id)),
        }
    }

    /// The decision, given the row [`lookup`](Self::lookup) named (`None`: no such row):
    /// the status change to apply, or why nothing is written. The same for every backend.
    pub(crate) fn decide(self, row: Option<Stored>) -> std::result::Result<StatusToApply, Skip> {
        match self {
            Plan::NotOurs => Err(Skip::NotOurs),
            Plan::Ignore {
                work_item,
                external_id,
                reason,
            } => {
                ours(row, work_item, &external_id)?;
                Err(Skip::Ignored(reason))
            }
            Plan::Created {
                work_item,
                external_id,
            } => Err(judge_created(work_item, &external_id, row.as_ref())),
            Plan::Owned {
                work_item,
                external_id,
                field,
                data,
            } => {
                let row = ours(row, work_item, &external_id)?;
                Err(judge_owned(&external_id, &field, &data, &row))
            }
            Plan::Apply {
                external_id,
                change,
            } => {
                ours(row, change.work_item_id, &external_id)?;
                Ok(StatusToApply {
                    external_id,
                    change,
                })
            }
        }
    }
}

/// The ownership check: the store holds this work item, under this external id.
fn ours(
    row: Option<Stored>,
    work_item: Uuid,
    external_id: &str,
) -> std::result::Result<Stored, Skip> {
    match row {
        Some(row) if row.work_item_id == Some(work_item) && row.external_id == external_id => {
            Ok(row)
        }
        _ => Err(Skip::NotOurs),
    }
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
        Action::Created => {
            return Plan::Created {
                work_item: data.id,
                external_id,
            };
        }
        Action::Updated => {}
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
            return Plan::Owned {
                work_item: data.id,
                data: Written::of(f, data),
                external_id,
                field: f.to_owned(),
            };
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

/// A `created` event of ours against the deadline's row (by external id), if any.
fn judge_created(work_item: Uuid, external_id: &str, row: Option<&Stored>) -> Skip {
    match row.and_then(|r| r.work_item_id) {
        Some(id) if id == work_item => Skip::Echo(format!(
            "echo of `bir sync` creating {external_id}'s work item"
        )),
        // Another work item holds the deadline: this one is not the sync's.
        Some(_) => Skip::NotOurs,
        // The race: Plane's webhook came before the sync recorded Plane's answer.
        None => Skip::Echo(format!(
            "echo of `bir sync` creating {external_id}'s work item (handled before the sync \
             recorded it: only the API sets external_source {EXTERNAL_SOURCE:?}, and only \
             the sync sets it)"
        )),
    }
}

/// An owned-field event of ours against the work item's row: echo or drift.
fn judge_owned(external_id: &str, field: &str, data: &Written, row: &Stored) -> Skip {
    match data {
        Written::Content(fp) if row.fingerprint.as_deref() == Some(fp.as_str()) => {
            Skip::Echo(format!(
                "echo: {external_id}'s {field} is what `bir sync` last wrote (name, \
                 description and due date as Plane returned them)"
            ))
        }
        Written::Content(_) => Skip::Ignored(format!(
            "{external_id}: {field} changed in Plane and no longer matches what `bir sync` \
             wrote: drift, which the next `bir sync` restores"
        )),
        Written::Priority(p) if p.is_some() && p.as_deref() == row.pushed_priority() => {
            Skip::Echo(format!(
                "echo: {external_id}'s priority {} is what `bir sync` last set",
                p.as_deref().unwrap_or_default()
            ))
        }
        Written::Priority(p) => Skip::Ignored(format!(
            "{external_id}: priority changed in Plane to {} (`bir sync` set {}): drift, which \
             the sync leaves until the deadline's priority bucket moves",
            p.as_deref().unwrap_or("none"),
            row.pushed_priority().unwrap_or("nothing yet")
        )),
        Written::Unknown => Skip::Ignored(format!(
            "{external_id}: {field} changed in Plane; the sync owns it: where it differs \
             from the deadline it is drift, which the next `bir sync` restores"
        )),
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
            let could_not = |e: &dyn fmt::Display| {
                HandlerError::new(format!(
                    "could not apply the status change of inbox item {}: {e}",
                    item.id
                ))
            };
            match self
                .inbox
                .settle(item, plan)
                .await
                .map_err(|e| could_not(&e))?
            {
                Ok(Applied {
                    external_id,
                    change,
                    applied,
                }) => {
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
                Err(Skip::Echo(note)) => Ok(Handled::Echo { note }),
                Err(Skip::Store(e)) => Err(could_not(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use plane_webhook::StoreConfig;

    fn body(action: &str, data: serde_json::Value, activity: serde_json::Value) -> String {
        serde_json::json!({"event": "issue", "action": action, "data": data, "activity": activity})
            .to_string()
    }

    fn envelope(action: &str, data: serde_json::Value, activity: serde_json::Value) -> Envelope {
        Envelope::parse(body(action, data, activity).as_bytes()).unwrap()
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

    /// An owned-field event as Plane CE sends it: the whole work item, the field changed.
    fn edited_body(field: &str, target: &str, priority: &str) -> String {
        let mut data = ours("unstarted");
        data["name"] = "1601-C 2026-01 · due 2026-02-10".into();
        data["description_html"] = "<p>BIR Form 1601-C</p>".into();
        data["target_date"] = target.into();
        data["priority"] = priority.into();
        body("updated", data, serde_json::json!({"field": field}))
    }

    fn edited(field: &str, target: &str, priority: &str) -> Envelope {
        Envelope::parse(edited_body(field, target, priority).as_bytes()).unwrap()
    }

    /// The row the sync leaves after writing that work item with due date 2026-02-10 and
    /// priority `high`.
    fn synced() -> Stored {
        Stored {
            external_id: "bir:acme:1601-C:2026-01".into(),
            work_item_id: Some("10726b93-2516-4e16-91f4-d6804b6c9979".parse().unwrap()),
            fingerprint: Some(fingerprint(
                Some("1601-C 2026-01 · due 2026-02-10"),
                Some("<p>BIR Form 1601-C</p>"),
                NaiveDate::from_ymd_opt(2026, 2, 10),
            )),
            pushed: Some("0123abcd:high".into()),
        }
    }

    fn judged(e: &Envelope) -> Skip {
        let Plan::Owned {
            external_id,
            field,
            data,
            ..
        } = plan(e, "k")
        else {
            panic!("{:?}", plan(e, "k"))
        };
        judge_owned(&external_id, &field, &data, &synced())
    }

    #[test]
    fn an_owned_field_as_the_sync_wrote_it_is_an_echo_and_a_persons_edit_is_drift() {
        for field in ["name", "description_html", "target_date"] {
            let Skip::Echo(note) = judged(&edited(field, "2026-02-10", "high")) else {
                panic!("{field}: the sync's own write is an echo")
            };
            assert!(note.contains("echo") && note.contains(field), "{note}");
        }
        // A person moves the due date: the work item is no longer what the sync wrote.
        let Skip::Ignored(reason) = judged(&edited("target_date", "2026-02-17", "high")) else {
            panic!("a person's edit is drift")
        };
        assert!(
            reason.contains("target_date") && reason.contains("drift"),
            "{reason}"
        );
        // The name's delivery of a PATCH that also moved the date: the data shows both.
        assert!(matches!(
            judged(&edited("name", "2026-02-17", "high")),
            Skip::Ignored(_)
        ));
    }

    #[test]
    fn a_priority_the_sync_set_is_an_echo_and_another_is_drift() {
        assert!(matches!(
            judged(&edited("priority", "2026-02-10", "high")),
            Skip::Echo(n) if n.contains("priority high")
        ));
        let Skip::Ignored(reason) = judged(&edited("priority", "2026-02-10", "urgent")) else {
            panic!("a person's priority is drift")
        };
        assert!(
            reason.contains("urgent") && reason.contains("`bir sync` set high"),
            "{reason}"
        );
        // Nothing recorded as pushed yet: nothing to be the echo of.
        let Plan::Owned {
            external_id,
            field,
            data,
            ..
        } = plan(&edited("priority", "2026-02-10", "high"), "k")
        else {
            panic!()
        };
        let row = Stored {
            pushed: None,
            ..synced()
        };
        assert!(matches!(
            judge_owned(&external_id, &field, &data, &row),
            Skip::Ignored(_)
        ));
    }

    #[test]
    fn owned_fields_the_store_keeps_nothing_of_are_drift_and_others_change_nothing() {
        let Skip::Ignored(reason) = judged(&edited("labels", "2026-02-10", "high")) else {
            panic!()
        };
        assert!(
            reason.contains("labels") && reason.contains("drift"),
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
    fn a_create_of_ours_is_an_echo_even_before_the_sync_recorded_it() {
        let e = envelope(
            "created",
            ours("unstarted"),
            serde_json::json!({"field": null}),
        );
        let Plan::Created {
            work_item,
            external_id,
        } = plan(&e, "k")
        else {
            panic!("{:?}", plan(&e, "k"))
        };
        // The race: the store has no row yet.
        let Skip::Echo(note) = judge_created(work_item, &external_id, None) else {
            panic!()
        };
        assert!(note.contains("before the sync recorded it"), "{note}");
        // Recorded first.
        assert!(matches!(
            judge_created(work_item, &external_id, Some(&synced())),
            Skip::Echo(n) if !n.contains("before")
        ));
        // The deadline's row holds another work item: not this sync's.
        let other = Stored {
            work_item_id: Some(Uuid::new_v4()),
            ..synced()
        };
        assert!(matches!(
            judge_created(work_item, &external_id, Some(&other)),
            Skip::NotOurs
        ));
    }

    /// The handler's fingerprint of webhook data must be the sync's of the API's answer:
    /// Plane CE serialises both from the same row. A delivery recorded from a real Plane CE.
    #[test]
    fn webhook_data_and_the_api_answer_fingerprint_alike() {
        let body =
            include_str!("../../../testdata/plane-ce/webhooks/1795615127062_0002_issue.body");
        let e = Envelope::parse(body.as_bytes()).unwrap();
        let data = e.work_item().unwrap();
        let raw: serde_json::Value = serde_json::from_str(body).unwrap();
        let item: plane_core::WorkItem = serde_json::from_value(raw["data"].clone()).unwrap();
        assert_eq!(
            Written::of("target_date", data),
            Written::Content(crate::sync::plane_fingerprint(&item))
        );
        assert!(matches!(plan(&e, "k"), Plan::Created { .. }));
    }

    /// Through the handler and the real SQLite delivery store: echo, drift and the race.
    #[tokio::test]
    async fn the_handler_records_echo_and_drift_against_the_sqlite_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("plane.db");
        let store = Arc::new(SqliteStore::open(&db, StoreConfig::default()).unwrap());
        let handler = BirHandler::new(store.clone()).unwrap();
        let deadlines = Arc::new(SqliteDeadlineStore::open(&db).unwrap());
        echo_and_drift(store, handler, deadlines).await;
    }

    /// The same through the PostgreSQL delivery store (skipped without a test database).
    #[tokio::test]
    async fn the_handler_records_echo_and_drift_against_the_postgres_store() {
        let Some(pg) = plane_postgres::testing::database("handler_echo").await else {
            return;
        };
        let store = Arc::new(
            PgStore::open(pg.db().clone(), StoreConfig::default())
                .await
                .unwrap(),
        );
        let handler = BirHandler::postgres(store.clone()).await.unwrap();
        let deadlines = Arc::new(crate::PgDeadlineStore::open(pg.db().clone()).await.unwrap());
        echo_and_drift(store, handler, deadlines).await;
    }

    async fn echo_and_drift(
        store: Arc<dyn plane_webhook::DeliveryStore>,
        handler: BirHandler,
        deadlines: Arc<dyn crate::store::DeadlineStore>,
    ) {
        use crate::store::DeadlineRecord;
        use plane_webhook::NewDelivery;

        let row = synced();
        deadlines
            .record(&DeadlineRecord {
                external_id: row.external_id.clone(),
                profile: "acme".into(),
                form: "1601-C".into(),
                period: "2026-01".into(),
                due_date: NaiveDate::from_ymd_opt(2026, 2, 10).unwrap(),
                payment_date: None,
                project_id: Uuid::new_v4(),
                work_item_id: row.work_item_id,
                pushed: row.pushed.clone(),
                fingerprint: row.fingerprint.clone(),
                status: DeadlineStatus::Pending,
                status_by: None,
                status_at: None,
            })
            .await
            .unwrap();
        // As the worker runs it: recorded, claimed, handled, then finished.
        let handle = |body: String| {
            let (store, handler) = (store.clone(), &handler);
            async move {
                let e = Envelope::parse(body.as_bytes()).unwrap();
                store
                    .record(NewDelivery::new(
                        Uuid::new_v4(),
                        &e.head(),
                        body.into_bytes(),
                    ))
                    .await
                    .unwrap();
                let item = store
                    .claim("t", 1, std::time::Duration::from_secs(60))
                    .await
                    .unwrap()
                    .remove(0);
                let handled = handler.handle(&item, &e).await.unwrap();
                store.complete(&item).await.unwrap();
                handled
            }
        };
        assert!(matches!(
            handle(edited_body("target_date", "2026-02-10", "high")).await,
            Handled::Echo { .. }
        ));
        assert!(matches!(
            handle(edited_body("target_date", "2026-02-17", "high")).await,
            Handled::Ignored { reason } if reason.contains("drift")
        ));
        assert!(matches!(
            handle(edited_body("priority", "2026-02-10", "high")).await,
            Handled::Echo { .. }
        ));
        // A create of the deadline's own work item, recorded first.
        assert!(matches!(
            handle(body("created", ours("unstarted"), serde_json::json!({}))).await,
            Handled::Echo { note } if !note.contains("before the sync recorded it")
        ));
        // A create of another work item for a deadline the store holds: not the sync's.
        let mut twin = ours("unstarted");
        twin["id"] = Uuid::new_v4().to_string().into();
        assert_eq!(
            handle(body("created", twin, serde_json::json!({}))).await,
            Handled::NotOurs
        );
        // A create of a deadline the store does not know yet (the race).
        let mut fresh = ours("unstarted");
        fresh["id"] = Uuid::new_v4().to_string().into();
        fresh["external_id"] = "bir:acme:1601-C:2026-02".into();
        assert!(matches!(
            handle(body("created", fresh, serde_json::json!({}))).await,
            Handled::Echo { note } if note.contains("before the sync recorded it")
        ));
        // An edit of a work item of ours the store does not know: not ours.
        let mut stranger = ours("unstarted");
        stranger["id"] = Uuid::new_v4().to_string().into();
        assert_eq!(
            handle(body(
                "updated",
                stranger,
                serde_json::json!({"field": "target_date"})
            ))
            .await,
            Handled::NotOurs
        );
        // Nothing of it changed a status.
        let all = deadlines.all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].status, DeadlineStatus::Pending);
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
