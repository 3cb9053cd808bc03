//! Labels of a project.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::PlaneClient;
use crate::models::{Timestamp, identified};

/// A label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Plane's id of this label.
    pub id: Uuid,
    /// The label's name as shown in Plane.
    pub name: Option<String>,
    /// Display colour, a CSS hex string such as `#60646C`.
    pub color: Option<String>,
    /// The label's description, as plain text.
    pub description: Option<String>,
    /// The parent label, if any.
    pub parent: Option<Uuid>,
    /// Sort position among the project's labels.
    pub sort_order: Option<f64>,
    /// The system that created this label through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the label up by.
    pub external_id: Option<String>,
    /// The project the label belongs to.
    pub project: Option<Uuid>,
    /// When Plane created the label.
    pub created_at: Option<Timestamp>,
    /// When the label last changed in Plane.
    pub updated_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(Label);

/// The body of a label create or update; unset fields are not sent.
///
/// ```
/// use plane_core::LabelFields;
/// let body = LabelFields::new("BIR 1601-C").color("#2563eb");
/// assert_eq!(serde_json::to_value(&body).unwrap()["color"], "#2563eb");
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LabelFields {
    /// The name to set.
    pub name: Option<String>,
    /// The display colour to set, a CSS hex string.
    pub color: Option<String>,
    /// The plain-text description to set.
    pub description: Option<String>,
    /// The id of the parent to set.
    pub parent: Option<Uuid>,
    /// The system this record comes from (for example `plane-bir`), stored by Plane for later look-ups.
    pub external_source: Option<String>,
    /// The record's id in `external_source`, unique per project with it.
    pub external_id: Option<String>,
    /// Anything else Plane accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LabelFields {
    /// A new label's fields.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Sets the colour (`#rrggbb`).
    pub fn color(mut self, color: impl Into<String>) -> Self {
        self.color = Some(color.into());
        self
    }
}

/// Handler for a project's labels. Get one with [`PlaneClient::labels`].
#[derive(Debug, Clone)]
pub struct LabelsHandler<'a> {
    collection: Collection<'a>,
}

impl PlaneClient {
    /// The labels of a project.
    pub fn labels(&self, project: Uuid) -> LabelsHandler<'_> {
        LabelsHandler {
            collection: Collection::new(self, self.project_path(project, &["labels"])),
        }
    }
}

impl LabelsHandler<'_> {
    super::collection_methods!(Label, LabelFields, "labels");
}
