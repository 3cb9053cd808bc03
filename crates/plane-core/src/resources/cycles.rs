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
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<String>,
    pub start_date: Option<DateOrTime>,
    pub end_date: Option<DateOrTime>,
    pub owned_by: Option<Expandable<UserLite>>,
    pub project: Option<Uuid>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub archived_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
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
    pub name: Option<String>,
    pub description: Option<String>,
    pub start_date: Option<DateOrTime>,
    pub end_date: Option<DateOrTime>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
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
