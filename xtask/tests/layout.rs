//! Rules `repo-tree/*`, `mcp/*` and `addon/*` on broken copies of the repository.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, expect, fake_api_key, none_of};

const T: &str = "docs/architecture/PLATFORM_REPO_TREE.md";
const M: &str = "agents/mcp/configs/plane-mcp.yaml";
const S: &str = "agents/mcp/configs/plane-connector-mcp.yaml";
const X: &str = "addons/ipai/ipai_plane_connector/data/ir_config_parameter.xml";
const MANIFEST: &str = "addons/ipai/ipai_plane_connector/__manifest__.py";
const README: &str = "addons/ipai/ipai_plane_connector/README.md";

#[test]
fn good_layout_has_no_findings() {
    let findings = Fixture::new().validate();
    for prefix in ["repo-tree/", "mcp/", "addon/"] {
        let hits: Vec<_> = findings
            .all()
            .iter()
            .filter(|f| f.rule.starts_with(prefix))
            .collect();
        assert!(hits.is_empty(), "{hits:#?}");
    }
}

// ---- repo-tree ----

#[test]
fn tree_path_that_does_not_exist() {
    let fx = Fixture::new();
    fx.edit(
        T,
        "| `xtask/**` | Git | (original) | — |",
        "| `xtask/**` | Git | (original) | — |\n| `nowhere/**` | Git | (original) | — |",
    );
    let f = expect(
        &fx.validate(),
        T,
        fx.line(T, "`nowhere/**`"),
        "repo-tree/path-missing",
    );
    assert!(f.message.contains("nowhere/**"));
}

#[test]
fn tree_glob_that_matches_nothing() {
    let fx = Fixture::new();
    fx.edit(
        T,
        "`agents/mcp/configs/*.yaml`",
        "`agents/mcp/configs/*.json`",
    );
    expect(
        &fx.validate(),
        T,
        fx.line(T, "*.json"),
        "repo-tree/path-missing",
    );
}

#[test]
fn tree_new_top_level_folder_without_row() {
    let fx = Fixture::new();
    fx.write("compose/compose.yaml", "services: {}\n");
    let f = expect(
        &fx.validate(),
        T,
        fx.line(T, "| Path pattern |"),
        "repo-tree/top-level-missing",
    );
    assert!(f.message.contains("`compose/`"));
}

#[test]
fn tree_top_level_folder_row_removed() {
    let fx = Fixture::new();
    fx.edit(T, "| `.ci/**` | Git | (original) | — |\n", "");
    let f = expect(
        &fx.validate(),
        T,
        fx.line(T, "| Path pattern |"),
        "repo-tree/top-level-missing",
    );
    assert!(f.message.contains("`.ci/`"));
}

#[test]
fn tree_without_addon_row() {
    let fx = Fixture::new();
    fx.edit(
        T,
        "| `addons/ipai/ipai_plane_connector/**` | Git | (original) | — |\n",
        "",
    );
    expect(
        &fx.validate(),
        T,
        fx.line(T, "| Path pattern |"),
        "repo-tree/addon-row",
    );
}

#[test]
fn tree_owner_columns_inconsistent() {
    let fx = Fixture::new();
    fx.edit(
        T,
        "| `scripts/**` | Git | (original) | — |",
        "| `scripts/**` | Git | `somewhere` | `make scripts` |",
    );
    expect(
        &fx.validate(),
        T,
        fx.line(T, "`scripts/**`"),
        "repo-tree/owner",
    );
    let fx = Fixture::new();
    fx.edit(
        T,
        "| `Cargo.lock` | **Generated** | `Cargo.toml` files of the workspace | `cargo update --workspace` |",
        "| `Cargo.lock` | **Generated** | (original) | — |",
    );
    expect(
        &fx.validate(),
        T,
        fx.line(T, "`Cargo.lock`"),
        "repo-tree/owner",
    );
}

#[test]
fn tree_table_header_wrong() {
    let fx = Fixture::new();
    fx.edit(T, "| Regenerate command |", "| Command |");
    expect(
        &fx.validate(),
        T,
        fx.line(T, "## SSOT Assignment Table"),
        "repo-tree/table",
    );
}

#[test]
fn tree_missing() {
    let fx = Fixture::new();
    fx.remove(T);
    expect(&fx.validate(), T, 1, "repo-tree/missing");
}

// ---- mcp ----

#[test]
fn mcp_mode_missing_and_unknown() {
    let fx = Fixture::new();
    fx.edit(M, "  local_stdio:\n", "  local:\n");
    let findings = fx.validate();
    let f = expect(&findings, M, fx.line(M, "modes:"), "mcp/mode-missing");
    assert!(f.message.contains("local_stdio"));
    expect(&findings, M, fx.line(M, "  local:"), "mcp/mode-unknown");
}

#[test]
fn mcp_literal_header_value() {
    let fx = Fixture::new();
    fx.edit(
        M,
        "X-Workspace-slug: \"${PLANE_WORKSPACE_SLUG}\"",
        "X-Workspace-slug: \"insightpulseai\"",
    );
    expect(
        &fx.validate(),
        M,
        fx.line(M, "X-Workspace-slug:"),
        "mcp/literal-credential",
    );
}

#[test]
fn mcp_literal_api_key() {
    let fx = Fixture::new();
    let key = fake_api_key();
    fx.edit(
        M,
        "      PLANE_API_KEY: \"${PLANE_API_KEY}\"",
        &format!("      PLANE_API_KEY: \"{key}\""),
    );
    let findings = fx.validate();
    let line = fx.line(M, &key);
    let f = expect(&findings, M, line, "mcp/literal-credential");
    assert!(f.message.contains("placeholder"));
    // The repository-wide scan catches it too.
    expect(&findings, M, line, "secret-scan/found");
}

#[test]
fn mcp_placeholder_without_registry_entry() {
    let fx = Fixture::new();
    fx.edit(
        M,
        "      PLANE_BASE_URL: \"${PLANE_BASE_URL}\"",
        "      PLANE_BASE_URL: \"${PLANE_SESSION_TOKEN}\"",
    );
    let f = expect(
        &fx.validate(),
        M,
        fx.line(M, "PLANE_SESSION_TOKEN"),
        "mcp/placeholder-unknown",
    );
    assert!(f.message.contains("env_var_name"));
}

#[test]
fn mcp_credential_declared_as_config_var() {
    let fx = Fixture::new();
    fx.edit(
        M,
        "config_vars:\n",
        "config_vars:\n  PLANE_SESSION_TOKEN: \"a session\"\n",
    );
    expect(
        &fx.validate(),
        M,
        fx.line(M, "PLANE_SESSION_TOKEN:"),
        "mcp/config-var-credential",
    );
}

#[test]
fn mcp_selection_names_unknown_mode() {
    let fx = Fixture::new();
    fx.edit(M, "  default: remote_oauth", "  default: cloud");
    expect(
        &fx.validate(),
        M,
        fx.line(M, "default: cloud"),
        "mcp/select",
    );
    let fx = Fixture::new();
    fx.edit(M, "  env: PLANE_MCP_MODE\n", "");
    expect(&fx.validate(), M, fx.line(M, "select:"), "mcp/select");
}

#[test]
fn mcp_transport_wrong() {
    let fx = Fixture::new();
    fx.edit(
        M,
        "endpoint: \"https://mcp.plane.so/http/mcp\"",
        "endpoint: \"http://mcp.plane.so/http/mcp\"",
    );
    expect(
        &fx.validate(),
        M,
        fx.line(M, "http://mcp.plane.so"),
        "mcp/transport",
    );
    let fx = Fixture::new();
    fx.edit(M, "    transport: stdio\n", "    transport: sse\n");
    expect(
        &fx.validate(),
        M,
        fx.line(M, "transport: sse"),
        "mcp/transport",
    );
}

#[test]
fn mcp_api_key_mode_without_authorization_header() {
    let fx = Fixture::new();
    fx.edit(M, "      Authorization: \"Bearer ${PLANE_API_KEY}\"\n", "");
    let f = expect(&fx.validate(), M, fx.line(M, "headers:"), "mcp/headers");
    assert!(f.message.contains("Authorization"));
}

#[test]
fn mcp_schema_tag_wrong() {
    let fx = Fixture::new();
    fx.edit(M, "schema: plane.mcp.v1", "schema: plane.mcp.v0");
    expect(
        &fx.validate(),
        M,
        fx.line(M, "schema: plane.mcp.v0"),
        "mcp/schema",
    );
}

#[test]
fn mcp_not_yaml() {
    let fx = Fixture::new();
    fx.edit(M, "  default: remote_oauth", "  default: [remote_oauth");
    let findings = fx.validate();
    let f = findings.of_rule("mcp/parse");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].path, M);
}

#[test]
fn mcp_missing() {
    let fx = Fixture::new();
    fx.remove(M);
    expect(&fx.validate(), M, 1, "mcp/missing");
}

// ---- mcp: a stdio server of ours (plane-connector.mcp.v1) ----

#[test]
fn mcp_server_env_with_a_value() {
    let fx = Fixture::new();
    fx.edit(
        S,
        "  - PLANE_DATABASE_URL ",
        "  - PLANE_DATABASE_URL=/var/lib/plane.db ",
    );
    let f = expect(
        &fx.validate(),
        S,
        fx.line(S, "PLANE_DATABASE_URL="),
        "mcp/env-value",
    );
    assert!(f.message.contains("names only"), "{}", f.message);
    let fx = Fixture::new();
    fx.edit(
        S,
        "env:\n  - PLANE_DATABASE_URL",
        "env:\n  PLANE_DATABASE_URL: /var/lib/plane.db\n  X:",
    );
    expect(&fx.validate(), S, fx.line(S, "env:"), "mcp/env-value");
}

#[test]
fn mcp_server_env_literal_key_and_unregistered_credential() {
    let fx = Fixture::new();
    let key = fake_api_key();
    fx.edit(
        S,
        "  - RUST_LOG ",
        &format!("  - RUST_LOG\n  - {key}\n  - PLANE_SESSION_TOKEN "),
    );
    let findings = fx.validate();
    expect(&findings, S, fx.line(S, &key), "mcp/literal-credential");
    let f = expect(
        &findings,
        S,
        fx.line(S, "PLANE_SESSION_TOKEN"),
        "mcp/env-credential",
    );
    assert!(f.message.contains("env_var_name"));
}

#[test]
fn mcp_server_transport_and_fields() {
    let fx = Fixture::new();
    fx.edit(S, "transport: stdio", "transport: remote-http");
    fx.edit(S, "command: plane-server", "command: \"\"");
    fx.edit(S, "args: [mcp, --config", "args: [mcp, [--config]");
    let findings = fx.validate();
    expect(
        &findings,
        S,
        fx.line(S, "transport: remote-http"),
        "mcp/server-transport",
    );
    let f = expect(&findings, S, fx.line(S, "command:"), "mcp/server-field");
    assert!(f.message.contains("`command`"));
    expect(&findings, S, fx.line(S, "args:"), "mcp/server-field");
}

#[test]
fn mcp_folder_file_of_unknown_kind() {
    let fx = Fixture::new();
    fx.edit(
        S,
        "schema: plane-connector.mcp.v1",
        "schema: plane-connector.mcp.v9",
    );
    let f = expect(
        &fx.validate(),
        S,
        fx.line(S, "schema: plane-connector.mcp.v9"),
        "mcp/kind-unknown",
    );
    assert!(f.message.contains("plane.mcp.v1"));
    let fx = Fixture::new();
    let json = "agents/mcp/configs/figma.json";
    fx.write(json, "{\"mcpServers\": {}}\n");
    expect(&fx.validate(), json, 1, "mcp/kind-unknown");
    let fx = Fixture::new();
    fx.edit(S, "args: [mcp,", "args: [[mcp,");
    let f = fx.validate();
    let parse = f.of_rule("mcp/parse");
    assert_eq!(parse.len(), 1);
    assert_eq!(parse[0].path, S);
}

#[test]
fn mcp_second_plane_config_gets_the_plane_rules() {
    let fx = Fixture::new();
    let copy = "agents/mcp/configs/plane-mcp-staging.yaml";
    fx.write(
        copy,
        &fx.read(M).replacen("  local_stdio:\n", "  local:\n", 1),
    );
    let findings = fx.validate();
    expect(
        &findings,
        copy,
        fx.line(copy, "  local:"),
        "mcp/mode-unknown",
    );
    none_of_path(&findings, M);
}

fn none_of_path(findings: &xtask::Findings, path: &str) {
    let hits: Vec<_> = findings
        .all()
        .iter()
        .filter(|f| f.path == path && f.rule.starts_with("mcp/"))
        .collect();
    assert!(hits.is_empty(), "{hits:#?}");
}

// ---- addon ----

#[test]
fn addon_default_differs_from_plane_core() {
    let fx = Fixture::new();
    fx.edit(
        X,
        "<field name=\"value\">insightpulseai</field>",
        "<field name=\"value\">acme</field>",
    );
    let f = expect(
        &fx.validate(),
        X,
        fx.line(X, ">acme<"),
        "addon/default-mismatch",
    );
    assert!(f.message.contains("plane_core::DEFAULT_WORKSPACE_SLUG"));
    assert!(f.message.contains(plane_core::DEFAULT_WORKSPACE_SLUG));
}

#[test]
fn addon_base_url_differs() {
    let fx = Fixture::new();
    fx.edit(X, ">https://api.plane.so<", ">https://api.plane.so/<");
    expect(
        &fx.validate(),
        X,
        fx.line(X, "https://api.plane.so/<"),
        "addon/default-mismatch",
    );
}

#[test]
fn addon_default_missing() {
    let fx = Fixture::new();
    fx.edit(
        X,
        "<field name=\"key\">plane.base_url</field>",
        "<field name=\"key\">plane.url</field>",
    );
    let f = expect(&fx.validate(), X, 1, "addon/default-missing");
    assert!(f.message.contains("plane.base_url"));
}

#[test]
fn addon_manifest_does_not_load_data() {
    let fx = Fixture::new();
    fx.edit(MANIFEST, "        \"data/ir_config_parameter.xml\",\n", "");
    expect(
        &fx.validate(),
        MANIFEST,
        fx.line(MANIFEST, "\"data\""),
        "addon/manifest-data",
    );
}

#[test]
fn addon_readme_default_stale() {
    let fx = Fixture::new();
    fx.edit(
        README,
        "| `plane.workspace_slug` | `insightpulseai` |",
        "| `plane.workspace_slug` | `acme` |",
    );
    expect(
        &fx.validate(),
        README,
        fx.line(README, "| `plane.workspace_slug` |"),
        "addon/readme-default",
    );
}

#[test]
fn addon_http_client() {
    let fx = Fixture::new();
    let init = "addons/ipai/ipai_plane_connector/__init__.py";
    let text = fx.read(init);
    fx.write(
        init,
        &format!("{text}import requests\nfrom urllib.request import urlopen\n"),
    );
    let findings = fx.validate();
    expect(
        &findings,
        init,
        fx.line(init, "import requests"),
        "addon/http-client",
    );
    expect(
        &findings,
        init,
        fx.line(init, "from urllib"),
        "addon/http-client",
    );
}

#[test]
fn addon_files_missing() {
    let fx = Fixture::new();
    fx.remove(X);
    fx.remove("addons/ipai/ipai_plane_connector/__init__.py");
    let findings = fx.validate();
    expect(&findings, X, 1, "addon/missing");
    expect(
        &findings,
        "addons/ipai/ipai_plane_connector/__init__.py",
        1,
        "addon/missing",
    );
    none_of(&findings, "addon/default-missing");
}
