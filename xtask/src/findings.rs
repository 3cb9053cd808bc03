//! Findings are data: every rule appends to a [`Findings`] list, nothing fails
//! early, and the list is printed in one of three formats at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

/// The rule id of a file that exists in the layout but could not be read;
/// it makes `validate` exit with 2 instead of 1.
pub const UNREADABLE: &str = "io/unreadable";

/// One thing wrong with one line of one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// Repository-relative path with `/` separators.
    pub path: String,
    /// 1-based line; 1 when the problem concerns the whole file.
    pub line: usize,
    /// A stable id such as `contract/section-missing`.
    pub rule: &'static str,
    /// What is wrong, where, and what to do about it.
    pub message: String,
}

/// The findings collected by one run.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    items: Vec<Finding>,
    /// The files the rules looked at (for the summary line).
    checked: BTreeSet<String>,
}

impl Findings {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that `path` was looked at.
    pub fn checked(&mut self, path: &str) {
        if !self.checked.contains(path) {
            self.checked.insert(path.to_owned());
        }
    }

    /// How many distinct files the rules looked at.
    pub fn files_checked(&self) -> usize {
        self.checked.len()
    }

    /// Records a finding.
    pub fn push(
        &mut self,
        path: impl Into<String>,
        line: usize,
        rule: &'static str,
        message: impl Into<String>,
    ) {
        self.items.push(Finding {
            path: path.into(),
            line: line.max(1),
            rule,
            message: message.into(),
        });
    }

    /// The findings in output order (by path, then line, then rule).
    pub fn sorted(&self) -> Vec<Finding> {
        let mut items = self.items.clone();
        items.sort();
        items.dedup();
        items
    }

    /// Every finding, unsorted.
    pub fn all(&self) -> &[Finding] {
        &self.items
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many findings (duplicates counted once).
    pub fn len(&self) -> usize {
        self.sorted().len()
    }

    /// True when some file could not be read at all.
    pub fn has_unreadable(&self) -> bool {
        self.items.iter().any(|f| f.rule == UNREADABLE)
    }

    /// The process exit code: 0 clean, 1 findings, 2 a file could not be read.
    pub fn exit_code(&self) -> u8 {
        if self.has_unreadable() {
            2
        } else if self.is_empty() {
            0
        } else {
            1
        }
    }

    /// Findings of one rule (tests).
    pub fn of_rule(&self, rule: &str) -> Vec<&Finding> {
        self.items.iter().filter(|f| f.rule == rule).collect()
    }
}

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line: rule: message`, grouped by file, then a summary line.
    Text,
    /// GitHub workflow commands (`::error file=...,line=...,title=rule::message`).
    Github,
    /// One JSON object: `{"findings": [...], "summary": {...}}`.
    Json,
}

/// Renders the findings in `format`.
pub fn render(findings: &Findings, format: Format) -> String {
    let sorted = findings.sorted();
    let files: BTreeMap<&str, usize> = sorted.iter().fold(BTreeMap::new(), |mut m, f| {
        *m.entry(f.path.as_str()).or_default() += 1;
        m
    });
    let summary = summary_line(sorted.len(), files.len(), findings.files_checked());
    let mut out = String::new();
    match format {
        Format::Text => {
            let mut current: Option<&str> = None;
            for f in &sorted {
                if current != Some(f.path.as_str()) {
                    if current.is_some() {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "{} ({})", f.path, plural(files[f.path.as_str()]));
                    current = Some(f.path.as_str());
                }
                let _ = writeln!(out, "  {}:{}: {}: {}", f.path, f.line, f.rule, f.message);
            }
            if !sorted.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "{summary}");
        }
        Format::Github => {
            for f in &sorted {
                let _ = writeln!(
                    out,
                    "::error file={},line={},title={}::{}",
                    escape_property(&f.path),
                    f.line,
                    escape_property(f.rule),
                    escape_data(&f.message)
                );
            }
            let _ = writeln!(out, "{summary}");
        }
        Format::Json => {
            let value = serde_json::json!({
                "findings": sorted,
                "summary": {
                    "findings": sorted.len(),
                    "files_with_findings": files.len(),
                    "files_checked": findings.files_checked(),
                    "exit_code": findings.exit_code(),
                },
            });
            out = serde_json::to_string_pretty(&value).unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 finding".to_owned()
    } else {
        format!("{n} findings")
    }
}

fn summary_line(findings: usize, files: usize, checked: usize) -> String {
    if findings == 0 {
        format!("cargo xtask validate: ok, {checked} files checked, 0 findings")
    } else {
        format!(
            "cargo xtask validate: {} in {} of {checked} files checked; fix them and run `cargo xtask validate` again",
            plural(findings),
            if files == 1 {
                "1 file".to_owned()
            } else {
                format!("{files} files")
            }
        )
    }
}

/// GitHub workflow-command escaping for the message part.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub workflow-command escaping for `key=value` properties.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Maps byte offsets to 1-based line numbers.
#[derive(Debug, Clone)]
pub struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers() {
        let lines = Lines::new("a\nbc\n\nd");
        assert_eq!(lines.line_of(0), 1);
        assert_eq!(lines.line_of(2), 2);
        assert_eq!(lines.line_of(3), 2);
        assert_eq!(lines.line_of(5), 3);
        assert_eq!(lines.line_of(6), 4);
    }

    #[test]
    fn formats() {
        let mut f = Findings::new();
        for p in ["a.md", "b.md", "c.md"] {
            f.checked(p);
        }
        f.push("b.md", 4, "r/two", "second, with: punctuation");
        f.push("a.md", 2, "r/one", "first");
        let text = render(&f, Format::Text);
        assert!(text.contains("a.md (1 finding)\n  a.md:2: r/one: first\n"));
        assert!(text.contains("2 findings in 2 files of 3 files checked"));
        assert!(text.find("a.md:2").unwrap_or(usize::MAX) < text.find("b.md:4").unwrap_or(0));
        let gh = render(&f, Format::Github);
        assert!(gh.contains("::error file=b.md,line=4,title=r/two::second, with: punctuation"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&f, Format::Json)).unwrap_or_default();
        assert_eq!(json["summary"]["findings"], 2);
        assert_eq!(json["findings"][0]["path"], "a.md");
        assert_eq!(json["findings"][0]["line"], 2);
        assert_eq!(f.exit_code(), 1);
    }
}
