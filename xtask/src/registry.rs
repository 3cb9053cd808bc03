//! `ssot/secrets/registry.yaml`: parses, matches its JSON Schema, approved stores
//! only, consumers as `store:identifier` with a known store, names and never
//! values, and the Plane entries present.
//!
//! Rules: `registry/missing`, `registry/parse`, `registry/schema`,
//! `registry/schema-file`, `registry/schema-rules`, `registry/approved-store`,
//! `registry/consumer-format`, `registry/consumer-store`, `registry/secret-value`,
//! `registry/required-entry`, `registry/rotation`.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::findings::Findings;
use crate::patterns::secret_value_reason;
use crate::repo::{Repo, paths};
use crate::yamlpos::{Step, line_of};

/// The stores a secret's value may live in.
pub const APPROVED_STORES: &[&str] = &["supabase_vault", "os_keychain"];

/// Entries the Plane connector needs.
pub const REQUIRED_ENTRIES: &[&str] = &[
    "plane_api_key",
    "plane_webhook_secret",
    "plane_oauth_client_secret",
    "plane_token_encryption_key",
];

/// What other rules need to know about the registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Secret ids.
    pub ids: BTreeSet<String>,
    /// `env_var_name` -> secret id.
    pub env_vars: BTreeMap<String, String>,
    /// secret id -> its consumers.
    pub consumers: BTreeMap<String, Vec<String>>,
}

/// Runs the registry rules on the repository's registry and schema files.
pub fn check(repo: &Repo, findings: &mut Findings) -> Option<Registry> {
    let text = repo.read_required(
        paths::REGISTRY,
        findings,
        "registry/missing",
        "create it (the secrets registry: names, stores and consumers of every secret, never values)",
    )?;
    let schema = repo.read_required(
        paths::REGISTRY_SCHEMA,
        findings,
        "registry/missing",
        "create it (the JSON Schema the registry is validated against)",
    );
    check_text(paths::REGISTRY, &text, schema.as_deref(), findings)
}

/// The registry rules on `text` (the YAML) and `schema` (the JSON Schema text).
pub fn check_text(
    path: &str,
    text: &str,
    schema: Option<&str>,
    findings: &mut Findings,
) -> Option<Registry> {
    // No value anywhere in the file may look like a secret (comments included),
    // checked first so that it runs even when the YAML does not parse.
    for (i, line) in text.lines().enumerate() {
        if let Some(reason) = secret_value_reason(line) {
            findings.push(
                path,
                i + 1,
                "registry/secret-value",
                format!(
                    "this line looks like it holds a secret value ({reason}); the registry holds names only: move the value to {} and keep only its name here",
                    APPROVED_STORES.join(" or ")
                ),
            );
        }
    }

    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map_or(1, |l| l.line());
            findings.push(
                path,
                line,
                "registry/parse",
                format!("the registry is not valid YAML ({e}); fix the syntax"),
            );
            return None;
        }
    };

    let mut schema_required: Option<Vec<String>> = None;
    if let Some(schema_text) = schema {
        schema_required = check_schema(path, text, &doc, schema_text, findings);
    }

    let rules = doc.get("schema_rules");
    let consumer_stores: BTreeSet<String> = rules
        .and_then(|r| r.get("consumer_stores"))
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();

    if let (Some(required), Some(listed)) = (
        schema_required,
        rules
            .and_then(|r| r.get("required_fields"))
            .and_then(Value::as_sequence),
    ) {
        let listed: BTreeSet<&str> = listed.iter().filter_map(Value::as_str).collect();
        let required_set: BTreeSet<&str> = required.iter().map(String::as_str).collect();
        if listed != required_set {
            findings.push(
                path,
                line_of(text, &[Step::Key("schema_rules"), Step::Key("required_fields")]),
                "registry/schema-rules",
                format!(
                    "schema_rules.required_fields lists {listed:?} but {} requires {required_set:?} of every secret; make the two lists the same",
                    paths::REGISTRY_SCHEMA
                ),
            );
        }
    }

    let mut registry = Registry::default();
    if let Some(secrets) = doc.get("secrets").and_then(Value::as_mapping) {
        for (id, entry) in secrets {
            let Some(id) = id.as_str() else { continue };
            registry.ids.insert(id.to_owned());
            check_entry(
                path,
                text,
                id,
                entry,
                &consumer_stores,
                findings,
                &mut registry,
            );
        }
    }

    for required in REQUIRED_ENTRIES {
        if !registry.ids.contains(*required) {
            findings.push(
                path,
                line_of(text, &[Step::Key("secrets")]),
                "registry/required-entry",
                format!(
                    "secrets.{required} is missing; the Plane connector needs it: add an entry with purpose, approved_stores, consumers and rotation_policy"
                ),
            );
        }
    }

    Some(registry)
}

fn check_entry(
    path: &str,
    text: &str,
    id: &str,
    entry: &Value,
    consumer_stores: &BTreeSet<String>,
    findings: &mut Findings,
    registry: &mut Registry,
) {
    let at = |steps: &[Step<'_>]| {
        let mut full = vec![Step::Key("secrets"), Step::Key(id)];
        full.extend_from_slice(steps);
        line_of(text, &full)
    };
    if let Some(env) = entry.get("env_var_name").and_then(Value::as_str) {
        registry.env_vars.insert(env.to_owned(), id.to_owned());
    }
    if let Some(stores) = entry.get("approved_stores").and_then(Value::as_sequence) {
        for (i, store) in stores.iter().enumerate() {
            let Some(store) = store.as_str() else {
                continue;
            };
            if !APPROVED_STORES.contains(&store) {
                findings.push(
                    path,
                    at(&[Step::Key("approved_stores"), Step::Index(i)]),
                    "registry/approved-store",
                    format!(
                        "secrets.{id}.approved_stores names {store:?}, which is not an approved store; use {}",
                        APPROVED_STORES.join(" or ")
                    ),
                );
            }
        }
    }
    let mut list = Vec::new();
    if let Some(consumers) = entry.get("consumers").and_then(Value::as_sequence) {
        for (i, consumer) in consumers.iter().enumerate() {
            let Some(consumer) = consumer.as_str() else {
                continue;
            };
            list.push(consumer.to_owned());
            let line = at(&[Step::Key("consumers"), Step::Index(i)]);
            match consumer.split_once(':') {
                Some((store, ident)) if is_store_name(store) && is_identifier(ident) => {
                    if !consumer_stores.contains(store) {
                        findings.push(
                            path,
                            line,
                            "registry/consumer-store",
                            format!(
                                "secrets.{id}: consumer {consumer:?} uses store {store:?}, which schema_rules.consumer_stores does not list ({}); use one of those or add the store there",
                                consumer_stores.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                }
                _ => findings.push(
                    path,
                    line,
                    "registry/consumer-format",
                    format!(
                        "secrets.{id}: consumer {consumer:?} is not in the store:identifier form (a lowercase store name, a colon, then who reads it, e.g. \"env:plane-server\")"
                    ),
                ),
            }
        }
    }
    registry.consumers.insert(id.to_owned(), list);
    if REQUIRED_ENTRIES.contains(&id) {
        let rotation = entry
            .get("rotation_policy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !rotation.to_ascii_lowercase().contains("annual") {
            findings.push(
                path,
                at(&[Step::Key("rotation_policy")]),
                "registry/rotation",
                format!(
                    "secrets.{id}.rotation_policy is {rotation:?}; Plane secrets rotate annually (and at once on a security incident): say so"
                ),
            );
        }
    }
}

fn is_store_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

/// Validates `doc` against the schema; returns the fields the schema requires
/// of every secret (for the `schema_rules` cross-check).
fn check_schema(
    path: &str,
    text: &str,
    doc: &Value,
    schema_text: &str,
    findings: &mut Findings,
) -> Option<Vec<String>> {
    let schema: serde_json::Value = match serde_json::from_str(schema_text) {
        Ok(s) => s,
        Err(e) => {
            findings.push(
                paths::REGISTRY_SCHEMA,
                e.line(),
                "registry/schema-file",
                format!("the registry schema is not valid JSON ({e}); fix its syntax"),
            );
            return None;
        }
    };
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => {
            findings.push(
                paths::REGISTRY_SCHEMA,
                1,
                "registry/schema-file",
                format!("the registry schema is not a valid JSON Schema ({e}); fix it"),
            );
            return None;
        }
    };
    let instance = match serde_json::to_value(doc) {
        Ok(v) => v,
        Err(e) => {
            findings.push(
                path,
                1,
                "registry/schema",
                format!("the registry cannot be read as JSON data ({e}); use string keys only"),
            );
            return None;
        }
    };
    for error in validator.iter_errors(&instance) {
        let pointer = error.instance_path().as_str().to_owned();
        let segments: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let steps: Vec<Step<'_>> = segments
            .iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Step::Index(i),
                Err(_) => Step::Key(s.as_str()),
            })
            .collect();
        let location = if segments.is_empty() {
            "the top level".to_owned()
        } else {
            segments.join(".")
        };
        findings.push(
            path,
            line_of(text, &steps),
            "registry/schema",
            format!(
                "{location}: {error}; the registry must match {}",
                paths::REGISTRY_SCHEMA
            ),
        );
    }
    schema
        .pointer("/properties/secrets/additionalProperties/required")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
}
