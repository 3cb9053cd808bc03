//! Routing, authentication, throttling and the endpoint handlers.
//!
//! The order of checks copies Django + DRF: CommonMiddleware's slash redirect and URL
//! resolution first, then authenticate → permission → throttle → method → view.
//!
//! `route` resolves URLs, `request` reads queries and bodies, `validate` holds the field
//! checks and `rows` what all views share; each other module holds one resource family.

mod comments_links;
mod cycles_modules;
mod projects;
mod request;
mod route;
mod rows;
mod states_labels;
mod validate;
mod work_items;

use crate::ratelimit::Decision;
use crate::resp::Resp;
use crate::server::Shared;
use crate::store::{Store, str_of};
use request::{Query, parse_body};
use route::{Kind, parse_route};
use rows::{Read, Table, project, project_mut};
use serde_json::{Value, json};
use std::time::Instant;

/// A request as the API layer sees it.
#[derive(Debug)]
pub(crate) struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// A webhook the request triggers (sent after the response, like Plane's Celery task).
#[derive(Debug, Clone)]
pub(crate) struct WebhookEvent {
    pub event: &'static str,
    pub action: &'static str,
    pub data: Value,
    pub activity: Value,
}

impl WebhookEvent {
    /// A `created` or `deleted` delivery: its activity names no field.
    fn whole(s: &Store, event: &'static str, action: &'static str, data: Value) -> WebhookEvent {
        WebhookEvent {
            event,
            action,
            data,
            activity: s.webhook_activity(None, Value::Null, Value::Null),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub resp: Resp,
    pub events: Vec<WebhookEvent>,
}

pub(crate) fn handle(shared: &Shared, req: &ApiRequest<'_>, now: Instant) -> Outcome {
    let plain = |resp| Outcome {
        resp,
        events: Vec::new(),
    };
    // CommonMiddleware (APPEND_SLASH): redirect only when the slashed URL resolves.
    if !req.path.ends_with('/') {
        let slashed = format!("{}/", req.path);
        if parse_route(&slashed).is_some() {
            let location = match req.query {
                Some(q) => format!("{slashed}?{q}"),
                None => slashed,
            };
            let mut r = Resp::empty(301);
            r.headers
                .push(("Content-Type", "text/html; charset=utf-8".to_owned()));
            r.headers.push(("Location", location));
            return plain(r);
        }
        return plain(Resp::page_not_found());
    }
    let Some(route) = parse_route(req.path) else {
        return plain(Resp::page_not_found());
    };
    let allow = route.kind.allow();
    let with_allow = |r: Resp| plain(r.header("Allow", allow));

    // Authentication: X-API-Key; with OAuth on (Cloud), also `Authorization: Bearer`.
    // CE ignores Bearer, so a fake without OAuth does too.
    let key = req
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty());
    let bearer_sent = shared.oauth.is_some()
        && req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer "));
    let (key, via_bearer) = match (key, bearer_sent) {
        (Some(key), _) => (Some(key), false),
        (None, true) => match shared.bearer(req.headers) {
            Some(token) => (Some(token), true),
            None => return with_allow(crate::oauth::invalid_token()),
        },
        (None, false) => (None, false),
    };
    let Some(key) = key else {
        return with_allow(Resp::detail(
            401,
            "Authentication credentials were not provided.",
        ));
    };
    if !via_bearer && !shared.key_is_valid(key) {
        return with_allow(Resp::detail(403, "Given API token is not valid"));
    }

    // Permissions: workspace membership, then project membership.
    {
        let store = shared.store();
        let denied = route
            .slug
            .as_deref()
            .is_some_and(|s| s != store.workspace_slug)
            || route
                .kind
                .member_project()
                .is_some_and(|p| store.project(p).is_none());
        if denied {
            return with_allow(Resp::detail(
                403,
                "You do not have permission to perform this action.",
            ));
        }
    }

    // Throttle.
    let decision = shared.limiter().check(key, now);
    let mut outcome = match decision {
        Decision::Refused { retry_after } => {
            return with_allow(Resp::throttled(Some(retry_after)));
        }
        Decision::Unlimited | Decision::Allowed { .. } => {
            let method = if req.method == "HEAD" {
                "GET"
            } else {
                req.method
            };
            if !allow.split(", ").any(|m| m == method) {
                plain(Resp::detail(
                    405,
                    &format!("Method \"{}\" not allowed.", req.method),
                ))
            } else {
                let mut store = shared.store();
                let mut events = Vec::new();
                let q = Query::parse(req.query);
                // A key owned by another member makes that member the actor of this request.
                store.acting = store.key_owners.get(key).cloned();
                let resp = dispatch(&mut store, &route.kind, method, req, &q, &mut events)
                    .unwrap_or_else(|e| e);
                store.acting = None;
                Outcome { resp, events }
            }
        }
    };
    outcome.resp.headers.push(("Allow", allow.to_owned()));
    if let Decision::Allowed {
        remaining,
        reset_epoch,
    } = decision
    {
        outcome
            .resp
            .headers
            .push(("X-RateLimit-Remaining", remaining.to_string()));
        outcome
            .resp
            .headers
            .push(("X-RateLimit-Reset", reset_epoch.to_string()));
    }
    outcome
}

/// A work-item PATCH made by member `user` in Plane's web app (the session API under
/// `/api/`, not `/api/v1/`): the same validation, change and webhook fan-out as the public
/// API's PATCH (both end in Plane's `model_activity`), with `user` as the actor. No API key is
/// involved, so there is no throttle and no request-log entry.
pub(crate) fn web_patch_work_item(
    s: &mut Store,
    user: &str,
    pid: uuid::Uuid,
    id: uuid::Uuid,
    body: &crate::store::Obj,
) -> Outcome {
    s.acting = Some(user.to_owned());
    let mut events = Vec::new();
    let resp = work_items::patch(s, pid, id, body, &mut events).unwrap_or_else(|e| e);
    s.acting = None;
    Outcome { resp, events }
}

type R = Result<Resp, Resp>;

fn dispatch(
    s: &mut Store,
    kind: &Kind,
    method: &str,
    req: &ApiRequest<'_>,
    q: &Query,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    use Kind::*;
    let read = Read::new(q);
    let read = &read;
    match (kind, method) {
        (UsersMe, _) => Ok(Resp::json(200, &Value::Object(s.actor().clone()))),
        (WorkspaceMembers, _) => {
            let members: Vec<Value> = s
                .all_members()
                .map(|u| {
                    let mut u = u.clone();
                    u.insert("role".into(), json!(20));
                    Value::Object(u)
                })
                .collect();
            Ok(Resp::json(200, &Value::Array(members)))
        }
        (ProjectMembers(_), _) => {
            let members: Vec<Value> = s
                .all_members()
                .filter_map(|u| s.user_lite_by_id(str_of(u, "id")?))
                .collect();
            Ok(Resp::json(200, &Value::Array(members)))
        }
        (Projects, "GET") => projects::list(s, read),
        (Projects, _) => projects::create(s, &parse_body(req)?, ev),
        (Project(pid), "GET") => read.one(s, &s.project_view(project(s, *pid)?)),
        (Project(pid), "PATCH") => projects::patch(s, *pid, &parse_body(req)?, ev),
        (Project(pid), _) => projects::delete(s, *pid, ev),
        (ByIdentifier(ident), _) => work_items::by_identifier(s, ident, read),
        (WorkItems(pid), "GET") => work_items::list(s, *pid, read),
        (WorkItems(pid), _) => work_items::create(s, *pid, &parse_body(req)?, ev),
        (WorkItem(pid, id), "GET") => read.one(s, rows::item(s, *pid, *id)?),
        (WorkItem(pid, id), "PATCH") => work_items::patch(s, *pid, *id, &parse_body(req)?, ev),
        (WorkItem(pid, id), _) => {
            project_mut(s, *pid)?
                .remove_item(*id)
                .ok_or_else(Resp::not_found)?;
            Ok(Resp::empty(204))
        }
        (States(pid), "GET") => read.list(s, &project(s, *pid)?.states),
        (States(pid), _) => {
            states_labels::create(s, &states_labels::STATES, *pid, &parse_body(req)?)
        }
        (State(pid, id), "GET") => {
            let st = project(s, *pid)?.state(&id.to_string());
            read.one(s, st.ok_or_else(Resp::not_found)?)
        }
        (State(pid, id), "PATCH") => {
            states_labels::patch(s, &states_labels::STATES, *pid, *id, &parse_body(req)?)
        }
        (State(pid, id), _) => states_labels::delete_state(s, *pid, *id),
        (Labels(pid), "GET") => read.list(s, &project(s, *pid)?.labels),
        (Labels(pid), _) => {
            states_labels::create(s, &states_labels::LABELS, *pid, &parse_body(req)?)
        }
        (Label(pid, id), "GET") => {
            let l = project(s, *pid)?.label(&id.to_string());
            read.one(s, l.ok_or_else(Resp::not_found)?)
        }
        (Label(pid, id), "PATCH") => {
            states_labels::patch(s, &states_labels::LABELS, *pid, *id, &parse_body(req)?)
        }
        (Label(pid, id), _) => states_labels::delete_label(s, *pid, *id),
        (Comments(pid, iid), "GET") => rows::list_children(s, Table::Comments, *pid, *iid, read),
        (Comments(pid, iid), _) => {
            comments_links::create_comment(s, *pid, *iid, &parse_body(req)?, ev)
        }
        (Comment(pid, iid, id), "GET") => {
            rows::get_child(s, Table::Comments, *pid, *iid, *id, read)
        }
        (Comment(pid, iid, id), "PATCH") => {
            comments_links::patch_comment(s, *pid, *iid, *id, &parse_body(req)?, ev)
        }
        (Comment(pid, iid, id), _) => rows::delete_child(s, Table::Comments, *pid, *iid, *id),
        (Links(pid, iid), "GET") => rows::list_children(s, Table::Links, *pid, *iid, read),
        (Links(pid, iid), _) => comments_links::create_link(s, *pid, *iid, &parse_body(req)?),
        (Link(pid, iid, id), "GET") => rows::get_child(s, Table::Links, *pid, *iid, *id, read),
        (Link(pid, iid, id), "PATCH") => {
            comments_links::patch_link(s, *pid, *iid, *id, &parse_body(req)?)
        }
        (Link(pid, iid, id), _) => rows::delete_child(s, Table::Links, *pid, *iid, *id),
        (Activities(pid, iid), _) => rows::list_children(s, Table::Activities, *pid, *iid, read),
        (Activity(pid, iid, id), _) => rows::get_child(s, Table::Activities, *pid, *iid, *id, read),
        (Groups(g, pid), "GET") => g.list(s, *pid, read),
        (Groups(g, pid), _) => g.create(s, *pid, &parse_body(req)?, ev),
        (OneGroup(g, pid, id), "GET") => g.get(s, *pid, *id, read),
        (OneGroup(g, pid, id), "PATCH") => g.patch(s, *pid, *id, &parse_body(req)?, ev),
        (OneGroup(g, pid, id), _) => g.delete(s, *pid, *id),
        (GroupIssues(g, pid, gid), "GET") => g.list_issues(s, *pid, *gid, read),
        (GroupIssues(g, pid, gid), _) => g.add_issues(s, *pid, *gid, &parse_body(req)?),
        (GroupIssue(g, pid, gid, iid), "GET") => g.get_issue(s, *pid, *gid, *iid, read),
        (GroupIssue(g, pid, gid, iid), _) => g.remove_issue(s, *pid, *gid, *iid),
    }
}
