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
    pub id: Uuid,
    pub name: Option<String>,
    pub color: Option<String>,
    pub description: Option<String>,
    pub parent: Option<Uuid>,
    pub sort_order: Option<f64>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub project: Option<Uuid>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
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
    pub name: Option<String>,
    pub color: Option<String>,
    pub description: Option<String>,
    pub parent: Option<Uuid>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
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
