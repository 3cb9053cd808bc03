//! Cycles (sprints) of a project, and the work items in them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use super::work_items::WorkItem;
use crate::models::{DateOrTime, Timestamp, identified};
use crate::{Expandable, PlaneClient, UserLite};

/// A cycle. Plane refuses to create one unless the project has cycles enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    /// Plane's id of this cycle.
    pub id: Uuid,
    /// The cycle's name as shown in Plane.
    pub name: Option<String>,
    /// The cycle's description, as plain text.
    pub description: Option<String>,
    /// When the cycle starts.
    pub start_date: Option<DateOrTime>,
    /// When the cycle ends.
    pub end_date: Option<DateOrTime>,
    /// The cycle's owner.
    pub owned_by: Option<Expandable<UserLite>>,
    /// The project the cycle belongs to.
    pub project: Option<Uuid>,
    /// The system that created this cycle through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the cycle up by.
    pub external_id: Option<String>,
    /// When the cycle was archived; `None` while it is active.
    pub archived_at: Option<Timestamp>,
    /// When Plane created the cycle.
    pub created_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Cycle);

/// The body of a cycle create or update; unset fields are not sent.
///
/// ```
/// use plane_core::CycleFields;
/// let body = CycleFields::new("November filings");
/// assert_eq!(serde_json::to_value(&body).unwrap(), serde_json::json!({"name": "November filings"}));
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CycleFields {
    /// The name to set.
    pub name: Option<String>,
    /// The plain-text description to set.
    pub description: Option<String>,
    /// The start date to set.
    pub start_date: Option<DateOrTime>,
    /// The end date to set.
    pub end_date: Option<DateOrTime>,
    /// The system this record comes from (for example `plane-bir`), stored by Plane for later look-ups.
    pub external_source: Option<String>,
    /// The record's id in `external_source`, unique per project with it.
    pub external_id: Option<String>,
    /// Anything else Plane accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CycleFields {
    /// A new cycle's required field.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

/// Handler for a project's cycles. Get one with [`PlaneClient::cycles`].
#[derive(Debug, Clone)]
pub struct CyclesHandler<'a> {
    collection: Collection<'a>,
}

impl PlaneClient {
    /// The cycles of a project.
    pub fn cycles(&self, project: Uuid) -> CyclesHandler<'_> {
        CyclesHandler {
            collection: Collection::new(self, self.project_path(project, &["cycles"])),
        }
    }
}

impl<'a> CyclesHandler<'a> {
    super::collection_methods!(Cycle, CycleFields, "cycles");

    /// The work items in a cycle (`cycle-issues`: Plane kept the old name here).
    pub fn work_items(&self, cycle: Uuid) -> super::Membership<'a, WorkItem> {
        super::Membership::new(self.collection.clone(), cycle, "cycle-issues")
    }
}
