//! Workflow states of a project.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::models::{Timestamp, identified};
use crate::{PlaneClient, StateGroup};

/// A state (`Backlog`, `In Progress`, `Done`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub id: Uuid,
    pub name: Option<String>,
    pub color: Option<String>,
    pub group: Option<StateGroup>,
    /// Whether new work items start here.
    pub default: Option<bool>,
    pub sequence: Option<f64>,
    pub description: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub project: Option<Uuid>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(State);

/// The body of a state create or update; unset fields are not sent.
///
/// ```
/// use plane_core::{StateFields, StateGroup};
/// let body = StateFields::new("Filed", "#16a34a", StateGroup::Completed);
/// assert_eq!(serde_json::to_value(&body).unwrap()["group"], "completed");
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StateFields {
    pub name: Option<String>,
    pub color: Option<String>,
    pub group: Option<StateGroup>,
    pub description: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl StateFields {
    /// A new state's fields.
    pub fn new(name: impl Into<String>, color: impl Into<String>, group: StateGroup) -> Self {
        Self {
            name: Some(name.into()),
            color: Some(color.into()),
            group: Some(group),
            ..Self::default()
        }
    }
}

/// Handler for a project's states. Get one with [`PlaneClient::states`].
#[derive(Debug, Clone)]
pub struct StatesHandler<'a> {
    collection: Collection<'a>,
}

impl PlaneClient {
    /// The states of a project.
    pub fn states(&self, project: Uuid) -> StatesHandler<'_> {
        StatesHandler {
            collection: Collection::new(self, self.project_path(project, &["states"])),
        }
    }
}

impl StatesHandler<'_> {
    super::collection_methods!(State, StateFields, "states");
}
