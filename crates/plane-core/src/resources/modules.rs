//! Modules of a project, and the work items in them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use super::work_items::WorkItem;
use crate::models::{DateOrTime, Timestamp, identified};
use crate::{Expandable, PlaneClient, UserLite};

/// A module. Plane refuses to create one unless the project has modules enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    pub id: Uuid,
    pub name: Option<String>,
    pub description: Option<String>,
    pub start_date: Option<DateOrTime>,
    pub target_date: Option<DateOrTime>,
    /// `backlog`, `planned`, `in-progress`, `paused`, `completed`, `cancelled`.
    pub status: Option<String>,
    pub lead: Option<Expandable<UserLite>>,
    pub project: Option<Uuid>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub archived_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Module);

/// The body of a module create or update; unset fields are not sent.
///
/// ```
/// use plane_core::ModuleFields;
/// let body = ModuleFields::new("Annual returns");
/// assert_eq!(serde_json::to_value(&body).unwrap(), serde_json::json!({"name": "Annual returns"}));
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModuleFields {
    pub name: Option<String>,
    pub description: Option<String>,
    pub start_date: Option<DateOrTime>,
    pub target_date: Option<DateOrTime>,
    pub status: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ModuleFields {
    /// A new module's required field.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

/// Handler for a project's modules. Get one with [`PlaneClient::modules`].
#[derive(Debug, Clone)]
pub struct ModulesHandler<'a> {
    collection: Collection<'a>,
}

impl PlaneClient {
    /// The modules of a project.
    pub fn modules(&self, project: Uuid) -> ModulesHandler<'_> {
        ModulesHandler {
            collection: Collection::new(self, self.project_path(project, &["modules"])),
        }
    }
}

impl<'a> ModulesHandler<'a> {
    super::collection_methods!(Module, ModuleFields, "modules");

    /// The work items in a module (`module-issues`: Plane kept the old name here).
    pub fn work_items(&self, module: Uuid) -> super::Membership<'a, WorkItem> {
        super::Membership::new(self.collection.clone(), module, "module-issues")
    }
}
