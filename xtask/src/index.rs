//! `docs/contracts/PLATFORM_CONTRACTS_INDEX.md`: the index table and its legend.
//!
//! Rules: `index/missing`, `index/table`, `index/legend`, `index/id`,
//! `index/duplicate-id`, `index/status`, `index/link`, `index/unindexed`,
//! `index/plane-row`.

use std::collections::{BTreeMap, BTreeSet};

use crate::findings::Findings;
use crate::md::{Doc, Row, status_word};
use crate::repo::{Repo, paths};

/// The index table's columns, in order.
pub const COLUMNS: &[&str] = &[
    "#",
    "Contract",
    "Source SSOT domain",
    "Consumer domain",
    "Status",
    "Validator",
];

/// The legend table's columns.
pub const LEGEND_COLUMNS: &[&str] = &["Status", "Meaning"];

/// The Plane contract's id.
pub const PLANE_ID: &str = "C-18";

/// One row of the index.
#[derive(Debug, Clone)]
pub struct IndexRow {
    pub id: String,
    /// The status word (`Active`, `Partial`...).
    pub status: String,
    /// The linked document, relative to `docs/contracts/` (None: no doc yet).
    pub link: Option<String>,
    pub line: usize,
}

/// What the contract rules need from the index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub rows: Vec<IndexRow>,
    /// The statuses the legend defines.
    pub legend: BTreeSet<String>,
}

impl Index {
    /// The row that links to `file` (a name inside `docs/contracts/`).
    pub fn row_for(&self, file: &str) -> Option<&IndexRow> {
        self.rows
            .iter()
            .find(|r| r.link.as_deref().is_some_and(|l| normalise_link(l) == file))
    }
}

/// `./X.md#part` -> `X.md`.
pub fn normalise_link(link: &str) -> &str {
    let l = link.split('#').next().unwrap_or(link);
    l.strip_prefix("./").unwrap_or(l)
}

/// Runs the index rules; `contract_files` are the `.md` names in `docs/contracts/`
/// other than the index.
pub fn check(repo: &Repo, contract_files: &[String], findings: &mut Findings) -> Option<Index> {
    let text = repo.read_required(
        paths::INDEX,
        findings,
        "index/missing",
        "create the contracts index (one table row per contract, and a legend of statuses)",
    )?;
    let index = check_text(paths::INDEX, &text, findings, &|link| {
        repo.exists(&format!("{}/{link}", paths::CONTRACTS_DIR))
    });
    for file in contract_files {
        if index.row_for(file).is_none() {
            findings.push(
                format!("{}/{file}", paths::CONTRACTS_DIR),
                1,
                "index/unindexed",
                format!(
                    "this contract is not linked from any row of {}; add a row whose Contract cell is [Name]({file})",
                    paths::INDEX
                ),
            );
        }
    }
    Some(index)
}

/// The index rules on `text`; `link_exists` says whether a linked file exists.
pub fn check_text(
    path: &str,
    text: &str,
    findings: &mut Findings,
    link_exists: &dyn Fn(&str) -> bool,
) -> Index {
    let doc = Doc::parse(text);
    let mut index = Index::default();

    match doc.table_with(LEGEND_COLUMNS) {
        Some(legend) => {
            for row in &legend.rows {
                let word = status_word(row.text(0));
                if !word.is_empty() {
                    index.legend.insert(word.to_owned());
                }
            }
            if index.legend.is_empty() {
                findings.push(
                    path,
                    legend.line,
                    "index/legend",
                    "the legend table defines no statuses; add one row per allowed status (Active, Partial, Pending, Violated, Planned, Deprecated)",
                );
            }
        }
        None => findings.push(
            path,
            1,
            "index/legend",
            format!(
                "no legend table found; add a table with the columns | {} | that defines each allowed status",
                LEGEND_COLUMNS.join(" | ")
            ),
        ),
    }

    let Some(table) = doc.table_with(COLUMNS) else {
        let near = doc
            .tables
            .iter()
            .find(|t| t.columns().first() == Some(&"#"))
            .map_or(1, |t| t.line);
        findings.push(
            path,
            near,
            "index/table",
            format!(
                "no index table with exactly the columns | {} | found; fix the header row",
                COLUMNS.join(" | ")
            ),
        );
        return index;
    };

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in &table.rows {
        let id = row.text(0).to_owned();
        if !well_formed_id(&id) {
            findings.push(
                path,
                row.line,
                "index/id",
                format!(
                    "contract id {id:?} is not well-formed; ids are C- and two digits (C-07, C-18)"
                ),
            );
        } else if let Some(first) = seen.get(&id) {
            findings.push(
                path,
                row.line,
                "index/duplicate-id",
                format!(
                    "contract id {id} is already used on line {first}; give this contract the next free id"
                ),
            );
        } else {
            seen.insert(id.clone(), row.line);
        }
        let status = status_word(row.text(4)).to_owned();
        if !index.legend.is_empty() && !index.legend.contains(&status) {
            findings.push(
                path,
                row.line,
                "index/status",
                format!(
                    "{id}: status {:?} is not defined by the legend; use one of {}",
                    row.text(4),
                    index.legend.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let link = first_local_link(row);
        if let Some(link) = &link
            && !link_exists(normalise_link(link))
        {
            findings.push(
                    path,
                    row.line,
                    "index/link",
                    format!(
                        "{id}: the Contract cell links to {link}, which does not exist in docs/contracts/; fix the link or create the document"
                    ),
                );
        }
        index.rows.push(IndexRow {
            id,
            status,
            link,
            line: row.line,
        });
    }

    let plane_file = paths::PLANE_CONTRACT.rsplit('/').next().unwrap_or_default();
    match index.rows.iter().find(|r| r.id == PLANE_ID) {
        None => findings.push(
            path,
            table.line,
            "index/plane-row",
            format!("the index has no {PLANE_ID} row; add the Plane ↔ Odoo sync contract as {PLANE_ID} linking to {plane_file}"),
        ),
        Some(r) if r.link.as_deref().map(normalise_link) != Some(plane_file) => findings.push(
            path,
            r.line,
            "index/plane-row",
            format!("the {PLANE_ID} row must link to {plane_file}; make its Contract cell [Plane ↔ Odoo Sync]({plane_file})"),
        ),
        Some(_) => {}
    }
    index
}

/// `C-` followed by exactly two digits.
pub fn well_formed_id(id: &str) -> bool {
    id.strip_prefix("C-")
        .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn first_local_link(row: &Row) -> Option<String> {
    row.cells.get(1).and_then(|c| {
        c.links
            .iter()
            .find(|l| !l.contains("://") && !l.starts_with('#'))
            .cloned()
    })
}
