//! Cycles and modules: Plane's two ways of grouping work items, served by one implementation.
//! They differ in names, the project flag that enables them, some fields and error texts,
//! and in membership: a work item is in at most one cycle but may be in several modules.

use super::rows::{
    Read, Table, external_conflict, find, now_str, others, patch_row, project, project_mut,
    remove_by_id, update_events,
};
use super::validate::{Char, Form, dates_in_order};
use super::{R, WebhookEvent};
use crate::resp::Resp;
use crate::store::{Obj, Project, Store, ids_in, next_order, object, str_of};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    Cycle,
    Module,
}

const MODULE_STATUSES: [&str; 6] = [
    "backlog",
    "planned",
    "in-progress",
    "paused",
    "completed",
    "cancelled",
];

/// The counts by state group a cycle or module shows, in this order.
const COUNT_KEYS: [&str; 6] = [
    "total_issues",
    "cancelled_issues",
    "completed_issues",
    "started_issues",
    "unstarted_issues",
    "backlog_issues",
];

impl Group {
    /// The key of a membership row naming its cycle/module; also the webhook event.
    fn key(self) -> &'static str {
        match self {
            Group::Cycle => "cycle",
            Group::Module => "module",
        }
    }

    /// The URL segment of the memberships.
    pub(super) fn issues_segment(self) -> &'static str {
        match self {
            Group::Cycle => "cycle-issues",
            Group::Module => "module-issues",
        }
    }

    /// The project flag that enables the feature.
    fn flag(self) -> &'static str {
        match self {
            Group::Cycle => "cycle_view",
            Group::Module => "module_view",
        }
    }

    /// The model name in Plane's error texts.
    fn entity(self) -> &'static str {
        match self {
            Group::Cycle => "Cycle",
            Group::Module => "Module",
        }
    }

    /// The key of the last day, and Plane's text when it is before the first.
    fn end(self) -> (&'static str, &'static str) {
        match self {
            Group::Cycle => ("end_date", "Start date cannot exceed end date"),
            Group::Module => ("target_date", "Start date cannot exceed target date"),
        }
    }

    fn table(self) -> Table {
        match self {
            Group::Cycle => Table::Cycles,
            Group::Module => Table::Modules,
        }
    }

    fn members(self) -> Table {
        match self {
            Group::Cycle => Table::CycleIssues,
            Group::Module => Table::ModuleIssues,
        }
    }

    /// The row with its work-item counts by state group.
    fn view(self, p: &Project, o: &Obj) -> Obj {
        let id = str_of(o, "id").unwrap_or_default();
        let mut counts = [0usize; 6];
        for r in self
            .members()
            .of(p)
            .iter()
            .filter(|r| str_of(r, self.key()) == Some(id))
        {
            let Some(item) = str_of(r, "issue").and_then(|i| p.item(i)) else {
                continue;
            };
            counts[0] += 1;
            let idx = match p.state_group_of_item(item).as_deref() {
                Some("cancelled") => 1,
                Some("completed") => 2,
                Some("started") => 3,
                Some("unstarted") => 4,
                _ => 5,
            };
            counts[idx] += 1;
        }
        let mut out = o.clone();
        for (k, n) in COUNT_KEYS.iter().zip(counts) {
            if out.contains_key(*k) {
                out.insert((*k).into(), json!(n));
            }
        }
        out
    }

    pub(super) fn list(self, s: &Store, pid: Uuid, read: &Read<'_>) -> R {
        let p = project(s, pid)?;
        // Only cycles take `?cycle_view=`; modules are always listed whole.
        let view = match self {
            Group::Cycle => read.q.get("cycle_view").unwrap_or("all"),
            Group::Module => "all",
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let rows: Vec<Value> = self
            .table()
            .of(p)
            .iter()
            .filter(|c| in_cycle_view(view, c, &now))
            .map(|c| read.render(s, &self.view(p, c)))
            .collect();
        if view == "current" {
            // The only unpaginated listing.
            return Ok(Resp::json(200, &Value::Array(rows)));
        }
        read.paginate(rows)
    }

    pub(super) fn get(self, s: &Store, pid: Uuid, id: Uuid, read: &Read<'_>) -> R {
        let p = project(s, pid)?;
        read.one(s, &self.view(p, find(self.table().of(p), id)?))
    }

    fn validate(self, s: &Store, pid: Uuid, body: &Obj, creating: bool) -> Result<Obj, Resp> {
        let mut f = Form::new(body);
        f.char("name", Char::filled(creating, 255));
        f.char("description", Char::optional(usize::MAX));
        let user = s.user_id();
        match self {
            Group::Cycle => {
                f.datetime("start_date", true);
                f.datetime("end_date", true);
                f.pk("owned_by", |id| id == user);
                f.char("timezone", Char::optional(255));
            }
            Group::Module => {
                f.date("start_date");
                f.date("target_date");
                f.choice("status", &MODULE_STATUSES);
                f.pk("lead", |id| id == user);
                f.id_list("members", |id| id == user);
            }
        }
        f.external();
        let o = f.finish()?;
        if project(s, pid)?.obj.get(self.flag()) != Some(&Value::Bool(true)) {
            return Err(Resp::non_field_error(&format!(
                "{}s are not enabled for this project",
                self.entity()
            )));
        }
        let (end, msg) = self.end();
        dates_in_order(&o, "start_date", end, msg)?;
        Ok(o)
    }

    /// Module names are unique in a project (cycle names are not): the module that has `o`'s.
    fn name_taken<'a>(self, rows: &'a [Obj], o: &Obj, except: Option<Uuid>) -> Option<&'a Obj> {
        let name = str_of(o, "name").filter(|_| self == Group::Module)?;
        others(rows, except).find(|m| str_of(m, "name") == Some(name))
    }

    pub(super) fn create(
        self,
        s: &mut Store,
        pid: Uuid,
        body: &Obj,
        ev: &mut Vec<WebhookEvent>,
    ) -> R {
        let has = |k| body.get(k).is_some_and(|v: &Value| !v.is_null());
        if self == Group::Cycle && has("start_date") != has("end_date") {
            return Err(Resp::error(
                400,
                "Both start date and end date are either required or are to be null",
            ));
        }
        let o = self.validate(s, pid, body, true)?;
        let rows = self.table().of(project(s, pid)?);
        if let Some(r) = external_conflict(rows, body, self.entity(), None) {
            return Err(r);
        }
        if let Some(m) = self.name_taken(rows, &o, None) {
            return Err(Resp::json(
                400,
                &json!({"id": [m.get("id")], "error": ["Module with this name already exists"]}),
            ));
        }
        let sort_order = next_order(rows, "sort_order", 65535.0);
        let row = self.new_row(s, pid, &o, sort_order);
        self.table().of_mut(project_mut(s, pid)?).push(row.clone());
        let data = Value::Object(row.clone());
        ev.push(WebhookEvent::whole(s, self.key(), "created", data));
        Ok(Resp::json(201, &Value::Object(row)))
    }

    /// A new cycle or module, in the field order of Plane's responses.
    fn new_row(self, s: &mut Store, pid: Uuid, o: &Obj, sort_order: f64) -> Obj {
        let ts = now_str(s);
        let user = s.user_id();
        let get = |k: &str, d: Value| o.get(k).cloned().unwrap_or(d);
        let mut row = Obj::new();
        row.insert("id".into(), json!(Uuid::new_v4().to_string()));
        for k in COUNT_KEYS {
            row.insert(k.into(), json!(0));
        }
        let (project, workspace) = (pid.to_string(), s.workspace_id.to_string());
        row.extend(object(match self {
            Group::Cycle => json!({
                "total_estimates": null,
                "completed_estimates": null,
                "started_estimates": null,
                "created_at": ts,
                "updated_at": ts,
                "deleted_at": null,
                "name": get("name", json!("")),
                "description": get("description", json!("")),
                "start_date": get("start_date", Value::Null),
                "end_date": get("end_date", Value::Null),
                "view_props": {},
                "sort_order": sort_order,
                "external_source": get("external_source", Value::Null),
                "external_id": get("external_id", Value::Null),
                "progress_snapshot": {},
                "archived_at": null,
                "logo_props": {},
                "timezone": get("timezone", json!("UTC")),
                "version": 1,
                "created_by": user,
                "updated_by": null,
                "project": project,
                "workspace": workspace,
                "owned_by": get("owned_by", json!(user)),
            }),
            Group::Module => json!({
                "created_at": ts,
                "updated_at": ts,
                "deleted_at": null,
                "name": get("name", json!("")),
                "description": get("description", json!("")),
                "description_text": null,
                "description_html": null,
                "start_date": get("start_date", Value::Null),
                "target_date": get("target_date", Value::Null),
                "status": get("status", json!("planned")),
                "view_props": {},
                "sort_order": sort_order,
                "external_source": get("external_source", Value::Null),
                "external_id": get("external_id", Value::Null),
                "archived_at": null,
                "logo_props": {},
                "created_by": user,
                "updated_by": null,
                "project": project,
                "workspace": workspace,
                "lead": get("lead", Value::Null),
                "members": get("members", json!([])),
            }),
        }));
        row
    }

    pub(super) fn patch(
        self,
        s: &mut Store,
        pid: Uuid,
        id: Uuid,
        body: &Obj,
        ev: &mut Vec<WebhookEvent>,
    ) -> R {
        let before = find(self.table().of(project(s, pid)?), id)?.clone();
        let o = self.validate(s, pid, body, false)?;
        let rows = self.table().of(project(s, pid)?);
        if let Some(r) = external_conflict(rows, body, self.entity(), Some(id)) {
            return Err(r);
        }
        if self.name_taken(rows, &o, Some(id)).is_some() {
            return Err(Resp::json(
                400,
                &json!({"error": ["Module with this name already exists"]}),
            ));
        }
        patch_row(s, pid, self.table(), id, &o)?;
        let p = project(s, pid)?;
        let view = self.view(p, find(self.table().of(p), id)?);
        let data = Value::Object(view.clone());
        update_events(s, self.key(), &before, &o, body, data, ev);
        Ok(Resp::json(200, &Value::Object(view)))
    }

    /// Deleting a cycle or module also ends its memberships.
    pub(super) fn delete(self, s: &mut Store, pid: Uuid, id: Uuid) -> R {
        let p = project_mut(s, pid)?;
        remove_by_id(self.table().of_mut(p), id)?;
        let sid = id.to_string();
        self.members()
            .of_mut(p)
            .retain(|r| str_of(r, self.key()) != Some(sid.as_str()));
        Ok(Resp::empty(204))
    }

    fn is_membership(self, r: &Obj, parent: &str, issue: &str) -> bool {
        str_of(r, self.key()) == Some(parent) && str_of(r, "issue") == Some(issue)
    }

    /// GET cycle-issues / module-issues: the member work items, newest membership first.
    pub(super) fn list_issues(self, s: &Store, pid: Uuid, parent: Uuid, read: &Read<'_>) -> R {
        let p = project(s, pid)?;
        find(self.table().of(p), parent)?;
        let page = read.page()?;
        let parent = parent.to_string();
        let items: Vec<Value> = self
            .members()
            .of(p)
            .iter()
            .rev()
            .filter(|r| str_of(r, self.key()) == Some(parent.as_str()))
            .filter_map(|r| str_of(r, "issue").and_then(|i| p.item(i)))
            .map(|o| read.render(s, o))
            .collect();
        Ok(Resp::json(200, &crate::pagination::paginate(page, items)))
    }

    pub(super) fn get_issue(
        self,
        s: &Store,
        pid: Uuid,
        parent: Uuid,
        issue: Uuid,
        read: &Read<'_>,
    ) -> R {
        let (parent, issue) = (parent.to_string(), issue.to_string());
        let row = self
            .members()
            .of(project(s, pid)?)
            .iter()
            .find(|r| self.is_membership(r, &parent, &issue))
            .ok_or_else(Resp::not_found)?;
        read.one(s, row)
    }

    pub(super) fn remove_issue(self, s: &mut Store, pid: Uuid, parent: Uuid, issue: Uuid) -> R {
        let (parent, issue) = (parent.to_string(), issue.to_string());
        let rows = self.members().of_mut(project_mut(s, pid)?);
        let pos = rows
            .iter()
            .position(|r| self.is_membership(r, &parent, &issue))
            .ok_or_else(Resp::not_found)?;
        rows.remove(pos);
        Ok(Resp::empty(204))
    }

    /// POST `{"issues": [...]}` to cycle-issues / module-issues; unknown ids are skipped.
    pub(super) fn add_issues(self, s: &mut Store, pid: Uuid, parent: Uuid, body: &Obj) -> R {
        find(self.table().of(project(s, pid)?), parent)?;
        let issues: Vec<String> = ids_in(body.get("issues")).map(str::to_owned).collect();
        if issues.is_empty() {
            return Err(Resp::error(400, "Issues are required"));
        }
        let ts = now_str(s);
        let user = s.user_id();
        let ws = s.workspace_id.to_string();
        let p = project_mut(s, pid)?;
        let parent = parent.to_string();
        let mut out = Vec::new();
        for issue in issues {
            let Some(issue) = Uuid::parse_str(&issue)
                .ok()
                .filter(|u| p.items.contains_key(u))
                .map(|u| u.to_string())
            else {
                continue;
            };
            let rows = self.members().of_mut(p);
            match self {
                // Adding a work item to a cycle moves it there.
                Group::Cycle => rows.retain(|r| str_of(r, "issue") != Some(issue.as_str())),
                // Adding it to a module it is in answers the existing membership.
                Group::Module => {
                    if let Some(existing) =
                        rows.iter().find(|r| self.is_membership(r, &parent, &issue))
                    {
                        out.push(Value::Object(existing.clone()));
                        continue;
                    }
                }
            }
            let mut r = object(json!({
                "id": Uuid::new_v4().to_string(),
                "sub_issues_count": 0,
                "created_at": ts,
                "updated_at": ts,
                "deleted_at": null,
                "created_by": user,
                "updated_by": user,
                "project": pid.to_string(),
                "workspace": ws,
                "issue": issue,
            }));
            r.insert(self.key().into(), json!(parent));
            rows.push(r.clone());
            out.push(Value::Object(r));
        }
        Ok(Resp::json(200, &Value::Array(out)))
    }
}

/// Whether a cycle is in `?cycle_view=` `view` at `now` (`all`: every one).
fn in_cycle_view(view: &str, c: &Obj, now: &str) -> bool {
    let dates = (str_of(c, "start_date"), str_of(c, "end_date"));
    match (view, dates) {
        ("current", (Some(a), Some(b))) => a <= now && now <= b,
        ("current", _) => false,
        ("upcoming", (Some(a), _)) => a > now,
        ("completed", (_, Some(b))) => b < now,
        ("draft", (a, b)) => a.is_none() && b.is_none(),
        ("incomplete", (_, b)) => b.is_none_or(|b| b >= now),
        ("upcoming" | "completed", _) => false,
        _ => true,
    }
}
