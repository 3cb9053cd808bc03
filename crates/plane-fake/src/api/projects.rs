//! Projects: list, create, read, patch, delete.

use super::rows::{Read, now_str, project, project_mut, update_events, without};
use super::validate::{Char, Form};
use super::{R, WebhookEvent};
use crate::resp::Resp;
use crate::store::{Obj, Store, str_of};
use serde_json::{Value, json};
use uuid::Uuid;

/// The response fields a project webhook's `data` leaves out.
const NOT_IN_WEBHOOK: [&str; 7] = [
    "total_members",
    "total_cycles",
    "total_modules",
    "is_member",
    "sort_order",
    "member_role",
    "is_deployed",
];

pub(super) fn list(s: &Store, read: &Read<'_>) -> R {
    let all = s
        .projects
        .iter()
        .map(|p| read.render(s, &s.project_view(p)))
        .collect();
    read.paginate(all)
}

fn validate(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut f = Form::new(body);
    f.char("name", Char::filled(creating, 255));
    f.char("identifier", Char::filled(creating, 12));
    f.char("description", Char::optional(usize::MAX));
    for k in [
        "module_view",
        "cycle_view",
        "issue_views_view",
        "page_view",
        "intake_view",
        "guest_view_all_features",
        "is_issue_type_enabled",
    ] {
        f.bool(k);
    }
    f.external();
    // Taken as given.
    for k in [
        "emoji",
        "icon_prop",
        "logo_props",
        "cover_image",
        "timezone",
        "archive_in",
        "close_in",
        "network",
        "project_lead",
        "default_assignee",
    ] {
        if let Some(v) = body.get(k) {
            f.set(k, v.clone());
        }
    }
    let mut o = f.finish()?;
    if let Some(Value::String(ident)) = o.get("identifier").cloned() {
        o.insert("identifier".into(), json!(ident.to_uppercase()));
    }
    Ok(o)
}

fn name_conflict(s: &Store, o: &Obj, except: Option<Uuid>) -> Option<Resp> {
    let others = || s.projects.iter().filter(move |p| Some(p.id) != except);
    if let Some(name) = str_of(o, "name")
        && others().any(|p| str_of(&p.obj, "name") == Some(name))
    {
        return Some(Resp::json(
            409,
            &json!({"name": "The project name is already taken"}),
        ));
    }
    if let Some(ident) = str_of(o, "identifier")
        && others().any(|p| p.identifier() == ident)
    {
        return Some(Resp::json(
            409,
            &json!({"identifier": "The project identifier is already taken"}),
        ));
    }
    None
}

pub(super) fn create(s: &mut Store, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let o = validate(body, true)?;
    if let Some(r) = name_conflict(s, &o, None) {
        return Err(r);
    }
    let name = str_of(&o, "name").unwrap_or_default().to_owned();
    let ident = str_of(&o, "identifier").unwrap_or_default().to_owned();
    let id = s.new_project(&name, &ident, &o);
    let view = s.project_view(project(s, id)?);
    let data = without(&view, &NOT_IN_WEBHOOK);
    ev.push(WebhookEvent::whole(s, "project", "created", data));
    Ok(Resp::json(201, &Value::Object(view)))
}

pub(super) fn patch(s: &mut Store, pid: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    project(s, pid)?;
    let o = validate(body, false)?;
    if let Some(r) = name_conflict(s, &o, Some(pid)) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = project_mut(s, pid)?;
    let before = p.obj.clone();
    for (k, v) in &o {
        p.obj.insert(k.clone(), v.clone());
    }
    p.obj.insert("updated_at".into(), json!(ts));
    p.obj.insert("updated_by".into(), json!(user));
    let view = s.project_view(project(s, pid)?);
    let data = without(&view, &NOT_IN_WEBHOOK);
    update_events(s, "project", &before, &o, body, data, ev);
    Ok(Resp::json(200, &Value::Object(view)))
}

pub(super) fn delete(s: &mut Store, pid: Uuid, ev: &mut Vec<WebhookEvent>) -> R {
    let pos = s
        .projects
        .iter()
        .position(|p| p.id == pid)
        .ok_or_else(Resp::not_found)?;
    s.projects.remove(pos);
    let data = json!({"id": pid.to_string()});
    ev.push(WebhookEvent::whole(s, "project", "deleted", data));
    Ok(Resp::empty(204))
}
