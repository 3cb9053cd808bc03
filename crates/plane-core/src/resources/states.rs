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
    /// Plane's id of this state.
    pub id: Uuid,
    /// The state's name as shown in Plane.
    pub name: Option<String>,
    /// Display colour, a CSS hex string such as `#60646C`.
    pub color: Option<String>,
    /// The state group (backlog, unstarted, started, completed, cancelled), which decides what the state means.
    pub group: Option<StateGroup>,
    /// Whether new work items start here.
    pub default: Option<bool>,
    /// Sort position among the project's states.
    pub sequence: Option<f64>,
    /// The state's description, as plain text.
    pub description: Option<String>,
    /// The system that created this state through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the state up by.
    pub external_id: Option<String>,
    /// The project the state belongs to.
    pub project: Option<Uuid>,
    /// When Plane created the state.
    pub created_at: Option<Timestamp>,
    /// When the state last changed in Plane.
    pub updated_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
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
    /// The name to set.
    pub name: Option<String>,
    /// The display colour to set, a CSS hex string.
    pub color: Option<String>,
    /// The state group to put the state in.
    pub group: Option<StateGroup>,
    /// The plain-text description to set.
    pub description: Option<String>,
    /// The system this record comes from (for example `plane-bir`), stored by Plane for later look-ups.
    pub external_source: Option<String>,
    /// The record's id in `external_source`, unique per project with it.
    pub external_id: Option<String>,
    /// Anything else Plane accepts, sent as given.
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
