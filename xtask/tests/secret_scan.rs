//! Rules `secret-scan/found` and `secret-scan/allowlist`: the scan catches each
//! kind, the allowlist silences exactly the file and kind it names, and a bad or
//! stale allowlist entry is itself a finding.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, expect, fake_api_key, fake_pem_header, fake_webhook_secret, none_of};
use xtask::Findings;
use xtask::secret_scan::{parse_allowlist, scan};

const A: &str = "xtask/secret-scan-allowlist.txt";
const CE: &str = "testdata/plane-ce/README.md";

#[test]
fn the_recorded_test_secret_is_allowed() {
    let findings = Fixture::new().validate();
    none_of(&findings, "secret-scan/found");
    none_of(&findings, "secret-scan/allowlist");
}

#[test]
fn api_key_in_a_source_file() {
    let fx = Fixture::new();
    let key = fake_api_key();
    fx.write(
        "crates/plane-core/examples/leak.rs",
        &format!("// example\n\nconst KEY: &str = \"{key}\";\n"),
    );
    let f = expect(
        &fx.validate(),
        "crates/plane-core/examples/leak.rs",
        3,
        "secret-scan/found",
    );
    assert!(f.message.contains("Plane API key"));
    assert!(f.message.contains(A));
}

#[test]
fn webhook_secret_in_an_unlisted_file_is_caught_even_though_another_file_is_listed() {
    let fx = Fixture::new();
    let secret = fake_webhook_secret();
    fx.write("docs/notes.md", &format!("# Notes\nsecret: {secret}\n"));
    let findings = fx.validate();
    expect(&findings, "docs/notes.md", 2, "secret-scan/found");
    none_of(&findings, "secret-scan/allowlist");
}

#[test]
fn a_listed_file_is_allowed_only_the_listed_kind() {
    let fx = Fixture::new();
    let text = fx.read(CE);
    fx.write(CE, &format!("{text}\nkey: {}\n", fake_api_key()));
    let findings = fx.validate();
    let hits = findings.of_rule("secret-scan/found");
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0].path, CE);
    assert_eq!(hits[0].line, fx.line(CE, "key: plane"));
}

#[test]
fn private_key_block() {
    let fx = Fixture::new();
    fx.write("scripts/key.pem", &format!("{}\nMIIB\n", fake_pem_header()));
    expect(&fx.validate(), "scripts/key.pem", 1, "secret-scan/found");
}

#[test]
fn short_lookalikes_are_not_secrets() {
    let mut findings = Findings::new();
    let files = vec![(
        "a.md".to_owned(),
        format!(
            "{}REDACTED and {}key and {}",
            "plane_api_", "plane_wh_", "plane_api_abc"
        ),
    )];
    scan(&files, &[], &mut findings);
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn allowlist_entry_with_a_glob_is_refused() {
    let fx = Fixture::new();
    let text = fx.read(A);
    fx.write(
        A,
        &format!(
            "{text}testdata/** | plane_webhook_secret | everything under testdata is fixtures\n"
        ),
    );
    let f = expect(
        &fx.validate(),
        A,
        fx.line(A, "testdata/**"),
        "secret-scan/allowlist",
    );
    assert!(f.message.contains("no globs"));
}

#[test]
fn allowlist_entry_without_reason_or_with_unknown_kind() {
    let mut findings = Findings::new();
    let parsed = parse_allowlist(
        A,
        "# c\na.md | plane_webhook_secret | ok\nb.md | password | a reason long enough to pass\nc.md\n",
        &mut findings,
    );
    assert!(parsed.is_empty());
    let lines: Vec<usize> = findings.sorted().iter().map(|f| f.line).collect();
    assert_eq!(lines, vec![2, 3, 4]);
    assert!(
        findings
            .all()
            .iter()
            .all(|f| f.rule == "secret-scan/allowlist")
    );
}

#[test]
fn stale_allowlist_entry() {
    let fx = Fixture::new();
    let text = fx.read(CE);
    let secret_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("plane_wh_"))
        .unwrap()
        .to_owned();
    fx.write(CE, &text.replace(&secret_line, "    (secret removed)"));
    let f = expect(
        &fx.validate(),
        A,
        fx.line(A, "testdata/plane-ce/README.md |"),
        "secret-scan/allowlist",
    );
    assert!(f.message.contains("stale"));
}

#[test]
fn allowlist_entry_for_a_file_that_does_not_exist() {
    let fx = Fixture::new();
    let text = fx.read(A);
    fx.write(
        A,
        &format!(
            "{text}testdata/gone.json | plane_webhook_secret | recorded from a server long gone\n"
        ),
    );
    let f = expect(
        &fx.validate(),
        A,
        fx.line(A, "testdata/gone.json"),
        "secret-scan/allowlist",
    );
    assert!(f.message.contains("not a tracked file"));
}

#[test]
fn duplicate_allowlist_entry() {
    let fx = Fixture::new();
    let text = fx.read(A);
    let entry = text.lines().find(|l| l.starts_with(CE)).unwrap().to_owned();
    fx.write(A, &format!("{text}{entry}\n"));
    let findings = fx.validate();
    let hits = findings.of_rule("secret-scan/allowlist");
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert!(hits[0].message.contains("already allowed"));
}
