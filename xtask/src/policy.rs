//! `docs/integration/PLANE_INTEGRATION_POLICY.md`: says when to use each route
//! into Plane.
//!
//! Rules: `policy/missing`, `policy/topic`.

use crate::findings::Findings;
use crate::md::Doc;
use crate::repo::{Repo, paths};

/// Each route the policy must cover: (what to look for in a heading, what it is).
pub const TOPICS: &[(&str, &str)] = &[
    (
        "built-in",
        "Plane's built-in integrations (GitHub, Slack, GitLab, Sentry)",
    ),
    ("MCP", "the Plane MCP server"),
    ("REST", "this REST connector"),
    ("OAuth", "OAuth Plane apps"),
];

/// Runs the policy rules on the repository.
pub fn check(repo: &Repo, findings: &mut Findings) {
    if let Some(text) = repo.read_required(
        paths::POLICY,
        findings,
        "policy/missing",
        "create the integration policy (when to use built-in integrations, MCP, the REST connector, OAuth apps)",
    ) {
        check_text(paths::POLICY, &text, findings);
    }
}

/// The policy rules on `text`: a heading per route, and the four built-in integrations named.
pub fn check_text(path: &str, text: &str, findings: &mut Findings) {
    let doc = Doc::parse(text);
    for (needle, what) in TOPICS {
        let covered = doc.headings.iter().any(|h| {
            h.level >= 2
                && h.text
                    .to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase())
        });
        if !covered {
            findings.push(
                path,
                1,
                "policy/topic",
                format!("no section heading mentions {needle:?}; add a section saying when to use {what}"),
            );
        }
    }
    for name in ["GitHub", "Slack", "GitLab", "Sentry"] {
        if !text.contains(name) {
            findings.push(
                path,
                1,
                "policy/topic",
                format!("the policy does not mention Plane's built-in {name} integration; say when to prefer it over a custom bridge"),
            );
        }
    }
}
