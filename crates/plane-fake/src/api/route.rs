//! URL resolution (Django's URLconf for the public API) and what each view allows.

use super::cycles_modules::Group;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
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
    /// `cycles/` or `modules/` of a project.
    Groups(Group, Uuid),
    /// One cycle or module.
    OneGroup(Group, Uuid, Uuid),
    /// `cycle-issues/` or `module-issues/` of a cycle or module.
    GroupIssues(Group, Uuid, Uuid),
    /// One work item's membership of a cycle or module.
    GroupIssue(Group, Uuid, Uuid, Uuid),
    ProjectMembers(Uuid),
}

#[derive(Debug, Clone)]
pub(super) struct Route {
    pub slug: Option<String>,
    pub kind: Kind,
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

pub(super) fn parse_route(path: &str) -> Option<Route> {
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
                ["cycles", rest @ ..] => group_route(Group::Cycle, p, rest)?,
                ["modules", rest @ ..] => group_route(Group::Module, p, rest)?,
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

/// The part of a cycles/modules URL after `cycles/` or `modules/`.
fn group_route(g: Group, p: Uuid, rest: &[&str]) -> Option<Kind> {
    Some(match rest {
        [] => Kind::Groups(g, p),
        [id] => Kind::OneGroup(g, p, uuid_seg(id)?),
        [id, m] if *m == g.issues_segment() => Kind::GroupIssues(g, p, uuid_seg(id)?),
        [id, m, i] if *m == g.issues_segment() => {
            Kind::GroupIssue(g, p, uuid_seg(id)?, uuid_seg(i)?)
        }
        _ => return None,
    })
}

impl Kind {
    /// The `Allow` header DRF sends for the view.
    pub(super) fn allow(&self) -> &'static str {
        use Kind::*;
        match self {
            UsersMe | WorkspaceMembers | ByIdentifier(_) | Activities(..) | Activity(..)
            | ProjectMembers(_) => "GET",
            Projects | WorkItems(_) | States(_) | Labels(_) | Comments(..) | Links(..)
            | Groups(..) | GroupIssues(..) => "GET, POST",
            GroupIssue(..) => "GET, DELETE",
            Project(_) | WorkItem(..) | State(..) | Label(..) | Comment(..) | Link(..)
            | OneGroup(..) => "GET, PATCH, DELETE",
        }
    }

    /// The project a project-scoped view checks membership of.
    pub(super) fn member_project(&self) -> Option<Uuid> {
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
            | Groups(_, p)
            | OneGroup(_, p, _)
            | GroupIssues(_, p, _)
            | GroupIssue(_, p, ..)
            | ProjectMembers(p) => Some(*p),
        }
    }
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
        let cycle = format!("/api/v1/workspaces/w/projects/{pid}/cycles/{pid}");
        assert!(parse_route(&format!("{cycle}/cycle-issues/{pid}/")).is_some());
        assert!(parse_route(&format!("{cycle}/module-issues/")).is_none());
    }
}
