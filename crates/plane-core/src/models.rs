//! Types shared by several resources.
//!
//! Every model keeps the fields it does not name in `extra` (Plane adds fields
//! often), and every field that `fields=` can leave out is optional.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::Identified;

/// A Plane timestamp, rendered in the key owner's timezone with its offset.
pub type Timestamp = DateTime<FixedOffset>;

/// A field that is an id by default and an object with `expand=`.
///
/// ```
/// use plane_core::{Expandable, StateLite};
/// let id: Expandable<StateLite> = serde_json::from_str("\"4a7c45d4-4e38-47b8-bbb2-40efd5bd9295\"").unwrap();
/// let object: Expandable<StateLite> = serde_json::from_str(
///     r##"{"id":"4a7c45d4-4e38-47b8-bbb2-40efd5bd9295","name":"Backlog","color":"#60646C","group":"backlog"}"##,
/// ).unwrap();
/// assert_eq!(id.id(), object.id());
/// assert_eq!(object.object().unwrap().name, "Backlog");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    /// Not expanded: the id.
    Id(Uuid),
    /// Expanded.
    Object(T),
}

impl<T: Identified> Expandable<T> {
    /// The id, whichever form arrived.
    pub fn id(&self) -> Uuid {
        match self {
            Expandable::Id(id) => *id,
            Expandable::Object(object) => object.id(),
        }
    }
}

impl<T> Expandable<T> {
    /// The object, when expanded.
    pub fn object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(object) => Some(object),
        }
    }
}

/// A user as Plane shows it in lists and expansions (`/users/me/` too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLite {
    pub id: Uuid,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// Absent for other users when Plane hides emails.
    pub email: Option<String>,
    pub avatar: Option<String>,
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub display_name: String,
    /// Fields this version of the client does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A state as expanded into a work item (`expand=state`, webhook payloads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateLite {
    pub id: Uuid,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub color: String,
    pub group: Option<StateGroup>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A project as expanded into a work item (`expand=project`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectLite {
    pub id: Uuid,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A parent work item as expanded (`expand=parent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItemLite {
    pub id: Uuid,
    pub sequence_id: Option<u64>,
    pub project_id: Option<Uuid>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The group a state belongs to; `Other` keeps values newer Plane versions add.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateGroup {
    Backlog,
    Unstarted,
    Started,
    Completed,
    Cancelled,
    Triage,
    #[serde(untagged)]
    Other(String),
}

/// A work item's priority; `Other` keeps values newer Plane versions add.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Urgent,
    High,
    Medium,
    Low,
    None,
    #[serde(untagged)]
    Other(String),
}

macro_rules! identified {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::Identified for $t {
            fn id(&self) -> uuid::Uuid {
                self.id
            }
        })*
    };
}
pub(crate) use identified;

identified!(UserLite, StateLite, ProjectLite, WorkItemLite);

/// A date field that Plane versions send either as a date or as a datetime
/// (cycle start and end dates became datetimes in 2024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DateOrTime {
    /// `2026-11-30`
    Date(chrono::NaiveDate),
    /// `2026-11-30T00:00:00+08:00`
    Time(Timestamp),
}
