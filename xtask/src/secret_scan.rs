//! No tracked file holds a Plane API key, a Plane webhook secret or a private
//! key. A file that must carry one (a fixture recorded from a throwaway test
//! server) is named, with the kind and the reason, in
//! `xtask/secret-scan-allowlist.txt`; the pattern itself is never weakened.
//!
//! Allowlist lines: `path | kind | reason`, `#` comments. An entry silences
//! exactly that kind in exactly that file: no globs, no directories, and an
//! entry that silences nothing (file gone, or no such secret in it) is a finding
//! itself, so the list cannot grow stale or cover files it does not name.
//!
//! Rules: `secret-scan/found`, `secret-scan/allowlist`.

use std::collections::BTreeSet;
use std::fs;

use crate::findings::{Findings, Lines, UNREADABLE};
use crate::patterns::{Kind, find_credentials};
use crate::repo::{Repo, paths};

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub path: String,
    pub kind: Kind,
    pub reason: String,
    /// Its line in the allowlist file.
    pub line: usize,
}

/// The shortest reason accepted: say why, not just "ok".
pub const MIN_REASON: usize = 20;

/// Parses the allowlist; malformed lines are findings against `path`.
pub fn parse_allowlist(path: &str, text: &str, findings: &mut Findings) -> Vec<Allow> {
    let mut out: Vec<Allow> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
        let [file, kind, reason] = parts[..] else {
            findings.push(
                path,
                i + 1,
                "secret-scan/allowlist",
                "an entry is `path | kind | reason` (kind: plane_api_key, plane_webhook_secret or private_key)",
            );
            continue;
        };
        let Some(kind) = Kind::from_name(kind) else {
            findings.push(
                path,
                i + 1,
                "secret-scan/allowlist",
                format!(
                    "unknown kind {kind:?}; use plane_api_key, plane_webhook_secret or private_key"
                ),
            );
            continue;
        };
        if file.is_empty()
            || file.contains('*')
            || file.contains('?')
            || file.contains('[')
            || file.ends_with('/')
            || file.starts_with('/')
            || file.split('/').any(|s| s == ".." || s == ".")
        {
            findings.push(
                path,
                i + 1,
                "secret-scan/allowlist",
                format!(
                    "{file:?} is not a plain repository-relative file path; name exactly one file (no globs, directories or ..)"
                ),
            );
            continue;
        }
        if reason.len() < MIN_REASON {
            findings.push(
                path,
                i + 1,
                "secret-scan/allowlist",
                format!(
                    "the reason for allowing {file} is missing or too short; say where the value comes from and why it is harmless"
                ),
            );
            continue;
        }
        if let Some(first) = out.iter().find(|a| a.path == file && a.kind == kind) {
            findings.push(
                path,
                i + 1,
                "secret-scan/allowlist",
                format!(
                    "{file} | {} is already allowed on line {}; remove the duplicate",
                    kind.name(),
                    first.line
                ),
            );
            continue;
        }
        out.push(Allow {
            path: file.to_owned(),
            kind,
            reason: reason.to_owned(),
            line: i + 1,
        });
    }
    out
}

/// Scans every file of `repo`.
pub fn check(repo: &Repo, findings: &mut Findings) {
    let allow = if repo.exists(paths::ALLOWLIST) {
        repo.read(paths::ALLOWLIST, findings)
            .map(|t| parse_allowlist(paths::ALLOWLIST, &t, findings))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let files: Vec<(String, String)> = repo
        .files()
        .iter()
        .filter_map(|f| match fs::read(repo.abs(f)) {
            Ok(bytes) => Some((f.clone(), String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => {
                findings.push(
                    f.clone(),
                    1,
                    UNREADABLE,
                    format!("could not read {f} to scan it for secrets: {e}"),
                );
                None
            }
        })
        .collect();
    for (f, _) in &files {
        findings.checked(f);
    }
    scan(&files, &allow, findings);
}

/// Scans `(path, text)` pairs, honouring `allow`.
pub fn scan(files: &[(String, String)], allow: &[Allow], findings: &mut Findings) {
    let mut used: BTreeSet<(String, Kind)> = BTreeSet::new();
    let names: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for (path, text) in files {
        let hits = find_credentials(text);
        if hits.is_empty() {
            continue;
        }
        let lines = Lines::new(text);
        for (offset, kind) in hits {
            if allow.iter().any(|a| a.path == *path && a.kind == kind) {
                used.insert((path.clone(), kind));
                continue;
            }
            findings.push(
                path.clone(),
                lines.line_of(offset),
                "secret-scan/found",
                format!(
                    "this line contains {}; remove it and rotate it if it was ever real (keep real values in supabase_vault or os_keychain). A throwaway value from a test server may stay only if {} names this file, the kind and the reason",
                    kind.describe(),
                    paths::ALLOWLIST
                ),
            );
        }
    }
    for a in allow {
        if !names.contains(a.path.as_str()) {
            findings.push(
                paths::ALLOWLIST,
                a.line,
                "secret-scan/allowlist",
                format!(
                    "{} is not a tracked file; remove this entry (entries name exact files)",
                    a.path
                ),
            );
        } else if !used.contains(&(a.path.clone(), a.kind)) {
            findings.push(
                paths::ALLOWLIST,
                a.line,
                "secret-scan/allowlist",
                format!(
                    "{} no longer contains {}; remove this stale entry",
                    a.path,
                    a.kind.describe()
                ),
            );
        }
    }
}
