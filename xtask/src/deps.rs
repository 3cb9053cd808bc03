//! The README's "Dependency direction:" line states exactly the dependencies
//! between the workspace's own crates, as their `Cargo.toml` files declare them.
//!
//! Only `[dependencies]` (and target-specific `[target.*.dependencies]`) count;
//! dev- and build-dependencies do not, and an optional dependency is still an
//! edge. The line lists chains in backticks, `` `a → b → c` `` (or `->`), each
//! consecutive pair being one edge; text outside backticks is commentary.
//!
//! Rules: `deps/readme-line`, `deps/manifest`, `deps/unstated`, `deps/stated-not-declared`,
//! `deps/unknown-crate`.

use std::collections::{BTreeMap, BTreeSet};

use crate::findings::Findings;
use crate::repo::Repo;

/// The file holding the line, and the line's marker.
pub const README: &str = "README.md";
/// What the line starts with.
pub const MARKER: &str = "Dependency direction:";

/// One workspace crate depending on another: `from → to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The crate that depends.
    pub from: String,
    /// The crate it depends on.
    pub to: String,
}

/// A declared edge and where its manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The manifest, repository-relative.
    pub manifest: String,
    /// The 1-based line of the dependency's key.
    pub line: usize,
}

/// Runs the rule on the repository.
pub fn check(repo: &Repo, findings: &mut Findings) {
    let crates = members(repo, findings);
    crate::http_clients::check(repo, &crates, findings);
    let declared = declared_edges(repo, &crates, findings);
    if let Some(text) = repo.read_required(
        README,
        findings,
        "deps/readme-line",
        "create the README with a \"Dependency direction:\" line",
    ) {
        let names = crates.keys().cloned().collect();
        check_readme(README, &text, &names, &declared, findings);
    }
}

/// The workspace crates (package name → manifest path), from the root
/// manifest's `members` (`dir/*` globs and plain paths).
fn members(repo: &Repo, findings: &mut Findings) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(root) = repo.read_required(
        "Cargo.toml",
        findings,
        "deps/manifest",
        "the workspace needs a root Cargo.toml",
    ) else {
        return out;
    };
    let members: Vec<String> = match root.parse::<toml::Table>() {
        Ok(table) => table
            .get("workspace")
            .and_then(|w| w.get("members"))
            .and_then(|m| m.as_array())
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            findings.push(
                "Cargo.toml",
                1,
                "deps/manifest",
                format!("Cargo.toml does not parse as TOML: {e}"),
            );
            return out;
        }
    };
    let mut manifests = BTreeSet::new();
    for member in members {
        match member.strip_suffix("/*") {
            Some(dir) => {
                for file in repo.files() {
                    let Some(rest) = file.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
                    else {
                        continue;
                    };
                    if rest.split('/').count() == 2 && rest.ends_with("/Cargo.toml") {
                        manifests.insert(file.clone());
                    }
                }
            }
            None => {
                manifests.insert(format!("{member}/Cargo.toml"));
            }
        }
    }
    for manifest in manifests {
        let Some(text) = repo.read(&manifest, findings) else {
            continue;
        };
        match package_name(&text) {
            Ok(name) => {
                out.insert(name, manifest);
            }
            Err(message) => findings.push(&manifest, 1, "deps/manifest", message),
        }
    }
    out
}

fn package_name(manifest: &str) -> Result<String, String> {
    let table: toml::Table = manifest
        .parse()
        .map_err(|e| format!("does not parse as TOML: {e}"))?;
    table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "has no [package] name".to_owned())
}

/// Every edge between workspace crates that a manifest's `[dependencies]` declares.
fn declared_edges(
    repo: &Repo,
    crates: &BTreeMap<String, String>,
    findings: &mut Findings,
) -> BTreeMap<Edge, Declared> {
    let mut edges = BTreeMap::new();
    for (name, manifest) in crates {
        let Some(text) = repo.read(manifest, findings) else {
            continue;
        };
        for (dep, line) in workspace_dependencies(&text, crates) {
            edges.insert(
                Edge {
                    from: name.clone(),
                    to: dep,
                },
                Declared {
                    manifest: manifest.clone(),
                    line,
                },
            );
        }
    }
    edges
}

/// The names among `crates` that `manifest` lists as normal dependencies, with
/// the line of each. A dependency renamed with `package = "..."` counts under
/// the package's name.
pub fn workspace_dependencies(
    manifest: &str,
    crates: &BTreeMap<String, String>,
) -> Vec<(String, usize)> {
    let Ok(table) = manifest.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for deps in normal_dependency_tables(&table) {
        for (key, value) in deps {
            let package = value.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            if crates.contains_key(package) {
                out.push((package.to_owned(), key_line(manifest, key)));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// A manifest's `[dependencies]` and `[target.*.dependencies]` tables (not dev or build).
pub fn normal_dependency_tables(table: &toml::Table) -> Vec<&toml::Table> {
    let mut tables: Vec<&toml::Table> = Vec::new();
    if let Some(deps) = table.get("dependencies").and_then(|d| d.as_table()) {
        tables.push(deps);
    }
    if let Some(targets) = table.get("target").and_then(|t| t.as_table()) {
        for target in targets.values() {
            if let Some(deps) = target.get("dependencies").and_then(|d| d.as_table()) {
                tables.push(deps);
            }
        }
    }
    tables
}

/// The first line that sets `key` in a dependencies table (1 when not found).
pub fn key_line(manifest: &str, key: &str) -> usize {
    let mut in_deps = false;
    for (i, line) in manifest.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let header = trimmed.trim_matches(|c| c == '[' || c == ']');
            // `[dependencies.plane-core]` declares it on the header line itself.
            if header == format!("dependencies.{key}") {
                return i + 1;
            }
            in_deps = header == "dependencies"
                || (header.starts_with("target.") && header.ends_with(".dependencies"));
            continue;
        }
        let starts_with_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(['=', '.']));
        if in_deps && starts_with_key {
            return i + 1;
        }
    }
    1
}

/// The edges the README's line states, and the line's number.
pub fn stated_edges(readme: &str) -> Option<(usize, Vec<Edge>)> {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines.iter().position(|l| l.contains(MARKER))?;
    // The statement runs to the end of its paragraph.
    let paragraph: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .copied()
        .collect();
    let text = paragraph.join(" ");
    let text = &text[text.find(MARKER).map_or(0, |i| i + MARKER.len())..];
    let mut edges = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 {
            continue;
        }
        let names: Vec<&str> = span
            .split(['→', '>'])
            .map(|s| s.trim().trim_end_matches('-').trim())
            .collect();
        if names.len() < 2 {
            continue;
        }
        for pair in names.windows(2) {
            edges.push(Edge {
                from: pair[0].to_owned(),
                to: pair[1].to_owned(),
            });
        }
    }
    Some((start + 1, edges))
}

/// Compares the README's line with the declared edges: every declared edge
/// stated, nothing else stated, every name a workspace crate.
pub fn check_readme(
    path: &str,
    readme: &str,
    crates: &BTreeSet<String>,
    declared: &BTreeMap<Edge, Declared>,
    findings: &mut Findings,
) {
    let Some((line, stated)) = stated_edges(readme) else {
        findings.push(
            path,
            1,
            "deps/readme-line",
            format!(
                "no \"{MARKER}\" line; add one listing every dependency between the workspace's crates, e.g. `plane-server → plane-core`"
            ),
        );
        return;
    };
    if stated.is_empty() {
        findings.push(
            path,
            line,
            "deps/readme-line",
            format!("the \"{MARKER}\" line states no edge; write them in backticks, e.g. `plane-server → plane-core`"),
        );
    }
    let mut unknown = BTreeSet::new();
    for name in stated.iter().flat_map(|e| [&e.from, &e.to]) {
        if !crates.contains(name) && unknown.insert(name.clone()) {
            findings.push(
                path,
                line,
                "deps/unknown-crate",
                format!(
                    "the \"{MARKER}\" line names {name:?}, which is not a workspace crate; use the package names from the crates' Cargo.toml"
                ),
            );
        }
    }
    let stated_set: BTreeSet<&Edge> = stated.iter().collect();
    for (edge, at) in declared {
        if !stated_set.contains(edge) {
            findings.push(
                path,
                line,
                "deps/unstated",
                format!(
                    "{} depends on {} ({}:{}, [dependencies]) but the \"{MARKER}\" line does not say so; add `{} → {}`",
                    edge.from, edge.to, at.manifest, at.line, edge.from, edge.to
                ),
            );
        }
    }
    for edge in stated_set {
        let known = crates.contains(&edge.from) && crates.contains(&edge.to);
        if known && !declared.contains_key(edge) {
            findings.push(
                path,
                line,
                "deps/stated-not-declared",
                format!(
                    "the line states {} → {}, but {}'s Cargo.toml has no such [dependencies] entry (dev-dependencies do not count); remove it from the line or declare the dependency",
                    edge.from, edge.to, edge.from
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn crates(names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), format!("crates/{n}/Cargo.toml")))
            .collect()
    }

    #[test]
    fn only_normal_dependencies_on_workspace_crates_count() {
        let manifest = "[package]\nname = \"a\"\n\n[dependencies]\nserde = \"1\"\nb.workspace = true\nrenamed = { package = \"c\", path = \"../c\", optional = true }\n\n[dev-dependencies]\nd.workspace = true\n\n[target.'cfg(unix)'.dependencies]\ne = { path = \"../e\" }\n";
        let found = workspace_dependencies(manifest, &crates(&["a", "b", "c", "d", "e"]));
        assert_eq!(
            found,
            [
                ("b".to_owned(), 6),
                ("c".to_owned(), 7),
                ("e".to_owned(), 13)
            ]
        );
        let table_form = "[package]\nname = \"a\"\n[dependencies.b]\npath = \"../b\"\n";
        assert_eq!(
            workspace_dependencies(table_form, &crates(&["a", "b"])),
            [("b".to_owned(), 3)]
        );
    }

    #[test]
    fn chains_in_backticks_become_edges_and_prose_is_ignored() {
        let readme = "# x\n\nDependency direction: `a → b → c`, `a -> d`.\n`e` depends on nothing of ours; `f → g` is in the next paragraph? no:\n\n`x → y`\n";
        let (line, edges) = stated_edges(readme).unwrap();
        assert_eq!(line, 3);
        let pairs: Vec<(&str, &str)> = edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "b"), ("b", "c"), ("a", "d"), ("f", "g")]);
        assert!(stated_edges("no such line").is_none());
    }

    fn edge(from: &str, to: &str) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn missing_extra_and_unknown_edges_are_each_reported_on_the_line() {
        let names: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        let declared: BTreeMap<Edge, Declared> = [(
            edge("a", "c"),
            Declared {
                manifest: "crates/a/Cargo.toml".into(),
                line: 9,
            },
        )]
        .into();
        let mut findings = Findings::new();
        check_readme(
            "README.md",
            "intro\nDependency direction: `a → b`, `a → z`.\n",
            &names,
            &declared,
            &mut findings,
        );
        let got: Vec<(usize, &str)> = findings.all().iter().map(|f| (f.line, f.rule)).collect();
        assert_eq!(
            got,
            [
                (2, "deps/unknown-crate"),
                (2, "deps/unstated"),
                (2, "deps/stated-not-declared"),
            ]
        );
        assert!(findings.all()[1].message.contains("crates/a/Cargo.toml:9"));
        assert!(findings.all()[2].message.contains("a → b"));

        let mut clean = Findings::new();
        check_readme(
            "README.md",
            "Dependency direction: `a → c`.",
            &names,
            &declared,
            &mut clean,
        );
        assert!(clean.is_empty(), "{:?}", clean.all());

        let mut none = Findings::new();
        check_readme("README.md", "no line", &names, &declared, &mut none);
        assert_eq!(none.all()[0].rule, "deps/readme-line");
    }
}
