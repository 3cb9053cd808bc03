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
    /// Plane's id of this module.
    pub id: Uuid,
    /// The module's name as shown in Plane.
    pub name: Option<String>,
    /// The module's description, as plain text.
    pub description: Option<String>,
    /// The planned start date.
    pub start_date: Option<DateOrTime>,
    /// The due date (a calendar date, no time of day).
    pub target_date: Option<DateOrTime>,
    /// `backlog`, `planned`, `in-progress`, `paused`, `completed`, `cancelled`.
    pub status: Option<String>,
    /// The module's lead.
    pub lead: Option<Expandable<UserLite>>,
    /// The project the module belongs to.
    pub project: Option<Uuid>,
    /// The system that created this module through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the module up by.
    pub external_id: Option<String>,
    /// When the module was archived; `None` while it is active.
    pub archived_at: Option<Timestamp>,
    /// When Plane created the module.
    pub created_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
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
    /// The name to set.
    pub name: Option<String>,
    /// The plain-text description to set.
    pub description: Option<String>,
    /// The start date to set.
    pub start_date: Option<DateOrTime>,
    /// The due date to set.
    pub target_date: Option<DateOrTime>,
    /// The module status to set (`backlog`, `planned`, `in-progress`, `paused`, `completed`, `cancelled`).
    pub status: Option<String>,
    /// The system this record comes from (for example `plane-bir`), stored by Plane for later look-ups.
    pub external_source: Option<String>,
    /// The record's id in `external_source`, unique per project with it.
    pub external_id: Option<String>,
    /// Anything else Plane accepts, sent as given.
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
