//! Contract documents in `docs/contracts/`: the bold header, the required H2
//! sections, agreement with the index row, and secrets that exist.
//!
//! Rules: `contract/missing`, `contract/header`, `contract/section-missing`,
//! `contract/section-duplicate`, `contract/id-mismatch`, `contract/status`,
//! `contract/status-mismatch`, `contract/secret-unknown`.

use std::collections::BTreeMap;

use crate::findings::Findings;
use crate::index::{Index, well_formed_id};
use crate::md::{Doc, status_word, unquote};
use crate::registry::Registry;
use crate::repo::{Repo, paths};

/// The bold `**Key**: value` header lines every contract starts with.
pub const HEADER_FIELDS: &[&str] = &[
    "Contract ID",
    "Status",
    "Owner",
    "Last updated",
    "Source SSOT",
    "Consumer",
    "Validator",
];

/// The H2 sections every contract has.
pub const SECTIONS: &[&str] = &[
    "Parties",
    "Protocol",
    "Auth & Verification",
    "Invariants",
    "Secrets",
    "Failure Modes",
    "CI Enforcement",
    "Related Docs",
];

/// The contract docs in `docs/contracts/` (file names), the index excluded.
pub fn contract_files(repo: &Repo) -> Vec<String> {
    let prefix = format!("{}/", paths::CONTRACTS_DIR);
    let index = paths::INDEX.rsplit('/').next().unwrap_or_default();
    let mut files: Vec<String> = repo
        .files()
        .iter()
        .filter_map(|f| f.strip_prefix(prefix.as_str()))
        .filter(|f| !f.contains('/') && f.ends_with(".md") && *f != index)
        .map(str::to_owned)
        .collect();
    files.sort();
    files
}

/// Runs the contract rules on every contract doc.
pub fn check(
    repo: &Repo,
    files: &[String],
    index: Option<&Index>,
    registry: Option<&Registry>,
    findings: &mut Findings,
) {
    let plane = paths::PLANE_CONTRACT.rsplit('/').next().unwrap_or_default();
    if !files.iter().any(|f| f == plane) {
        findings.push(
            paths::PLANE_CONTRACT,
            1,
            "contract/missing",
            "the Plane ↔ Odoo sync contract (C-18) does not exist; create it with the header fields and sections listed in docs/contracts/PLATFORM_CONTRACTS_INDEX.md",
        );
    }
    for file in files {
        let path = format!("{}/{file}", paths::CONTRACTS_DIR);
        if let Some(text) = repo.read(&path, findings) {
            check_text(&path, file, &text, index, registry, findings);
            crate::invariants::check(repo, &path, &text, findings);
        }
    }
}

/// The contract rules on one document. `file` is its name inside `docs/contracts/`.
pub fn check_text(
    path: &str,
    file: &str,
    text: &str,
    index: Option<&Index>,
    registry: Option<&Registry>,
    findings: &mut Findings,
) {
    let doc = Doc::parse(text);
    let title_line = doc.headings.first().map_or(1, |h| h.line);

    // Header fields.
    for key in HEADER_FIELDS {
        match doc.field(key) {
            None => findings.push(
                path,
                title_line,
                "contract/header",
                format!(
                    "the header has no **{key}** line; add `**{key}**: ...` under the title (before the first ## section)"
                ),
            ),
            Some(f) if unquote(&f.value).is_empty() => findings.push(
                path,
                f.line,
                "contract/header",
                format!("**{key}** is empty; fill it in"),
            ),
            Some(_) => {}
        }
    }
    if let Some(f) = doc.field("Last updated") {
        let v = unquote(&f.value);
        if !v.is_empty() && !is_iso_date(v.get(..10).unwrap_or(v)) {
            findings.push(
                path,
                f.line,
                "contract/header",
                format!("**Last updated** is {v:?}; write an ISO date (YYYY-MM-DD)"),
            );
        }
    }
    let id_field = doc.field("Contract ID");
    let id = id_field.map(|f| unquote(&f.value).to_owned());
    if let (Some(f), Some(id)) = (id_field, &id)
        && !id.is_empty()
        && !well_formed_id(id)
    {
        findings.push(
            path,
            f.line,
            "contract/header",
            format!("**Contract ID** is {id:?}; ids are C- and two digits (C-18)"),
        );
    }

    // Sections.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let h2: Vec<_> = doc.headings.iter().filter(|h| h.level == 2).collect();
    for h in &h2 {
        let name = section_name(&h.text);
        if let Some(required) = SECTIONS.iter().find(|s| s.eq_ignore_ascii_case(name)) {
            if let Some(first) = seen.get(required) {
                findings.push(
                    path,
                    h.line,
                    "contract/section-duplicate",
                    format!(
                        "section \"{required}\" appears twice (first on line {first}); merge the two"
                    ),
                );
            } else {
                seen.insert(required, h.line);
            }
        }
    }
    for (i, section) in SECTIONS.iter().enumerate() {
        if !seen.contains_key(section) {
            // Point at the section it should follow, if that one exists.
            let line = SECTIONS[..i]
                .iter()
                .rev()
                .find_map(|s| seen.get(s).copied())
                .unwrap_or(title_line);
            findings.push(
                path,
                line,
                "contract/section-missing",
                format!(
                    "required section \"## {section}\" is missing; every contract has the sections {}",
                    SECTIONS.join(", ")
                ),
            );
        }
    }

    // Agreement with the index.
    let status_field = doc.field("Status");
    let status = status_field.map(|f| status_word(unquote(&f.value)).to_owned());
    if let Some(index) = index {
        if let (Some(f), Some(status)) = (status_field, &status)
            && !status.is_empty()
            && !index.legend.is_empty()
            && !index.legend.contains(status)
        {
            findings.push(
                    path,
                    f.line,
                    "contract/status",
                    format!(
                        "**Status** {status:?} is not one of the statuses the index legend defines ({})",
                        index.legend.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
        }
        if let Some(row) = index.row_for(file) {
            if let (Some(f), Some(id)) = (id_field, &id)
                && *id != row.id
            {
                findings.push(
                        path,
                        f.line,
                        "contract/id-mismatch",
                        format!(
                            "**Contract ID** is {id} but its row in {} (line {}) says {}; make them the same",
                            paths::INDEX,
                            row.line,
                            row.id
                        ),
                    );
            }
            if let (Some(f), Some(status)) = (status_field, &status)
                && *status != row.status
            {
                findings.push(
                        path,
                        f.line,
                        "contract/status-mismatch",
                        format!(
                            "**Status** is {status} but its row in {} (line {}) says {}; update whichever is out of date",
                            paths::INDEX,
                            row.line,
                            row.status
                        ),
                    );
            }
        }
    }

    // Secrets the document names.
    if let Some(registry) = registry {
        for (name, line, env) in named_secrets(&doc, text) {
            let known = if env {
                registry.env_vars.contains_key(&name)
            } else {
                registry.ids.contains(&name)
            };
            if !known {
                let what = if env {
                    format!(
                        "environment variable {name} looks like a secret but no registry entry has env_var_name: {name}"
                    )
                } else {
                    format!("secret {name} is not in the registry")
                };
                findings.push(
                    path,
                    line,
                    "contract/secret-unknown",
                    format!("{what}; add it to {} (or fix the name)", paths::REGISTRY),
                );
            }
        }
    }
}

/// `"4. Failure Modes"` -> `"Failure Modes"`.
fn section_name(heading: &str) -> &str {
    heading
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .trim()
}

/// Secret names in the document: code spans that are secret ids
/// (`plane_api_key`) or credential-looking environment variables
/// (`PLANE_API_KEY`), and `registry.yaml#id` references. (name, line, is_env).
fn named_secrets(doc: &Doc, text: &str) -> Vec<(String, usize, bool)> {
    let mut out = Vec::new();
    for code in &doc.code {
        let t = code.text.trim();
        if is_secret_id(t) {
            out.push((t.to_owned(), code.line, false));
        } else if is_secret_env(t) {
            out.push((t.to_owned(), code.line, true));
        }
    }
    for (i, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("registry.yaml#") {
            let name: String = line[at + "registry.yaml#".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((name, i + 1, false));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

const SECRET_WORDS: &[&str] = &["key", "secret", "token", "password"];

/// `plane_api_key`: snake_case, three or more parts, ending in a secret word.
pub fn is_secret_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('_').collect();
    parts.len() >= 3
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts.last().is_some_and(|p| SECRET_WORDS.contains(p))
}

/// `PLANE_API_KEY`: UPPER_SNAKE ending in a secret word.
pub fn is_secret_env(s: &str) -> bool {
    let parts: Vec<&str> = s.split('_').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| SECRET_WORDS.contains(&p.to_ascii_lowercase().as_str()))
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    matches!(
        (num(0..4), num(5..7), num(8..10)),
        (Some(_), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_secret_id("plane_api_key"));
        assert!(is_secret_id("plane_webhook_secret"));
        assert!(!is_secret_id("api_key"));
        assert!(!is_secret_id("event_key"));
        assert!(is_secret_env("PLANE_API_KEY"));
        assert!(is_secret_env("PLANE_WEBHOOK_SECRET"));
        assert!(!is_secret_env("PLANE_BASE_URL"));
        assert!(is_iso_date("2026-11-30"));
        assert!(!is_iso_date("30/11/2026"));
        assert_eq!(section_name("4. Failure Modes"), "Failure Modes");
    }
}
