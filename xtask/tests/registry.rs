//! Rules `registry/*` on broken copies of `ssot/secrets/registry.yaml` and its schema.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, expect, fake_api_key, none_of};

const R: &str = "ssot/secrets/registry.yaml";
const S: &str = "ssot/secrets/registry.schema.json";

#[test]
fn good_registry_has_no_findings() {
    let fx = Fixture::new();
    let findings = fx.validate();
    for rule in [
        "registry/parse",
        "registry/schema",
        "registry/approved-store",
        "registry/consumer-format",
        "registry/consumer-store",
        "registry/secret-value",
        "registry/required-entry",
        "registry/rotation",
        "registry/schema-rules",
        "registry/schema-file",
    ] {
        none_of(&findings, rule);
    }
}

#[test]
fn yaml_syntax_error() {
    let fx = Fixture::new();
    fx.edit(R, "  plane_api_key:\n", "  plane_api_key: [oops\n");
    let findings = fx.validate();
    let f = findings.of_rule("registry/parse");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].path, R);
    assert!(f[0].line >= fx.line(R, "plane_api_key: [oops"));
}

#[test]
fn schema_violation_unknown_field() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "    vault_secret_name: plane_api_key\n",
        "    vault_secret_name: plane_api_key\n    owner_team: platform\n",
    );
    let f = expect(
        &fx.validate(),
        R,
        fx.line(R, "  plane_api_key:"),
        "registry/schema",
    );
    assert!(f.message.contains("owner_team"), "{}", f.message);
}

#[test]
fn schema_violation_wrong_type_points_at_the_field() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "    env_var_name: PLANE_API_KEY\n",
        "    env_var_name: plane-api-key\n",
    );
    expect(
        &fx.validate(),
        R,
        fx.line(R, "env_var_name: plane-api-key"),
        "registry/schema",
    );
}

#[test]
fn unapproved_store() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "approved_stores: [supabase_vault, os_keychain]",
        "approved_stores: [supabase_vault, github_actions]",
    );
    let f = expect(
        &fx.validate(),
        R,
        fx.line(R, "github_actions"),
        "registry/approved-store",
    );
    assert!(f.message.contains("github_actions"));
}

#[test]
fn consumer_not_store_identifier() {
    let fx = Fixture::new();
    fx.edit(R, "      - env:plane-server\n", "      - plane server\n");
    expect(
        &fx.validate(),
        R,
        fx.line(R, "- plane server"),
        "registry/consumer-format",
    );
}

#[test]
fn consumer_store_not_listed() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "      - supabase_vault:plane_api_key\n",
        "      - vercel_env:plane_api_key\n",
    );
    let f = expect(
        &fx.validate(),
        R,
        fx.line(R, "vercel_env:plane_api_key"),
        "registry/consumer-store",
    );
    assert!(f.message.contains("consumer_stores"));
}

#[test]
fn secret_value_in_registry() {
    let fx = Fixture::new();
    let value = fake_api_key();
    fx.edit(
        R,
        "    vault_secret_name: plane_api_key\n",
        &format!("    vault_secret_name: plane_api_key\n    # current value {value}\n"),
    );
    let f = expect(
        &fx.validate(),
        R,
        fx.line(R, "current value"),
        "registry/secret-value",
    );
    assert!(f.message.contains("names only"));
}

#[test]
fn random_token_in_registry() {
    let fx = Fixture::new();
    let token = ["Xk9", "pQ2", "mN7", "rT4", "vW8", "zL3", "bH6", "cJ1"].concat();
    fx.edit(
        R,
        "    vault_secret_name: plane_webhook_secret\n",
        &format!("    vault_secret_name: {token}\n"),
    );
    let findings = fx.validate();
    expect(&findings, R, fx.line(R, &token), "registry/secret-value");
}

#[test]
fn required_plane_entry_missing() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "  plane_token_encryption_key:\n",
        "  token_encryption:\n",
    );
    let f = expect(
        &fx.validate(),
        R,
        fx.line(R, "secrets:"),
        "registry/required-entry",
    );
    assert!(f.message.contains("plane_token_encryption_key"));
}

#[test]
fn rotation_not_annual() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "    rotation_policy: \"Annually, and at once on a security incident or when its owner leaves\"\n",
        "    rotation_policy: \"When someone remembers\"\n",
    );
    expect(
        &fx.validate(),
        R,
        fx.line(R, "When someone remembers"),
        "registry/rotation",
    );
}

#[test]
fn schema_rules_out_of_step_with_schema() {
    let fx = Fixture::new();
    fx.edit(
        R,
        "required_fields: [purpose, approved_stores, consumers, rotation_policy]",
        "required_fields: [purpose, approved_stores, consumers]",
    );
    expect(
        &fx.validate(),
        R,
        fx.line(R, "required_fields"),
        "registry/schema-rules",
    );
}

#[test]
fn schema_file_broken() {
    let fx = Fixture::new();
    fx.edit(S, "\"type\": \"object\",", "\"type\": \"object\",,");
    let findings = fx.validate();
    let f = findings.of_rule("registry/schema-file");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].path, S);
    assert_eq!(f[0].line, fx.line(S, ",,"));
}

#[test]
fn registry_missing() {
    let fx = Fixture::new();
    fx.remove(R);
    let findings = fx.validate();
    expect(&findings, R, 1, "registry/missing");
    assert_eq!(findings.exit_code(), 1);
}

#[test]
fn registry_unreadable_exits_2() {
    let fx = Fixture::new();
    fx.remove(R);
    std::fs::create_dir(fx.path(R)).unwrap();
    let findings = fx.validate();
    expect(&findings, R, 1, "io/unreadable");
    assert_eq!(findings.exit_code(), 2);
}
