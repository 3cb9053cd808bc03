//! Rules `invariant/*`: every invariant of the contract names tests that exist (or says why
//! it is pending), and the contract is Active only when none is pending. Each case breaks one
//! thing in a temporary copy of the repository and asserts the file, line and rule.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, expect, none_of};

const C: &str = "docs/contracts/PLANE_ODOO_SYNC_CONTRACT.md";
const PACING: &str = "crates/plane-core/tests/pacing.rs";
const PACING_TEST: &str = "eight_tasks_share_one_budget_without_a_single_429";

/// The `Tested by:` line of invariant 3 (fully tested today).
fn verify_first_line(fx: &Fixture) -> String {
    let text = fx.read(C);
    let at = text.find("3. **Verify first.**").unwrap();
    text[at..]
        .lines()
        .find(|l| l.trim_start().starts_with("Tested by:"))
        .unwrap()
        .to_owned()
}

#[test]
fn the_real_contract_names_only_existing_tests() {
    let fx = Fixture::new();
    let findings = fx.validate();
    for rule in [
        "invariant/untested",
        "invariant/reference",
        "invariant/test-file",
        "invariant/test-missing",
        "invariant/pending-reason",
        "invariant/pending-active",
        "invariant/none",
    ] {
        none_of(&findings, rule);
    }
}

#[test]
fn an_invariant_without_tested_by_or_pending() {
    let fx = Fixture::new();
    let line = verify_first_line(&fx);
    let text = fx.read(C);
    // Drop invariant 3's whole Tested-by clause (its line and the continuation lines).
    let start = text.find(&line).unwrap();
    let end = text[start..].find("\n4. ").unwrap() + start + 1;
    fx.write(C, &format!("{}{}", &text[..start], &text[end..]));
    let f = expect(
        &fx.validate(),
        C,
        fx.line(C, "3. **Verify first.**"),
        "invariant/untested",
    );
    assert!(f.message.contains("invariant 3"), "{}", f.message);
}

#[test]
fn a_renamed_test_is_reported_where_the_contract_names_it() {
    let fx = Fixture::new();
    fx.edit(
        PACING,
        &format!("fn {PACING_TEST}("),
        &format!("fn {PACING_TEST}_renamed("),
    );
    let f = expect(
        &fx.validate(),
        C,
        fx.line(C, PACING_TEST),
        "invariant/test-missing",
    );
    assert!(
        f.message.contains(PACING) && f.message.contains(PACING_TEST),
        "{}",
        f.message
    );
}

#[test]
fn a_helper_that_is_not_a_test_is_refused() {
    let fx = Fixture::new();
    // The scenario function the two `_unlimited` / `_at_60_per_window` tests call.
    let helper = "drift_made_by_a_person_is_reported_and_restored";
    fx.edit(C, &format!("{helper}_unlimited`"), &format!("{helper}`"));
    let line = fx.line(C, &format!("::{helper}`"));
    let f = expect(&fx.validate(), C, line, "invariant/test-missing");
    assert!(f.message.contains("not a test"), "{}", f.message);
}

#[test]
fn a_missing_test_file() {
    let fx = Fixture::new();
    fx.remove(PACING);
    let findings = fx.validate();
    let line = fx.line(C, PACING_TEST);
    let f = expect(&findings, C, line, "invariant/test-file");
    assert!(f.message.contains(PACING), "{}", f.message);
}

#[test]
fn a_reference_without_a_test_name_or_with_a_bad_path() {
    let fx = Fixture::new();
    fx.edit(
        C,
        &format!("`{PACING}::{PACING_TEST}`"),
        &format!("`{PACING}`"),
    );
    let line = fx.line(C, &format!("`{PACING}`"));
    expect(&fx.validate(), C, line, "invariant/reference");

    let fx = Fixture::new();
    fx.edit(
        C,
        &format!("`{PACING}::{PACING_TEST}`"),
        &format!("`crates/plane-core/tests/no_such_file.rs::{PACING_TEST}`"),
    );
    let line = fx.line(C, "no_such_file.rs");
    expect(&fx.validate(), C, line, "invariant/test-file");
}

#[test]
fn a_tested_by_clause_that_names_nothing() {
    let fx = Fixture::new();
    let line = verify_first_line(&fx);
    let text = fx.read(C);
    let start = text.find(&line).unwrap();
    let end = text[start..].find("\n4. ").unwrap() + start + 1;
    fx.write(
        C,
        &format!(
            "{}   Tested by: the router tests.\n{}",
            &text[..start],
            &text[end..]
        ),
    );
    expect(
        &fx.validate(),
        C,
        fx.line(C, "Tested by: the router tests."),
        "invariant/reference",
    );
}

#[test]
fn pending_without_a_reason() {
    let fx = Fixture::new();
    // A pending clause with no real reason, on invariant 3 (whatever else is pending today).
    fx.edit(
        C,
        "   is rejected with 401.\n",
        "   is rejected with 401.\n   Pending: later.\n",
    );
    expect(
        &fx.validate(),
        C,
        fx.line(C, "Pending: later."),
        "invariant/pending-reason",
    );
}

/// The contract marked Active in its header and the index row, so that only the
/// invariant rules can object.
fn active(fx: &Fixture) {
    fx.set_contract_status("✅ Active");
    fx.set_index_status("✅ Active");
}

/// Replaces every Pending clause by a Tested-by naming a real test.
fn nothing_pending(fx: &Fixture) {
    let text = fx.read(C);
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("Pending:") {
            out.push_str(&format!("   Tested by: `{PACING}::{PACING_TEST}`\n"));
            skipping = true;
            continue;
        }
        if skipping && (trimmed.is_empty() || line.starts_with(|c: char| c.is_ascii_digit())) {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    fx.write(C, &out);
}

#[test]
fn active_while_an_invariant_is_pending_is_refused() {
    let fx = Fixture::new();
    active(&fx);
    nothing_pending(&fx);
    // Only invariant 3 is pending now, whatever the real contract says today.
    fx.edit(
        C,
        "   is rejected with 401.\n",
        "   is rejected with 401.\n   Pending: a fixture that leaves this invariant untested on purpose.\n",
    );
    let findings = fx.validate();
    none_of(&findings, "contract/status-mismatch");
    let f = expect(&findings, C, 4, "invariant/pending-active");
    assert!(
        f.message.contains("invariant 3 is pending"),
        "{}",
        f.message
    );
}

#[test]
fn active_with_every_invariant_tested_is_accepted() {
    let fx = Fixture::new();
    active(&fx);
    nothing_pending(&fx);
    let findings = fx.validate();
    none_of(&findings, "invariant/pending-active");
    none_of(&findings, "invariant/untested");
}

#[test]
fn a_test_made_per_backend_is_named_with_its_module() {
    let fx = Fixture::new();
    let store = "crates/plane-bir/tests/deadline_store.rs";
    let scenario = "a_status_change_rolls_back_with_the_callers_transaction";
    // The real contract names `scenario::sqlite` and `scenario::postgres` (no finding, as
    // the first test shows). A module the file never names is reported.
    fx.edit(
        store,
        &format!("    {scenario},"),
        &format!("    {scenario}_renamed,"),
    );
    fx.edit(
        store,
        &format!("async fn {scenario}("),
        &format!("async fn {scenario}_renamed("),
    );
    let f = expect(
        &fx.validate(),
        C,
        fx.line(C, &format!("{scenario}::sqlite")),
        "invariant/test-missing",
    );
    assert!(f.message.contains(scenario), "{}", f.message);
    // And a module path whose last part is not a test of the file.
    let fx = Fixture::new();
    fx.edit(
        C,
        &format!("{scenario}::sqlite`"),
        &format!("{scenario}::mysql`"),
    );
    let f = expect(
        &fx.validate(),
        C,
        fx.line(C, &format!("{scenario}::mysql")),
        "invariant/test-missing",
    );
    assert!(f.message.contains("mysql"), "{}", f.message);
}
