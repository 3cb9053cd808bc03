//! The binary: exit codes, the three output formats, and the real repository.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Fixture;

fn run(root: &std::path::Path, format: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["validate", "--format", format, "--root"])
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn broken() -> Fixture {
    let fx = Fixture::new();
    // Not Active: that would also be `invariant/pending-active` if an invariant is pending.
    fx.set_contract_status("🔲 Pending");
    fx.edit(
        "ssot/secrets/registry.yaml",
        "      - env:plane-server\n",
        "      - plane server\n",
    );
    fx
}

/// The repository itself passes: `cargo test` catches drift between the code
/// (plane-core's defaults, the tree) and the documents.
#[test]
fn the_repository_validates() {
    let findings = xtask::validate(&xtask::default_root());
    assert!(
        findings.is_empty(),
        "cargo xtask validate fails on the repository:\n{}",
        xtask::render(&findings, xtask::Format::Text)
    );
}

#[test]
fn clean_copy_exits_0() {
    let fx = Fixture::new();
    let (code, out) = run(fx.root(), "text");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok,"), "{out}");
}

#[test]
fn text_format_groups_by_file_and_counts() {
    let fx = broken();
    let (code, out) = run(fx.root(), "text");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md (1 finding)\n  docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md:4: contract/status-mismatch: "), "{out}");
    assert!(
        out.contains("ssot/secrets/registry.yaml (1 finding)"),
        "{out}"
    );
    assert!(out.contains("2 findings in 2 files"), "{out}");
    // Grouped and sorted: docs/ before ssot/.
    assert!(out.find("docs/contracts").unwrap() < out.find("ssot/secrets").unwrap());
}

#[test]
fn github_format_is_annotations() {
    let fx = broken();
    let (code, out) = run(fx.root(), "github");
    assert_eq!(code, 1);
    assert!(
        out.lines().any(|l| l.starts_with(
            "::error file=docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md,line=4,title=contract/status-mismatch::"
        )),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error file=ssot/secrets/registry.yaml,line=")),
        "{out}"
    );
}

#[test]
fn json_format_is_one_document() {
    let fx = broken();
    let (code, out) = run(fx.root(), "json");
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["findings"], 2);
    assert_eq!(v["summary"]["exit_code"], 1);
    let first = &v["findings"][0];
    assert_eq!(first["path"], "docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md");
    assert_eq!(first["line"], 4);
    assert_eq!(first["rule"], "contract/status-mismatch");
}

#[test]
fn unreadable_file_exits_2() {
    let fx = Fixture::new();
    fx.remove("ssot/secrets/registry.yaml");
    std::fs::create_dir(fx.path("ssot/secrets/registry.yaml")).unwrap();
    let (code, out) = run(fx.root(), "text");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("io/unreadable"), "{out}");
}

#[test]
fn bad_root_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["validate", "--root", "/nonexistent/xtask-root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
