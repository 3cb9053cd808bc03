//! A contract's invariants and the tests that back them.
//!
//! Every numbered item of a contract's `## Invariants` section ends with a line that says
//! which tests back it, a line saying what is still untested and why, or both:
//!
//! ```text
//! 3. **Verify first.** A webhook is verified before anything parses it ...
//!    Tested by: `crates/plane-server/tests/router.rs::bad_signatures_are_401_with_the_reason_and_store_nothing`,
//!    `crates/plane-webhook/tests/verify.rs::each_malformation_has_its_own_reason`.
//!    Pending: what is not tested yet, and why (20 characters or more).
//! ```
//!
//! Each marker starts a line of its own (`**Tested by:**` and `**Pending:**` too) and runs
//! to the next marker or the end of the item. Every code span in a `Tested by:` clause that
//! mentions a `.rs` file is a reference `path::test_name` (other code spans are prose, as in
//! a note on what a test shows): `path` a repository file, `test_name` a function in it that
//! is a test, that is `fn test_name(` (or `<`) under an attribute whose path is `test` or
//! ends in `::test` (`#[test]`, `#[tokio::test(...)]`; proptest's `proptest! { #[test] fn
//! ... }` has one too), with only attributes and comments between them. The module path
//! inside the file is not checked: the name is looked for anywhere in it, `#[cfg(test)]`
//! modules included. A test a macro makes per backend is named with its module,
//! `path.rs::module::test` (`deadline_store.rs::a_status_change_is_applied::sqlite`): then
//! `test` must be a test in the file (the macro's body) and `module` a name the file uses.
//!
//! A contract may say **Status**: Active only when none of its invariants is pending: the
//! index's "Active" means enforced, and an invariant without a test is not.
//!
//! Rules: `invariant/untested`, `invariant/reference`, `invariant/test-file`,
//! `invariant/test-missing`, `invariant/pending-reason`, `invariant/pending-active`,
//! `invariant/none`.

use crate::findings::Findings;
use crate::md::{Doc, status_word, unquote};
use crate::repo::Repo;

/// The shortest reason a `Pending:` line may give.
pub const MIN_REASON: usize = 20;

const TESTED_BY: &str = "Tested by:";
const PENDING: &str = "Pending:";

/// One numbered invariant.
#[derive(Debug, Clone, Default)]
pub struct Invariant {
    /// Its number as written (`3`).
    pub number: String,
    /// The line of `3.`.
    pub line: usize,
    /// The `Tested by:` clause's line, if any, and its references with their lines.
    pub tested_by: Option<(usize, Vec<(String, usize)>)>,
    /// The `Pending:` clause's line and its reason, if any.
    pub pending: Option<(usize, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Clause {
    Prose,
    TestedBy,
    Pending,
}

/// The numbered items of the `## Invariants` section, with their clauses; `None` when the
/// document has no such section (the contract rules report that).
pub fn parse(text: &str) -> Option<Vec<Invariant>> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        l.strip_prefix("## ").is_some_and(|h| {
            h.trim()
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
                .eq_ignore_ascii_case("Invariants")
        })
    })?;
    let mut items: Vec<Invariant> = Vec::new();
    let mut clause = Clause::Prose;
    let mut fenced = false;
    for (i, raw) in lines.iter().enumerate().skip(start + 1) {
        let no = i + 1;
        if raw.starts_with("## ") || raw.starts_with("# ") {
            break;
        }
        if raw.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(number) = item_number(raw) {
            items.push(Invariant {
                number: number.to_owned(),
                line: no,
                ..Invariant::default()
            });
            clause = Clause::Prose;
        }
        let Some(item) = items.last_mut() else {
            continue;
        };
        let plain = raw.trim().replace("**", "");
        let mut rest = plain.as_str();
        if let Some(r) = rest.strip_prefix(TESTED_BY) {
            clause = Clause::TestedBy;
            item.tested_by.get_or_insert((no, Vec::new()));
            rest = r;
        } else if let Some(r) = rest.strip_prefix(PENDING) {
            clause = Clause::Pending;
            item.pending.get_or_insert((no, String::new()));
            rest = r;
        }
        match clause {
            Clause::Prose => {}
            Clause::TestedBy => {
                if let Some((_, refs)) = item.tested_by.as_mut() {
                    refs.extend(
                        code_spans(rest)
                            .into_iter()
                            .filter(|s| s.contains(".rs"))
                            .map(|s| (s, no)),
                    );
                }
            }
            Clause::Pending => {
                if let Some((_, reason)) = item.pending.as_mut() {
                    if !reason.is_empty() {
                        reason.push(' ');
                    }
                    reason.push_str(rest.trim());
                }
            }
        }
    }
    Some(items)
}

/// `"3. **Verify first.**"` -> `Some("3")`; only items at the left margin count.
fn item_number(line: &str) -> Option<&str> {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    (digits > 0 && line[digits..].starts_with(". ")).then(|| &line[..digits])
}

fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().to_owned())
        .collect()
}

/// What a file says about a test function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// `fn name(` under a test attribute.
    Test,
    /// `fn name(` exists (first at this 1-based line) but is not a test.
    NotATest(usize),
    /// No `fn name(` at all.
    Missing,
}

/// Looks for the test function `name` in the Rust source `text`.
pub fn find_test(text: &str, name: &str) -> Lookup {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") || !declares(code, name) {
            continue;
        }
        if attributes_above(&lines[..i]).any(|a| is_test_attribute(&a)) {
            return Lookup::Test;
        }
        found.get_or_insert(i + 1);
    }
    found.map_or(Lookup::Missing, Lookup::NotATest)
}

/// Whether `line` declares `fn name(` or `fn name<`.
fn declares(line: &str, name: &str) -> bool {
    let needle = format!("fn {name}");
    line.match_indices(&needle).any(|(at, _)| {
        let before_ok = at == 0 || line[..at].ends_with(|c: char| c.is_whitespace());
        let after = line[at + needle.len()..].trim_start();
        before_ok && (after.starts_with('(') || after.starts_with('<'))
    })
}

/// The attribute lines directly above a declaration, skipping comments and blank lines.
fn attributes_above<'a>(above: &'a [&'a str]) -> impl Iterator<Item = String> + 'a {
    above
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.is_empty() || l.starts_with("#[") || l.starts_with("//"))
        .filter(|l| l.starts_with("#["))
        .map(str::to_owned)
}

/// `#[test]`, `#[tokio::test(flavor = "multi_thread")]`: the attribute's path is `test`
/// or ends in `::test`.
fn is_test_attribute(attr: &str) -> bool {
    let inner = attr.trim_start_matches("#[");
    let path = inner
        .split(['(', ']', ' '])
        .next()
        .unwrap_or_default()
        .trim();
    path == "test" || path.ends_with("::test")
}

/// Runs the invariant rules on the contract at `path` (already read as `text`).
pub fn check(repo: &Repo, path: &str, text: &str, findings: &mut Findings) {
    let Some(items) = parse(text) else {
        return;
    };
    let section_line = text
        .lines()
        .position(|l| l.starts_with("## ") && l.contains("Invariants"))
        .map_or(1, |i| i + 1);
    if items.is_empty() {
        findings.push(
            path,
            section_line,
            "invariant/none",
            "the Invariants section has no numbered invariants (`1. ...` at the left margin); number each one so its tests can be named",
        );
        return;
    }
    let mut pending = Vec::new();
    for item in &items {
        let n = &item.number;
        if item.tested_by.is_none() && item.pending.is_none() {
            findings.push(
                path,
                item.line,
                "invariant/untested",
                format!(
                    "invariant {n} names no test; add a line `{TESTED_BY} `path/to/file.rs::test_name`` naming the tests that back it, or `{PENDING} <what is missing and why>`"
                ),
            );
        }
        if let Some((line, refs)) = &item.tested_by {
            if refs.is_empty() {
                findings.push(
                    path,
                    *line,
                    "invariant/reference",
                    format!(
                        "invariant {n}: `{TESTED_BY}` names no test; write each as a code span `path/to/file.rs::test_name`"
                    ),
                );
            }
            for (reference, line) in refs {
                check_reference(repo, path, n, reference, *line, findings);
            }
        }
        if let Some((line, reason)) = &item.pending {
            pending.push(n.as_str());
            if reason.chars().count() < MIN_REASON {
                findings.push(
                    path,
                    *line,
                    "invariant/pending-reason",
                    format!(
                        "invariant {n} is pending with the reason {reason:?}; say what is missing and why ({MIN_REASON} characters or more)"
                    ),
                );
            }
        }
    }
    let doc = Doc::parse(text);
    if let Some(status) = doc.field("Status")
        && status_word(unquote(&status.value)) == "Active"
        && !pending.is_empty()
    {
        findings.push(
            path,
            status.line,
            "invariant/pending-active",
            format!(
                "**Status** is Active but invariant{} {} {} pending: a contract is Active only when every invariant is tested; keep it Partial (here and in the index row) until they are",
                if pending.len() == 1 { "" } else { "s" },
                pending.join(", "),
                if pending.len() == 1 { "is" } else { "are" }
            ),
        );
    }
}

fn check_reference(
    repo: &Repo,
    path: &str,
    n: &str,
    reference: &str,
    line: usize,
    findings: &mut Findings,
) {
    let Some((file, modules, name)) = reference
        .split_once(".rs::")
        .map(|(f, rest)| {
            let (modules, name) = rest.rsplit_once("::").unwrap_or(("", rest));
            (&reference[..f.len() + 3], modules, name)
        })
        .filter(|(_, m, t)| is_identifier(t) && (m.is_empty() || m.split("::").all(is_identifier)))
    else {
        findings.push(
            path,
            line,
            "invariant/reference",
            format!(
                "invariant {n}: `{reference}` is not a test reference; write `path/to/file.rs::test_name` (repository-relative path, then the function's name)"
            ),
        );
        return;
    };
    if !repo.files().iter().any(|f| f == file) {
        findings.push(
            path,
            line,
            "invariant/test-file",
            format!(
                "invariant {n}: {file} is not a file of the repository; fix the path (repository-relative, e.g. crates/plane-core/tests/pacing.rs) or the reference"
            ),
        );
        return;
    }
    let Some(source) = repo.read(file, findings) else {
        return;
    };
    if let Some(module) = modules
        .split("::")
        .find(|m| !m.is_empty() && !uses_word(&source, m))
    {
        findings.push(
            path,
            line,
            "invariant/test-missing",
            format!(
                "invariant {n}: {file} never names `{module}`, the module of `{name}` in the reference; was the test renamed or removed?"
            ),
        );
        return;
    }
    match find_test(&source, name) {
        Lookup::Test => {}
        Lookup::NotATest(at) => findings.push(
            path,
            line,
            "invariant/test-missing",
            format!(
                "invariant {n}: {file}:{at} has `fn {name}` but it is not a test (no #[test] or #[...::test] attribute above it); name the test that calls it"
            ),
        ),
        Lookup::Missing => findings.push(
            path,
            line,
            "invariant/test-missing",
            format!(
                "invariant {n}: {file} has no test `fn {name}`; was it renamed or removed? Name the test that backs the invariant now"
            ),
        ),
    }
}

/// Whether `word` appears in `text` as a whole identifier.
fn uses_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word)
        .any(|(at, _)| !text[..at].ends_with(ident) && !text[at + word.len()..].starts_with(ident))
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tests_and_tells_helpers_apart() {
        let src = "async fn helper(x: u8) {}\n\n#[tokio::test(flavor = \"multi_thread\")]\n/// doc\nasync fn helper_unlimited() {}\n#[test]\n#[should_panic]\nfn plain() {}\nproptest! {\n    #[test]\n    fn prop(x in 0..3u8) {}\n}\n// fn gone() {}\n";
        assert_eq!(find_test(src, "helper"), Lookup::NotATest(1));
        assert_eq!(find_test(src, "helper_unlimited"), Lookup::Test);
        assert_eq!(find_test(src, "plain"), Lookup::Test);
        assert_eq!(find_test(src, "prop"), Lookup::Test);
        assert_eq!(find_test(src, "gone"), Lookup::Missing);
        assert_eq!(find_test(src, "help"), Lookup::Missing);
    }

    #[test]
    fn parses_items_and_clauses() {
        let text = "# C\n\n## Invariants\n\n1. **One.** Text.\n   **Tested by:** `a.rs::x`,\n   `b.rs::y` (`Prose`).\n   Pending: the rest, for a reason.\n2. Two.\n\n```\n3. not an item\n```\n## Secrets\n4. no\n";
        let items = parse(text).unwrap_or_default();
        assert_eq!(items.len(), 2);
        let (line, refs) = items[0].tested_by.clone().unwrap_or_default();
        assert_eq!(line, 6);
        assert_eq!(refs, [("a.rs::x".to_owned(), 6), ("b.rs::y".to_owned(), 7)]);
        assert_eq!(
            items[0].pending,
            Some((8, "the rest, for a reason.".to_owned()))
        );
        assert!(items[1].tested_by.is_none() && items[1].pending.is_none());
        assert_eq!(items[1].line, 9);
        assert!(parse("# C\n## Secrets\n").is_none());
    }
}
