//! `docs/architecture/PLATFORM_REPO_TREE.md`: the SSOT Assignment Table names
//! paths that exist, covers every top-level folder and the connector addon, and
//! its Git/Generated rows are filled in consistently.
//!
//! Rules: `repo-tree/missing`, `repo-tree/table`, `repo-tree/path-missing`,
//! `repo-tree/top-level-missing`, `repo-tree/addon-row`, `repo-tree/owner`.

use std::collections::BTreeSet;

use crate::findings::Findings;
use crate::md::{Doc, unquote};
use crate::repo::{Repo, paths};

/// The table's columns, in order.
pub const COLUMNS: &[&str] = &[
    "Path pattern",
    "SSOT owner",
    "Derived from",
    "Regenerate command",
];

/// Runs the repo-tree rules on the repository.
pub fn check(repo: &Repo, findings: &mut Findings) {
    let Some(text) = repo.read_required(
        paths::REPO_TREE,
        findings,
        "repo-tree/missing",
        "create it with an \"SSOT Assignment Table\" that gives every top-level folder an owner",
    ) else {
        return;
    };
    let top = repo.top_level_dirs();
    check_text(paths::REPO_TREE, &text, &top, findings, &|pattern| {
        pattern_exists(repo, pattern)
    });
}

/// The rules on `text`; `top_level` are the repository's top-level folders and
/// `exists` says whether a path pattern matches something.
pub fn check_text(
    path: &str,
    text: &str,
    top_level: &BTreeSet<String>,
    findings: &mut Findings,
    exists: &dyn Fn(&str) -> bool,
) {
    let doc = Doc::parse(text);
    let Some(table) = doc.table_with(COLUMNS) else {
        let line = doc
            .headings
            .iter()
            .find(|h| h.text.contains("SSOT Assignment Table"))
            .map_or(1, |h| h.line);
        findings.push(
            path,
            line,
            "repo-tree/table",
            format!(
                "no SSOT Assignment Table with exactly the columns | {} | found; fix the header row",
                COLUMNS.join(" | ")
            ),
        );
        return;
    };
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let mut addon = false;
    for row in &table.rows {
        let pattern = unquote(row.text(0)).to_owned();
        if pattern.is_empty() {
            continue;
        }
        let bare = pattern
            .trim_end_matches("/**")
            .trim_end_matches('/')
            .to_owned();
        if !bare.contains('/') && !bare.contains('*') && pattern != bare {
            covered.insert(bare.clone());
        }
        if bare == paths::ADDON {
            addon = true;
        }
        if !exists(&pattern) {
            findings.push(
                path,
                row.line,
                "repo-tree/path-missing",
                format!(
                    "path pattern `{pattern}` matches nothing in the repository; fix the path or remove the row"
                ),
            );
        }
        let owner = row.text(1).trim_matches('*').trim();
        let derived = row.text(2);
        let command = row.text(3);
        let none = |s: &str| s.is_empty() || s == "—" || s == "-";
        if owner.eq_ignore_ascii_case("Generated") {
            if derived == "(original)" || none(derived) || none(command) {
                findings.push(
                    path,
                    row.line,
                    "repo-tree/owner",
                    format!(
                        "`{pattern}` is Generated, so \"Derived from\" must name its source and \"Regenerate command\" the command that rebuilds it"
                    ),
                );
            }
        } else if owner == "Git" || owner.starts_with("Git (") {
            if derived != "(original)" || !none(command) {
                findings.push(
                    path,
                    row.line,
                    "repo-tree/owner",
                    format!(
                        "`{pattern}` is hand-written (Git), so \"Derived from\" is (original) and \"Regenerate command\" is —"
                    ),
                );
            }
        } else if owner != "OCA upstream" {
            findings.push(
                path,
                row.line,
                "repo-tree/owner",
                format!(
                    "`{pattern}` has SSOT owner {owner:?}; write Git (hand-written, optionally `Git (how)`), **Generated** or OCA upstream"
                ),
            );
        }
    }
    for dir in top_level {
        if !covered.contains(dir) {
            findings.push(
                path,
                table.line,
                "repo-tree/top-level-missing",
                format!(
                    "top-level folder `{dir}/` has no row in the SSOT Assignment Table; add a row `{dir}/**` saying who owns it"
                ),
            );
        }
    }
    if !addon {
        findings.push(
            path,
            table.line,
            "repo-tree/addon-row",
            format!(
                "the SSOT Assignment Table has no row for the connector addon; add `{}/**`",
                paths::ADDON
            ),
        );
    }
}

/// True when `pattern` (`dir/**`, `dir/`, `dir/*.ext`, or a plain path)
/// matches something in `repo`.
pub fn pattern_exists(repo: &Repo, pattern: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix("/**")
        && !dir.contains('*')
    {
        return repo.is_dir(dir);
    }
    if let Some(dir) = pattern.strip_suffix('/') {
        return repo.is_dir(dir);
    }
    if pattern.contains('*') {
        return repo.files().iter().any(|f| glob_match(pattern, f));
    }
    repo.exists(pattern)
}

/// `*` matches within one path segment, `**` any number of segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    match_segments(&p, &s)
}

fn match_segments(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((&"**", rest)) => (0..=s.len()).any(|i| match_segments(rest, &s[i..])),
        Some((first, rest)) => {
            !s.is_empty() && match_segment(first, s[0]) && match_segments(rest, &s[1..])
        }
    }
}

fn match_segment(p: &str, s: &str) -> bool {
    match_bytes(p.as_bytes(), s.as_bytes())
}

fn match_bytes(p: &[u8], s: &[u8]) -> bool {
    match p.iter().position(|b| *b == b'*') {
        None => p == s,
        Some(star) => {
            let (head, tail) = (&p[..star], &p[star + 1..]);
            s.starts_with(head) && (head.len()..=s.len()).any(|i| match_bytes(tail, &s[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(
            "agents/mcp/configs/*.yaml",
            "agents/mcp/configs/plane-mcp.yaml"
        ));
        assert!(!glob_match(
            "agents/mcp/configs/*.yaml",
            "agents/mcp/configs/x/plane.yaml"
        ));
        assert!(glob_match("crates/**", "crates/plane-core/src/lib.rs"));
        assert!(glob_match(
            ".github/workflows/*.yml",
            ".github/workflows/ci.yml"
        ));
        assert!(glob_match(
            "testdata/**/*.json",
            "testdata/plane-ce/api/01.json"
        ));
    }
}
