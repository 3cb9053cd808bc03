//! A copy of the repository in a temporary directory, edited one rule at a time.
#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use xtask::{Finding, Findings, Repo};

/// A throwaway copy of the repository's files (no `.git`: the file list comes
/// from walking the tree).
pub struct Fixture {
    pub dir: TempDir,
}

impl Fixture {
    /// Copies every file of the real repository.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let real = Repo::open(xtask::default_root());
        for file in real.files() {
            let to = dir.path().join(file);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(real.abs(file), &to).unwrap();
        }
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.path(rel)).unwrap();
    }

    /// Replaces the first occurrence of `from` (which must exist) in `rel`.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// The first line of `rel` that starts with `prefix`, whole (for example a
    /// contract's `**Status**:` line, whatever status it carries today).
    pub fn line_starting(&self, rel: &str, prefix: &str) -> String {
        self.read(rel)
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{rel} has no line starting with {prefix:?}"))
            .to_owned()
    }

    /// Sets C-18's `**Status**:` line to `status` (for example `✅ Active`).
    pub fn set_contract_status(&self, status: &str) {
        const C: &str = "docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md";
        let line = self.line_starting(C, "**Status**: ");
        self.edit(C, &line, &format!("**Status**: {status}"));
    }

    /// Sets the status cell of C-18's row in the contracts index.
    pub fn set_index_status(&self, status: &str) {
        const I: &str = "docs/contracts/PLATFORM_CONTRACTS_INDEX.md";
        let row = self.line_starting(I, "| C-18 |");
        let cells: Vec<&str> = row.split(" | ").collect();
        let n = cells.len();
        let mut new = cells.clone();
        new[n - 2] = status; // the cell before the validator's
        self.edit(I, &row, &new.join(" | "));
    }

    /// The 1-based line of the first line of `rel` containing `needle`.
    pub fn line(&self, rel: &str, needle: &str) -> usize {
        self.read(rel)
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{rel} has no line containing {needle:?}"))
    }

    pub fn validate(&self) -> Findings {
        xtask::validate(self.root())
    }
}

/// Asserts a finding of `rule` at `path:line`, and returns it.
pub fn expect(findings: &Findings, path: &str, line: usize, rule: &str) -> Finding {
    let all = findings.sorted();
    all.iter()
        .find(|f| f.path == path && f.line == line && f.rule == rule)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "expected {path}:{line}: {rule}; got:\n{}",
                xtask::render(findings, xtask::Format::Text)
            )
        })
}

/// Asserts there is no finding of `rule` at all.
pub fn none_of(findings: &Findings, rule: &str) {
    let hits = findings.of_rule(rule);
    assert!(
        hits.is_empty(),
        "unexpected {rule}: {hits:#?}\n{}",
        xtask::render(findings, xtask::Format::Text)
    );
}

/// A Plane API key shaped string, built at run time.
pub fn fake_api_key() -> String {
    format!("{}_{}_{}", "plane", "api", "Ab3".repeat(11))
}

/// A Plane webhook secret shaped string, built at run time.
pub fn fake_webhook_secret() -> String {
    format!("{}_{}_{}", "plane", "wh", "7f".repeat(16))
}

/// A PEM private key header, built at run time.
pub fn fake_pem_header() -> String {
    format!("{}BEGIN RSA {} KEY-----", "-----", "PRIVATE")
}
