//! `cargo xtask validate`: the governance checks of the repository.
//!
//! Every rule appends [`Finding`]s (file, line, rule id, message) to one list;
//! nothing stops at the first problem. `main.rs` prints the list and sets the
//! exit code: 0 clean, 1 findings, 2 a file could not be read.
//!
//! | module | what it checks |
//! |---|---|
//! | [`contract`] | contract docs: header, sections, id/status agree with the index, secrets exist |
//! | [`invariants`] | each contract invariant names existing tests (or why it is pending); Active only with none pending |
//! | [`index`] | the contracts index: ids, statuses from the legend, links, every doc indexed |
//! | [`registry`] | the secrets registry: schema, stores, consumers, no values, Plane entries |
//! | [`repo_tree`] | the SSOT Assignment Table: paths exist, every top-level folder has a row |
//! | [`mcp`] | every MCP config, by kind: Plane's (three modes, selection, placeholders only) and our stdio server's (command, env names only) |
//! | [`addon`] | the Odoo addon: defaults equal plane-core's, no HTTP client |
//! | [`policy`] | the integration policy covers each integration route |
//! | [`deps`] | the README's "Dependency direction:" line states exactly the crates' `[dependencies]` between workspace crates |
//! | [`secret_scan`] | no tracked file holds a Plane key, webhook secret or private key |

pub mod addon;
pub mod contract;
pub mod deps;
pub mod findings;
pub mod http_clients;
pub mod index;
pub mod invariants;
pub mod mcp;
pub mod md;
pub mod patterns;
pub mod policy;
pub mod registry;
pub mod repo;
pub mod repo_tree;
pub mod secret_scan;
pub mod yamlpos;

use std::path::{Path, PathBuf};

pub use findings::{Finding, Findings, Format, render};
pub use repo::Repo;

/// The repository this xtask was built from.
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs every rule on the repository at `root`.
pub fn validate(root: &Path) -> Findings {
    validate_repo(&Repo::open(root))
}

/// Runs every rule on `repo`.
pub fn validate_repo(repo: &Repo) -> Findings {
    let mut findings = Findings::new();
    let registry = registry::check(repo, &mut findings);
    let files = contract::contract_files(repo);
    let index = index::check(repo, &files, &mut findings);
    contract::check(
        repo,
        &files,
        index.as_ref(),
        registry.as_ref(),
        &mut findings,
    );
    repo_tree::check(repo, &mut findings);
    mcp::check(repo, registry.as_ref(), &mut findings);
    addon::check(repo, &mut findings);
    policy::check(repo, &mut findings);
    deps::check(repo, &mut findings);
    secret_scan::check(repo, &mut findings);
    findings
}
