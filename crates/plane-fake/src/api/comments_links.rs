//! A work item's comments and links (their GET and DELETE are shared in `rows`).

use super::rows::{
    Table, child, external_conflict, external_exists, external_taken, item, now_str, others,
    patch_row, project, project_mut, update_events, without,
};
use super::validate::{Char, Form};
use super::{R, WebhookEvent};
use crate::resp::Resp;
use crate::store::{Obj, Store, id_of, object, str_of};
use serde_json::{Value, json};
use uuid::Uuid;

/// The model name in Plane's 409 texts.
const COMMENT: &str = "Work item comment";

fn comment_webhook_data(c: &Obj) -> Value {
    without(c, &["is_member"])
}

fn validate_comment(body: &Obj) -> Result<Obj, Resp> {
    let mut f = Form::new(body);
    f.char("comment_html", Char::optional(usize::MAX));
    f.choice("access", &["INTERNAL", "EXTERNAL"]);
    f.external();
    f.finish()
}

pub(super) fn create_comment(
    s: &mut Store,
    pid: Uuid,
    iid: Uuid,
    body: &Obj,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    item(s, pid, iid)?;
    let o = validate_comment(body)?;
    // The external pair is unique across the whole project, not per work item.
    if let Some(r) = external_conflict(&project(s, pid)?.comments, body, COMMENT, None) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let get = |k: &str, d: Value| o.get(k).cloned().unwrap_or(d);
    let html = get("comment_html", json!("<p></p>"));
    let c = object(json!({
        "id": Uuid::new_v4().to_string(),
        "is_member": true,
        "created_at": ts,
        "updated_at": ts,
        "deleted_at": null,
        "comment_html": html,
        "attachments": [],
        "access": get("access", json!("INTERNAL")),
        "external_source": get("external_source", Value::Null),
        "external_id": get("external_id", Value::Null),
        "edited_at": null,
        "created_by": user,
        "updated_by": null,
        "project": pid.to_string(),
        "workspace": s.workspace_id.to_string(),
        "description": Uuid::new_v4().to_string(),
        "issue": iid.to_string(),
        "actor": user,
        "parent": null,
    }));
    s.add_activity(pid, iid, "created", Some("comment"), Value::Null, html);
    project_mut(s, pid)?.comments.push(c.clone());
    let data = comment_webhook_data(&c);
    ev.push(WebhookEvent::whole(s, "issue_comment", "created", data));
    Ok(Resp::json(201, &Value::Object(c)))
}

pub(super) fn patch_comment(
    s: &mut Store,
    pid: Uuid,
    iid: Uuid,
    id: Uuid,
    body: &Obj,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    let before = child(&project(s, pid)?.comments, iid, id)?.clone();
    let o = validate_comment(body)?;
    if let Some(existing) = external_taken(&project(s, pid)?.comments, body, &before) {
        return Err(external_exists(COMMENT, existing));
    }
    let mut row = patch_row(s, pid, Table::Comments, id, &o)?;
    if o.contains_key("comment_html") {
        // Stamped with the same time as `updated_at`.
        let ts = row.get("updated_at").cloned().unwrap_or(Value::Null);
        row.insert("edited_at".into(), ts);
        let rows = &mut project_mut(s, pid)?.comments;
        if let Some(stored) = rows.iter_mut().find(|c| id_of(c) == Some(id)) {
            *stored = row.clone();
        }
    }
    let data = comment_webhook_data(&row);
    update_events(s, "issue_comment", &before, &o, body, data, ev);
    Ok(Resp::json(200, &Value::Object(row)))
}

fn validate_link(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut f = Form::new(body);
    f.char("title", Char::nullable(255));
    f.char("url", Char::filled(creating, usize::MAX));
    if let Some(url) = f.value("url").and_then(Value::as_str).map(str::to_owned) {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !url.contains(' ') => {}
            _ if url.contains("://") && !url.contains(' ') => f.error("url", "Invalid URL scheme."),
            _ => f.error("url", "Invalid URL format."),
        }
    }
    f.finish()
}

/// Plane's 400 for a link URL the work item already has (in a row other than `except`).
fn url_taken(rows: &[Obj], iid: Uuid, url: &Value, except: Option<Uuid>) -> Result<(), Resp> {
    let issue = iid.to_string();
    if others(rows, except)
        .any(|l| str_of(l, "issue") == Some(issue.as_str()) && l.get("url") == Some(url))
    {
        return Err(Resp::json(
            400,
            &json!({"error": ["URL already exists for this Issue"]}),
        ));
    }
    Ok(())
}

pub(super) fn create_link(s: &mut Store, pid: Uuid, iid: Uuid, body: &Obj) -> R {
    item(s, pid, iid)?;
    let o = validate_link(body, true)?;
    let url = o.get("url").cloned().unwrap_or(Value::Null);
    url_taken(&project(s, pid)?.links, iid, &url, None)?;
    let ts = now_str(s);
    let user = s.user_id();
    let l = object(json!({
        "id": Uuid::new_v4().to_string(),
        "created_at": ts,
        "updated_at": ts,
        "deleted_at": null,
        "title": o.get("title").cloned().unwrap_or(Value::Null),
        "url": url,
        "metadata": {},
        "created_by": user,
        "updated_by": null,
        "project": pid.to_string(),
        "workspace": s.workspace_id.to_string(),
        "issue": iid.to_string(),
    }));
    project_mut(s, pid)?.links.push(l.clone());
    Ok(Resp::json(201, &Value::Object(l)))
}

pub(super) fn patch_link(s: &mut Store, pid: Uuid, iid: Uuid, id: Uuid, body: &Obj) -> R {
    child(&project(s, pid)?.links, iid, id)?;
    let o = validate_link(body, false)?;
    if let Some(url) = o.get("url") {
        url_taken(&project(s, pid)?.links, iid, url, Some(id))?;
    }
    let row = patch_row(s, pid, Table::Links, id, &o)?;
    Ok(Resp::json(200, &Value::Object(row)))
}
