//! Projects of the workspace.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::models::{Timestamp, identified};
use crate::{Expandable, PlaneClient, UserLite};

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Plane's id of this project.
    pub id: Uuid,
    /// The project's name as shown in Plane.
    pub name: Option<String>,
    /// The short key of work item identifiers (`BIR` in `BIR-12`).
    pub identifier: Option<String>,
    /// The project's description, as plain text.
    pub description: Option<String>,
    /// Whether cycles are enabled (creating a cycle fails otherwise).
    pub cycle_view: Option<bool>,
    /// Whether modules are enabled.
    pub module_view: Option<bool>,
    /// The project's IANA time zone, such as `Asia/Manila`.
    pub timezone: Option<String>,
    /// The state new work items get when a create names none.
    pub default_state: Option<Uuid>,
    /// The project's lead.
    pub project_lead: Option<Expandable<UserLite>>,
    /// The system that created this project through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the project up by.
    pub external_id: Option<String>,
    /// When the project was archived; `None` while it is active.
    pub archived_at: Option<Timestamp>,
    /// When Plane created the project.
    pub created_at: Option<Timestamp>,
    /// When the project last changed in Plane.
    pub updated_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Project);

/// The body of a project create or update; unset fields are not sent.
///
/// ```
/// use plane_core::ProjectFields;
/// let body = ProjectFields::new("BIR filings", "BIR").cycles(true);
/// assert_eq!(
///     serde_json::to_value(&body).unwrap(),
///     serde_json::json!({"name": "BIR filings", "identifier": "BIR", "cycle_view": true}),
/// );
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProjectFields {
    /// The name to set.
    pub name: Option<String>,
    /// The work item prefix to set (`BIR` in `BIR-12`); Plane requires it on create.
    pub identifier: Option<String>,
    /// The plain-text description to set.
    pub description: Option<String>,
    /// Turns the project's cycles on or off (they must be on to create cycles).
    pub cycle_view: Option<bool>,
    /// Turns the project's modules on or off (they must be on to create modules).
    pub module_view: Option<bool>,
    /// Anything else Plane accepts.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ProjectFields {
    /// A new project's required fields.
    pub fn new(name: impl Into<String>, identifier: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            identifier: Some(identifier.into()),
            ..Self::default()
        }
    }

    /// Enable or disable cycles.
    pub fn cycles(mut self, enabled: bool) -> Self {
        self.cycle_view = Some(enabled);
        self
    }

    /// Enable or disable modules.
    pub fn modules(mut self, enabled: bool) -> Self {
        self.module_view = Some(enabled);
        self
    }
}

/// Handler for projects. Get one with [`PlaneClient::projects`].
#[derive(Debug, Clone)]
pub struct ProjectsHandler<'a> {
    collection: Collection<'a>,
}

impl PlaneClient {
    /// Projects of the configured workspace.
    pub fn projects(&self) -> ProjectsHandler<'_> {
        ProjectsHandler {
            collection: Collection::new(self, self.workspace_path(&["projects"])),
        }
    }
}

impl ProjectsHandler<'_> {
    super::collection_methods!(Project, ProjectFields, "projects");
}
