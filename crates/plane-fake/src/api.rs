//! Routing, authentication, throttling and the endpoint handlers.
//!
//! The order of checks copies Django + DRF: CommonMiddleware's slash redirect and URL
//! resolution first, then authenticate → permission → throttle → method → view.

use crate::pagination::{self, Page};
use crate::ratelimit::Decision;
use crate::resp::Resp;
use crate::server::Shared;
use crate::store::{Obj, PRIORITIES, Project, Store, id_of, ids_in, str_of};
use serde_json::{Value, json};
use std::time::Instant;
use uuid::Uuid;

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

#[derive(Debug)]
pub(crate) struct Outcome {
    pub resp: Resp,
    pub events: Vec<WebhookEvent>,
}

// ----- routes -----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    UsersMe,
    Projects,
    Project(Uuid),
    WorkspaceMembers,
    ByIdentifier(String),
    WorkItems(Uuid),
    WorkItem(Uuid, Uuid),
    States(Uuid),
    State(Uuid, Uuid),
    Labels(Uuid),
    Label(Uuid, Uuid),
    Comments(Uuid, Uuid),
    Comment(Uuid, Uuid, Uuid),
    Links(Uuid, Uuid),
    Link(Uuid, Uuid, Uuid),
    Activities(Uuid, Uuid),
    Activity(Uuid, Uuid, Uuid),
    Cycles(Uuid),
    Cycle(Uuid, Uuid),
    CycleIssues(Uuid, Uuid),
    CycleIssue(Uuid, Uuid, Uuid),
    Modules(Uuid),
    Module(Uuid, Uuid),
    ModuleIssues(Uuid, Uuid),
    ModuleIssue(Uuid, Uuid, Uuid),
    ProjectMembers(Uuid),
}

#[derive(Debug, Clone)]
struct Route {
    slug: Option<String>,
    kind: Kind,
}

/// Django's `<uuid:...>` converter: lowercase, hyphenated.
fn uuid_seg(s: &str) -> Option<Uuid> {
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        });
    if ok { Uuid::parse_str(s).ok() } else { None }
}

fn is_items(s: &str) -> bool {
    s == "work-items" || s == "issues"
}

fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/api/v1/")?.strip_suffix('/')?;
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    if segs == ["users", "me"] {
        return Some(Route {
            slug: None,
            kind: Kind::UsersMe,
        });
    }
    let ["workspaces", slug, tail @ ..] = segs.as_slice() else {
        return None;
    };
    let kind = match tail {
        ["projects"] => Kind::Projects,
        ["members"] => Kind::WorkspaceMembers,
        [items, ident] if is_items(items) => {
            let (proj, seq) = ident.rsplit_once('-')?;
            if proj.is_empty() || seq.is_empty() {
                return None;
            }
            Kind::ByIdentifier((*ident).to_owned())
        }
        ["projects", pid, rest @ ..] => {
            let p = uuid_seg(pid)?;
            match rest {
                [] => Kind::Project(p),
                [items] if is_items(items) => Kind::WorkItems(p),
                [items, id] if is_items(items) => Kind::WorkItem(p, uuid_seg(id)?),
                [items, id, "comments"] if is_items(items) => Kind::Comments(p, uuid_seg(id)?),
                [items, id, "comments", c] if is_items(items) => {
                    Kind::Comment(p, uuid_seg(id)?, uuid_seg(c)?)
                }
                [items, id, "links"] if is_items(items) => Kind::Links(p, uuid_seg(id)?),
                [items, id, "links", l] if is_items(items) => {
                    Kind::Link(p, uuid_seg(id)?, uuid_seg(l)?)
                }
                [items, id, "activities"] if is_items(items) => Kind::Activities(p, uuid_seg(id)?),
                [items, id, "activities", a] if is_items(items) => {
                    Kind::Activity(p, uuid_seg(id)?, uuid_seg(a)?)
                }
                ["states"] => Kind::States(p),
                ["states", id] => Kind::State(p, uuid_seg(id)?),
                ["labels"] => Kind::Labels(p),
                ["labels", id] => Kind::Label(p, uuid_seg(id)?),
                ["cycles"] => Kind::Cycles(p),
                ["cycles", id] => Kind::Cycle(p, uuid_seg(id)?),
                ["cycles", id, "cycle-issues"] => Kind::CycleIssues(p, uuid_seg(id)?),
                ["cycles", id, "cycle-issues", i] => {
                    Kind::CycleIssue(p, uuid_seg(id)?, uuid_seg(i)?)
                }
                ["modules"] => Kind::Modules(p),
                ["modules", id] => Kind::Module(p, uuid_seg(id)?),
                ["modules", id, "module-issues"] => Kind::ModuleIssues(p, uuid_seg(id)?),
                ["modules", id, "module-issues", i] => {
                    Kind::ModuleIssue(p, uuid_seg(id)?, uuid_seg(i)?)
                }
                ["members"] | ["project-members"] => Kind::ProjectMembers(p),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Route {
        slug: Some((*slug).to_owned()),
        kind,
    })
}

impl Kind {
    /// The `Allow` header DRF sends for the view.
    fn allow(&self) -> &'static str {
        use Kind::*;
        match self {
            UsersMe | WorkspaceMembers | ByIdentifier(_) | Activities(..) | Activity(..)
            | ProjectMembers(_) => "GET",
            Projects | WorkItems(_) | States(_) | Labels(_) | Comments(..) | Links(..)
            | Cycles(_) | Modules(_) | CycleIssues(..) | ModuleIssues(..) => "GET, POST",
            CycleIssue(..) | ModuleIssue(..) => "GET, DELETE",
            Project(_) | WorkItem(..) | State(..) | Label(..) | Comment(..) | Link(..)
            | Cycle(..) | Module(..) => "GET, PATCH, DELETE",
        }
    }

    /// The project a project-scoped view checks membership of.
    fn member_project(&self) -> Option<Uuid> {
        use Kind::*;
        match self {
            UsersMe | Projects | Project(_) | WorkspaceMembers | ByIdentifier(_) => None,
            WorkItems(p)
            | WorkItem(p, _)
            | States(p)
            | State(p, _)
            | Labels(p)
            | Label(p, _)
            | Comments(p, _)
            | Comment(p, ..)
            | Links(p, _)
            | Link(p, ..)
            | Activities(p, _)
            | Activity(p, ..)
            | Cycles(p)
            | Cycle(p, _)
            | CycleIssues(p, _)
            | CycleIssue(p, ..)
            | Modules(p)
            | Module(p, _)
            | ModuleIssues(p, _)
            | ModuleIssue(p, ..)
            | ProjectMembers(p) => Some(*p),
        }
    }
}

// ----- request helpers --------------------------------------------------------------------

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// Django's `QueryDict.get`: the last value.
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn list(&self, k: &str) -> Vec<String> {
        self.get(k)
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn fields(&self) -> Option<Vec<String>> {
        let f = self.list("fields");
        (!f.is_empty()).then_some(f)
    }
}

fn python_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// DRF's request.data: JSON or form bodies; an absent body or content type is `{}`.
fn parse_body(req: &ApiRequest<'_>) -> Result<Obj, Resp> {
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let Some(ct) = ct.filter(|c| !c.is_empty()) else {
        return Ok(Obj::new());
    };
    if req.body.is_empty() {
        return Ok(Obj::new());
    }
    if ct == "application/json" || ct.ends_with("+json") {
        match serde_json::from_slice::<Value>(req.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(Resp::non_field_error(&format!(
                "Invalid data. Expected a dictionary, but got {}.",
                python_type_name(&other)
            ))),
            Err(e) => Err(Resp::detail(400, &format!("JSON parse error - {e}"))),
        }
    } else if ct == "application/x-www-form-urlencoded" {
        let text = String::from_utf8_lossy(req.body);
        let q = Query::parse(Some(&text));
        let mut m = Obj::new();
        for (k, v) in q.0 {
            m.insert(k, Value::String(v));
        }
        Ok(m)
    } else {
        Err(Resp::detail(
            415,
            &format!("Unsupported media type \"{ct}\" in request."),
        ))
    }
}

// ----- the pipeline -----------------------------------------------------------------------

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

    // Authentication: only X-API-Key counts (CE ignores Authorization: Bearer).
    let key = req
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty());
    let Some(key) = key else {
        return with_allow(Resp::detail(
            401,
            "Authentication credentials were not provided.",
        ));
    };
    if !shared.keys.iter().any(|k| k == key) {
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
                let resp = dispatch(&mut store, &route.kind, method, req, &q, &mut events)
                    .unwrap_or_else(|e| e);
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
    let fields = q.fields();
    let fields = fields.as_deref();
    let expand = q.list("expand");
    match (kind, method) {
        (UsersMe, _) => Ok(Resp::json(200, &Value::Object(s.user.clone()))),
        (WorkspaceMembers, _) => {
            let mut u = s.user.clone();
            u.insert("role".into(), json!(20));
            Ok(Resp::json(200, &json!([u])))
        }
        (ProjectMembers(_), _) => Ok(Resp::json(200, &json!([s.user_lite()]))),
        (Projects, "GET") => {
            let page = page(q)?;
            let all = s
                .projects
                .iter()
                .map(|p| s.render(&s.project_view(p), fields, &expand))
                .collect();
            Ok(Resp::json(200, &pagination::paginate(page, all)))
        }
        (Projects, _) => create_project(s, &parse_body(req)?, ev),
        (Project(pid), "GET") => {
            let p = s.project(*pid).ok_or_else(Resp::not_found)?;
            Ok(Resp::json(
                200,
                &s.render(&s.project_view(p), fields, &expand),
            ))
        }
        (Project(pid), "PATCH") => patch_project(s, *pid, &parse_body(req)?, ev),
        (Project(pid), _) => {
            let pos = s
                .projects
                .iter()
                .position(|p| p.id == *pid)
                .ok_or_else(Resp::not_found)?;
            s.projects.remove(pos);
            ev.push(WebhookEvent {
                event: "project",
                action: "deleted",
                data: json!({"id": pid.to_string()}),
                activity: s.webhook_activity(None, Value::Null, Value::Null),
            });
            Ok(Resp::empty(204))
        }
        (ByIdentifier(ident), _) => {
            let (proj, seq) = ident.rsplit_once('-').unwrap_or(("", ""));
            let seq: i64 = seq.parse().map_err(|_| Resp::not_found())?;
            let item = s
                .projects
                .iter()
                .filter(|p| p.identifier() == proj)
                .flat_map(|p| p.items.values())
                .find(|i| i.obj.get("sequence_id").and_then(Value::as_i64) == Some(seq))
                .ok_or_else(Resp::not_found)?;
            Ok(Resp::json(200, &s.render(&item.obj, fields, &expand)))
        }
        (WorkItems(pid), "GET") => list_work_items(s, *pid, q, fields, &expand),
        (WorkItems(pid), _) => create_work_item(s, *pid, &parse_body(req)?, ev),
        (WorkItem(pid, id), "GET") => {
            let item = item(s, *pid, *id)?;
            Ok(Resp::json(200, &s.render(item, fields, &expand)))
        }
        (WorkItem(pid, id), "PATCH") => patch_work_item(s, *pid, *id, &parse_body(req)?, ev),
        (WorkItem(pid, id), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            p.remove_item(*id).ok_or_else(Resp::not_found)?;
            Ok(Resp::empty(204))
        }
        (States(pid), "GET") => {
            let p = project(s, *pid)?;
            list(s, q, p.states.iter(), fields, &expand)
        }
        (States(pid), _) => create_state(s, *pid, &parse_body(req)?),
        (State(pid, id), "GET") => {
            let st = project(s, *pid)?
                .state(&id.to_string())
                .ok_or_else(Resp::not_found)?;
            Ok(Resp::json(200, &s.render(st, fields, &expand)))
        }
        (State(pid, id), "PATCH") => patch_state(s, *pid, *id, &parse_body(req)?),
        (State(pid, id), _) => delete_state(s, *pid, *id),
        (Labels(pid), "GET") => {
            let p = project(s, *pid)?;
            list(s, q, p.labels.iter(), fields, &expand)
        }
        (Labels(pid), _) => create_label(s, *pid, &parse_body(req)?),
        (Label(pid, id), "GET") => {
            let l = project(s, *pid)?
                .label(&id.to_string())
                .ok_or_else(Resp::not_found)?;
            Ok(Resp::json(200, &s.render(l, fields, &expand)))
        }
        (Label(pid, id), "PATCH") => patch_label(s, *pid, *id, &parse_body(req)?),
        (Label(pid, id), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_by_id(&mut p.labels, *id)?;
            let sid = id.to_string();
            for item in p.items.values_mut() {
                if let Some(Value::Array(ls)) = item.obj.get_mut("labels") {
                    ls.retain(|l| l.as_str() != Some(sid.as_str()));
                }
            }
            Ok(Resp::empty(204))
        }
        (Comments(pid, iid), "GET") => {
            item(s, *pid, *iid)?;
            let p = project(s, *pid)?;
            let issue = iid.to_string();
            let rows = p
                .comments
                .iter()
                .filter(|c| str_of(c, "issue") == Some(issue.as_str()));
            list(s, q, rows, fields, &expand)
        }
        (Comments(pid, iid), _) => create_comment(s, *pid, *iid, &parse_body(req)?, ev),
        (Comment(pid, iid, id), "GET") => {
            let c = child(project(s, *pid)?.comments.iter(), *iid, *id)?;
            Ok(Resp::json(200, &s.render(c, fields, &expand)))
        }
        (Comment(pid, iid, id), "PATCH") => {
            patch_comment(s, *pid, *iid, *id, &parse_body(req)?, ev)
        }
        (Comment(pid, iid, id), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_child(&mut p.comments, *iid, *id)?;
            Ok(Resp::empty(204))
        }
        (Links(pid, iid), "GET") => {
            item(s, *pid, *iid)?;
            let p = project(s, *pid)?;
            let issue = iid.to_string();
            let rows = p
                .links
                .iter()
                .filter(|c| str_of(c, "issue") == Some(issue.as_str()));
            list(s, q, rows, fields, &expand)
        }
        (Links(pid, iid), _) => create_link(s, *pid, *iid, &parse_body(req)?),
        (Link(pid, iid, id), "GET") => {
            let c = child(project(s, *pid)?.links.iter(), *iid, *id)?;
            Ok(Resp::json(200, &s.render(c, fields, &expand)))
        }
        (Link(pid, iid, id), "PATCH") => patch_link(s, *pid, *iid, *id, &parse_body(req)?),
        (Link(pid, iid, id), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_child(&mut p.links, *iid, *id)?;
            Ok(Resp::empty(204))
        }
        (Activities(pid, iid), _) => {
            item(s, *pid, *iid)?;
            let p = project(s, *pid)?;
            let issue = iid.to_string();
            let rows = p
                .activities
                .iter()
                .filter(|c| str_of(c, "issue") == Some(issue.as_str()));
            list(s, q, rows, fields, &expand)
        }
        (Activity(pid, iid, id), _) => {
            let c = child(project(s, *pid)?.activities.iter(), *iid, *id)?;
            Ok(Resp::json(200, &s.render(c, fields, &expand)))
        }
        (Cycles(pid), "GET") => list_cycles(s, *pid, q, fields, &expand),
        (Cycles(pid), _) => create_cycle(s, *pid, &parse_body(req)?, ev),
        (Cycle(pid, id), "GET") => {
            let p = project(s, *pid)?;
            let c = find(p.cycles.iter(), *id)?;
            Ok(Resp::json(
                200,
                &s.render(&cycle_view(p, c), fields, &expand),
            ))
        }
        (Cycle(pid, id), "PATCH") => patch_cycle(s, *pid, *id, &parse_body(req)?, ev),
        (Cycle(pid, id), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_by_id(&mut p.cycles, *id)?;
            let sid = id.to_string();
            p.cycle_issues
                .retain(|r| str_of(r, "cycle") != Some(sid.as_str()));
            Ok(Resp::empty(204))
        }
        (CycleIssues(pid, cid), "GET") => {
            let p = project(s, *pid)?;
            find(p.cycles.iter(), *cid)?;
            member_items(s, p, &p.cycle_issues, "cycle", *cid, q, fields, &expand)
        }
        (CycleIssues(pid, cid), _) => add_members(s, *pid, *cid, "cycle", &parse_body(req)?),
        (CycleIssue(pid, cid, iid), "GET") => {
            let p = project(s, *pid)?;
            let row = membership(&p.cycle_issues, "cycle", *cid, *iid)?;
            Ok(Resp::json(200, &s.render(row, fields, &expand)))
        }
        (CycleIssue(pid, cid, iid), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_membership(&mut p.cycle_issues, "cycle", *cid, *iid)?;
            Ok(Resp::empty(204))
        }
        (Modules(pid), "GET") => {
            let p = project(s, *pid)?;
            let all = p
                .modules
                .iter()
                .map(|m| s.render(&module_view(p, m), fields, &expand))
                .collect();
            Ok(Resp::json(200, &pagination::paginate(page(q)?, all)))
        }
        (Modules(pid), _) => create_module(s, *pid, &parse_body(req)?, ev),
        (Module(pid, id), "GET") => {
            let p = project(s, *pid)?;
            let m = find(p.modules.iter(), *id)?;
            Ok(Resp::json(
                200,
                &s.render(&module_view(p, m), fields, &expand),
            ))
        }
        (Module(pid, id), "PATCH") => patch_module(s, *pid, *id, &parse_body(req)?, ev),
        (Module(pid, id), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_by_id(&mut p.modules, *id)?;
            let sid = id.to_string();
            p.module_issues
                .retain(|r| str_of(r, "module") != Some(sid.as_str()));
            Ok(Resp::empty(204))
        }
        (ModuleIssues(pid, mid), "GET") => {
            let p = project(s, *pid)?;
            find(p.modules.iter(), *mid)?;
            member_items(s, p, &p.module_issues, "module", *mid, q, fields, &expand)
        }
        (ModuleIssues(pid, mid), _) => add_members(s, *pid, *mid, "module", &parse_body(req)?),
        (ModuleIssue(pid, mid, iid), "GET") => {
            let p = project(s, *pid)?;
            let row = membership(&p.module_issues, "module", *mid, *iid)?;
            Ok(Resp::json(200, &s.render(row, fields, &expand)))
        }
        (ModuleIssue(pid, mid, iid), _) => {
            let p = s.project_mut(*pid).ok_or_else(Resp::not_found)?;
            remove_membership(&mut p.module_issues, "module", *mid, *iid)?;
            Ok(Resp::empty(204))
        }
    }
}

// ----- small lookups ----------------------------------------------------------------------

fn page(q: &Query) -> Result<Page, Resp> {
    pagination::parse(q.get("per_page"), q.get("cursor"))
}

fn project(s: &Store, pid: Uuid) -> Result<&Project, Resp> {
    s.project(pid).ok_or_else(Resp::not_found)
}

fn item(s: &Store, pid: Uuid, id: Uuid) -> Result<&Obj, Resp> {
    project(s, pid)?
        .items
        .get(&id)
        .map(|i| &i.obj)
        .ok_or_else(Resp::not_found)
}

fn find<'a>(mut rows: impl Iterator<Item = &'a Obj>, id: Uuid) -> Result<&'a Obj, Resp> {
    rows.find(|r| id_of(r) == Some(id))
        .ok_or_else(Resp::not_found)
}

fn child<'a>(rows: impl Iterator<Item = &'a Obj>, issue: Uuid, id: Uuid) -> Result<&'a Obj, Resp> {
    let issue = issue.to_string();
    find(
        rows.filter(move |r| str_of(r, "issue") == Some(issue.as_str())),
        id,
    )
}

fn remove_by_id(rows: &mut Vec<Obj>, id: Uuid) -> Result<Obj, Resp> {
    let pos = rows
        .iter()
        .position(|r| id_of(r) == Some(id))
        .ok_or_else(Resp::not_found)?;
    Ok(rows.remove(pos))
}

fn remove_child(rows: &mut Vec<Obj>, issue: Uuid, id: Uuid) -> Result<Obj, Resp> {
    let issue = issue.to_string();
    let pos = rows
        .iter()
        .position(|r| id_of(r) == Some(id) && str_of(r, "issue") == Some(issue.as_str()))
        .ok_or_else(Resp::not_found)?;
    Ok(rows.remove(pos))
}

fn list<'a>(
    s: &Store,
    q: &Query,
    rows: impl Iterator<Item = &'a Obj>,
    fields: Option<&[String]>,
    expand: &[String],
) -> R {
    let page = page(q)?;
    let all = rows.map(|r| s.render(r, fields, expand)).collect();
    Ok(Resp::json(200, &pagination::paginate(page, all)))
}

/// One `{"field": "value"}` conflict body with the existing id (Plane's 409s).
fn conflict(msg: &str, id: &Obj) -> Resp {
    Resp::json(409, &json!({"error": msg, "id": id.get("id")}))
}

/// Truthy string of a request value, like Python's `if request.data.get(k)`.
fn truthy_str(body: &Obj, k: &str) -> Option<String> {
    match body.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn same_external(o: &Obj, source: &str, id: &str) -> bool {
    str_of(o, "external_source") == Some(source) && str_of(o, "external_id") == Some(id)
}

fn now_str(s: &mut Store) -> String {
    s.now().1
}

// ----- field validation (DRF-like) --------------------------------------------------------

#[derive(Default)]
struct Errors(Obj);

impl Errors {
    fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| json!([]));
        if let Some(Value::Array(a)) = self.0.get_mut(field) {
            a.push(Value::String(msg.into()));
        }
    }

    fn into_result(self) -> Result<(), Resp> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Resp::json(400, &Value::Object(self.0)))
        }
    }
}

/// DRF CharField: strings (trimmed) and numbers; `required`/`blank`/`null`/`max` rules.
/// The options of a DRF CharField.
#[derive(Debug, Clone, Copy)]
struct Char {
    required: bool,
    allow_blank: bool,
    allow_null: bool,
    max: usize,
}

impl Char {
    const fn new(required: bool, allow_blank: bool, allow_null: bool, max: usize) -> Char {
        Char {
            required,
            allow_blank,
            allow_null,
            max,
        }
    }
}

fn char_field(body: &Obj, k: &str, spec: Char, errs: &mut Errors, out: &mut Obj) {
    let Char {
        required,
        allow_blank,
        allow_null,
        max,
    } = spec;
    match body.get(k) {
        None => {
            if required {
                errs.add(k, "This field is required.");
            }
        }
        Some(Value::Null) => {
            if allow_null {
                out.insert(k.into(), Value::Null);
            } else {
                errs.add(k, "This field may not be null.");
            }
        }
        Some(v) => {
            let s = match v {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => n.to_string(),
                _ => {
                    errs.add(k, "Not a valid string.");
                    return;
                }
            };
            if s.is_empty() && !allow_blank {
                errs.add(k, "This field may not be blank.");
            } else if s.chars().count() > max {
                errs.add(
                    k,
                    format!("Ensure this field has no more than {max} characters."),
                );
            } else {
                out.insert(k.into(), Value::String(s));
            }
        }
    }
}

fn date_field(body: &Obj, k: &str, errs: &mut Errors, out: &mut Obj) {
    match body.get(k) {
        None => {}
        Some(Value::Null) => {
            out.insert(k.into(), Value::Null);
        }
        Some(Value::String(s)) if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => {
            out.insert(k.into(), Value::String(s.clone()));
        }
        Some(_) => errs.add(
            k,
            "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
        ),
    }
}

fn bool_field(body: &Obj, k: &str, errs: &mut Errors, out: &mut Obj) {
    let v = match body.get(k) {
        None => return,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Some(Value::String(s)) => match s.as_str() {
            "true" | "True" | "TRUE" | "1" | "yes" | "on" => Some(true),
            "false" | "False" | "FALSE" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        Some(_) => None,
    };
    match v {
        Some(b) => {
            out.insert(k.into(), Value::Bool(b));
        }
        None => errs.add(k, "Must be a valid boolean."),
    }
}

fn number_field(body: &Obj, k: &str, errs: &mut Errors, out: &mut Obj) {
    match body.get(k) {
        None => {}
        Some(Value::Number(n)) => {
            out.insert(k.into(), json!(n.as_f64().unwrap_or(0.0)));
        }
        Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
            out.insert(k.into(), json!(s.trim().parse::<f64>().unwrap_or(0.0)));
        }
        Some(_) => errs.add(k, "A valid number is required."),
    }
}

/// A primary-key field: a UUID of an object `exists` knows.
fn pk_field(body: &Obj, k: &str, exists: impl Fn(&str) -> bool, errs: &mut Errors, out: &mut Obj) {
    match body.get(k) {
        None => {}
        Some(Value::Null) => {
            out.insert(k.into(), Value::Null);
        }
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(u) if exists(&u.to_string()) => {
                out.insert(k.into(), json!(u.to_string()));
            }
            Ok(_) => errs.add(k, format!("Invalid pk \"{s}\" - object does not exist.")),
            Err(_) => errs.add(k, format!("\u{201c}{s}\u{201d} is not a valid UUID.")),
        },
        Some(v) => errs.add(
            k,
            format!(
                "Incorrect type. Expected pk value, received {}.",
                python_type_name(v)
            ),
        ),
    }
}

/// A list of ids; like Plane's serializer, ids not valid for the project are dropped.
fn id_list_field(
    body: &Obj,
    k: &str,
    keep: impl Fn(&str) -> bool,
    errs: &mut Errors,
    out: &mut Obj,
) {
    match body.get(k) {
        None => {}
        Some(Value::Array(items)) => {
            let mut ids: Vec<Value> = Vec::new();
            for v in items {
                if let Some(u) = v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    let u = json!(u.to_string());
                    if u.as_str().is_some_and(&keep) && !ids.contains(&u) {
                        ids.push(u);
                    }
                }
            }
            out.insert(k.into(), Value::Array(ids));
        }
        Some(v) => errs.add(
            k,
            format!(
                "Expected a list of items but got type \"{}\".",
                python_type_name(v)
            ),
        ),
    }
}

fn external_fields(body: &Obj, errs: &mut Errors, out: &mut Obj) {
    char_field(
        body,
        "external_source",
        Char::new(false, true, true, 255),
        errs,
        out,
    );
    char_field(
        body,
        "external_id",
        Char::new(false, true, true, 255),
        errs,
        out,
    );
}

// ----- work items -------------------------------------------------------------------------

fn validate_work_item(s: &Store, pid: Uuid, body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let p = project(s, pid)?;
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "name",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "description_html",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    match body.get("priority") {
        None => {}
        Some(Value::String(v)) if PRIORITIES.contains(&v.as_str()) => {
            o.insert("priority".into(), json!(v));
        }
        Some(Value::Null) => e.add("priority", "This field may not be null."),
        Some(v) => {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            e.add("priority", format!("\"{shown}\" is not a valid choice."));
        }
    }
    date_field(body, "start_date", &mut e, &mut o);
    date_field(body, "target_date", &mut e, &mut o);
    pk_field(
        body,
        "state",
        |id| s.projects.iter().any(|p| p.state(id).is_some()),
        &mut e,
        &mut o,
    );
    pk_field(
        body,
        "parent",
        |id| s.find_item(id).is_some(),
        &mut e,
        &mut o,
    );
    let user = s.user_id();
    id_list_field(body, "assignees", |id| id == user, &mut e, &mut o);
    id_list_field(body, "labels", |id| p.label(id).is_some(), &mut e, &mut o);
    bool_field(body, "is_draft", &mut e, &mut o);
    number_field(body, "sort_order", &mut e, &mut o);
    if let Some(v) = body.get("point") {
        match v {
            Value::Null => {
                o.insert("point".into(), Value::Null);
            }
            Value::Number(n) if n.is_i64() => {
                o.insert("point".into(), v.clone());
            }
            _ => e.add("point", "A valid integer is required."),
        }
    }
    external_fields(body, &mut e, &mut o);
    if creating {
        match body.get("created_at") {
            Some(Value::String(ts)) => match chrono::DateTime::parse_from_rfc3339(ts) {
                Ok(d) => {
                    o.insert(
                        "created_at".into(),
                        json!(crate::store::format_ts(
                            d.with_timezone(&chrono::Utc).timestamp_micros()
                        )),
                    );
                }
                Err(_) => e.add(
                    "created_at",
                    "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
                ),
            },
            None | Some(Value::Null) => {}
            Some(_) => e.add("created_at", "Datetime has wrong format."),
        }
        pk_field(
            body,
            "created_by",
            |id| Uuid::parse_str(id).is_ok(),
            &mut e,
            &mut o,
        );
    }
    e.into_result()?;
    // Object-level validation (IssueSerializer.validate).
    if let (Some(Value::String(a)), Some(Value::String(b))) =
        (o.get("start_date"), o.get("target_date"))
        && a > b
    {
        return Err(Resp::non_field_error(
            "Start date cannot exceed target date",
        ));
    }
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

fn list_work_items(
    s: &Store,
    pid: Uuid,
    q: &Query,
    fields: Option<&[String]>,
    expand: &[String],
) -> R {
    let p = project(s, pid)?;
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
            [one] => Ok(Resp::json(200, &s.render(one, fields, expand))),
            // Django's MultipleObjectsReturned.
            _ => Err(Resp::server_error()),
        };
    }
    let page = page(q)?;
    let order_by = q.get("order_by").unwrap_or("-created_at");
    let listed = p.visible_newest_first();
    let total = listed.len();
    let results: Vec<Value> = if order_by == "-created_at" {
        listed
            .iter()
            .skip(page.offset())
            .take(page.limit)
            .filter_map(|id| p.items.get(id))
            .map(|i| s.render(&i.obj, fields, expand))
            .collect()
    } else {
        let (desc, key) = match order_by.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, order_by),
        };
        if ![
            "created_at",
            "updated_at",
            "sequence_id",
            "sort_order",
            "name",
            "priority",
            "start_date",
            "target_date",
        ]
        .contains(&key)
        {
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
            .map(|o| s.render(o, fields, expand))
            .collect()
    };
    Ok(Resp::json(200, &pagination::envelope(page, total, results)))
}

fn create_work_item(s: &mut Store, pid: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let fields = validate_work_item(s, pid, body, true)?;
    if let (Some(eid), Some(esrc)) = (
        truthy_str(body, "external_id"),
        truthy_str(body, "external_source"),
    ) && let Some(existing) = project(s, pid)?
        .items
        .values()
        .find(|i| same_external(&i.obj, &esrc, &eid))
    {
        return Err(conflict(
            "Issue with the same external id and external source already exists",
            &existing.obj,
        ));
    }
    let item = s.new_work_item(pid, &fields).ok_or_else(Resp::not_found)?;
    ev.push(WebhookEvent {
        event: "issue",
        action: "created",
        data: s.work_item_webhook_data(&item),
        activity: s.webhook_activity(None, Value::Null, Value::Null),
    });
    Ok(Resp::json(201, &Value::Object(item)))
}

fn patch_work_item(
    s: &mut Store,
    pid: Uuid,
    id: Uuid,
    body: &Obj,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    let current = item(s, pid, id)?.clone();
    // Plane checks the external pair before validating, and answers with the id of the item
    // being patched (not the conflicting one).
    if let Some(eid) = truthy_str(body, "external_id")
        && str_of(&current, "external_id") != Some(eid.as_str())
    {
        let esrc = truthy_str(body, "external_source")
            .or_else(|| str_of(&current, "external_source").map(str::to_owned))
            .unwrap_or_default();
        let taken = project(s, pid)?
            .items
            .values()
            .any(|i| same_external(&i.obj, &esrc, &eid));
        if taken {
            return Err(conflict(
                "Issue with the same external id and external source already exists",
                &current,
            ));
        }
    }
    let changes = validate_work_item(s, pid, body, false)?;
    let (before, after) = s
        .update_work_item(pid, id, &changes)
        .ok_or_else(Resp::not_found)?;
    // One delivery per changed top-level key, in request order (Plane's model_activity).
    let data = s.work_item_webhook_data(&after);
    for (k, requested) in body {
        if !changes.contains_key(k) {
            continue;
        }
        let old = before.get(k).cloned().unwrap_or(Value::Null);
        if old != changes[k] {
            ev.push(WebhookEvent {
                event: "issue",
                action: "updated",
                data: data.clone(),
                activity: s.webhook_activity(Some(k), old, requested.clone()),
            });
        }
    }
    Ok(Resp::json(200, &Value::Object(after)))
}

// ----- projects ---------------------------------------------------------------------------

fn project_webhook_data(o: &Obj) -> Value {
    let skip = [
        "total_members",
        "total_cycles",
        "total_modules",
        "is_member",
        "sort_order",
        "member_role",
        "is_deployed",
    ];
    Value::Object(
        o.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn validate_project(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "name",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "identifier",
        Char::new(creating, false, false, 12),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "description",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    for k in [
        "module_view",
        "cycle_view",
        "issue_views_view",
        "page_view",
        "intake_view",
        "guest_view_all_features",
        "is_issue_type_enabled",
    ] {
        bool_field(body, k, &mut e, &mut o);
    }
    external_fields(body, &mut e, &mut o);
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
            o.insert(k.into(), v.clone());
        }
    }
    e.into_result()?;
    if let Some(Value::String(ident)) = o.get("identifier").cloned() {
        o.insert("identifier".into(), json!(ident.to_uppercase()));
    }
    Ok(o)
}

fn project_conflict(s: &Store, o: &Obj, except: Option<Uuid>) -> Option<Resp> {
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

fn create_project(s: &mut Store, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let o = validate_project(body, true)?;
    if let Some(r) = project_conflict(s, &o, None) {
        return Err(r);
    }
    let name = str_of(&o, "name").unwrap_or_default().to_owned();
    let ident = str_of(&o, "identifier").unwrap_or_default().to_owned();
    let id = s.new_project(&name, &ident, &o);
    let p = project(s, id)?;
    let view = s.project_view(p);
    ev.push(WebhookEvent {
        event: "project",
        action: "created",
        data: project_webhook_data(&view),
        activity: s.webhook_activity(None, Value::Null, Value::Null),
    });
    Ok(Resp::json(201, &Value::Object(view)))
}

fn patch_project(s: &mut Store, pid: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    project(s, pid)?;
    let o = validate_project(body, false)?;
    if let Some(r) = project_conflict(s, &o, Some(pid)) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    let before = p.obj.clone();
    for (k, v) in &o {
        p.obj.insert(k.clone(), v.clone());
    }
    p.obj.insert("updated_at".into(), json!(ts));
    p.obj.insert("updated_by".into(), json!(user));
    let view = s.project_view(project(s, pid)?);
    update_events(
        s,
        "project",
        &before,
        &o,
        body,
        project_webhook_data(&view),
        ev,
    );
    Ok(Resp::json(200, &Value::Object(view)))
}

/// One `updated` webhook per changed key of the request body.
fn update_events(
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

// ----- states and labels ------------------------------------------------------------------

const STATE_GROUPS: [&str; 6] = [
    "backlog",
    "unstarted",
    "started",
    "completed",
    "cancelled",
    "triage",
];

fn validate_state(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "name",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "color",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "description",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    match body.get("group") {
        None => {}
        Some(Value::String(g)) if STATE_GROUPS.contains(&g.as_str()) => {
            o.insert("group".into(), json!(g));
        }
        Some(v) => {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            e.add("group", format!("\"{shown}\" is not a valid choice."));
        }
    }
    bool_field(body, "default", &mut e, &mut o);
    number_field(body, "sequence", &mut e, &mut o);
    external_fields(body, &mut e, &mut o);
    e.into_result()?;
    Ok(o)
}

/// Plane's 409s for states and labels: same external pair, or same name in the project.
fn named_conflict(
    rows: &[Obj],
    o: &Obj,
    body: &Obj,
    entity: &str,
    except: Option<Uuid>,
) -> Option<Resp> {
    let others = || {
        rows.iter()
            .filter(move |r| id_of(r) != except || except.is_none())
    };
    if let (Some(eid), Some(esrc)) = (
        truthy_str(body, "external_id"),
        truthy_str(body, "external_source"),
    ) && let Some(r) = others().find(|r| same_external(r, &esrc, &eid))
    {
        return Some(conflict(
            &format!("{entity} with the same external id and external source already exists"),
            r,
        ));
    }
    if let Some(name) = str_of(o, "name")
        && let Some(r) = others().find(|r| str_of(r, "name") == Some(name))
    {
        return Some(conflict(
            &format!("{entity} with the same name already exists in the project"),
            r,
        ));
    }
    None
}

fn create_state(s: &mut Store, pid: Uuid, body: &Obj) -> R {
    let o = validate_state(body, true)?;
    if let Some(r) = named_conflict(&project(s, pid)?.states, &o, body, "State", None) {
        return Err(r);
    }
    let name = str_of(&o, "name").unwrap_or_default().to_owned();
    let color = str_of(&o, "color").unwrap_or_default().to_owned();
    let group = str_of(&o, "group").unwrap_or("backlog").to_owned();
    let default = o.get("default") == Some(&Value::Bool(true));
    let st = s.new_state(pid, &name, &color, &group, default, &o);
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    if default {
        for other in &mut p.states {
            other.insert("default".into(), json!(false));
        }
    }
    p.states.push(st.clone());
    Ok(Resp::json(201, &Value::Object(st)))
}

fn patch_rows(rows: &mut [Obj], id: Uuid, o: &Obj, ts: &str, user: &str) -> Result<Obj, Resp> {
    let row = rows
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

fn patch_state(s: &mut Store, pid: Uuid, id: Uuid, body: &Obj) -> R {
    find(project(s, pid)?.states.iter(), id)?;
    let o = validate_state(body, false)?;
    if let Some(r) = named_conflict(&project(s, pid)?.states, &o, body, "State", Some(id)) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    if o.get("default") == Some(&Value::Bool(true)) {
        for other in &mut p.states {
            other.insert("default".into(), json!(false));
        }
    }
    let row = patch_rows(&mut p.states, id, &o, &ts, &user)?;
    Ok(Resp::json(200, &Value::Object(row)))
}

fn delete_state(s: &mut Store, pid: Uuid, id: Uuid) -> R {
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
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

fn validate_label(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "name",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "color",
        Char::new(false, true, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "description",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    number_field(body, "sort_order", &mut e, &mut o);
    if let Some(v) = body.get("parent") {
        o.insert("parent".into(), v.clone());
    }
    external_fields(body, &mut e, &mut o);
    e.into_result()?;
    Ok(o)
}

fn create_label(s: &mut Store, pid: Uuid, body: &Obj) -> R {
    let o = validate_label(body, true)?;
    if let Some(r) = named_conflict(&project(s, pid)?.labels, &o, body, "Label", None) {
        return Err(r);
    }
    let name = str_of(&o, "name").unwrap_or_default().to_owned();
    let l = s.new_label(pid, &name, &o);
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    p.labels.push(l.clone());
    Ok(Resp::json(201, &Value::Object(l)))
}

fn patch_label(s: &mut Store, pid: Uuid, id: Uuid, body: &Obj) -> R {
    find(project(s, pid)?.labels.iter(), id)?;
    let o = validate_label(body, false)?;
    if let Some(r) = named_conflict(&project(s, pid)?.labels, &o, body, "Label", Some(id)) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    let row = patch_rows(&mut p.labels, id, &o, &ts, &user)?;
    Ok(Resp::json(200, &Value::Object(row)))
}

// ----- comments and links -----------------------------------------------------------------

fn comment_webhook_data(c: &Obj) -> Value {
    Value::Object(
        c.iter()
            .filter(|(k, _)| k.as_str() != "is_member")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn validate_comment(body: &Obj) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "comment_html",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    match body.get("access") {
        None => {}
        Some(Value::String(a)) if a == "INTERNAL" || a == "EXTERNAL" => {
            o.insert("access".into(), json!(a));
        }
        Some(v) => {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            e.add("access", format!("\"{shown}\" is not a valid choice."));
        }
    }
    external_fields(body, &mut e, &mut o);
    e.into_result()?;
    Ok(o)
}

fn create_comment(
    s: &mut Store,
    pid: Uuid,
    iid: Uuid,
    body: &Obj,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    item(s, pid, iid)?;
    let o = validate_comment(body)?;
    // The external pair is unique across the whole project, not per work item.
    if let (Some(eid), Some(esrc)) = (
        truthy_str(body, "external_id"),
        truthy_str(body, "external_source"),
    ) && let Some(existing) = project(s, pid)?
        .comments
        .iter()
        .find(|c| same_external(c, &esrc, &eid))
    {
        return Err(conflict(
            "Work item comment with the same external id and external source already exists",
            existing,
        ));
    }
    let ts = now_str(s);
    let user = s.user_id();
    let get = |k: &str, d: Value| o.get(k).cloned().unwrap_or(d);
    let mut c = Obj::new();
    c.insert("id".into(), json!(Uuid::new_v4().to_string()));
    c.insert("is_member".into(), json!(true));
    c.insert("created_at".into(), json!(ts));
    c.insert("updated_at".into(), json!(ts));
    c.insert("deleted_at".into(), Value::Null);
    c.insert("comment_html".into(), get("comment_html", json!("<p></p>")));
    c.insert("attachments".into(), json!([]));
    c.insert("access".into(), get("access", json!("INTERNAL")));
    c.insert(
        "external_source".into(),
        get("external_source", Value::Null),
    );
    c.insert("external_id".into(), get("external_id", Value::Null));
    c.insert("edited_at".into(), Value::Null);
    c.insert("created_by".into(), json!(user));
    c.insert("updated_by".into(), Value::Null);
    c.insert("project".into(), json!(pid.to_string()));
    c.insert("workspace".into(), json!(s.workspace_id.to_string()));
    c.insert("description".into(), json!(Uuid::new_v4().to_string()));
    c.insert("issue".into(), json!(iid.to_string()));
    c.insert("actor".into(), json!(user));
    c.insert("parent".into(), Value::Null);
    let html = get("comment_html", json!("<p></p>"));
    s.add_activity(pid, iid, "created", Some("comment"), Value::Null, html);
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    p.comments.push(c.clone());
    ev.push(WebhookEvent {
        event: "issue_comment",
        action: "created",
        data: comment_webhook_data(&c),
        activity: s.webhook_activity(None, Value::Null, Value::Null),
    });
    Ok(Resp::json(201, &Value::Object(c)))
}

fn patch_comment(
    s: &mut Store,
    pid: Uuid,
    iid: Uuid,
    id: Uuid,
    body: &Obj,
    ev: &mut Vec<WebhookEvent>,
) -> R {
    let before = child(project(s, pid)?.comments.iter(), iid, id)?.clone();
    let o = validate_comment(body)?;
    if let Some(eid) = truthy_str(body, "external_id")
        && str_of(&before, "external_id") != Some(eid.as_str())
    {
        let esrc = truthy_str(body, "external_source")
            .or_else(|| str_of(&before, "external_source").map(str::to_owned))
            .unwrap_or_default();
        if let Some(existing) = project(s, pid)?
            .comments
            .iter()
            .find(|c| same_external(c, &esrc, &eid))
        {
            return Err(conflict(
                "Work item comment with the same external id and external source already exists",
                existing,
            ));
        }
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    let mut row = patch_rows(&mut p.comments, id, &o, &ts, &user)?;
    if o.contains_key("comment_html") {
        row.insert("edited_at".into(), json!(ts));
        if let Some(stored) = p.comments.iter_mut().find(|c| id_of(c) == Some(id)) {
            *stored = row.clone();
        }
    }
    update_events(
        s,
        "issue_comment",
        &before,
        &o,
        body,
        comment_webhook_data(&row),
        ev,
    );
    Ok(Resp::json(200, &Value::Object(row)))
}

fn validate_link(body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "title",
        Char::new(false, true, true, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "url",
        Char::new(creating, false, false, usize::MAX),
        &mut e,
        &mut o,
    );
    if let Some(url) = str_of(&o, "url") {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !url.contains(' ') => {}
            _ if url.contains("://") && !url.contains(' ') => e.add("url", "Invalid URL scheme."),
            _ => e.add("url", "Invalid URL format."),
        }
    }
    e.into_result()?;
    Ok(o)
}

fn create_link(s: &mut Store, pid: Uuid, iid: Uuid, body: &Obj) -> R {
    item(s, pid, iid)?;
    let o = validate_link(body, true)?;
    let issue = iid.to_string();
    let url = o.get("url").cloned().unwrap_or(Value::Null);
    if project(s, pid)?
        .links
        .iter()
        .any(|l| str_of(l, "issue") == Some(issue.as_str()) && l.get("url") == Some(&url))
    {
        return Err(Resp::json(
            400,
            &json!({"error": ["URL already exists for this Issue"]}),
        ));
    }
    let ts = now_str(s);
    let user = s.user_id();
    let mut l = Obj::new();
    l.insert("id".into(), json!(Uuid::new_v4().to_string()));
    l.insert("created_at".into(), json!(ts));
    l.insert("updated_at".into(), json!(ts));
    l.insert("deleted_at".into(), Value::Null);
    l.insert(
        "title".into(),
        o.get("title").cloned().unwrap_or(Value::Null),
    );
    l.insert("url".into(), url);
    l.insert("metadata".into(), json!({}));
    l.insert("created_by".into(), json!(user));
    l.insert("updated_by".into(), Value::Null);
    l.insert("project".into(), json!(pid.to_string()));
    l.insert("workspace".into(), json!(s.workspace_id.to_string()));
    l.insert("issue".into(), json!(issue));
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    p.links.push(l.clone());
    Ok(Resp::json(201, &Value::Object(l)))
}

fn patch_link(s: &mut Store, pid: Uuid, iid: Uuid, id: Uuid, body: &Obj) -> R {
    child(project(s, pid)?.links.iter(), iid, id)?;
    let o = validate_link(body, false)?;
    let issue = iid.to_string();
    if let Some(url) = o.get("url")
        && project(s, pid)?.links.iter().any(|l| {
            str_of(l, "issue") == Some(issue.as_str())
                && l.get("url") == Some(url)
                && id_of(l) != Some(id)
        })
    {
        return Err(Resp::json(
            400,
            &json!({"error": ["URL already exists for this Issue"]}),
        ));
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    let row = patch_rows(&mut p.links, id, &o, &ts, &user)?;
    Ok(Resp::json(200, &Value::Object(row)))
}

// ----- cycles and modules -----------------------------------------------------------------

/// Work-item counts by state group of the items linked through `rows`.
fn group_counts(p: &Project, rows: &[Obj], key: &str, id: &str) -> [usize; 6] {
    let mut c = [0usize; 6];
    for r in rows.iter().filter(|r| str_of(r, key) == Some(id)) {
        let Some(item) = str_of(r, "issue").and_then(|i| p.item(i)) else {
            continue;
        };
        c[0] += 1;
        let idx = match p.state_group_of_item(item).as_deref() {
            Some("cancelled") => 1,
            Some("completed") => 2,
            Some("started") => 3,
            Some("unstarted") => 4,
            _ => 5,
        };
        c[idx] += 1;
    }
    c
}

const COUNT_KEYS: [&str; 6] = [
    "total_issues",
    "cancelled_issues",
    "completed_issues",
    "started_issues",
    "unstarted_issues",
    "backlog_issues",
];

fn with_counts(p: &Project, o: &Obj, rows: &[Obj], key: &str) -> Obj {
    let id = str_of(o, "id").unwrap_or_default();
    let counts = group_counts(p, rows, key, id);
    let mut out = o.clone();
    for (k, n) in COUNT_KEYS.iter().zip(counts) {
        if out.contains_key(*k) {
            out.insert((*k).into(), json!(n));
        }
    }
    out
}

fn cycle_view(p: &Project, c: &Obj) -> Obj {
    with_counts(p, c, &p.cycle_issues, "cycle")
}

fn module_view(p: &Project, m: &Obj) -> Obj {
    with_counts(p, m, &p.module_issues, "module")
}

fn list_cycles(s: &Store, pid: Uuid, q: &Query, fields: Option<&[String]>, expand: &[String]) -> R {
    let p = project(s, pid)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let view = q.get("cycle_view").unwrap_or("all");
    let dates = |c: &Obj| {
        (
            str_of(c, "start_date").map(str::to_owned),
            str_of(c, "end_date").map(str::to_owned),
        )
    };
    let keep = |c: &&Obj| match (view, dates(c)) {
        ("current", (Some(a), Some(b))) => a.as_str() <= now.as_str() && now.as_str() <= b.as_str(),
        ("current", _) => false,
        ("upcoming", (Some(a), _)) => a.as_str() > now.as_str(),
        ("completed", (_, Some(b))) => b.as_str() < now.as_str(),
        ("draft", (a, b)) => a.is_none() && b.is_none(),
        ("incomplete", (_, b)) => b.is_none_or(|b| b.as_str() >= now.as_str()),
        ("upcoming" | "completed", _) => false,
        _ => true,
    };
    let rows: Vec<Value> = p
        .cycles
        .iter()
        .filter(keep)
        .map(|c| s.render(&cycle_view(p, c), fields, expand))
        .collect();
    if view == "current" {
        // The only unpaginated cycle listing.
        return Ok(Resp::json(200, &Value::Array(rows)));
    }
    Ok(Resp::json(200, &pagination::paginate(page(q)?, rows)))
}

/// Cycle/module dates: a date or datetime, stored as an ISO datetime.
fn datetime_field(body: &Obj, k: &str, errs: &mut Errors, out: &mut Obj) {
    match body.get(k) {
        None => {}
        Some(Value::Null) => {
            out.insert(k.into(), Value::Null);
        }
        Some(Value::String(v)) => {
            if let Ok(d) = chrono::DateTime::parse_from_rfc3339(v) {
                out.insert(
                    k.into(),
                    json!(crate::store::format_ts(
                        d.with_timezone(&chrono::Utc).timestamp_micros()
                    )),
                );
            } else if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
                out.insert(k.into(), json!(format!("{v}T00:00:00Z")));
            } else {
                errs.add(k, "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].");
            }
        }
        Some(_) => errs.add(k, "Datetime has wrong format."),
    }
}

fn validate_cycle(s: &Store, pid: Uuid, body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "name",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "description",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    datetime_field(body, "start_date", &mut e, &mut o);
    datetime_field(body, "end_date", &mut e, &mut o);
    let user = s.user_id();
    pk_field(body, "owned_by", |id| id == user, &mut e, &mut o);
    char_field(
        body,
        "timezone",
        Char::new(false, true, false, 255),
        &mut e,
        &mut o,
    );
    external_fields(body, &mut e, &mut o);
    e.into_result()?;
    if project(s, pid)?.obj.get("cycle_view") != Some(&Value::Bool(true)) {
        return Err(Resp::non_field_error(
            "Cycles are not enabled for this project",
        ));
    }
    if let (Some(Value::String(a)), Some(Value::String(b))) =
        (o.get("start_date"), o.get("end_date"))
        && a > b
    {
        return Err(Resp::non_field_error("Start date cannot exceed end date"));
    }
    Ok(o)
}

fn external_conflict(rows: &[Obj], body: &Obj, entity: &str, except: Option<Uuid>) -> Option<Resp> {
    let (eid, esrc) = (
        truthy_str(body, "external_id")?,
        truthy_str(body, "external_source")?,
    );
    let r = rows
        .iter()
        .filter(|r| except.is_none() || id_of(r) != except)
        .find(|r| same_external(r, &esrc, &eid))?;
    Some(conflict(
        &format!("{entity} with the same external id and external source already exists"),
        r,
    ))
}

fn create_cycle(s: &mut Store, pid: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let has = |k| body.get(k).is_some_and(|v: &Value| !v.is_null());
    if has("start_date") != has("end_date") {
        return Err(Resp::error(
            400,
            "Both start date and end date are either required or are to be null",
        ));
    }
    let o = validate_cycle(s, pid, body, true)?;
    if let Some(r) = external_conflict(&project(s, pid)?.cycles, body, "Cycle", None) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let get = |k: &str, d: Value| o.get(k).cloned().unwrap_or(d);
    let sort_order = project(s, pid)?
        .cycles
        .iter()
        .filter_map(|c| c.get("sort_order").and_then(Value::as_f64))
        .reduce(f64::max)
        .map_or(65535.0, |m| m + 10000.0);
    let mut c = Obj::new();
    c.insert("id".into(), json!(Uuid::new_v4().to_string()));
    for k in COUNT_KEYS {
        c.insert(k.into(), json!(0));
    }
    c.insert("total_estimates".into(), Value::Null);
    c.insert("completed_estimates".into(), Value::Null);
    c.insert("started_estimates".into(), Value::Null);
    c.insert("created_at".into(), json!(ts));
    c.insert("updated_at".into(), json!(ts));
    c.insert("deleted_at".into(), Value::Null);
    c.insert("name".into(), get("name", json!("")));
    c.insert("description".into(), get("description", json!("")));
    c.insert("start_date".into(), get("start_date", Value::Null));
    c.insert("end_date".into(), get("end_date", Value::Null));
    c.insert("view_props".into(), json!({}));
    c.insert("sort_order".into(), json!(sort_order));
    c.insert(
        "external_source".into(),
        get("external_source", Value::Null),
    );
    c.insert("external_id".into(), get("external_id", Value::Null));
    c.insert("progress_snapshot".into(), json!({}));
    c.insert("archived_at".into(), Value::Null);
    c.insert("logo_props".into(), json!({}));
    c.insert("timezone".into(), get("timezone", json!("UTC")));
    c.insert("version".into(), json!(1));
    c.insert("created_by".into(), json!(user));
    c.insert("updated_by".into(), Value::Null);
    c.insert("project".into(), json!(pid.to_string()));
    c.insert("workspace".into(), json!(s.workspace_id.to_string()));
    c.insert("owned_by".into(), get("owned_by", json!(user)));
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    p.cycles.push(c.clone());
    ev.push(WebhookEvent {
        event: "cycle",
        action: "created",
        data: Value::Object(c.clone()),
        activity: s.webhook_activity(None, Value::Null, Value::Null),
    });
    Ok(Resp::json(201, &Value::Object(c)))
}

fn patch_cycle(s: &mut Store, pid: Uuid, id: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let before = find(project(s, pid)?.cycles.iter(), id)?.clone();
    let o = validate_cycle(s, pid, body, false)?;
    if let Some(r) = external_conflict(&project(s, pid)?.cycles, body, "Cycle", Some(id)) {
        return Err(r);
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    patch_rows(&mut p.cycles, id, &o, &ts, &user)?;
    let p = project(s, pid)?;
    let view = cycle_view(p, find(p.cycles.iter(), id)?);
    update_events(
        s,
        "cycle",
        &before,
        &o,
        body,
        Value::Object(view.clone()),
        ev,
    );
    Ok(Resp::json(200, &Value::Object(view)))
}

const MODULE_STATUSES: [&str; 6] = [
    "backlog",
    "planned",
    "in-progress",
    "paused",
    "completed",
    "cancelled",
];

fn validate_module(s: &Store, pid: Uuid, body: &Obj, creating: bool) -> Result<Obj, Resp> {
    let mut e = Errors::default();
    let mut o = Obj::new();
    char_field(
        body,
        "name",
        Char::new(creating, false, false, 255),
        &mut e,
        &mut o,
    );
    char_field(
        body,
        "description",
        Char::new(false, true, false, usize::MAX),
        &mut e,
        &mut o,
    );
    date_field(body, "start_date", &mut e, &mut o);
    date_field(body, "target_date", &mut e, &mut o);
    match body.get("status") {
        None => {}
        Some(Value::String(st)) if MODULE_STATUSES.contains(&st.as_str()) => {
            o.insert("status".into(), json!(st));
        }
        Some(v) => {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            e.add("status", format!("\"{shown}\" is not a valid choice."));
        }
    }
    let user = s.user_id();
    pk_field(body, "lead", |id| id == user, &mut e, &mut o);
    id_list_field(body, "members", |id| id == user, &mut e, &mut o);
    external_fields(body, &mut e, &mut o);
    e.into_result()?;
    if project(s, pid)?.obj.get("module_view") != Some(&Value::Bool(true)) {
        return Err(Resp::non_field_error(
            "Modules are not enabled for this project",
        ));
    }
    if let (Some(Value::String(a)), Some(Value::String(b))) =
        (o.get("start_date"), o.get("target_date"))
        && a > b
    {
        return Err(Resp::non_field_error(
            "Start date cannot exceed target date",
        ));
    }
    Ok(o)
}

fn create_module(s: &mut Store, pid: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let o = validate_module(s, pid, body, true)?;
    if let Some(r) = external_conflict(&project(s, pid)?.modules, body, "Module", None) {
        return Err(r);
    }
    if let Some(name) = str_of(&o, "name")
        && let Some(m) = project(s, pid)?
            .modules
            .iter()
            .find(|m| str_of(m, "name") == Some(name))
    {
        return Err(Resp::json(
            400,
            &json!({"id": [m.get("id")], "error": ["Module with this name already exists"]}),
        ));
    }
    let ts = now_str(s);
    let user = s.user_id();
    let get = |k: &str, d: Value| o.get(k).cloned().unwrap_or(d);
    let sort_order = project(s, pid)?
        .modules
        .iter()
        .filter_map(|c| c.get("sort_order").and_then(Value::as_f64))
        .reduce(f64::max)
        .map_or(65535.0, |m| m + 10000.0);
    let mut m = Obj::new();
    m.insert("id".into(), json!(Uuid::new_v4().to_string()));
    for k in COUNT_KEYS {
        m.insert(k.into(), json!(0));
    }
    m.insert("created_at".into(), json!(ts));
    m.insert("updated_at".into(), json!(ts));
    m.insert("deleted_at".into(), Value::Null);
    m.insert("name".into(), get("name", json!("")));
    m.insert("description".into(), get("description", json!("")));
    m.insert("description_text".into(), Value::Null);
    m.insert("description_html".into(), Value::Null);
    m.insert("start_date".into(), get("start_date", Value::Null));
    m.insert("target_date".into(), get("target_date", Value::Null));
    m.insert("status".into(), get("status", json!("planned")));
    m.insert("view_props".into(), json!({}));
    m.insert("sort_order".into(), json!(sort_order));
    m.insert(
        "external_source".into(),
        get("external_source", Value::Null),
    );
    m.insert("external_id".into(), get("external_id", Value::Null));
    m.insert("archived_at".into(), Value::Null);
    m.insert("logo_props".into(), json!({}));
    m.insert("created_by".into(), json!(user));
    m.insert("updated_by".into(), Value::Null);
    m.insert("project".into(), json!(pid.to_string()));
    m.insert("workspace".into(), json!(s.workspace_id.to_string()));
    m.insert("lead".into(), get("lead", Value::Null));
    m.insert("members".into(), get("members", json!([])));
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    p.modules.push(m.clone());
    ev.push(WebhookEvent {
        event: "module",
        action: "created",
        data: Value::Object(m.clone()),
        activity: s.webhook_activity(None, Value::Null, Value::Null),
    });
    Ok(Resp::json(201, &Value::Object(m)))
}

fn patch_module(s: &mut Store, pid: Uuid, id: Uuid, body: &Obj, ev: &mut Vec<WebhookEvent>) -> R {
    let before = find(project(s, pid)?.modules.iter(), id)?.clone();
    let o = validate_module(s, pid, body, false)?;
    if let Some(r) = external_conflict(&project(s, pid)?.modules, body, "Module", Some(id)) {
        return Err(r);
    }
    if let Some(name) = str_of(&o, "name")
        && project(s, pid)?
            .modules
            .iter()
            .any(|m| str_of(m, "name") == Some(name) && id_of(m) != Some(id))
    {
        return Err(Resp::json(
            400,
            &json!({"error": ["Module with this name already exists"]}),
        ));
    }
    let ts = now_str(s);
    let user = s.user_id();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    patch_rows(&mut p.modules, id, &o, &ts, &user)?;
    let p = project(s, pid)?;
    let view = module_view(p, find(p.modules.iter(), id)?);
    update_events(
        s,
        "module",
        &before,
        &o,
        body,
        Value::Object(view.clone()),
        ev,
    );
    Ok(Resp::json(200, &Value::Object(view)))
}

fn membership<'a>(rows: &'a [Obj], key: &str, parent: Uuid, issue: Uuid) -> Result<&'a Obj, Resp> {
    let (parent, issue) = (parent.to_string(), issue.to_string());
    rows.iter()
        .find(|r| {
            str_of(r, key) == Some(parent.as_str()) && str_of(r, "issue") == Some(issue.as_str())
        })
        .ok_or_else(Resp::not_found)
}

fn remove_membership(
    rows: &mut Vec<Obj>,
    key: &str,
    parent: Uuid,
    issue: Uuid,
) -> Result<(), Resp> {
    let (parent, issue) = (parent.to_string(), issue.to_string());
    let pos = rows
        .iter()
        .position(|r| {
            str_of(r, key) == Some(parent.as_str()) && str_of(r, "issue") == Some(issue.as_str())
        })
        .ok_or_else(Resp::not_found)?;
    rows.remove(pos);
    Ok(())
}

/// GET cycle-issues / module-issues: the member work items, newest membership first.
#[allow(clippy::too_many_arguments)]
fn member_items(
    s: &Store,
    p: &Project,
    rows: &[Obj],
    key: &str,
    parent: Uuid,
    q: &Query,
    fields: Option<&[String]>,
    expand: &[String],
) -> R {
    let page = page(q)?;
    let parent = parent.to_string();
    let items: Vec<Value> = rows
        .iter()
        .rev()
        .filter(|r| str_of(r, key) == Some(parent.as_str()))
        .filter_map(|r| str_of(r, "issue").and_then(|i| p.item(i)))
        .map(|o| s.render(o, fields, expand))
        .collect();
    Ok(Resp::json(200, &pagination::paginate(page, items)))
}

/// POST `{"issues": [...]}` to cycle-issues / module-issues. A work item is in at most one
/// cycle (adding moves it), but may be in several modules.
fn add_members(s: &mut Store, pid: Uuid, parent: Uuid, key: &str, body: &Obj) -> R {
    {
        let p = project(s, pid)?;
        let rows = if key == "cycle" {
            &p.cycles
        } else {
            &p.modules
        };
        find(rows.iter(), parent)?;
    }
    let issues: Vec<String> = ids_in(body.get("issues")).map(str::to_owned).collect();
    if issues.is_empty() {
        return Err(Resp::error(400, "Issues are required"));
    }
    let ts = now_str(s);
    let user = s.user_id();
    let ws = s.workspace_id.to_string();
    let p = s.project_mut(pid).ok_or_else(Resp::not_found)?;
    let parent_s = parent.to_string();
    let mut out = Vec::new();
    for issue in issues {
        let Some(issue) = Uuid::parse_str(&issue)
            .ok()
            .filter(|u| p.items.contains_key(u))
            .map(|u| u.to_string())
        else {
            continue;
        };
        let rows = if key == "cycle" {
            &mut p.cycle_issues
        } else {
            &mut p.module_issues
        };
        if key == "cycle" {
            rows.retain(|r| str_of(r, "issue") != Some(issue.as_str()));
        } else if let Some(existing) = rows.iter().find(|r| {
            str_of(r, "issue") == Some(issue.as_str()) && str_of(r, key) == Some(parent_s.as_str())
        }) {
            out.push(Value::Object(existing.clone()));
            continue;
        }
        let mut r = Obj::new();
        r.insert("id".into(), json!(Uuid::new_v4().to_string()));
        r.insert("sub_issues_count".into(), json!(0));
        r.insert("created_at".into(), json!(ts));
        r.insert("updated_at".into(), json!(ts));
        r.insert("deleted_at".into(), Value::Null);
        r.insert("created_by".into(), json!(user));
        r.insert("updated_by".into(), json!(user));
        r.insert("project".into(), json!(pid.to_string()));
        r.insert("workspace".into(), json!(ws));
        r.insert("issue".into(), json!(issue));
        r.insert(key.into(), json!(parent_s));
        rows.push(r.clone());
        out.push(Value::Object(r));
    }
    Ok(Resp::json(200, &Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let pid = "63791a9c-5739-43f6-ab37-c8ae77d434b2";
        assert!(parse_route("/api/v1/users/me/").is_some());
        assert!(parse_route("/api/v1/users/me").is_none());
        assert!(parse_route("/api/v1/no/such/route/").is_none());
        assert!(parse_route(&format!("/api/v1/workspaces/w/projects/{pid}/issues/")).is_some());
        assert!(parse_route(&format!("/api/v1/workspaces/w/projects/{pid}/work-items/")).is_some());
        assert!(parse_route("/api/v1/workspaces/w/projects/not-a-uuid/issues/").is_none());
        let upper = pid.to_uppercase();
        assert!(parse_route(&format!("/api/v1/workspaces/w/projects/{upper}/")).is_none());
        assert!(matches!(
            parse_route("/api/v1/workspaces/w/work-items/BIR-12/").map(|r| r.kind),
            Some(Kind::ByIdentifier(_))
        ));
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("a=1&b=x%2Cy+z&a=2&fields=id,,name"));
        assert_eq!(q.get("a"), Some("2"));
        assert_eq!(q.get("b"), Some("x,y z"));
        assert_eq!(q.fields(), Some(vec!["id".to_owned(), "name".to_owned()]));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
