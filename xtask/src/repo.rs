//! The repository as the rules see it: a root directory, the files it tracks,
//! and reading a file into a finding when that fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::findings::{Findings, UNREADABLE};

/// Where the documents live, relative to the repository root.
pub mod paths {
    pub const CONTRACTS_DIR: &str = "docs/contracts";
    pub const INDEX: &str = "docs/contracts/PLATFORM_CONTRACTS_INDEX.md";
    pub const PLANE_CONTRACT: &str = "docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md";
    pub const REGISTRY: &str = "ssot/secrets/registry.yaml";
    pub const REGISTRY_SCHEMA: &str = "ssot/secrets/registry.schema.json";
    pub const REPO_TREE: &str = "docs/architecture/PLATFORM_REPO_TREE.md";
    pub const MCP_CONFIG: &str = "agents/mcp/configs/plane-mcp.yaml";
    pub const POLICY: &str = "docs/integration/PLANE_INTEGRATION_POLICY.md";
    pub const ADDON: &str = "addons/ipai/ipai_plane_connector";
    pub const ADDON_DATA: &str = "addons/ipai/ipai_plane_connector/data/ir_config_parameter.xml";
    pub const ADDON_MANIFEST: &str = "addons/ipai/ipai_plane_connector/__manifest__.py";
    pub const ADDON_README: &str = "addons/ipai/ipai_plane_connector/README.md";
    pub const ALLOWLIST: &str = "xtask/secret-scan-allowlist.txt";
}

/// Directories never considered part of the repository's content.
const SKIP_DIRS: &[&str] = &[".git", "target"];

/// A repository checkout.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    /// Tracked files (and untracked, not ignored ones), `/`-separated.
    files: Vec<String>,
}

impl Repo {
    /// Opens `root`: the file list comes from `git ls-files` (tracked plus
    /// untracked-but-not-ignored files), or from walking the tree (skipping
    /// `.git` and `target`) when `root` is not a git checkout.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let files = git_files(&root).unwrap_or_else(|| walk(&root));
        Self { root, files }
    }

    /// A repository with an explicit file list (tests).
    pub fn with_files(root: impl Into<PathBuf>, files: Vec<String>) -> Self {
        Self {
            root: root.into(),
            files,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every tracked file, sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The absolute path of a repository-relative one.
    pub fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.abs(rel).exists()
    }

    pub fn is_dir(&self, rel: &str) -> bool {
        self.abs(rel).is_dir()
    }

    /// Reads a file that must exist. A missing file is a finding of `missing_rule`
    /// (with `what_to_do`); a file that exists but cannot be read is
    /// [`UNREADABLE`].
    pub fn read_required(
        &self,
        rel: &str,
        findings: &mut Findings,
        missing_rule: &'static str,
        what_to_do: &str,
    ) -> Option<String> {
        let path = self.abs(rel);
        if !path.exists() {
            findings.push(
                rel,
                1,
                missing_rule,
                format!("{rel} does not exist; {what_to_do}"),
            );
            return None;
        }
        self.read(rel, findings)
    }

    /// Reads a file; failure is an [`UNREADABLE`] finding.
    pub fn read(&self, rel: &str, findings: &mut Findings) -> Option<String> {
        findings.checked(rel);
        match fs::read(self.abs(rel)) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    findings.push(
                        rel,
                        1,
                        UNREADABLE,
                        format!("{rel} is not UTF-8 text; save it as UTF-8"),
                    );
                    None
                }
            },
            Err(e) => {
                findings.push(
                    rel,
                    1,
                    UNREADABLE,
                    format!("could not read {rel}: {e}; check that it is a readable file"),
                );
                None
            }
        }
    }

    /// The top-level directories that hold repository content: from the file
    /// list, plus directories on disk (so a brand-new folder needs a row before
    /// its first commit), minus `.git` and `target`.
    pub fn top_level_dirs(&self) -> BTreeSet<String> {
        let mut dirs: BTreeSet<String> = self
            .files
            .iter()
            .filter_map(|f| f.split_once('/').map(|(d, _)| d.to_owned()))
            .collect();
        let mut on_disk = Vec::new();
        if let Ok(entries) = fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && !SKIP_DIRS.contains(&name.as_str()) {
                    on_disk.push(name);
                }
            }
        }
        let ignored = self.ignored(&on_disk);
        dirs.extend(on_disk.into_iter().filter(|d| !ignored.contains(d)));
        dirs.retain(|d| !SKIP_DIRS.contains(&d.as_str()));
        dirs
    }

    /// The names among `names` that git ignores (none outside a git checkout).
    fn ignored(&self, names: &[String]) -> BTreeSet<String> {
        if names.is_empty() || !self.root.join(".git").exists() {
            return BTreeSet::new();
        }
        Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(["check-ignore", "--"])
            .args(names)
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| l.trim_end_matches('/').to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn git_files(root: &Path) -> Option<Vec<String>> {
    if !root.join(".git").exists() {
        return None;
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|f| root.join(f).is_file())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = rel.join(&name);
            if entry.path().is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) {
                    stack.push(child);
                }
            } else {
                out.push(
                    child
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    out
}
