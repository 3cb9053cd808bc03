//! Links attached to a work item.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::models::{Timestamp, identified};

/// A link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Plane's id of this link.
    pub id: Uuid,
    /// The address the link points to.
    pub url: Option<String>,
    /// The title shown for the link.
    pub title: Option<String>,
    /// The work item the link is attached to.
    pub issue: Option<Uuid>,
    /// What Plane fetched about the address (title, favicon), as sent.
    pub metadata: Option<Value>,
    /// When Plane created the link.
    pub created_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Link);

/// The body of a link create or update; unset fields are not sent.
///
/// ```
/// use plane_core::LinkFields;
/// let body = LinkFields::new("https://www.bir.gov.ph").title("BIR");
/// assert_eq!(serde_json::to_value(&body).unwrap()["title"], "BIR");
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkFields {
    /// The address to link to.
    pub url: Option<String>,
    /// The title to show for the link.
    pub title: Option<String>,
    /// Anything else Plane accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LinkFields {
    /// A link to `url` (Plane rejects the same URL twice on one work item).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }
}

/// Handler for the links of one work item; from
/// [`WorkItemsHandler::links`](crate::WorkItemsHandler::links).
#[derive(Debug, Clone)]
pub struct LinksHandler<'a> {
    collection: Collection<'a>,
}

impl<'a> LinksHandler<'a> {
    pub(crate) fn new(collection: Collection<'a>) -> Self {
        Self { collection }
    }

    super::collection_methods!(Link, LinkFields, "links");
}
