//! In-memory data of the fake workspace, kept as JSON objects in Plane's field order.
//!
//! Objects are stored in the exact shape the API returns (so captured objects can be loaded
//! verbatim); a few derived values (member and cycle counts) are refreshed when rendered.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub(crate) type Obj = Map<String, Value>;

/// The five states Plane creates for every new project: (name, color, group, default).
const DEFAULT_STATES: [(&str, &str, &str, bool); 5] = [
    ("Backlog", "#60646C", "backlog", true),
    ("Todo", "#60646C", "unstarted", false),
    ("In Progress", "#F59E0B", "started", false),
    ("Done", "#46A758", "completed", false),
    ("Cancelled", "#9AA4BC", "cancelled", false),
];

pub(crate) const PRIORITIES: [&str; 5] = ["urgent", "high", "medium", "low", "none"];

#[derive(Debug)]
pub(crate) struct Item {
    pub obj: Obj,
    key: (i64, u64),
}

#[derive(Debug, Default)]
pub(crate) struct Project {
    pub id: Uuid,
    pub obj: Obj,
    pub states: Vec<Obj>,
    pub labels: Vec<Obj>,
    pub items: HashMap<Uuid, Item>,
    /// Work items by (created_at micros, insertion counter); iterated backwards for
    /// Plane's default `-created_at` order.
    pub order: BTreeMap<(i64, u64), Uuid>,
    /// Highest sequence_id ever used (deleted items keep theirs, like Plane's IssueSequence).
    pub max_seq: i64,
    /// Largest work-item sort_order per state id, so creating an item is O(1) (Plane
    /// places a new item 10000 after the largest in its state).
    max_sort: HashMap<String, f64>,
    /// Ids of the listable items (no drafts, not archived), newest first; rebuilt lazily
    /// after a change so walking a large project costs O(page) per request.
    visible: std::cell::OnceCell<Vec<Uuid>>,
    pub comments: Vec<Obj>,
    pub links: Vec<Obj>,
    pub activities: Vec<Obj>,
    pub cycles: Vec<Obj>,
    pub modules: Vec<Obj>,
    pub cycle_issues: Vec<Obj>,
    pub module_issues: Vec<Obj>,
}

#[derive(Debug)]
pub(crate) struct Store {
    pub user: Obj,
    /// Workspace members besides `user` (people acting in the web app, owners of other keys).
    pub members: Vec<Obj>,
    /// The user a write is made by while it runs; `None` is `user` (the primary key's owner).
    pub acting: Option<String>,
    /// API keys owned by a member other than `user`.
    pub key_owners: HashMap<String, String>,
    pub workspace_id: Uuid,
    pub workspace_slug: String,
    pub projects: Vec<Project>,
    pub default_project: Uuid,
    last_micros: i64,
    counter: u64,
}

pub(crate) fn id_of(obj: &Obj) -> Option<Uuid> {
    obj.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

pub(crate) fn str_of<'a>(obj: &'a Obj, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn parse_ts_micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp_micros())
}

pub(crate) fn format_ts(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Text of an HTML fragment, for `description_stripped`.
pub(crate) fn strip_html(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
}

impl Project {
    fn note_sort_order(&mut self, item: &Obj) {
        let state = str_of(item, "state").unwrap_or("").to_owned();
        if let Some(so) = item.get("sort_order").and_then(Value::as_f64) {
            let m = self.max_sort.entry(state).or_insert(so);
            *m = m.max(so);
        }
    }

    pub(crate) fn state(&self, id: &str) -> Option<&Obj> {
        self.states.iter().find(|s| str_of(s, "id") == Some(id))
    }

    pub(crate) fn default_state_id(&self) -> Option<String> {
        let pick = self
            .states
            .iter()
            .find(|s| s.get("default") == Some(&Value::Bool(true)))
            .or_else(|| self.states.first());
        pick.and_then(|s| str_of(s, "id")).map(str::to_owned)
    }

    pub(crate) fn label(&self, id: &str) -> Option<&Obj> {
        self.labels.iter().find(|s| str_of(s, "id") == Some(id))
    }

    pub(crate) fn identifier(&self) -> &str {
        str_of(&self.obj, "identifier").unwrap_or("")
    }

    pub(crate) fn item(&self, id: &str) -> Option<&Obj> {
        let id = Uuid::parse_str(id).ok()?;
        self.items.get(&id).map(|i| &i.obj)
    }

    pub(crate) fn item_mut(&mut self, id: Uuid) -> Option<&mut Obj> {
        self.visible.take();
        self.items.get_mut(&id).map(|i| &mut i.obj)
    }

    /// What `Issue.issue_objects` lists: no drafts, nothing archived, newest first.
    pub(crate) fn visible_newest_first(&self) -> &[Uuid] {
        self.visible.get_or_init(|| {
            self.order
                .values()
                .rev()
                .filter(|id| self.items.get(id).is_some_and(|i| is_listed(&i.obj)))
                .copied()
                .collect()
        })
    }

    pub(crate) fn remove_item(&mut self, id: Uuid) -> Option<Obj> {
        self.visible.take();
        let item = self.items.remove(&id)?;
        self.order.remove(&item.key);
        let sid = id.to_string();
        let not_this = |o: &Obj| str_of(o, "issue") != Some(sid.as_str());
        self.comments.retain(not_this);
        self.links.retain(not_this);
        self.activities.retain(not_this);
        self.cycle_issues.retain(not_this);
        self.module_issues.retain(not_this);
        Some(item.obj)
    }

    pub(crate) fn state_group_of_item(&self, item: &Obj) -> Option<String> {
        let sid = str_of(item, "state")?;
        self.state(sid)
            .and_then(|s| str_of(s, "group"))
            .map(str::to_owned)
    }
}

impl Store {
    pub(crate) fn new(workspace_slug: String) -> Store {
        let user_id = Uuid::new_v4();
        let mut user = Obj::new();
        user.insert("id".into(), json!(user_id.to_string()));
        user.insert("first_name".into(), json!("Fake"));
        user.insert("last_name".into(), json!("Plane"));
        user.insert("email".into(), json!("fake@plane-fake.local"));
        user.insert("avatar".into(), json!(""));
        user.insert("avatar_url".into(), Value::Null);
        user.insert("display_name".into(), json!("fake"));
        Store {
            user,
            members: Vec::new(),
            acting: None,
            key_owners: HashMap::new(),
            workspace_id: Uuid::new_v4(),
            workspace_slug,
            projects: Vec::new(),
            default_project: Uuid::nil(),
            last_micros: 0,
            counter: 0,
        }
    }

    /// A timestamp strictly after every one handed out before, so generated objects
    /// never tie on `created_at`.
    pub(crate) fn now(&mut self) -> (i64, String) {
        let now = Utc::now().timestamp_micros();
        let micros = now.max(self.last_micros + 1);
        self.last_micros = micros;
        (micros, format_ts(micros))
    }

    pub(crate) fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The user making the current request or write (the primary user unless another acts).
    pub(crate) fn actor(&self) -> &Obj {
        self.acting
            .as_deref()
            .and_then(|id| self.member(id))
            .unwrap_or(&self.user)
    }

    /// Any workspace member by id, the primary user included.
    pub(crate) fn member(&self, id: &str) -> Option<&Obj> {
        std::iter::once(&self.user)
            .chain(&self.members)
            .find(|u| str_of(u, "id") == Some(id))
    }

    /// Every workspace member, the primary user first.
    pub(crate) fn all_members(&self) -> impl Iterator<Item = &Obj> {
        std::iter::once(&self.user).chain(&self.members)
    }

    /// Adds a member; missing UserLite keys get defaults, a missing `id` a new uuid.
    pub(crate) fn add_member(&mut self, mut user: Obj) -> Uuid {
        let id = id_of(&user).unwrap_or_else(Uuid::new_v4);
        let name = str_of(&user, "display_name")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("user-{}", &id.simple().to_string()[..8]));
        let defaults = [
            ("first_name", json!(name)),
            ("last_name", json!("")),
            ("email", json!(format!("{name}@plane-fake.local"))),
            ("avatar", json!("")),
            ("avatar_url", Value::Null),
            ("display_name", json!(name)),
        ];
        user.insert("id".into(), json!(id.to_string()));
        for (k, v) in defaults {
            user.entry(k).or_insert(v);
        }
        let sid = id.to_string();
        self.members
            .retain(|m| str_of(m, "id") != Some(sid.as_str()));
        self.members.push(user);
        id
    }

    pub(crate) fn user_id(&self) -> String {
        str_of(self.actor(), "id").unwrap_or_default().to_owned()
    }

    pub(crate) fn user_lite(&self) -> Value {
        Store::lite_of(self.actor())
    }

    fn lite_of(user: &Obj) -> Value {
        let mut m = Obj::new();
        for k in [
            "id",
            "first_name",
            "last_name",
            "email",
            "avatar",
            "avatar_url",
            "display_name",
        ] {
            m.insert(k.into(), user.get(k).cloned().unwrap_or(Value::Null));
        }
        Value::Object(m)
    }

    pub(crate) fn project(&self, id: Uuid) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    pub(crate) fn project_mut(&mut self, id: Uuid) -> Option<&mut Project> {
        self.projects.iter_mut().find(|p| p.id == id)
    }

    pub(crate) fn project_by_str(&self, id: &str) -> Option<&Project> {
        Uuid::parse_str(id).ok().and_then(|u| self.project(u))
    }

    pub(crate) fn workspace_lite(&self) -> Value {
        json!({
            "id": self.workspace_id.to_string(),
            "name": self.workspace_slug,
            "slug": self.workspace_slug,
        })
    }

    // ----- projects -------------------------------------------------------------------

    /// A new project object as Plane returns it, with the five default states.
    pub(crate) fn new_project(&mut self, name: &str, identifier: &str, body: &Obj) -> Uuid {
        let id = Uuid::new_v4();
        let (_, ts) = self.now();
        let user = self.user_id();
        let get = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
        let mut o = Obj::new();
        o.insert("id".into(), json!(id.to_string()));
        o.insert("total_members".into(), json!(1));
        o.insert("total_cycles".into(), json!(0));
        o.insert("total_modules".into(), json!(0));
        o.insert("is_member".into(), json!(true));
        o.insert("sort_order".into(), json!(65535.0));
        o.insert("member_role".into(), json!(20));
        o.insert("is_deployed".into(), json!(false));
        o.insert("cover_image_url".into(), get("cover_image", Value::Null));
        o.insert("created_at".into(), json!(ts));
        o.insert("updated_at".into(), json!(ts));
        o.insert("deleted_at".into(), Value::Null);
        o.insert("name".into(), json!(name));
        o.insert("description".into(), get("description", json!("")));
        o.insert("description_text".into(), Value::Null);
        o.insert("description_html".into(), Value::Null);
        o.insert("network".into(), get("network", json!(2)));
        o.insert("identifier".into(), json!(identifier));
        o.insert("emoji".into(), get("emoji", Value::Null));
        o.insert("icon_prop".into(), get("icon_prop", Value::Null));
        o.insert("module_view".into(), get("module_view", json!(false)));
        o.insert("cycle_view".into(), get("cycle_view", json!(false)));
        o.insert(
            "issue_views_view".into(),
            get("issue_views_view", json!(false)),
        );
        o.insert("page_view".into(), get("page_view", json!(true)));
        o.insert("intake_view".into(), get("intake_view", json!(false)));
        o.insert("is_time_tracking_enabled".into(), json!(false));
        o.insert(
            "is_issue_type_enabled".into(),
            get("is_issue_type_enabled", json!(false)),
        );
        o.insert(
            "guest_view_all_features".into(),
            get("guest_view_all_features", json!(false)),
        );
        o.insert("cover_image".into(), get("cover_image", Value::Null));
        o.insert("archive_in".into(), get("archive_in", json!(0)));
        o.insert("close_in".into(), get("close_in", json!(0)));
        o.insert("logo_props".into(), get("logo_props", json!({})));
        o.insert("archived_at".into(), Value::Null);
        o.insert("timezone".into(), get("timezone", json!("UTC")));
        o.insert(
            "external_source".into(),
            get("external_source", Value::Null),
        );
        o.insert("external_id".into(), get("external_id", Value::Null));
        o.insert("created_by".into(), json!(user));
        o.insert("updated_by".into(), Value::Null);
        o.insert("workspace".into(), json!(self.workspace_id.to_string()));
        o.insert(
            "default_assignee".into(),
            get("default_assignee", Value::Null),
        );
        o.insert("project_lead".into(), get("project_lead", Value::Null));
        o.insert("cover_image_asset".into(), Value::Null);
        o.insert("estimate".into(), Value::Null);
        o.insert("default_state".into(), Value::Null);
        self.projects.push(Project {
            id,
            obj: o,
            ..Project::default()
        });
        for (name, color, group, default) in DEFAULT_STATES {
            let st = self.new_state(id, name, color, group, default, &Obj::new());
            if let Some(p) = self.project_mut(id) {
                p.states.push(st);
            }
        }
        id
    }

    /// Inserts a project object as given. A project with the same id is replaced (its
    /// children kept); one with the same identifier is removed first, since Plane keeps
    /// identifiers unique per workspace. Returns the id.
    pub(crate) fn insert_project_obj(&mut self, obj: Obj) -> Uuid {
        let id = id_of(&obj).unwrap_or_else(Uuid::new_v4);
        let mut obj = obj;
        obj.insert("id".into(), json!(id.to_string()));
        if let Some(p) = self.project_mut(id) {
            p.obj = obj;
            return id;
        }
        let ident = str_of(&obj, "identifier").map(str::to_owned);
        if let Some(ident) = ident
            && let Some(pos) = self.projects.iter().position(|p| p.identifier() == ident)
        {
            let old = self.projects.remove(pos);
            if old.id == self.default_project {
                self.default_project = id;
            }
        }
        self.projects.push(Project {
            id,
            obj,
            ..Project::default()
        });
        id
    }

    pub(crate) fn project_lite(&self, p: &Project) -> Value {
        let g = |k: &str| p.obj.get(k).cloned().unwrap_or(Value::Null);
        json!({
            "id": g("id"),
            "identifier": g("identifier"),
            "name": g("name"),
            "cover_image": g("cover_image"),
            "icon_prop": g("icon_prop"),
            "emoji": g("emoji"),
            "description": g("description"),
            "cover_image_url": g("cover_image_url"),
        })
    }

    /// The project object with its derived counts refreshed.
    pub(crate) fn project_view(&self, p: &Project) -> Obj {
        let mut o = p.obj.clone();
        let refresh = |o: &mut Obj, k: &str, v: usize| {
            if o.contains_key(k) {
                o.insert(k.into(), json!(v));
            }
        };
        refresh(&mut o, "total_cycles", p.cycles.len());
        refresh(&mut o, "total_modules", p.modules.len());
        o
    }

    // ----- states and labels ------------------------------------------------------------

    pub(crate) fn new_state(
        &mut self,
        project: Uuid,
        name: &str,
        color: &str,
        group: &str,
        default: bool,
        body: &Obj,
    ) -> Obj {
        let (_, ts) = self.now();
        let sequence = self
            .project(project)
            .map_or(15000.0, |p| next_order(&p.states, "sequence", 15000.0));
        let get = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
        object(json!({
            "id": Uuid::new_v4().to_string(),
            "created_at": ts,
            "updated_at": ts,
            "deleted_at": null,
            "name": name,
            "description": get("description", json!("")),
            "color": color,
            "slug": "",
            "sequence": get("sequence", json!(sequence)),
            "group": group,
            "is_triage": false,
            "default": default,
            "external_source": get("external_source", Value::Null),
            "external_id": get("external_id", Value::Null),
            "created_by": self.user_id(),
            "updated_by": null,
            "project": project.to_string(),
            "workspace": self.workspace_id.to_string(),
        }))
    }

    pub(crate) fn new_label(&mut self, project: Uuid, name: &str, body: &Obj) -> Obj {
        let (_, ts) = self.now();
        let sort_order = self
            .project(project)
            .map_or(65535.0, |p| next_order(&p.labels, "sort_order", 65535.0));
        let get = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
        object(json!({
            "id": Uuid::new_v4().to_string(),
            "created_at": ts,
            "updated_at": ts,
            "deleted_at": null,
            "name": name,
            "description": get("description", json!("")),
            "color": get("color", json!("")),
            "sort_order": get("sort_order", json!(sort_order)),
            "external_source": get("external_source", Value::Null),
            "external_id": get("external_id", Value::Null),
            "created_by": self.user_id(),
            "updated_by": null,
            "project": project.to_string(),
            "workspace": self.workspace_id.to_string(),
            "parent": get("parent", Value::Null),
        }))
    }

    pub(crate) fn state_lite(s: &Obj) -> Value {
        let g = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
        json!({"id": g("id"), "name": g("name"), "color": g("color"), "group": g("group")})
    }

    fn find_state(&self, id: &str) -> Option<&Obj> {
        self.projects.iter().find_map(|p| p.state(id))
    }

    fn find_label(&self, id: &str) -> Option<&Obj> {
        self.projects.iter().find_map(|p| p.label(id))
    }

    pub(crate) fn find_item(&self, id: &str) -> Option<&Obj> {
        self.projects.iter().find_map(|p| p.item(id))
    }

    // ----- work items -------------------------------------------------------------------

    /// Stores a work item object as given (used for API creates and captured data).
    pub(crate) fn insert_item_obj(&mut self, project: Uuid, mut obj: Obj) -> Option<Uuid> {
        let id = id_of(&obj).unwrap_or_else(Uuid::new_v4);
        obj.insert("id".into(), json!(id.to_string()));
        let micros = match str_of(&obj, "created_at").and_then(parse_ts_micros) {
            Some(m) => m,
            None => {
                let (m, ts) = self.now();
                obj.insert("created_at".into(), json!(ts));
                m
            }
        };
        let counter = self.next_counter();
        let p = self.project_mut(project)?;
        p.visible.take();
        if let Some(old) = p.items.remove(&id) {
            p.order.remove(&old.key);
        }
        if let Some(seq) = obj.get("sequence_id").and_then(Value::as_i64) {
            p.max_seq = p.max_seq.max(seq);
        }
        p.note_sort_order(&obj);
        let key = (micros, counter);
        p.order.insert(key, id);
        p.items.insert(id, Item { obj, key });
        Some(id)
    }

    /// Plane's `Issue.save` sort order: 10000 after the largest in the same state.
    pub(crate) fn next_sort_order(&self, project: Uuid, state: Option<&str>) -> f64 {
        self.project(project)
            .and_then(|p| p.max_sort.get(state.unwrap_or("")))
            .map_or(65535.0, |m| m + 10000.0)
    }

    /// A complete new work item; `fields` are already validated values.
    pub(crate) fn new_work_item(&mut self, project: Uuid, fields: &Obj) -> Option<Obj> {
        let (_, ts) = self.now();
        let user = self.user_id();
        let p = self.project(project)?;
        let seq = p.max_seq + 1;
        let state = match fields.get("state") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => p.default_state_id(),
        };
        let completed = state
            .as_deref()
            .and_then(|s| p.state(s))
            .and_then(|s| str_of(s, "group"))
            == Some("completed");
        let sort_order = match fields.get("sort_order") {
            Some(v @ Value::Number(_)) => v.clone(),
            _ => json!(self.next_sort_order(project, state.as_deref())),
        };
        let get = |k: &str, default: Value| fields.get(k).cloned().unwrap_or(default);
        let mut o = Obj::new();
        o.insert("id".into(), json!(Uuid::new_v4().to_string()));
        o.insert("type_id".into(), Value::Null);
        o.insert("created_at".into(), get("created_at", json!(ts)));
        o.insert("updated_at".into(), json!(ts));
        o.insert("deleted_at".into(), Value::Null);
        o.insert("point".into(), get("point", Value::Null));
        o.insert("name".into(), get("name", json!("")));
        o.insert(
            "description_html".into(),
            get("description_html", json!("<p></p>")),
        );
        o.insert("description_binary".into(), Value::Null);
        o.insert("priority".into(), get("priority", json!("none")));
        o.insert("start_date".into(), get("start_date", Value::Null));
        o.insert("target_date".into(), get("target_date", Value::Null));
        o.insert("sequence_id".into(), json!(seq));
        o.insert("sort_order".into(), sort_order);
        o.insert(
            "completed_at".into(),
            if completed { json!(ts) } else { Value::Null },
        );
        o.insert("archived_at".into(), Value::Null);
        o.insert("is_draft".into(), get("is_draft", json!(false)));
        o.insert(
            "external_source".into(),
            get("external_source", Value::Null),
        );
        o.insert("external_id".into(), get("external_id", Value::Null));
        o.insert("created_by".into(), get("created_by", json!(user)));
        o.insert("updated_by".into(), Value::Null);
        o.insert("project".into(), json!(project.to_string()));
        o.insert("workspace".into(), json!(self.workspace_id.to_string()));
        o.insert("parent".into(), get("parent", Value::Null));
        o.insert("state".into(), state.map_or(Value::Null, Value::String));
        o.insert("estimate_point".into(), Value::Null);
        o.insert("type".into(), Value::Null);
        o.insert("assignees".into(), get("assignees", json!([])));
        o.insert("labels".into(), get("labels", json!([])));
        let id = self.insert_item_obj(project, o)?;
        self.add_activity(project, id, "created", None, Value::Null, Value::Null);
        self.project(project)
            .and_then(|p| p.items.get(&id))
            .map(|i| i.obj.clone())
    }

    /// Applies validated changes like `Issue.save` (completed_at follows the state group on
    /// every save). Returns (before, after).
    pub(crate) fn update_work_item(
        &mut self,
        project: Uuid,
        id: Uuid,
        changes: &Obj,
    ) -> Option<(Obj, Obj)> {
        let (_, ts) = self.now();
        let user = self.user_id();
        let p = self.project_mut(project)?;
        let before = p.items.get(&id)?.obj.clone();
        let mut after = before.clone();
        for (k, v) in changes {
            if k == "state" && v.is_null() {
                after.insert(
                    k.clone(),
                    p.default_state_id().map_or(Value::Null, Value::String),
                );
            } else {
                after.insert(k.clone(), v.clone());
            }
        }
        after.insert("updated_at".into(), json!(ts));
        after.insert("updated_by".into(), json!(user));
        if after.contains_key("completed_at") {
            let completed = p.state_group_of_item(&after).as_deref() == Some("completed");
            after.insert(
                "completed_at".into(),
                if completed { json!(ts) } else { Value::Null },
            );
        }
        if let Some(o) = p.item_mut(id) {
            *o = after.clone();
        }
        p.note_sort_order(&after);
        for (k, new) in changes {
            let old = before.get(k).cloned().unwrap_or(Value::Null);
            if old != *new && !matches!(k.as_str(), "created_at" | "created_by") {
                self.add_activity(project, id, "updated", Some(k), old, new.clone());
            }
        }
        Some((before, after))
    }

    pub(crate) fn add_activity(
        &mut self,
        project: Uuid,
        issue: Uuid,
        verb: &str,
        field: Option<&str>,
        old: Value,
        new: Value,
    ) {
        let (micros, ts) = self.now();
        let user = self.user_id();
        let ws = self.workspace_id.to_string();
        let Some(p) = self.project_mut(project) else {
            return;
        };
        let as_text = |v: &Value| match v {
            Value::Null => Value::Null,
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        };
        // Plane stores names for state changes and keeps the ids as identifiers.
        let (mut old_v, mut new_v, mut old_ident, mut new_ident) =
            (as_text(&old), as_text(&new), Value::Null, Value::Null);
        if field == Some("state") {
            old_ident = old.clone();
            new_ident = new.clone();
            let name = |v: &Value| {
                v.as_str()
                    .and_then(|s| p.state(s))
                    .and_then(|s| s.get("name").cloned())
                    .unwrap_or(Value::Null)
            };
            old_v = name(&old);
            new_v = name(&new);
        }
        let comment = match field {
            None => "created the issue".to_owned(),
            Some(f) => format!("updated the {f} to"),
        };
        let mut o = Obj::new();
        o.insert("id".into(), json!(Uuid::new_v4().to_string()));
        o.insert("created_at".into(), json!(ts));
        o.insert("updated_at".into(), json!(ts));
        o.insert("deleted_at".into(), Value::Null);
        o.insert("verb".into(), json!(verb));
        o.insert("field".into(), field.map_or(Value::Null, |f| json!(f)));
        o.insert("old_value".into(), old_v);
        o.insert("new_value".into(), new_v);
        o.insert("comment".into(), json!(comment));
        o.insert("attachments".into(), json!([]));
        o.insert("old_identifier".into(), old_ident);
        o.insert("new_identifier".into(), new_ident);
        o.insert("epoch".into(), json!((micros / 1_000_000) as f64));
        o.insert("project".into(), json!(project.to_string()));
        o.insert("workspace".into(), json!(ws));
        o.insert("issue".into(), json!(issue.to_string()));
        o.insert("issue_comment".into(), Value::Null);
        o.insert("actor".into(), json!(user));
        p.activities.push(o);
    }

    /// The `data` of an `issue` webhook (IssueExpandSerializer with labels and assignees
    /// expanded, state as StateLite).
    pub(crate) fn work_item_webhook_data(&self, item: &Obj) -> Value {
        let g = |k: &str| item.get(k).cloned().unwrap_or(Value::Null);
        let labels: Vec<Value> = ids_in(item.get("labels"))
            .filter_map(|id| self.find_label(id))
            .map(|l| {
                let g = |k: &str| l.get(k).cloned().unwrap_or(Value::Null);
                json!({"id": g("id"), "name": g("name"), "color": g("color")})
            })
            .collect();
        let assignees: Vec<Value> = ids_in(item.get("assignees"))
            .filter_map(|id| self.user_lite_by_id(id))
            .collect();
        let state = str_of(item, "state")
            .and_then(|s| self.find_state(s))
            .map_or(Value::Null, Store::state_lite);
        let html = str_of(item, "description_html").unwrap_or("").to_owned();
        let mut o = Obj::new();
        o.insert("id".into(), g("id"));
        o.insert("labels".into(), Value::Array(labels));
        o.insert("assignees".into(), Value::Array(assignees));
        o.insert("state".into(), state);
        o.insert("description".into(), json!({}));
        for k in ["created_at", "updated_at", "deleted_at", "point", "name"] {
            o.insert(k.into(), g(k));
        }
        o.insert("description_json".into(), json!({}));
        o.insert("description_html".into(), g("description_html"));
        o.insert("description_stripped".into(), json!(strip_html(&html)));
        for k in [
            "description_binary",
            "priority",
            "start_date",
            "target_date",
            "sequence_id",
            "sort_order",
            "completed_at",
            "archived_at",
            "is_draft",
            "external_source",
            "external_id",
            "created_by",
            "updated_by",
            "project",
            "workspace",
            "parent",
            "estimate_point",
            "type",
        ] {
            o.insert(k.into(), g(k));
        }
        Value::Object(o)
    }

    pub(crate) fn webhook_activity(&self, field: Option<&str>, old: Value, new: Value) -> Value {
        let mut o = Obj::new();
        o.insert("field".into(), field.map_or(Value::Null, |f| json!(f)));
        o.insert("new_value".into(), new);
        o.insert("old_value".into(), old);
        o.insert("actor".into(), self.user_lite());
        o.insert("old_identifier".into(), Value::Null);
        o.insert("new_identifier".into(), Value::Null);
        Value::Object(o)
    }

    pub(crate) fn user_lite_by_id(&self, id: &str) -> Option<Value> {
        self.member(id).map(Store::lite_of)
    }

    // ----- rendering (fields / expand) -------------------------------------------------

    /// Applies `fields` (allow-list, before expansion) and `expand` like Plane's BaseSerializer.
    pub(crate) fn render(&self, obj: &Obj, fields: Option<&[String]>, expand: &[String]) -> Value {
        let mut out = match fields {
            Some(f) => obj
                .iter()
                .filter(|(k, _)| f.iter().any(|n| n == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => obj.clone(),
        };
        for name in expand {
            let Some(v) = out.get(name) else { continue };
            if let Some(expanded) = self.expand_value(name, v) {
                out.insert(name.clone(), expanded);
            }
        }
        Value::Object(out)
    }

    fn expand_value(&self, name: &str, v: &Value) -> Option<Value> {
        match name {
            "state" => self.find_state(v.as_str()?).map(Store::state_lite),
            "project" => self
                .project_by_str(v.as_str()?)
                .map(|p| self.project_lite(p)),
            "workspace" => {
                (v.as_str()? == self.workspace_id.to_string()).then(|| self.workspace_lite())
            }
            "assignees" | "members" => Some(Value::Array(
                ids_in(Some(v))
                    .filter_map(|id| self.user_lite_by_id(id))
                    .collect(),
            )),
            "labels" => Some(Value::Array(
                ids_in(Some(v))
                    .filter_map(|id| self.find_label(id))
                    .map(|l| Value::Object(l.clone()))
                    .collect(),
            )),
            "parent" => {
                let item = self.find_item(v.as_str()?)?;
                Some(json!({
                    "id": item.get("id"),
                    "sequence_id": item.get("sequence_id"),
                    "project_id": item.get("project"),
                }))
            }
            "issue" => self
                .find_item(v.as_str()?)
                .map(|i| Value::Object(i.clone())),
            "user" | "created_by" | "updated_by" | "actor" | "owned_by" | "default_assignee"
            | "project_lead" => self.user_lite_by_id(v.as_str()?),
            _ => None,
        }
    }
}

/// Listed by the work-item list endpoint (drafts and archived items are not).
/// The map of a `json!({...})` object literal (row builders write Plane's field order).
pub(crate) fn object(v: Value) -> Obj {
    match v {
        Value::Object(m) => m,
        _ => Obj::new(),
    }
}

/// Plane's ordering of a new row: 10000 after the largest `key` of `rows`, or `first`.
pub(crate) fn next_order(rows: &[Obj], key: &str, first: f64) -> f64 {
    rows.iter()
        .filter_map(|r| r.get(key).and_then(Value::as_f64))
        .reduce(f64::max)
        .map_or(first, |m| m + 10000.0)
}

pub(crate) fn is_listed(o: &Obj) -> bool {
    o.get("is_draft") != Some(&Value::Bool(true)) && o.get("archived_at").is_none_or(Value::is_null)
}

/// The string ids in a JSON array (non-strings skipped).
pub(crate) fn ids_in(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}
