//! The README's "Dependency direction:" line against the crates' manifests.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, expect, none_of};

const LINE: &str = "Dependency direction:";

#[test]
fn the_real_line_matches_the_manifests() {
    let findings = Fixture::new().validate();
    for rule in [
        "deps/readme-line",
        "deps/unstated",
        "deps/stated-not-declared",
        "deps/unknown-crate",
        "deps/manifest",
    ] {
        none_of(&findings, rule);
    }
}

#[test]
fn a_new_dependency_the_readme_does_not_state_is_reported_with_its_manifest_line() {
    // plane-fake depends on nothing of ours by design, so this edge is new in any state of the repo.
    let fx = Fixture::new();
    fx.edit(
        "crates/plane-fake/Cargo.toml",
        "[dependencies]\n",
        "[dependencies]\nplane-core.workspace = true\n",
    );
    let findings = fx.validate();
    let f = expect(
        &findings,
        "README.md",
        fx.line("README.md", LINE),
        "deps/unstated",
    );
    let manifest_line = fx.line("crates/plane-fake/Cargo.toml", "plane-core.workspace");
    assert!(
        f.message
            .contains(&format!("crates/plane-fake/Cargo.toml:{manifest_line}")),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("plane-fake → plane-core"),
        "{}",
        f.message
    );
}

#[test]
fn a_dev_dependency_is_not_an_edge() {
    let fx = Fixture::new();
    fx.edit(
        "crates/plane-webhook/Cargo.toml",
        "[dev-dependencies]\n",
        "[dev-dependencies]\nplane-fake.workspace = true\n",
    );
    none_of(&fx.validate(), "deps/unstated");
}

#[test]
fn an_edge_the_manifests_do_not_declare_is_reported() {
    let fx = Fixture::new();
    fx.edit(
        "README.md",
        "`xtask → plane-core`",
        // plane-core depends on nothing of ours by design, so this edge is never declared.
        "`xtask → plane-core`, `plane-core → plane-webhook`",
    );
    let findings = fx.validate();
    let f = expect(
        &findings,
        "README.md",
        fx.line("README.md", LINE),
        "deps/stated-not-declared",
    );
    assert!(
        f.message.contains("plane-core → plane-webhook"),
        "{}",
        f.message
    );
}

#[test]
fn a_name_that_is_no_crate_and_a_missing_line_are_reported() {
    let fx = Fixture::new();
    fx.edit("README.md", "`xtask → plane-core`", "`xtask → plane-cor`");
    let findings = fx.validate();
    let line = fx.line("README.md", LINE);
    expect(&findings, "README.md", line, "deps/unknown-crate");
    expect(&findings, "README.md", line, "deps/unstated");

    let fx = Fixture::new();
    fx.edit("README.md", LINE, "Dependencies:");
    expect(&fx.validate(), "README.md", 1, "deps/readme-line");
}

#[test]
fn an_http_client_outside_plane_core_is_refused_at_its_manifest_line() {
    let fx = Fixture::new();
    none_of(&fx.validate(), "deps/http-client");
    fx.edit(
        "crates/plane-bir/Cargo.toml",
        "[dependencies]\n",
        "[dependencies]\nreqwest.workspace = true\n",
    );
    // A client only tests need is fine.
    fx.edit(
        "crates/plane-webhook/Cargo.toml",
        "[dev-dependencies]\n",
        "[dev-dependencies]\nureq = \"2\"\n",
    );
    let findings = fx.validate();
    let f = expect(
        &findings,
        "crates/plane-bir/Cargo.toml",
        fx.line("crates/plane-bir/Cargo.toml", "reqwest.workspace"),
        "deps/http-client",
    );
    assert!(
        f.message
            .contains("plane-bir depends on the HTTP client `reqwest`"),
        "{}",
        f.message
    );
    assert_eq!(
        findings
            .all()
            .iter()
            .filter(|f| f.rule == "deps/http-client")
            .count(),
        1
    );
}
