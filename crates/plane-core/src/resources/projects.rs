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
    pub id: Uuid,
    pub name: Option<String>,
    /// The short key of work item identifiers (`BIR` in `BIR-12`).
    pub identifier: Option<String>,
    pub description: Option<String>,
    /// Whether cycles are enabled (creating a cycle fails otherwise).
    pub cycle_view: Option<bool>,
    /// Whether modules are enabled.
    pub module_view: Option<bool>,
    pub timezone: Option<String>,
    pub default_state: Option<Uuid>,
    pub project_lead: Option<Expandable<UserLite>>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub archived_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
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
    pub name: Option<String>,
    pub identifier: Option<String>,
    pub description: Option<String>,
    pub cycle_view: Option<bool>,
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
