//! Work items: list (with Plane's ordering and external-pair lookup), create, patch, and the
//! workspace-wide lookup by identifier (`BIR-12`).

use super::rows::{
    Read, external_conflict, external_exists, external_taken, item, project, same_external,
    update_events,
};
use super::validate::{Char, Form, dates_in_order};
use super::{R, WebhookEvent};
use crate::pagination;
use crate::resp::Resp;
use crate::store::{Obj, PRIORITIES, Store};
use serde_json::Value;
use uuid::Uuid;

/// The orderings `?order_by=` accepts (with an optional `-`).
const ORDER_KEYS: [&str; 8] = [
    "created_at",
    "updated_at",
    "sequence_id",
    "sort_order",
    "name",
    "priority",
    "start_date",
    "target_date",
];

fn validate(s: &Store, pid: Uuid, body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let p = project(s, pid)?;
    let mut f = Form::new(body);
    f.char("name", Char::filled(creating, 255));
    f.char("description_html", Char::optional(usize::MAX));
    if body.get("priority") == Some(&Value::Null) {
        f.error("priority", "This field may not be null.");
    } else {
        f.choice("priority", &PRIORITIES);
    }
    f.date("start_date");
    f.date("target_date");
    f.pk("state", |id| {
        s.projects.iter().any(|p| p.state(id).is_some())
    });
    f.pk("parent", |id| s.find_item(id).is_some());
    f.id_list("assignees", |id| s.member(id).is_some());
    f.id_list("labels", |id| p.label(id).is_some());
    f.bool("is_draft");
    f.number("sort_order");
    match body.get("point") {
        None => {}
        Some(v @ Value::Null) => f.set("point", v.clone()),
        Some(v @ Value::Number(n)) if n.is_i64() => f.set("point", v.clone()),
        Some(_) => f.error("point", "A valid integer is required."),
    }
    f.external();
    if creating {
        // An import may backdate an item; a null `created_at` means "now".
        if body.get("created_at") != Some(&Value::Null) {
            f.datetime("created_at", false);
        }
        f.pk("created_by", |id| Uuid::parse_str(id).is_ok());
    }
    let o = f.finish()?;
    // Object-level validation (IssueSerializer.validate).
    dates_in_order(
        &o,
        "start_date",
        "target_date",
        "Start date cannot exceed target date",
    )?;
    if let Some(st) = o.get("state").and_then(Value::as_str)
        && p.state(st).is_none()
    {
        return Err(Resp::non_field_error(
            "State is not valid please pass a valid state_id",
        ));
    }
    if let Some(par) = o.get("parent").and_then(Value::as_str)
        && p.item(par).is_none()
    {
        return Err(Resp::non_field_error(
            "Parent is not valid issue_id please pass a valid issue_id",
        ));
    }
    Ok(o)
}

pub(super) fn list(s: &Store, pid: Uuid, read: &Read<'_>) -> R {
    let p = project(s, pid)?;
    let q = read.q;
    // Single-object lookup by external pair (both must be given).
    if let (Some(eid), Some(esrc)) = (q.get("external_id"), q.get("external_source"))
        && !eid.is_empty()
        && !esrc.is_empty()
    {
        let found: Vec<&Obj> = p
            .items
            .values()
            .map(|i| &i.obj)
            .filter(|o| same_external(o, esrc, eid))
            .collect();
        return match found.as_slice() {
            [] => Err(Resp::not_found()),
            [one] => read.one(s, one),
            // Django's MultipleObjectsReturned.
            _ => Err(Resp::server_error()),
        };
    }
    let page = read.page()?;
    let order_by = q.get("order_by").unwrap_or("-created_at");
    let listed = p.visible_newest_first();
    let total = listed.len();
    let results: Vec<Value> = if order_by == "-created_at" {
        listed
            .iter()
            .skip(page.offset())
            .take(page.limit)
            .filter_map(|id| p.items.get(id))
            .map(|i| read.render(s, &i.obj))
            .collect()
    } else {
        let (desc, key) = match order_by.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, order_by),
        };
        if !ORDER_KEYS.contains(&key) {
            // Django raises FieldError for an unknown order_by: a 500.
            return Err(Resp::server_error());
        }
        let mut rows: Vec<&Obj> = listed
            .iter()
            .rev()
            .filter_map(|id| p.items.get(id).map(|i| &i.obj))
            .collect();
        let rank = |o: &Obj| -> (i64, f64, String) {
            match o.get(key) {
                Some(Value::Number(n)) => (0, n.as_f64().unwrap_or(0.0), String::new()),
                Some(Value::String(st)) if key == "priority" => (
                    PRIORITIES
                        .iter()
                        .position(|p| p == st)
                        .map_or(9, |i| i as i64),
                    0.0,
                    String::new(),
                ),
                Some(Value::String(st)) => (0, 0.0, st.clone()),
                _ => (1, 0.0, String::new()),
            }
        };
        rows.sort_by(|a, b| {
            let (ra, rb) = (rank(a), rank(b));
            let ord =
                ra.0.cmp(&rb.0)
                    .then(ra.1.total_cmp(&rb.1))
                    .then(ra.2.cmp(&rb.2));
            if desc { ord.reverse() } else { ord }
        });
        rows.into_iter()
            .skip(page.offset())
            .take(page.limit)
            .map(|o| read.render(s, o))
            .collect()
    };
    Ok(Resp::json(200, &pagination::envelope(page, total, results)))
}

pub(super) fn by_identifier(s: &Store, ident: &str, read: &Read<'_>) -> R {
    let (proj, seq) = ident.rsplit_once('-').unwrap_or(("", ""));
    let seq: i64 = seq.parse().map_err(|_| Resp::not_found())?;
    let item = s
        .projects
        .iter()
        .filter(|p| p.identifier() == proj)
        .flat_map(|p| p.items.values())
        .find(|i| i.obj.get("sequence_id").and_then(Value::as_i64) == Some(seq))
        .ok_or_else(Resp::not_found)?;
    read.one(s, &item.obj)
}

fn items(s: &Store, pid: Uuid) -> Result<impl Iterator<Item = &Obj>, Resp> {
    Ok(project(s, pid)?.items.values().map(|i| &i.obj))
}

pub(super) fn create(s: &mut Store, pid: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let fields = validate(s, pid, body, true)?;
    if let Some(r) = external_conflict(items(s, pid)?, body, "Issue", None) {
        return Err(r);
    }
    let item = s.new_work_item(pid, &fields).ok_or_else(Resp::not_found)?;
    let data = s.work_item_webhook_data(&item);
    ev.push(WebhookEvent::whole(s, "issue", "created", data));
    Ok(Resp::json(201, &Value::Object(item)))
}

pub(super) fn patch(
    s: &mut Store,
    pid: Uuid,
    id: Uuid,
    body: &Obj,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    let current = item(s, pid, id)?.clone();
    // Plane checks the external pair before validating, and answers with the id of the item
    // being patched (not the conflicting one).
    if external_taken(items(s, pid)?, body, &current).is_some() {
        return Err(external_exists("Issue", &current));
    }
    let changes = validate(s, pid, body, false)?;
    let (before, after) = s
        .update_work_item(pid, id, &changes)
        .ok_or_else(Resp::not_found)?;
    let data = s.work_item_webhook_data(&after);
    update_events(s, "issue", &before, &changes, body, data, ev);
    Ok(Resp::json(200, &Value::Object(after)))
}
