//! States and labels: named rows of a project, unique by name and by external pair.

use super::R;
use super::rows::{
    Table, conflict, external_conflict, find, others, patch_row, project, project_mut, remove_by_id,
};
use super::validate::{Char, Form};
use crate::resp::Resp;
use crate::store::{Obj, Store, str_of};
use serde_json::{Value, json};
use uuid::Uuid;

const STATE_GROUPS: [&str; 6] = [
    "backlog",
    "unstarted",
    "started",
    "completed",
    "cancelled",
    "triage",
];

/// What differs between states and labels in their create and patch.
pub(super) struct Named {
    table: Table,
    /// The model name in Plane's 409 texts.
    entity: &'static str,
    validate: fn(&Obj, bool) -> Result<Obj, Resp>,
    /// A new row from validated fields.
    build: fn(&mut Store, Uuid, &Obj) -> Obj,
}

pub(super) const STATES: Named = Named {
    table: Table::States,
    entity: "State",
    validate: validate_state,
    build: new_state,
};

pub(super) const LABELS: Named = Named {
    table: Table::Labels,
    entity: "Label",
    validate: validate_label,
    build: new_label,
};

fn validate_state(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut f = Form::new(body);
    f.char("name", Char::filled(creating, 255));
    f.char("color", Char::filled(creating, 255));
    f.char("description", Char::optional(usize::MAX));
    f.choice("group", &STATE_GROUPS);
    f.bool("default");
    f.number("sequence");
    f.external();
    f.finish()
}

fn new_state(s: &mut Store, pid: Uuid, o: &Obj) -> Obj {
    let name = str_of(o, "name").unwrap_or_default();
    let color = str_of(o, "color").unwrap_or_default();
    let group = str_of(o, "group").unwrap_or("backlog");
    let default = o.get("default") == Some(&Value::Bool(true));
    s.new_state(pid, name, color, group, default, o)
}

fn validate_label(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut f = Form::new(body);
    f.char("name", Char::filled(creating, 255));
    f.char("color", Char::optional(255));
    f.char("description", Char::optional(usize::MAX));
    f.number("sort_order");
    if let Some(v) = body.get("parent") {
        f.set("parent", v.clone());
    }
    f.external();
    f.finish()
}

fn new_label(s: &mut Store, pid: Uuid, o: &Obj) -> Obj {
    s.new_label(pid, str_of(o, "name").unwrap_or_default(), o)
}

/// Plane's 409s for states and labels: same external pair, or same name in the project.
fn named_conflict(
    n: &Named,
    rows: &[Obj],
    o: &Obj,
    body: &Obj,
    except: Option<Uuid>,
) -> Option<Resp> {
    if let Some(r) = external_conflict(rows, body, n.entity, except) {
        return Some(r);
    }
    let name = str_of(o, "name")?;
    let r = others(rows, except).find(|r| str_of(r, "name") == Some(name))?;
    Some(conflict(
        &format!(
            "{} with the same name already exists in the project",
            n.entity
        ),
        r,
    ))
}

/// A project has one default state: a new default unsets the others. (Labels have no
/// `default`, so this never applies to them.)
fn take_default(rows: &mut [Obj], o: &Obj) {
    if o.get("default") == Some(&Value::Bool(true)) {
        for other in rows {
            other.insert("default".into(), json!(false));
        }
    }
}

pub(super) fn create(s: &mut Store, n: &Named, pid: Uuid, body: &Obj) -> R {
    let o = (n.validate)(body, true)?;
    if let Some(r) = named_conflict(n, n.table.of(project(s, pid)?), &o, body, None) {
        return Err(r);
    }
    let row = (n.build)(s, pid, &o);
    let rows = n.table.of_mut(project_mut(s, pid)?);
    take_default(rows, &o);
    rows.push(row.clone());
    Ok(Resp::json(201, &Value::Object(row)))
}

pub(super) fn patch(s: &mut Store, n: &Named, pid: Uuid, id: Uuid, body: &Obj) -> R {
    find(n.table.of(project(s, pid)?), id)?;
    let o = (n.validate)(body, false)?;
    if let Some(r) = named_conflict(n, n.table.of(project(s, pid)?), &o, body, Some(id)) {
        return Err(r);
    }
    take_default(n.table.of_mut(project_mut(s, pid)?), &o);
    let row = patch_row(s, pid, n.table, id, &o)?;
    Ok(Resp::json(200, &Value::Object(row)))
}

pub(super) fn delete_state(s: &mut Store, pid: Uuid, id: Uuid) -> R {
    let p = project_mut(s, pid)?;
    let sid = id.to_string();
    let st = p.state(&sid).ok_or_else(Resp::not_found)?;
    if st.get("default") == Some(&Value::Bool(true)) {
        return Err(Resp::error(400, "Default state cannot be deleted"));
    }
    if p.items
        .values()
        .any(|i| str_of(&i.obj, "state") == Some(sid.as_str()))
    {
        return Err(Resp::error(
            400,
            "The state is not empty, only empty states can be deleted",
        ));
    }
    remove_by_id(&mut p.states, id)?;
    Ok(Resp::empty(204))
}

/// Deleting a label also takes it off every work item.
pub(super) fn delete_label(s: &mut Store, pid: Uuid, id: Uuid) -> R {
    let p = project_mut(s, pid)?;
    remove_by_id(&mut p.labels, id)?;
    let sid = id.to_string();
    for item in p.items.values_mut() {
        if let Some(Value::Array(ls)) = item.obj.get_mut("labels") {
            ls.retain(|l| l.as_str() != Some(sid.as_str()));
        }
    }
    Ok(Resp::empty(204))
}
