//! `addons/ipai/ipai_plane_connector/`: the Odoo defaults equal plane-core's,
//! the manifest loads them, the README states them, and the addon carries no
//! HTTP client of its own.
//!
//! Rules: `addon/missing`, `addon/default-missing`, `addon/default-mismatch`,
//! `addon/manifest-data`, `addon/readme-default`, `addon/http-client`.

use crate::findings::{Findings, Lines};
use crate::md::{Doc, unquote};
use crate::repo::{Repo, paths};

/// The defaults the addon must carry: (Odoo parameter, plane-core value, plane-core name).
pub fn expected_defaults() -> [(&'static str, &'static str, &'static str); 2] {
    [
        (
            "plane.base_url",
            plane_core::DEFAULT_BASE_URL,
            "plane_core::DEFAULT_BASE_URL",
        ),
        (
            "plane.workspace_slug",
            plane_core::DEFAULT_WORKSPACE_SLUG,
            "plane_core::DEFAULT_WORKSPACE_SLUG",
        ),
    ]
}

/// Python imports that mean "an HTTP client lives here".
const HTTP_MODULES: &[&str] = &[
    "requests",
    "httpx",
    "aiohttp",
    "urllib",
    "urllib3",
    "http.client",
];

/// One `ir.config_parameter` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: String,
    /// The line of the value field.
    pub line: usize,
}

/// Runs the addon rules on the repository.
pub fn check(repo: &Repo, findings: &mut Findings) {
    let data_name = paths::ADDON_DATA
        .strip_prefix(&format!("{}/", paths::ADDON))
        .unwrap_or(paths::ADDON_DATA);
    if let Some(text) = repo.read_required(
        paths::ADDON_DATA,
        findings,
        "addon/missing",
        "create the Odoo data file with the ir.config_parameter defaults plane.base_url and plane.workspace_slug",
    ) {
        check_data(paths::ADDON_DATA, &text, findings);
    }
    if let Some(text) = repo.read_required(
        paths::ADDON_MANIFEST,
        findings,
        "addon/missing",
        "create the Odoo manifest of the connector addon",
    ) {
        check_manifest(paths::ADDON_MANIFEST, &text, data_name, findings);
    }
    if let Some(text) = repo.read_required(
        paths::ADDON_README,
        findings,
        "addon/missing",
        "create the connector README (usage, config parameters, API reference)",
    ) {
        check_readme(paths::ADDON_README, &text, findings);
    }
    let init = format!("{}/__init__.py", paths::ADDON);
    if !repo.exists(&init) {
        findings.push(
            init.clone(),
            1,
            "addon/missing",
            format!("{init} does not exist; Odoo needs it to load the addon (it may be empty)"),
        );
    }
    let prefix = format!("{}/", paths::ADDON);
    for file in repo.files() {
        if file.starts_with(&prefix)
            && file.ends_with(".py")
            && let Some(text) = repo.read(file, findings)
        {
            check_python(file, &text, findings);
        }
    }
}

/// The `ir.config_parameter` records in an Odoo XML data file.
pub fn params(text: &str) -> Vec<Param> {
    let lines = Lines::new(text);
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(start) = text[pos..].find("<record") {
        let start = pos + start;
        let end = text[start..]
            .find("</record>")
            .map_or(text.len(), |e| start + e);
        let record = &text[start..end];
        if record.contains("ir.config_parameter") {
            let key = field(record, "key");
            let value = field(record, "value");
            if let Some((key, _)) = key {
                let (value, offset) = value.unwrap_or_default();
                out.push(Param {
                    key,
                    value,
                    line: lines.line_of(start + offset),
                });
            }
        }
        pos = end.max(start + 1);
    }
    out
}

/// The text of `<field name="NAME">text</field>` and its offset in `record`.
fn field(record: &str, name: &str) -> Option<(String, usize)> {
    for quote in ['"', '\''] {
        let open = format!("<field name={quote}{name}{quote}");
        if let Some(at) = record.find(&open) {
            let after = &record[at + open.len()..];
            let gt = after.find('>')?;
            let body = &after[gt + 1..];
            let close = body.find("</field>")?;
            return Some((unescape(body[..close].trim()), at));
        }
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The data file's defaults equal plane-core's.
pub fn check_data(path: &str, text: &str, findings: &mut Findings) {
    let params = params(text);
    for (key, expected, constant) in expected_defaults() {
        match params.iter().find(|p| p.key == key) {
            None => findings.push(
                path,
                1,
                "addon/default-missing",
                format!(
                    "no ir.config_parameter record for {key}; add one whose value is {expected:?} ({constant})"
                ),
            ),
            Some(p) if p.value != expected => findings.push(
                path,
                p.line,
                "addon/default-mismatch",
                format!(
                    "{key} is {:?} here but {constant} is {expected:?}; the Odoo default and the client's default must agree (change one of them, then both)",
                    p.value
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The manifest loads the data file.
pub fn check_manifest(path: &str, text: &str, data_name: &str, findings: &mut Findings) {
    let listed =
        text.contains(&format!("\"{data_name}\"")) || text.contains(&format!("'{data_name}'"));
    if !listed {
        let line = text
            .lines()
            .position(|l| l.contains("\"data\"") || l.contains("'data'"))
            .map_or(1, |i| i + 1);
        findings.push(
            path,
            line,
            "addon/manifest-data",
            format!("the manifest's \"data\" list does not load {data_name:?}; add it so Odoo installs the defaults"),
        );
    }
}

/// The README's parameter table (columns `Parameter`, `Default`, ...) gives each
/// parameter with plane-core's default.
pub fn check_readme(path: &str, text: &str, findings: &mut Findings) {
    let doc = Doc::parse(text);
    let table = doc.tables.iter().find(|t| {
        let c = t.columns();
        c.first() == Some(&"Parameter") && c.get(1) == Some(&"Default")
    });
    let Some(table) = table else {
        findings.push(
            path,
            1,
            "addon/readme-default",
            "the README has no configuration table (columns | Parameter | Default | ...); add one listing plane.base_url and plane.workspace_slug with their defaults",
        );
        return;
    };
    for (key, expected, constant) in expected_defaults() {
        match table.rows.iter().find(|r| unquote(r.text(0)) == key) {
            None => findings.push(
                path,
                table.line,
                "addon/readme-default",
                format!("the configuration table has no row for {key}; add it with the default {expected:?} ({constant})"),
            ),
            Some(row) if unquote(row.text(1)) != expected => findings.push(
                path,
                row.line,
                "addon/readme-default",
                format!(
                    "the README gives {key} the default {:?} but {constant} is {expected:?}; document the current default",
                    unquote(row.text(1))
                ),
            ),
            Some(_) => {}
        }
    }
}

/// No HTTP client in the addon: every Plane call goes through plane-core.
pub fn check_python(path: &str, text: &str, findings: &mut Findings) {
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        let module = l
            .strip_prefix("import ")
            .or_else(|| l.strip_prefix("from "))
            .map(|rest| {
                rest.split(|c: char| c.is_whitespace() || c == ',')
                    .next()
                    .unwrap_or("")
            });
        if let Some(module) = module
            && HTTP_MODULES
                .iter()
                .any(|m| module == *m || module.starts_with(&format!("{m}.")))
        {
            findings.push(
                    path,
                    i + 1,
                    "addon/http-client",
                    format!(
                        "the addon imports {module}: it must not talk to Plane itself; every Plane call goes through plane-core (crates/plane-core) and plane-server"
                    ),
                );
        }
    }
}
