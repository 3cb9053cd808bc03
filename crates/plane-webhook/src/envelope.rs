//! The webhook envelope and typed payloads.
//!
//! Plane CE sends "v1" envelopes: `event` (`issue`, `project`, `cycle`, `module`,
//! `issue_comment`), `action` (`created`/`updated`/`deleted`, or `create`/
//! `update`/`delete` before May 2024), `webhook_id`, `workspace_id`, `data`,
//! `activity`. Plane Cloud's "v2" adds `version`, `event_id` (stable across
//! retries), `delivery_id` and dot-notation events (`workitem.updated`). Both
//! parse into one [`Envelope`]; unknown events pass through as raw JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

use crate::Error;

/// What happened to the object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The object was created (`create` or `created`).
    Created,
    /// The object changed; v1 sends one delivery per changed field.
    Updated,
    /// The object was deleted; the payload may carry only its id.
    Deleted,
    /// The object was archived (Plane Cloud).
    Archived,
    /// A verb this crate does not know yet, kept as sent.
    Other(String),
}

impl Action {
    /// Normalises old and new spellings (`create` and `created` are the same).
    pub fn parse(verb: &str) -> Self {
        match verb.trim().to_ascii_lowercase().as_str() {
            "create" | "created" => Action::Created,
            "update" | "updated" => Action::Updated,
            "delete" | "deleted" => Action::Deleted,
            "archive" | "archived" => Action::Archived,
            // Cloud has been seen sending "WebhookScope.ScopeChoices.WORK_ITEM_UPDATED".
            other => match other.rsplit_once('_') {
                Some((_, last))
                    if !last.is_empty() && !matches!(Self::parse(last), Action::Other(_)) =>
                {
                    Self::parse(last)
                }
                _ => Action::Other(other.to_owned()),
            },
        }
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
            Action::Archived => "archived",
            Action::Other(other) => other,
        }
    }
}

/// The kind of object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `issue` (v1) or `workitem` (v2).
    WorkItem,
    /// `project`: a project was created, changed or deleted.
    Project,
    /// `cycle`: a cycle (Plane's sprint) changed.
    Cycle,
    /// `module`: a module (a group of work items) changed.
    Module,
    /// `issue_comment` (v1) or `workitem.comment` (v2).
    Comment,
    /// Anything else (`workitem.link`, `page`...), kept as sent.
    Other(String),
}

impl EventKind {
    fn parse(family: &str) -> Self {
        match family {
            "issue" | "workitem" | "work_item" => EventKind::WorkItem,
            "project" => EventKind::Project,
            "cycle" => EventKind::Cycle,
            "module" => EventKind::Module,
            "issue_comment" | "workitem.comment" | "work_item_comment" => EventKind::Comment,
            other => EventKind::Other(other.to_owned()),
        }
    }
}

/// Who did it and what changed (v1 `activity`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Activity {
    /// The changed field on updates (one delivery per field); null on create.
    pub field: Option<String>,
    /// The field's value after the change, as Plane sent it (often a string).
    pub new_value: Option<Value>,
    /// The field's value before the change.
    pub old_value: Option<Value>,
    /// The user who made the change.
    pub actor: Option<Actor>,
    /// For relation fields (state, labels...), the id the field pointed to before.
    pub old_identifier: Option<Value>,
    /// For relation fields, the id the field points to now.
    pub new_identifier: Option<Value>,
    /// Members this crate does not name, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The user behind an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// The user's Plane id.
    pub id: Uuid,
    /// The handle Plane shows for the user.
    pub display_name: Option<String>,
    /// The user's email, when Plane includes it.
    pub email: Option<String>,
    /// Members this crate does not name, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A parsed delivery body.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The event as sent (`issue`, `workitem.updated`...).
    pub event: String,
    /// The kind of object, normalised across v1 and v2 spellings.
    pub kind: EventKind,
    /// What happened to the object, normalised (`create` and `created` are one).
    pub action: Action,
    /// The webhook (in the workspace's settings) that sent this delivery.
    pub webhook_id: Option<Uuid>,
    /// The workspace the object lives in.
    pub workspace_id: Option<Uuid>,
    /// v2 only: stable across retries of the same event.
    pub event_id: Option<String>,
    /// v2 only: equals the `X-Plane-Delivery` header.
    pub delivery_id: Option<String>,
    /// `"v2"` for Cloud's newer webhooks, `None` for v1.
    pub version: Option<String>,
    /// Who changed what (v1); `None` when the body has no `activity`.
    pub activity: Option<Activity>,
    /// v2 only: old values of changed fields.
    pub previous_attributes: Option<Value>,
    /// The object, typed by kind.
    pub payload: Payload,
}

/// The `data` object, typed where the kind is known.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// A work item (`issue`) event's object.
    WorkItem(Box<WorkItemData>),
    /// A project event's object.
    Project(Box<ProjectData>),
    /// A cycle event's object.
    Cycle(Box<CycleData>),
    /// A module event's object.
    Module(Box<ModuleData>),
    /// A comment event's object.
    Comment(Box<CommentData>),
    /// An event kind this crate does not type, or a delete with only an id.
    Raw(Value),
}

impl Payload {
    /// `updated_at` of the object as sent, when it is a string.
    pub fn updated_at(&self) -> Option<&str> {
        match self {
            Payload::WorkItem(d) => d.updated_at.as_deref(),
            Payload::Project(d) => d.updated_at.as_deref(),
            Payload::Cycle(d) => d.updated_at.as_deref(),
            Payload::Module(d) => d.updated_at.as_deref(),
            Payload::Comment(d) => d.updated_at.as_deref(),
            Payload::Raw(v) => v.get("updated_at")?.as_str(),
        }
    }

    /// The id of the object, when there is one.
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Payload::WorkItem(d) => Some(d.id),
            Payload::Project(d) => Some(d.id),
            Payload::Cycle(d) => Some(d.id),
            Payload::Module(d) => Some(d.id),
            Payload::Comment(d) => Some(d.id),
            Payload::Raw(v) => v.get("id")?.as_str()?.parse().ok(),
        }
    }
}

/// A state as expanded into work item payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRef {
    /// The state's id.
    pub id: Uuid,
    /// The state's name, such as `Done`.
    pub name: Option<String>,
    /// The state group (`backlog`, `unstarted`, `started`, `completed`,
    /// `cancelled`): what the state means, whatever it is called.
    pub group: Option<String>,
    /// Members this crate does not name, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A field that is an id or an expanded object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdOr<T> {
    /// Only the id was sent.
    Id(Uuid),
    /// The object was expanded in place.
    Object(T),
}

/// A label as expanded into work item payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRef {
    /// The label's id.
    pub id: Uuid,
    /// Its name, such as `form:1601-C`.
    pub name: Option<String>,
    /// Its colour (`#3366FF`).
    pub color: Option<String>,
    /// Members this crate does not name, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WorkItemData {
    /// The names of the expanded labels (bare ids have none).
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.labels
            .iter()
            .flatten()
            .filter_map(|label| match label {
                IdOr::Object(label) => label.name.as_deref(),
                IdOr::Id(_) => None,
            })
    }

    /// The state group (`completed`, `cancelled`...) when the state is expanded.
    pub fn state_group(&self) -> Option<&str> {
        match self.state.as_ref()? {
            IdOr::Object(state) => state.group.as_deref(),
            IdOr::Id(_) => None,
        }
    }
}

/// An object of `data`: the members this crate types, plus [`Extra`]. Besides
/// the serde impls (for any format), `from_object` reads it from JSON text
/// without decoding the members it does not type: `Envelope::parse` uses it.
/// A field's name is its member's name (`Extra` leaves out the typed ones by
/// it), so no field may be renamed.
macro_rules! data {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            /// The object's id.
            pub id: Uuid,
            $($(#[$field_doc])* pub $field: $ty,)*
            /// When it last changed (an ISO 8601 timestamp), as sent.
            pub updated_at: Option<String>,
            /// Members this crate does not name, kept as sent.
            #[serde(flatten)]
            pub extra: Extra,
        }

        impl FromObject for $name {
            fn from_object(text: &str) -> serde_json::Result<Self> {
                // Unknown members are skipped here, not built.
                #[derive(Deserialize)]
                struct Typed {
                    id: Uuid,
                    $($field: $ty,)*
                    updated_at: Option<String>,
                }
                let typed: Typed = serde_json::from_str(text)?;
                Ok(Self {
                    id: typed.id,
                    $($field: typed.$field,)*
                    updated_at: typed.updated_at,
                    extra: Extra::lazy(text, &["id", $(stringify!($field),)* "updated_at"]),
                })
            }

            fn typed_none(&self) -> bool {
                $(Option::is_none(&self.$field) &&)* self.updated_at.is_none()
            }
        }
    };
}

/// Read from the JSON text of an object, leaving [`Extra`] to be decoded on use.
trait FromObject: Sized {
    fn from_object(text: &str) -> serde_json::Result<Self>;
    /// No typed member but the id was sent (a delete, or an object of unknown members).
    fn typed_none(&self) -> bool;
}

/// The members of an object this crate does not name, kept as sent. It reads
/// as a [`Map`] (it derefs to one).
///
/// From [`Envelope::parse`] it holds the object's text and is decoded on first
/// use: a work item sends some 30 members, and building the ones no handler
/// reads took about 40% of the parse.
///
/// ```
/// use plane_webhook::{Envelope, Payload};
/// let body = br#"{"event": "issue", "action": "updated", "data": {
///   "id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "File 1601-C", "is_draft": false}}"#;
/// let envelope = Envelope::parse(body).unwrap();
/// let Payload::WorkItem(item) = &envelope.payload else { panic!() };
/// assert_eq!(item.extra["is_draft"], false);
/// assert!(!item.extra.contains_key("name"), "typed members are not repeated");
/// // It iterates, changes and converts as the map does.
/// let mut extra = item.extra.clone();
/// extra.insert("is_draft".into(), true.into());
/// assert_eq!((&extra).into_iter().count(), 1);
/// let map: serde_json::Map<String, serde_json::Value> = extra.into();
/// assert_eq!(map["is_draft"], true);
/// ```
#[derive(Clone, Default)]
pub struct Extra {
    /// The whole object's text, and the members typed beside it.
    source: Option<(Arc<str>, &'static [&'static str])>,
    decoded: OnceLock<Map<String, Value>>,
}

impl Extra {
    fn lazy(object: &str, typed: &'static [&'static str]) -> Self {
        Self {
            source: Some((object.into(), typed)),
            decoded: OnceLock::new(),
        }
    }
}

impl std::ops::DerefMut for Extra {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        // Decoded first, then owned: the text no longer describes it.
        let _ = &**self;
        self.source = None;
        self.decoded.get_mut().expect("decoded just above")
    }
}

impl<'a> IntoIterator for &'a Extra {
    type Item = (&'a String, &'a Value);
    type IntoIter = serde_json::map::Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<Extra> for Map<String, Value> {
    fn from(extra: Extra) -> Self {
        let _ = &*extra;
        extra.decoded.into_inner().unwrap_or_default()
    }
}

impl From<Map<String, Value>> for Extra {
    fn from(map: Map<String, Value>) -> Self {
        Self {
            source: None,
            decoded: map.into(),
        }
    }
}

impl std::ops::Deref for Extra {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        self.decoded.get_or_init(|| {
            let Some((object, typed)) = &self.source else {
                return Map::new();
            };
            // The text came out of a parsed body, so it parses.
            let mut map: Map<String, Value> = serde_json::from_str(object).unwrap_or_default();
            map.retain(|name, _| !typed.contains(&name.as_str()));
            map
        })
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Extra {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(Self::from)
    }
}

data!(
    /// `data` of a work item (`issue`) event. `data` is a snapshot taken when
    /// the delivery was built: order events by `updated_at`.
    WorkItemData {
        /// Its title.
        name: Option<String>,
        /// The number in `BIR-12`.
        sequence_id: Option<u64>,
        /// Its state: an id, or the state with its group when Plane expands it.
        state: Option<IdOr<StateRef>>,
        /// `urgent`, `high`, `medium`, `low` or `none`.
        priority: Option<String>,
        /// The project it belongs to.
        project: Option<Uuid>,
        /// The due date (`YYYY-MM-DD`), as sent.
        target_date: Option<String>,
        /// When it was completed (an ISO 8601 timestamp), as sent.
        completed_at: Option<String>,
        /// The system that created it through the API, such as `plane-bir`.
        external_source: Option<String>,
        /// Its id in `external_source`: how a domain crate finds its own record.
        external_id: Option<String>,
        /// The description as Plane stores it (`<p>...</p>`).
        description_html: Option<String>,
        /// Its labels: expanded (`{id, name, color}`) in Plane CE's deliveries,
        /// or bare ids.
        labels: Option<Vec<IdOr<LabelRef>>>,
        /// Who changed it last: for API writes, the owner of the API key.
        updated_by: Option<Uuid>
    }
);

data!(
    /// `data` of a project event.
    ProjectData {
        /// The project's name.
        name: Option<String>,
        /// The prefix of its work item numbers (`BIR` in `BIR-12`).
        identifier: Option<String>
    }
);
data!(
    /// `data` of a cycle event.
    CycleData {
        /// The cycle's name.
        name: Option<String>,
        /// The project it belongs to.
        project: Option<Uuid>
    }
);
data!(
    /// `data` of a module event.
    ModuleData {
        /// The module's name.
        name: Option<String>,
        /// The project it belongs to.
        project: Option<Uuid>,
        /// `backlog`, `planned`, `in-progress`, `paused`, `completed` or `cancelled`.
        status: Option<String>
    }
);
data!(
    /// `data` of a comment (`issue_comment`) event.
    CommentData {
        /// The comment as HTML.
        comment_html: Option<String>,
        /// The work item it is on.
        issue: Option<Uuid>,
        /// The project of that work item.
        project: Option<Uuid>
    }
);

impl Envelope {
    /// The work item, for a work item (`issue`) event.
    pub fn work_item(&self) -> Option<&WorkItemData> {
        match &self.payload {
            Payload::WorkItem(item) => Some(item),
            _ => None,
        }
    }

    /// Parses a (verified) body.
    ///
    /// ```
    /// use plane_webhook::{Action, Envelope, EventKind, Payload};
    /// let body = br#"{"event": "issue", "action": "update", "webhook_id": null,
    ///   "workspace_id": null, "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979",
    ///   "state": {"id": "4a7c45d4-4e38-47b8-bbb2-40efd5bd9295", "name": "Done", "group": "completed"}},
    ///   "activity": {"field": "state"}}"#;
    /// let envelope = Envelope::parse(body).unwrap();
    /// assert_eq!((envelope.kind.clone(), envelope.action.clone()), (EventKind::WorkItem, Action::Updated));
    /// let Payload::WorkItem(item) = &envelope.payload else { panic!() };
    /// assert_eq!(item.state_group(), Some("completed"));
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        not_blank(body)?;
        let raw: RawEnvelope<'_> = from_body(body)?;
        let head = EventHead::from_parts(
            raw.event,
            raw.action.as_ref(),
            raw.entity_type.as_ref(),
            raw.event_id.as_ref(),
        )?;
        // Only `event` and the verb are required. Everything else is read
        // leniently: the delivery is signed and genuine, and refusing it would lose
        // it for good (Plane CE never re-sends an answered delivery). `data` and
        // `activity` are typed straight from their bytes in the body.
        let payload = match raw.data {
            Some(data) => Payload::from_data(&head.kind, data),
            None => Payload::Raw(Value::Null),
        };
        let activity = raw.activity.and_then(|raw| {
            match serde_json::from_str::<Activity>(raw.get()) {
                Ok(activity) => Some(activity),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook `activity` did not decode; kept the event without it");
                    None
                }
            }
        });
        Ok(Self {
            event: head.event,
            kind: head.kind,
            action: head.action,
            webhook_id: raw.webhook_id.as_ref().and_then(uuid_of),
            workspace_id: raw.workspace_id.as_ref().and_then(uuid_of),
            event_id: head.event_id,
            delivery_id: raw.delivery_id.as_ref().and_then(stable_text),
            version: raw.version.as_ref().and_then(stable_text),
            activity,
            previous_attributes: raw.previous_attributes,
            payload,
        })
    }

    /// The parts of this envelope the receiver stores a delivery by.
    pub fn head(&self) -> EventHead {
        EventHead {
            event: self.event.clone(),
            kind: self.kind.clone(),
            action: self.action.clone(),
            event_id: self.event_id.clone(),
            updated_at: self.payload.updated_at().map(str::to_owned),
        }
    }
}

/// What the receiver needs of a body before it stores the delivery: the event,
/// what happened, and Plane Cloud's stable event id. [`EventHead::parse`]
/// accepts and refuses exactly the bodies [`Envelope::parse`] does, reading
/// the body once without building its `data` or `activity`: those are typed
/// by the worker, from the stored body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHead {
    /// The event as sent (`issue`, `workitem.updated`...).
    pub event: String,
    /// The kind of object, normalised across v1 and v2 spellings.
    pub kind: EventKind,
    /// What happened to the object, normalised.
    pub action: Action,
    /// v2 only: stable across retries of the same event.
    pub event_id: Option<String>,
    /// `data.updated_at` as sent, when it is a string: when the object last
    /// changed. The store orders its dedupe index by it.
    pub updated_at: Option<String>,
}

impl EventHead {
    /// Reads the head of a (verified) body.
    ///
    /// ```
    /// use plane_webhook::{Action, EventHead, EventKind};
    /// let head = EventHead::parse(br#"{"event": "issue", "action": "updated", "data": {"id": "x"}}"#).unwrap();
    /// assert_eq!((head.kind, head.action, head.event_id), (EventKind::WorkItem, Action::Updated, None));
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        not_blank(body)?;
        let raw: RawHead = from_body(body)?;
        let mut head = Self::from_parts(
            raw.event,
            raw.action.as_ref(),
            raw.entity_type.as_ref(),
            raw.event_id.as_ref(),
        )?;
        head.updated_at = raw.data.and_then(|data| data.0);
        Ok(head)
    }

    fn from_parts(
        event: String,
        action: Option<&Value>,
        entity_type: Option<&Value>,
        event_id: Option<&Value>,
    ) -> Result<Self, Error> {
        let action = action.and_then(Value::as_str);
        // v2 spells "workitem.updated"; v1 has the verb in `action`.
        let (family, verb) = match (action, event.rsplit_once('.')) {
            (Some(action), _) => (event.as_str(), action),
            (None, Some((family, verb))) => (family, verb),
            (None, None) => {
                return Err(Error::BadEnvelope {
                    message: format!("event {event:?} has no action"),
                });
            }
        };
        let kind = match entity_type.and_then(Value::as_str) {
            Some(entity) => EventKind::parse(entity),
            None => EventKind::parse(family),
        };
        let action = Action::parse(verb);
        Ok(Self {
            kind,
            action,
            event_id: event_id.and_then(stable_text),
            event,
            updated_at: None,
        })
    }
}

fn not_blank(body: &[u8]) -> Result<(), Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadEnvelope {
            message: "the body is empty".into(),
        });
    }
    Ok(())
}

fn from_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadEnvelope {
        message: format!("not a Plane webhook envelope: {e}"),
    })
}

fn uuid_of(v: &Value) -> Option<Uuid> {
    v.as_str()?.parse().ok()
}

/// A string or number that identifies something; Plane's serialisers have been
/// seen to send `"None"` for a missing value, which must not become an id that
/// every event shares.
fn stable_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let placeholder =
        ["", "none", "null", "undefined", "nil"].contains(&text.to_ascii_lowercase().as_str());
    (!placeholder).then_some(text)
}

impl Payload {
    /// Types `data` by kind; what does not fit the type stays raw JSON.
    fn from_data(kind: &EventKind, data: &RawValue) -> Self {
        fn typed<T: FromObject>(
            data: &RawValue,
            wrap: impl FnOnce(Box<T>) -> Payload,
            what: &str,
        ) -> Payload {
            // Deletes carry only `{"id": ...}` (v1) or `{}` (v2): keep them raw.
            // Members are counted only when the typed read cannot tell. A struct
            // also reads from an array, which is no object: raw too.
            if !data.get().starts_with('{') {
                return Payload::Raw(raw_json(data));
            }
            match T::from_object(data.get()) {
                Ok(typed) if !typed.typed_none() || members(data) > 1 => wrap(Box::new(typed)),
                Ok(_) => Payload::Raw(raw_json(data)),
                Err(_) if members(data) <= 1 => Payload::Raw(raw_json(data)),
                Err(e) => {
                    tracing::warn!(error = %e, "`data` of a {what} event does not fit its type; kept as raw JSON");
                    Payload::Raw(raw_json(data))
                }
            }
        }
        match kind {
            EventKind::WorkItem => typed(data, Payload::WorkItem, "work item"),
            EventKind::Project => typed(data, Payload::Project, "project"),
            EventKind::Cycle => typed(data, Payload::Cycle, "cycle"),
            EventKind::Module => typed(data, Payload::Module, "module"),
            EventKind::Comment => typed(data, Payload::Comment, "comment"),
            EventKind::Other(_) => Payload::Raw(raw_json(data)),
        }
    }
}

fn raw_json(data: &RawValue) -> Value {
    // It came out of a parsed body, so it parses.
    serde_json::from_str(data.get()).unwrap_or(Value::Null)
}

/// How many members a JSON object has (0 for anything else), building nothing.
fn members(data: &RawValue) -> usize {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {
                n += 1;
            }
            Ok(n)
        }
    }
    use serde::Deserializer as _;
    serde_json::Deserializer::from_str(data.get())
        .deserialize_map(Count)
        .unwrap_or(0)
}

/// The members [`EventHead`] reads; serde skips the rest without building it.
#[derive(Deserialize)]
struct RawHead {
    event: String,
    action: Option<Value>,
    event_id: Option<Value>,
    entity_type: Option<Value>,
    data: Option<DataHead>,
}

/// `data.updated_at` when `data` is an object and it is a string; any other
/// `data` is accepted and skipped, as [`Envelope::parse`] keeps it raw.
struct DataHead(Option<String>);

impl<'de> Deserialize<'de> for DataHead {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct Find;
        impl<'de> Visitor<'de> for Find {
            type Value = DataHead;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataHead, A::Error> {
                let mut updated_at = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    // The last one wins, as in a parsed object.
                    if key == "updated_at" {
                        updated_at = map.next_value::<Value>()?.as_str().map(str::to_owned);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(DataHead(updated_at))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DataHead, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DataHead(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<DataHead, E> {
                Ok(DataHead(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<DataHead, E> {
                Ok(DataHead(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<DataHead, E> {
                Ok(DataHead(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<DataHead, E> {
                Ok(DataHead(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<DataHead, E> {
                Ok(DataHead(None))
            }
            fn visit_unit<E>(self) -> Result<DataHead, E> {
                Ok(DataHead(None))
            }
        }
        deserializer.deserialize_any(Find)
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    event: String,
    action: Option<Value>,
    webhook_id: Option<Value>,
    workspace_id: Option<Value>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    activity: Option<&'a RawValue>,
    version: Option<Value>,
    event_id: Option<Value>,
    delivery_id: Option<Value>,
    entity_type: Option<Value>,
    previous_attributes: Option<Value>,
}
