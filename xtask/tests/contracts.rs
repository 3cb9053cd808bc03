//! Rules `contract/*`, `index/*` and `policy/*`: each caught at the right file and
//! line on a broken copy of the repository; the unbroken copy is clean.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, expect, none_of};

const C: &str = "docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md";
const I: &str = "docs/contracts/PLATFORM_CONTRACTS_INDEX.md";
const P: &str = "docs/integration/PLANE_INTEGRATION_POLICY.md";

#[test]
fn the_unbroken_copy_is_clean() {
    let fx = Fixture::new();
    let findings = fx.validate();
    assert!(
        findings.is_empty(),
        "{}",
        xtask::render(&findings, xtask::Format::Text)
    );
    assert_eq!(findings.exit_code(), 0);
}

#[test]
fn contract_header_field_missing() {
    let fx = Fixture::new();
    let owner = fx.line(C, "**Owner**");
    let text = fx.read(C);
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| i + 1 != owner)
        .map(|(_, l)| l)
        .collect();
    fx.write(C, &kept.join("\n"));
    let f = expect(&fx.validate(), C, 1, "contract/header");
    assert!(f.message.contains("**Owner**"), "{}", f.message);
}

#[test]
fn contract_header_date_not_iso() {
    let fx = Fixture::new();
    // Whatever date the contract carries today, written day-first.
    let line = fx
        .read(C)
        .lines()
        .find(|l| l.starts_with("**Last updated**: "))
        .unwrap()
        .to_string();
    let iso = line.trim_start_matches("**Last updated**: ");
    let (y, rest) = iso.split_once('-').unwrap();
    let (m, d) = rest.split_once('-').unwrap();
    fx.edit(C, &line, &format!("**Last updated**: {d}/{m}/{y}"));
    let f = expect(
        &fx.validate(),
        C,
        fx.line(C, "**Last updated**"),
        "contract/header",
    );
    assert!(f.message.contains("YYYY-MM-DD"));
}

#[test]
fn contract_header_id_malformed() {
    let fx = Fixture::new();
    fx.edit(C, "**Contract ID**: C-18", "**Contract ID**: C-PLANE");
    let findings = fx.validate();
    expect(&findings, C, 3, "contract/header");
    expect(&findings, C, 3, "contract/id-mismatch");
}

#[test]
fn contract_section_missing_points_at_the_previous_section() {
    let fx = Fixture::new();
    fx.edit(C, "## Failure Modes", "## Failures");
    let f = expect(
        &fx.validate(),
        C,
        fx.line(C, "## Secrets"),
        "contract/section-missing",
    );
    assert!(f.message.contains("## Failure Modes"));
}

#[test]
fn contract_section_duplicate() {
    let fx = Fixture::new();
    let text = fx.read(C);
    fx.write(C, &format!("{text}\n## Protocol\n\nAgain.\n"));
    let line = fx.read(C).lines().count() - 2;
    expect(&fx.validate(), C, line, "contract/section-duplicate");
}

#[test]
fn contract_id_differs_from_index_row() {
    let fx = Fixture::new();
    fx.edit(C, "**Contract ID**: C-18", "**Contract ID**: C-19");
    let f = expect(&fx.validate(), C, 3, "contract/id-mismatch");
    assert!(f.message.contains("C-18") && f.message.contains("C-19"));
}

#[test]
fn contract_status_differs_from_index_row() {
    let fx = Fixture::new();
    // A status from the legend, other than the one the index row holds today.
    let other = if fx.line_starting(I, "| C-18 |").contains("Active") {
        "⚠️ Partial"
    } else {
        "✅ Active"
    };
    fx.set_contract_status(other);
    let findings = fx.validate();
    expect(&findings, C, 4, "contract/status-mismatch");
    none_of(&findings, "contract/status");
}

#[test]
fn contract_status_not_in_legend() {
    let fx = Fixture::new();
    fx.set_contract_status("Done");
    expect(&fx.validate(), C, 4, "contract/status");
}

#[test]
fn contract_names_an_unregistered_secret() {
    let fx = Fixture::new();
    fx.edit(
        C,
        "Non-secret configuration:",
        "The admin uses `plane_admin_password` and `PLANE_ADMIN_TOKEN`.\n\nNon-secret configuration:",
    );
    let line = fx.line(C, "plane_admin_password");
    let findings = fx.validate();
    let f = expect(&findings, C, line, "contract/secret-unknown");
    assert!(
        findings
            .of_rule("contract/secret-unknown")
            .iter()
            .any(|f| f.message.contains("PLANE_ADMIN_TOKEN"))
    );
    assert!(f.message.contains("ssot/secrets/registry.yaml"));
}

#[test]
fn contract_missing() {
    let fx = Fixture::new();
    fx.remove(C);
    let findings = fx.validate();
    expect(&findings, C, 1, "contract/missing");
    expect(&findings, I, fx.line(I, "| C-18 |"), "index/link");
}

#[test]
fn index_id_malformed() {
    let fx = Fixture::new();
    fx.edit(I, "| C-18 |", "| C18 |");
    expect(&fx.validate(), I, fx.line(I, "| C18 |"), "index/id");
}

#[test]
fn index_id_duplicate() {
    let fx = Fixture::new();
    let row = fx
        .read(I)
        .lines()
        .find(|l| l.starts_with("| C-18 |"))
        .unwrap()
        .to_owned();
    fx.edit(
        I,
        &row,
        &format!("{row}\n| C-18 | Another | `x` | `y` | 🔲 Pending | — |"),
    );
    let f = expect(
        &fx.validate(),
        I,
        fx.line(I, "| C-18 | Another"),
        "index/duplicate-id",
    );
    assert!(f.message.contains("already used on line"));
}

#[test]
fn index_status_not_in_legend() {
    let fx = Fixture::new();
    fx.set_index_status("🟡 Halfway");
    let findings = fx.validate();
    let f = expect(&findings, I, fx.line(I, "| C-18 |"), "index/status");
    assert!(
        f.message.contains("Partial"),
        "lists the allowed statuses: {}",
        f.message
    );
}

#[test]
fn index_link_to_missing_file() {
    let fx = Fixture::new();
    let row = fx
        .read(I)
        .lines()
        .find(|l| l.starts_with("| C-18 |"))
        .unwrap()
        .to_owned();
    fx.edit(
        I,
        &row,
        &format!("{row}\n| C-19 | [Other](OTHER_CONTRACT.md) | `x` | `y` | 🔲 Pending | — |"),
    );
    expect(&fx.validate(), I, fx.line(I, "| C-19 |"), "index/link");
}

#[test]
fn contract_doc_not_indexed() {
    let fx = Fixture::new();
    fx.write("docs/contracts/EXTRA_CONTRACT.md", "# Extra\n");
    let findings = fx.validate();
    expect(
        &findings,
        "docs/contracts/EXTRA_CONTRACT.md",
        1,
        "index/unindexed",
    );
    // It is also checked as a contract.
    expect(
        &findings,
        "docs/contracts/EXTRA_CONTRACT.md",
        1,
        "contract/header",
    );
}

#[test]
fn index_legend_missing() {
    let fx = Fixture::new();
    fx.edit(I, "| Status | Meaning |", "| State | Meaning |");
    expect(&fx.validate(), I, 1, "index/legend");
}

#[test]
fn index_table_columns_wrong() {
    let fx = Fixture::new();
    fx.edit(I, "| Consumer domain |", "| Consumer |");
    expect(
        &fx.validate(),
        I,
        fx.line(I, "| # | Contract |"),
        "index/table",
    );
}

#[test]
fn index_without_plane_row() {
    let fx = Fixture::new();
    fx.edit(I, "| C-18 |", "| C-17 |");
    fx.edit(C, "**Contract ID**: C-18", "**Contract ID**: C-17");
    let findings = fx.validate();
    expect(
        &findings,
        I,
        fx.line(I, "| # | Contract |"),
        "index/plane-row",
    );
    none_of(&findings, "contract/id-mismatch");
}

#[test]
fn index_missing() {
    let fx = Fixture::new();
    fx.remove(I);
    let findings = fx.validate();
    expect(&findings, I, 1, "index/missing");
    assert_eq!(findings.exit_code(), 1);
}

#[test]
fn policy_topic_missing() {
    let fx = Fixture::new();
    fx.edit(P, "## 2. MCP for agentic work", "## 2. Agents");
    let f = expect(&fx.validate(), P, 1, "policy/topic");
    assert!(f.message.contains("MCP"));
}

#[test]
fn policy_missing() {
    let fx = Fixture::new();
    fx.remove(P);
    expect(&fx.validate(), P, 1, "policy/missing");
}
