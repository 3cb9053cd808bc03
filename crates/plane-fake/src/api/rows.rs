//! What every resource's handlers share: finding rows, reading list queries, Plane's 409s,
//! stamping patched rows and the `updated` webhooks.

use super::request::Query;
use super::{R, WebhookEvent};
use crate::pagination::{self, Page};
use crate::resp::Resp;
use crate::store::{Obj, Project, Store, id_of, str_of};
use serde_json::{Value, json};
use uuid::Uuid;

/// The row lists of a project that handlers address generically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    States,
    Labels,
    Comments,
    Links,
    Activities,
    Cycles,
    Modules,
    CycleIssues,
    ModuleIssues,
}

impl Table {
    pub(super) fn of(self, p: &Project) -> &[Obj] {
        match self {
            Table::States => &p.states,
            Table::Labels => &p.labels,
            Table::Comments => &p.comments,
            Table::Links => &p.links,
            Table::Activities => &p.activities,
            Table::Cycles => &p.cycles,
            Table::Modules => &p.modules,
            Table::CycleIssues => &p.cycle_issues,
            Table::ModuleIssues => &p.module_issues,
        }
    }

    pub(super) fn of_mut(self, p: &mut Project) -> &mut Vec<Obj> {
        match self {
            Table::States => &mut p.states,
            Table::Labels => &mut p.labels,
            Table::Comments => &mut p.comments,
            Table::Links => &mut p.links,
            Table::Activities => &mut p.activities,
            Table::Cycles => &mut p.cycles,
            Table::Modules => &mut p.modules,
            Table::CycleIssues => &mut p.cycle_issues,
            Table::ModuleIssues => &mut p.module_issues,
        }
    }
}

/// What a GET's query asks of every view: `?fields=`, `?expand=` and the page.
pub(super) struct Read<'a> {
    pub q: &'a Query,
    fields: Option<Vec<String>>,
    expand: Vec<String>,
}

impl<'a> Read<'a> {
    pub(super) fn new(q: &'a Query) -> Read<'a> {
        Read {
            q,
            fields: q.fields(),
            expand: q.list("expand"),
        }
    }

    pub(super) fn render(&self, s: &Store, o: &Obj) -> Value {
        s.render(o, self.fields.as_deref(), &self.expand)
    }

    /// 200 with one rendered object.
    pub(super) fn one(&self, s: &Store, o: &Obj) -> R {
        Ok(Resp::json(200, &self.render(s, o)))
    }

    pub(super) fn page(&self) -> Result<Page, Resp> {
        pagination::parse(self.q.get("per_page"), self.q.get("cursor"))
    }

    /// 200 with one page of already rendered rows.
    pub(super) fn paginate(&self, rows: Vec<Value>) -> R {
        Ok(Resp::json(200, &pagination::paginate(self.page()?, rows)))
    }

    /// 200 with one page of `rows`, rendered.
    pub(super) fn list<'b>(&self, s: &Store, rows: impl IntoIterator<Item = &'b Obj>) -> R {
        let page = self.page()?;
        let all = rows.into_iter().map(|r| self.render(s, r)).collect();
        Ok(Resp::json(200, &pagination::paginate(page, all)))
    }
}

// ----- lookups ----------------------------------------------------------------------------

pub(super) fn project(s: &Store, pid: Uuid) -> Result<&Project, Resp> {
    s.project(pid).ok_or_else(Resp::not_found)
}

pub(super) fn project_mut(s: &mut Store, pid: Uuid) -> Result<&mut Project, Resp> {
    s.project_mut(pid).ok_or_else(Resp::not_found)
}

pub(super) fn item(s: &Store, pid: Uuid, id: Uuid) -> Result<&Obj, Resp> {
    project(s, pid)?
        .items
        .get(&id)
        .map(|i| &i.obj)
        .ok_or_else(Resp::not_found)
}

pub(super) fn find<'a>(rows: impl IntoIterator<Item = &'a Obj>, id: Uuid) -> Result<&'a Obj, Resp> {
    rows.into_iter()
        .find(|r| id_of(r) == Some(id))
        .ok_or_else(Resp::not_found)
}

/// The rows of `rows` other than `except`.
pub(super) fn others<'a>(
    rows: impl IntoIterator<Item = &'a Obj>,
    except: Option<Uuid>,
) -> impl Iterator<Item = &'a Obj> {
    rows.into_iter()
        .filter(move |r| except.is_none() || id_of(r) != except)
}

fn of_issue(rows: &[Obj], issue: Uuid) -> impl Iterator<Item = &Obj> {
    let issue = issue.to_string();
    rows.iter()
        .filter(move |r| str_of(r, "issue") == Some(issue.as_str()))
}

/// A comment, link or activity of work item `issue`.
pub(super) fn child(rows: &[Obj], issue: Uuid, id: Uuid) -> Result<&Obj, Resp> {
    find(of_issue(rows, issue), id)
}

pub(super) fn remove_by_id(rows: &mut Vec<Obj>, id: Uuid) -> Result<Obj, Resp> {
    let pos = rows
        .iter()
        .position(|r| id_of(r) == Some(id))
        .ok_or_else(Resp::not_found)?;
    Ok(rows.remove(pos))
}

// ----- the views of a work item's comments, links and activities --------------------------

pub(super) fn list_children(s: &Store, t: Table, pid: Uuid, iid: Uuid, read: &Read<'_>) -> R {
    item(s, pid, iid)?;
    read.list(s, of_issue(t.of(project(s, pid)?), iid))
}

pub(super) fn get_child(s: &Store, t: Table, pid: Uuid, iid: Uuid, id: Uuid, read: &Read<'_>) -> R {
    read.one(s, child(t.of(project(s, pid)?), iid, id)?)
}

pub(super) fn delete_child(s: &mut Store, t: Table, pid: Uuid, iid: Uuid, id: Uuid) -> R {
    let rows = t.of_mut(project_mut(s, pid)?);
    let issue = iid.to_string();
    let pos = rows
        .iter()
        .position(|r| id_of(r) == Some(id) && str_of(r, "issue") == Some(issue.as_str()))
        .ok_or_else(Resp::not_found)?;
    rows.remove(pos);
    Ok(Resp::empty(204))
}

// ----- Plane's conflicts ------------------------------------------------------------------

/// One `{"error": ..., "id": ...}` conflict body with the existing id (Plane's 409s).
pub(super) fn conflict(msg: &str, id: &Obj) -> Resp {
    Resp::json(409, &json!({"error": msg, "id": id.get("id")}))
}

/// The 409 for an external pair `entity` already has, naming the row `id`.
pub(super) fn external_exists(entity: &str, id: &Obj) -> Resp {
    conflict(
        &format!("{entity} with the same external id and external source already exists"),
        id,
    )
}

/// Truthy string of a request value, like Python's `if request.data.get(k)`.
pub(super) fn truthy_str(body: &Obj, k: &str) -> Option<String> {
    match body.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn same_external(o: &Obj, source: &str, id: &str) -> bool {
    str_of(o, "external_source") == Some(source) && str_of(o, "external_id") == Some(id)
}

/// The check of create (and of some patches): a row other than `except` with the body's
/// external pair, when the body gives both.
pub(super) fn external_conflict<'a>(
    rows: impl IntoIterator<Item = &'a Obj>,
    body: &Obj,
    entity: &str,
    except: Option<Uuid>,
) -> Option<Resp> {
    let (eid, esrc) = (
        truthy_str(body, "external_id")?,
        truthy_str(body, "external_source")?,
    );
    let r = others(rows, except).find(|r| same_external(r, &esrc, &eid))?;
    Some(external_exists(entity, r))
}

/// The check of a work item's or comment's patch: only a changed `external_id` is checked,
/// with the stored `external_source` when the body has none. Answers the row holding it.
pub(super) fn external_taken<'a>(
    rows: impl IntoIterator<Item = &'a Obj>,
    body: &Obj,
    current: &Obj,
) -> Option<&'a Obj> {
    let eid = truthy_str(body, "external_id")?;
    if str_of(current, "external_id") == Some(eid.as_str()) {
        return None;
    }
    let esrc = truthy_str(body, "external_source")
        .or_else(|| str_of(current, "external_source").map(str::to_owned))
        .unwrap_or_default();
    rows.into_iter().find(|r| same_external(r, &esrc, &eid))
}

// ----- writes -----------------------------------------------------------------------------

pub(super) fn now_str(s: &mut Store) -> String {
    s.now().1
}

/// Merges validated fields into row `id` of `t` and stamps it; answers the new row.
pub(super) fn patch_row(
    s: &mut Store,
    pid: Uuid,
    t: Table,
    id: Uuid,
    o: &Obj,
) -> Result<Obj, Resp> {
    let ts = now_str(s);
    let user = s.user_id();
    let row = t
        .of_mut(project_mut(s, pid)?)
        .iter_mut()
        .find(|r| id_of(r) == Some(id))
        .ok_or_else(Resp::not_found)?;
    for (k, v) in o {
        row.insert(k.clone(), v.clone());
    }
    row.insert("updated_at".into(), json!(ts));
    row.insert("updated_by".into(), json!(user));
    Ok(row.clone())
}

/// A copy of `o` without `skip` (webhook `data` leaves out some response fields).
pub(super) fn without(o: &Obj, skip: &[&str]) -> Value {
    Value::Object(
        o.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// One `updated` webhook per changed key of the request body, in request order (Plane's
/// model_activity).
pub(super) fn update_events(
    s: &Store,
    event: &'static str,
    before: &Obj,
    changes: &Obj,
    body: &Obj,
    data: Value,
    ev: &mut Vec<WebhookEvent>,
) {
    for (k, requested) in body {
        let Some(new) = changes.get(k) else { continue };
        let old = before.get(k).cloned().unwrap_or(Value::Null);
        if old != *new {
            ev.push(WebhookEvent {
                event,
                action: "updated",
                data: data.clone(),
                activity: s.webhook_activity(Some(k), old, requested.clone()),
            });
        }
    }
}
