//! The activity log of a work item (read-only).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::models::{Timestamp, identified};
use crate::{Error, Expandable, ListParams, Page, UserLite};

/// One change to a work item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Plane's id of this activity entry.
    pub id: Uuid,
    /// `created`, `updated`, `deleted`.
    pub verb: Option<String>,
    /// The field that changed, when one did.
    pub field: Option<String>,
    /// The value before the change, as Plane prints it.
    pub old_value: Option<String>,
    /// The value after the change, as Plane prints it.
    pub new_value: Option<String>,
    /// The user who made the change.
    pub actor: Option<Expandable<UserLite>>,
    /// The work item that changed.
    pub issue: Option<Uuid>,
    /// When Plane created the activity entry.
    pub created_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Activity);

/// Handler for the activity of one work item; from
/// [`WorkItemsHandler::activities`](crate::WorkItemsHandler::activities).
#[derive(Debug, Clone)]
pub struct ActivitiesHandler<'a> {
    collection: Collection<'a>,
}

impl<'a> ActivitiesHandler<'a> {
    pub(crate) fn new(collection: Collection<'a>) -> Self {
        Self { collection }
    }

    /// One page of activity.
    pub async fn list(&self, params: &ListParams) -> Result<Page<Activity>, Error> {
        self.collection.page(params).await
    }

    /// All activity, following the cursors.
    pub fn stream(&self, params: ListParams) -> crate::ItemStream<Activity> {
        self.collection.walk(params)
    }

    /// One activity row.
    pub async fn get(&self, id: Uuid) -> Result<Activity, Error> {
        self.collection.get(id, &ListParams::new()).await
    }
}
