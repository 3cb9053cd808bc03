//! One client (C-18 invariants 2 and 8): no workspace crate but plane-core builds
//! HTTP requests, so no other crate may list an HTTP client among its normal
//! `[dependencies]`.
//!
//! plane-fake is the exception: it *is* Plane (a server), and it sends webhooks
//! the way Plane does. Dev-dependencies do not count (tests talk to servers).
//! A client crate is one of [`CLIENT_CRATES`], or hyper / hyper-util with a
//! `client` feature turned on, locally or in `[workspace.dependencies]`.
//!
//! Rule: `deps/http-client`.

use std::collections::BTreeMap;

use crate::findings::Findings;
use crate::repo::Repo;

/// Crates that exist to send HTTP requests.
pub const CLIENT_CRATES: &[&str] = &[
    "reqwest",
    "ureq",
    "isahc",
    "surf",
    "attohttpc",
    "curl",
    "awc",
    "http-req",
];

/// The packages allowed to depend on one.
pub const ALLOWED: &[&str] = &["plane-core", "plane-fake"];

/// Runs the rule on every workspace member's manifest.
pub fn check(repo: &Repo, members: &BTreeMap<String, String>, findings: &mut Findings) {
    let workspace = repo
        .read("Cargo.toml", findings)
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|root| {
            root.get("workspace")?
                .get("dependencies")?
                .as_table()
                .cloned()
        })
        .unwrap_or_default();
    for (package, manifest) in members {
        if ALLOWED.contains(&package.as_str()) {
            continue;
        }
        let Some(text) = repo.read(manifest, findings) else {
            continue;
        };
        for (client, line) in http_clients(&text, &workspace) {
            findings.push(
                manifest,
                line,
                "deps/http-client",
                format!(
                    "{package} depends on the HTTP client `{client}`: only plane-core talks to \
                     Plane (C-18 invariant 2, one client); call plane_core::PlaneClient instead, \
                     or move the dependency to [dev-dependencies] if only tests need it"
                ),
            );
        }
    }
}

/// The HTTP clients a manifest lists as normal dependencies, with the line of each.
pub fn http_clients(manifest: &str, workspace: &toml::Table) -> Vec<(String, usize)> {
    let Ok(table) = manifest.parse::<toml::Table>() else {
        return Vec::new(); // deps/manifest reports it
    };
    let mut out = Vec::new();
    for deps in crate::deps::normal_dependency_tables(&table) {
        for (key, value) in deps {
            let package = value.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            if is_client(package, value, workspace.get(key)) {
                out.push((package.to_owned(), crate::deps::key_line(manifest, key)));
            }
        }
    }
    out
}

fn is_client(package: &str, local: &toml::Value, inherited: Option<&toml::Value>) -> bool {
    if CLIENT_CRATES.contains(&package) {
        return true;
    }
    if !matches!(package, "hyper" | "hyper-util") {
        return false;
    }
    let inherits = local.get("workspace").and_then(|w| w.as_bool()) == Some(true);
    let features = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.get("features"))
            .and_then(|f| f.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all = features(Some(local));
    if inherits {
        all.extend(features(inherited));
    }
    all.iter().any(|f| f.starts_with("client"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn workspace(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn clients_are_found_in_normal_and_target_tables_with_their_lines() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nserde = \"1\"\nreqwest.workspace = true\n\n[target.'cfg(unix)'.dependencies]\nureq = \"2\"\n\n[dev-dependencies]\nisahc = \"1\"\n";
        let got = http_clients(manifest, &toml::Table::new());
        assert_eq!(got, [("reqwest".to_owned(), 6), ("ureq".to_owned(), 9)]);
    }

    #[test]
    fn hyper_counts_only_with_a_client_feature_local_or_inherited() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nhyper.workspace = true\nhyper-util = { workspace = true, features = [\"client-legacy\"] }\n";
        let server_only = workspace("hyper = { version = \"1\", features = [\"server\"] }");
        assert_eq!(
            http_clients(manifest, &server_only),
            [("hyper-util".to_owned(), 6)]
        );
        let client = workspace("hyper = { version = \"1\", features = [\"client\", \"http1\"] }");
        assert_eq!(http_clients(manifest, &client).len(), 2);
    }
}
