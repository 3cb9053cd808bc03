//! Comments on a work item.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::Expandable;
use crate::UserLite;
use crate::models::{Timestamp, identified};

/// A comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: Uuid,
    pub comment_html: Option<String>,
    pub comment_stripped: Option<String>,
    /// The work item (still called `issue` in payloads).
    pub issue: Option<Uuid>,
    pub actor: Option<Expandable<UserLite>>,
    pub access: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Comment);

/// The body of a comment create or update; unset fields are not sent.
///
/// ```
/// use plane_core::CommentFields;
/// let body = CommentFields::new("<p>Filed on eFPS</p>").external("plane-bir", "c-1");
/// assert_eq!(serde_json::to_value(&body).unwrap()["comment_html"], "<p>Filed on eFPS</p>");
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CommentFields {
    pub comment_html: Option<String>,
    pub access: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CommentFields {
    /// A comment with this HTML.
    pub fn new(html: impl Into<String>) -> Self {
        Self {
            comment_html: Some(html.into()),
            ..Self::default()
        }
    }

    /// Keys the comment to a record of another system (unique per project).
    pub fn external(mut self, source: impl Into<String>, id: impl Into<String>) -> Self {
        self.external_source = Some(source.into());
        self.external_id = Some(id.into());
        self
    }
}

/// Handler for the comments of one work item; from
/// [`WorkItemsHandler::comments`](crate::WorkItemsHandler::comments).
#[derive(Debug, Clone)]
pub struct CommentsHandler<'a> {
    collection: Collection<'a>,
}

impl<'a> CommentsHandler<'a> {
    pub(crate) fn new(collection: Collection<'a>) -> Self {
        Self { collection }
    }

    super::collection_methods!(Comment, CommentFields, "comments");
}
