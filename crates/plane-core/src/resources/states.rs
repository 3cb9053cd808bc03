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
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub group: Option<StateGroup>,
    /// Whether new work items start here.
    #[serde(default)]
    pub default: Option<bool>,
    #[serde(default)]
    pub sequence: Option<f64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub external_source: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub project: Option<Uuid>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StateFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<StateGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
