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
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parent: Option<Uuid>,
    #[serde(default)]
    pub sort_order: Option<f64>,
    #[serde(default)]
    pub external_source: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub project: Option<Uuid>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LabelFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
