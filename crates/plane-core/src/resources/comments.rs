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
    /// Plane's id of this comment.
    pub id: Uuid,
    /// The comment as HTML.
    pub comment_html: Option<String>,
    /// The comment as plain text, HTML tags removed.
    pub comment_stripped: Option<String>,
    /// The work item (still called `issue` in payloads).
    pub issue: Option<Uuid>,
    /// The user who wrote the comment.
    pub actor: Option<Expandable<UserLite>>,
    /// Who sees it: `INTERNAL` (workspace members) or `EXTERNAL`.
    pub access: Option<String>,
    /// The system that created this comment through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the comment up by.
    pub external_id: Option<String>,
    /// When Plane created the comment.
    pub created_at: Option<Timestamp>,
    /// When the comment last changed in Plane.
    pub updated_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
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
    /// The comment to post, as HTML.
    pub comment_html: Option<String>,
    /// Who may see the comment: `INTERNAL` or `EXTERNAL`.
    pub access: Option<String>,
    /// The system this record comes from (for example `plane-bir`), stored by Plane for later look-ups.
    pub external_source: Option<String>,
    /// The record's id in `external_source`, unique per project with it.
    pub external_id: Option<String>,
    /// Anything else Plane accepts, sent as given.
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
