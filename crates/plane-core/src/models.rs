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
    /// Plane's id of this user.
    pub id: Uuid,
    /// The user's first name (may be empty).
    #[serde(default)]
    pub first_name: String,
    /// The user's last name (may be empty).
    #[serde(default)]
    pub last_name: String,
    /// Absent for other users when Plane hides emails.
    pub email: Option<String>,
    /// The avatar as older Plane versions store it (a path or a URL).
    pub avatar: Option<String>,
    /// The avatar image's URL.
    pub avatar_url: Option<String>,
    /// The handle Plane shows in its UI.
    #[serde(default)]
    pub display_name: String,
    /// Fields this version of the client does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A state as expanded into a work item (`expand=state`, webhook payloads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateLite {
    /// Plane's id of this state.
    pub id: Uuid,
    /// The state's name as shown in Plane.
    #[serde(default)]
    pub name: String,
    /// Display colour, a CSS hex string such as `#60646C`.
    #[serde(default)]
    pub color: String,
    /// The state group (backlog, unstarted, started, completed, cancelled), which decides what the state means.
    pub group: Option<StateGroup>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A project as expanded into a work item (`expand=project`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectLite {
    /// Plane's id of this project.
    pub id: Uuid,
    /// The short prefix of work item numbers, `BIR` in `BIR-12`.
    #[serde(default)]
    pub identifier: String,
    /// The project's name as shown in Plane.
    #[serde(default)]
    pub name: String,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A parent work item as expanded (`expand=parent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItemLite {
    /// Plane's id of this work item.
    pub id: Uuid,
    /// The number in `BIR-12`.
    pub sequence_id: Option<u64>,
    /// The project the work item belongs to.
    pub project_id: Option<Uuid>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The group a state belongs to; `Other` keeps values newer Plane versions add.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateGroup {
    /// Not planned yet.
    Backlog,
    /// Planned, not started.
    Unstarted,
    /// In progress.
    Started,
    /// Done: a work item moved here is finished.
    Completed,
    /// Dropped without being done.
    Cancelled,
    /// Waiting to be sorted (intake).
    Triage,
    /// A group this client does not know yet, kept as sent.
    #[serde(untagged)]
    Other(String),
}

/// A work item's priority; `Other` keeps values newer Plane versions add.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// The most pressing.
    Urgent,
    /// Above normal.
    High,
    /// Normal.
    Medium,
    /// Below normal.
    Low,
    /// No priority set (Plane's default).
    None,
    /// A priority this client does not know yet, kept as sent.
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
