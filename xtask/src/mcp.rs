//! `agents/mcp/configs/`: every file, checked by the kind its `schema:` declares.
//!
//! * `plane.mcp.v1` (`plane-mcp.yaml`, required): Plane's MCP server in three transport
//!   modes, selected by environment, with `${VAR}` placeholders where credentials go.
//!   Rules: `mcp/missing`, `mcp/parse`, `mcp/schema`, `mcp/mode-missing`,
//!   `mcp/mode-unknown`, `mcp/transport`, `mcp/headers`, `mcp/select`,
//!   `mcp/literal-credential`, `mcp/placeholder-unknown`, `mcp/config-var-credential`.
//! * `plane-connector.mcp.v1`: a stdio server of our own (`plane-server mcp`), with the
//!   names (never the values) of the environment variables it reads.
//!   Rules: `mcp/parse`, `mcp/server-field`, `mcp/server-transport`, `mcp/env-value`,
//!   `mcp/env-credential`, `mcp/literal-credential`.
//! * Anything else in the folder: `mcp/kind-unknown`.

use serde_yaml::{Mapping, Value};

use crate::contract::is_secret_env;
use crate::findings::Findings;
use crate::patterns::secret_value_reason;
use crate::registry::Registry;
use crate::repo::{Repo, paths};
use crate::yamlpos::{Step, line_of};

/// The schema tag the file declares.
pub const SCHEMA: &str = "plane.mcp.v1";

/// The schema tag of a stdio server of our own.
pub const SERVER_SCHEMA: &str = "plane-connector.mcp.v1";

/// The folder every file of which is checked.
pub const DIR: &str = "agents/mcp/configs/";

/// The modes, all required.
pub const MODES: &[&str] = &["remote_oauth", "remote_api_key", "local_stdio"];

/// Runs the MCP rules on the repository's config.
pub fn check(repo: &Repo, registry: Option<&Registry>, findings: &mut Findings) {
    if let Some(text) = repo.read_required(
        paths::MCP_CONFIG,
        findings,
        "mcp/missing",
        "create it with the modes remote_oauth, remote_api_key and local_stdio",
    ) {
        check_text(paths::MCP_CONFIG, &text, registry, findings);
    }
    let others: Vec<&String> = repo
        .files()
        .iter()
        .filter(|f| f.starts_with(DIR) && f.as_str() != paths::MCP_CONFIG)
        .collect();
    for file in others {
        if let Some(text) = repo.read(file, findings) {
            check_any(file, &text, registry, findings);
        }
    }
}

/// One file of the folder, by the kind its `schema:` declares.
pub fn check_any(path: &str, text: &str, registry: Option<&Registry>, findings: &mut Findings) {
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    let doc: Option<Value> = if yaml {
        match serde_yaml::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => {
                findings.push(
                    path,
                    e.location().map_or(1, |l| l.line()),
                    "mcp/parse",
                    format!("the MCP config is not valid YAML ({e}); fix the syntax"),
                );
                return;
            }
        }
    } else {
        None
    };
    match doc
        .as_ref()
        .and_then(|d| d.get("schema"))
        .and_then(Value::as_str)
    {
        Some(SCHEMA) => check_text(path, text, registry, findings),
        Some(SERVER_SCHEMA) => check_server_text(path, text, registry, findings),
        other => findings.push(
            path,
            if yaml {
                line_of(text, &[Step::Key("schema")])
            } else {
                1
            },
            "mcp/kind-unknown",
            format!(
                "{path} is not a known kind of MCP config (schema {other:?}); a YAML file with \
                 `schema: {SCHEMA}` (Plane's server) or `schema: {SERVER_SCHEMA}` (a stdio \
                 server of ours), or move it out of {DIR}"
            ),
        ),
    }
}

/// The rules of a `plane-connector.mcp.v1` file: a stdio server, started by `command`
/// with `args`, and `env` naming (never valuing) the variables it reads.
pub fn check_server_text(
    path: &str,
    text: &str,
    registry: Option<&Registry>,
    findings: &mut Findings,
) {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            findings.push(
                path,
                e.location().map_or(1, |l| l.line()),
                "mcp/parse",
                format!("the MCP config is not valid YAML ({e}); fix the syntax"),
            );
            return;
        }
    };
    for field in ["name", "description", "command"] {
        if doc
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(|v| v.trim().is_empty())
        {
            findings.push(
                path,
                line_of(text, &[Step::Key(field)]),
                "mcp/server-field",
                format!("`{field}` is missing or empty; a {SERVER_SCHEMA} server needs a name, a description and a command"),
            );
        }
    }
    let args = doc.get("args").and_then(Value::as_sequence);
    if args.is_none_or(|a| a.iter().any(|v| v.as_str().is_none())) {
        findings.push(
            path,
            line_of(text, &[Step::Key("args")]),
            "mcp/server-field",
            "`args` must be a list of strings (the command's arguments, e.g. [mcp, --config, FILE])",
        );
    }
    let transport = doc.get("transport").and_then(Value::as_str).unwrap_or("");
    if transport != "stdio" {
        findings.push(
            path,
            line_of(text, &[Step::Key("transport")]),
            "mcp/server-transport",
            format!("a {SERVER_SCHEMA} server must have `transport: stdio` (found {transport:?})"),
        );
    }
    match doc.get("env") {
        None => findings.push(
            path,
            1,
            "mcp/env-value",
            "`env` is missing: list the names of the environment variables the server reads (an empty list if none)",
        ),
        Some(Value::Sequence(names)) => {
            for (i, name) in names.iter().enumerate() {
                let line = line_of(text, &[Step::Key("env"), Step::Index(i)]);
                let Some(name) = name.as_str() else {
                    findings.push(
                        path,
                        line,
                        "mcp/env-value",
                        format!("env entry {} is not a variable name; write the name alone (PLANE_DATABASE_URL)", i + 1),
                    );
                    continue;
                };
                let well_formed = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !well_formed {
                    findings.push(
                        path,
                        line,
                        "mcp/env-value",
                        format!("env entry {name:?} is not a variable NAME (A-Z, 0-9, _); list names only, never values: the client passes the values from its environment"),
                    );
                } else if is_secret_env(name)
                    && registry.is_some_and(|r| !r.env_vars.contains_key(name))
                {
                    findings.push(
                        path,
                        line,
                        "mcp/env-credential",
                        format!("{name} looks like a credential but no entry of {} has env_var_name: {name}; register the secret", paths::REGISTRY),
                    );
                }
            }
        }
        Some(_) => findings.push(
            path,
            line_of(text, &[Step::Key("env")]),
            "mcp/env-value",
            "`env` must be a list of variable names, not a mapping of values: the client passes the values from its environment",
        ),
    }
    for (i, line) in text.lines().enumerate() {
        if let Some(reason) = secret_value_reason(line) {
            findings.push(
                path,
                i + 1,
                "mcp/literal-credential",
                format!("this line looks like it holds a credential ({reason}); name the variable under `env` and keep the value in the environment"),
            );
        }
    }
}

/// The MCP rules on `text`.
pub fn check_text(path: &str, text: &str, registry: Option<&Registry>, findings: &mut Findings) {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            findings.push(
                path,
                e.location().map_or(1, |l| l.line()),
                "mcp/parse",
                format!("the MCP config is not valid YAML ({e}); fix the syntax"),
            );
            return;
        }
    };
    if doc.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
        findings.push(
            path,
            line_of(text, &[Step::Key("schema")]),
            "mcp/schema",
            format!("the file must declare `schema: {SCHEMA}`"),
        );
    }

    let modes = doc.get("modes").and_then(Value::as_mapping);
    let empty = Mapping::new();
    let modes = modes.unwrap_or(&empty);
    let names: Vec<&str> = modes.keys().filter_map(Value::as_str).collect();
    for required in MODES {
        if !names.contains(required) {
            findings.push(
                path,
                line_of(text, &[Step::Key("modes")]),
                "mcp/mode-missing",
                format!(
                    "mode {required} is missing under `modes:`; the config supports all three of {}",
                    MODES.join(", ")
                ),
            );
        }
    }
    for name in &names {
        let at = |steps: &[Step<'_>]| {
            let mut full = vec![Step::Key("modes"), Step::Key(name)];
            full.extend_from_slice(steps);
            line_of(text, &full)
        };
        if !MODES.contains(name) {
            findings.push(
                path,
                at(&[]),
                "mcp/mode-unknown",
                format!(
                    "mode {name} is not one of {}; rename or remove it",
                    MODES.join(", ")
                ),
            );
            continue;
        }
        let Some(mode) = modes.get(*name) else {
            continue;
        };
        let transport = mode.get("transport").and_then(Value::as_str).unwrap_or("");
        let remote = *name != "local_stdio";
        let expected = if remote { "remote-http" } else { "stdio" };
        if transport != expected {
            findings.push(
                path,
                at(&[Step::Key("transport")]),
                "mcp/transport",
                format!("mode {name} must have `transport: {expected}` (found {transport:?})"),
            );
        }
        if remote {
            let endpoint = mode.get("endpoint").and_then(Value::as_str).unwrap_or("");
            if !endpoint.starts_with("https://") {
                findings.push(
                    path,
                    at(&[Step::Key("endpoint")]),
                    "mcp/transport",
                    format!("mode {name} needs an https:// `endpoint` (found {endpoint:?})"),
                );
            }
        } else {
            if mode.get("command").and_then(Value::as_str).is_none() {
                findings.push(
                    path,
                    at(&[]),
                    "mcp/transport",
                    format!("mode {name} needs a `command` to start the MCP server"),
                );
            }
            if mode.get("env").and_then(Value::as_mapping).is_none() {
                findings.push(
                    path,
                    at(&[]),
                    "mcp/transport",
                    format!("mode {name} needs an `env` mapping with the server's credentials as ${{VAR}} placeholders"),
                );
            }
        }
        if *name == "remote_api_key" {
            let headers = mode.get("headers").and_then(Value::as_mapping);
            for header in ["Authorization", "X-Workspace-slug"] {
                if headers.and_then(|h| h.get(header)).is_none() {
                    findings.push(
                        path,
                        at(&[Step::Key("headers")]),
                        "mcp/headers",
                        format!(
                            "mode remote_api_key needs a `{header}` header (as a ${{VAR}} placeholder)"
                        ),
                    );
                }
            }
        }
        // Header and env values: placeholders only (a `Bearer ` scheme may precede one).
        for block in ["headers", "env"] {
            let Some(map) = mode.get(block).and_then(Value::as_mapping) else {
                continue;
            };
            for (key, value) in map {
                let key = key.as_str().unwrap_or("");
                let value = value.as_str().unwrap_or("");
                let rest = strip_placeholders(value);
                let rest = rest.trim();
                if !(rest.is_empty() || rest == "Bearer") || !value.contains("${") {
                    findings.push(
                        path,
                        at(&[Step::Key(block), Step::Key(key)]),
                        "mcp/literal-credential",
                        format!(
                            "modes.{name}.{block}.{key} holds a literal value; write a ${{VAR}} placeholder instead (e.g. \"${{PLANE_WORKSPACE_SLUG}}\", or \"Bearer ${{PLANE_API_KEY}}\" for a key) and keep the value in the environment"
                        ),
                    );
                }
            }
        }
    }

    // Selection by environment.
    let select = doc.get("select");
    let var = select.and_then(|s| s.get("env")).and_then(Value::as_str);
    if var.is_none_or(str::is_empty) {
        findings.push(
            path,
            line_of(text, &[Step::Key("select")]),
            "mcp/select",
            "the mode must be selectable by environment: add `select: {env: PLANE_MCP_MODE, default: <mode>}`",
        );
    }
    let mut chosen: Vec<(String, Vec<Step<'static>>)> = Vec::new();
    if let Some(d) = select
        .and_then(|s| s.get("default"))
        .and_then(Value::as_str)
    {
        chosen.push((
            d.to_owned(),
            vec![Step::Key("select"), Step::Key("default")],
        ));
    } else {
        findings.push(
            path,
            line_of(text, &[Step::Key("select")]),
            "mcp/select",
            "`select.default` is missing; name the mode used when the variable is unset",
        );
    }
    let envs = select
        .and_then(|s| s.get("environments"))
        .and_then(Value::as_mapping);
    for (env, mode) in envs.into_iter().flatten() {
        if let (Some(env), Some(mode)) = (env.as_str(), mode.as_str()) {
            let line = line_of(
                text,
                &[
                    Step::Key("select"),
                    Step::Key("environments"),
                    Step::Key(env),
                ],
            );
            if !MODES.contains(&mode) {
                findings.push(
                    path,
                    line,
                    "mcp/select",
                    format!(
                        "select.environments.{env} names mode {mode:?}, which is not one of {}",
                        MODES.join(", ")
                    ),
                );
            }
        }
    }
    for (mode, steps) in chosen {
        if !MODES.contains(&mode.as_str()) {
            findings.push(
                path,
                line_of(text, &steps),
                "mcp/select",
                format!(
                    "select.default names mode {mode:?}, which is not one of {}",
                    MODES.join(", ")
                ),
            );
        }
    }

    // Declared configuration variables must not be credentials.
    let config_vars: Vec<String> = doc
        .get("config_vars")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for var in &config_vars {
        if is_secret_env(var) {
            findings.push(
                path,
                line_of(text, &[Step::Key("config_vars"), Step::Key(var)]),
                "mcp/config-var-credential",
                format!(
                    "{var} looks like a credential, so it cannot be a plain config var; register it in {} with env_var_name: {var} and remove it from config_vars",
                    paths::REGISTRY
                ),
            );
        }
    }

    // Every placeholder maps to a registry secret (or a declared config var);
    // nothing anywhere looks like a secret value.
    for (i, line) in text.lines().enumerate() {
        if let Some(reason) = secret_value_reason(line) {
            findings.push(
                path,
                i + 1,
                "mcp/literal-credential",
                format!(
                    "this line looks like it holds a credential ({reason}); use a ${{VAR}} placeholder and keep the value in the environment"
                ),
            );
        }
        // Comments may mention `${VAR}` in prose.
        let code = if line.trim_start().starts_with('#') {
            ""
        } else {
            line.split(" #").next().unwrap_or(line)
        };
        for var in placeholders(code) {
            let in_registry = registry.is_some_and(|r| r.env_vars.contains_key(&var));
            if in_registry || config_vars.contains(&var) || registry.is_none() {
                continue;
            }
            findings.push(
                path,
                i + 1,
                "mcp/placeholder-unknown",
                format!(
                    "${{{var}}} maps to no secret in {} (no entry has env_var_name: {var}) and is not listed under config_vars; register the secret or declare the variable",
                    paths::REGISTRY
                ),
            );
        }
    }
}

/// The names of `${VAR}` placeholders in `s`.
pub fn placeholders(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].to_owned());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

fn strip_placeholders(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
