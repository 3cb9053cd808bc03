//! The real `plane-server bir ...` commands: output formats, overrides, and bad input
//! (a precise message on stderr and exit code 2).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");

fn profiles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plane-bir/profiles")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn profile(name: &str) -> String {
    profiles().join(name).display().to_string()
}

#[test]
fn calendar_json_has_the_issue_fields() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile("fiscal-june-corporation.toml");
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "calendar",
            "--year",
            "2026",
            "--profile",
            &p,
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 42);
    let q = rows
        .iter()
        .find(|r| r["form"] == "1702Q" && r["period"] == "2026-Q1")
        .unwrap();
    assert_eq!(q["due_date"], "2025-12-01");
    assert_eq!(q["rule_date"], "2025-11-29");
    assert_eq!(
        q["months"],
        serde_json::json!(["2025-07", "2025-08", "2025-09"])
    );
    assert_eq!(
        q["moved_by"][1]["why"],
        "Sunday, Bonifacio Day (regular holiday)"
    );
    assert_eq!(q["rule"], "60 days after the period ends");
    assert!(q.get("payment_date").is_none());
    let rt = rows.iter().find(|r| r["form"] == "1702-RT").unwrap();
    assert_eq!(
        (rt["period"].as_str(), rt["due_date"].as_str()),
        (Some("2026"), Some("2026-10-15"))
    );
}

#[test]
fn efps_payment_date_appears_in_json_where_it_differs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "name = \"C\"\ntin = \"123456789000\"\ntaxpayer = \"corporation\"\nefps = true\nefps_group = \"C\"\nforms = [\"1601-C\"]\n").unwrap();
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "calendar",
            "--year",
            "2026",
            "--profile",
            p.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["due_date"], "2026-02-13");
    assert_eq!(json[0]["payment_date"], "2026-02-16");
}

#[test]
fn table_fits_80_columns_and_csv_and_ics_render() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "efps-a-vat-corporation.toml",
        "manual-individual-percentage-tax.toml",
        "fiscal-june-corporation.toml",
    ] {
        let p = profile(name);
        let out = run_in(
            dir.path(),
            &["bir", "calendar", "--year", "2026", "--profile", &p],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        for line in table.lines() {
            assert!(line.chars().count() <= 80, "{name}: {line:?}");
        }
        assert!(
            table.contains("FORM     PERIOD   FILE BY        PAY BY         NOTE"),
            "{table}"
        );
    }
    let p = profile("efps-a-vat-corporation.toml");
    let out = run_in(
        dir.path(),
        &["bir", "calendar", "--year", "2026", "--profile", &p],
    );
    assert!(text(&out.stdout).contains(
        "1702Q    2026-Q3  Tue 2026-12-01                from 11-29: Sun, Bonifacio Day"
    ));
    let csv = run_in(
        dir.path(),
        &[
            "bir",
            "calendar",
            "--year",
            "2026",
            "--profile",
            &p,
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        text(&csv.stdout)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .count(),
        44
    );
    let ics = run_in(
        dir.path(),
        &[
            "bir",
            "calendar",
            "--year",
            "2026",
            "--profile",
            &p,
            "--format",
            "ics",
        ],
    );
    let ics = text(&ics.stdout);
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n") && ics.ends_with("END:VCALENDAR\r\n"));
    assert_eq!(ics.matches("BEGIN:VEVENT\r\n").count(), 43);
    for name in ["forms", "holidays"] {
        let args: &[&str] = if name == "forms" {
            &["bir", "forms"]
        } else {
            &["bir", "holidays", "--year", "2026"]
        };
        let out = run_in(dir.path(), args);
        assert!(out.status.success());
        for line in text(&out.stdout).lines() {
            assert!(line.chars().count() <= 80, "{name}: {line:?}");
        }
    }
}

#[test]
fn forms_and_holidays_list() {
    let dir = tempfile::tempdir().unwrap();
    let forms = text(&run_in(dir.path(), &["bir", "forms"]).stdout);
    assert!(
        forms.contains("2551M     -          abolished   abolished from taxable year 2018"),
        "{forms}"
    );
    assert!(
        forms.contains("2550M     -          optional    optional since 2023"),
        "{forms}"
    );
    assert!(forms.contains("0605      -          abolished"), "{forms}");
    let json: serde_json::Value =
        serde_json::from_slice(&run_in(dir.path(), &["bir", "forms", "--format", "json"]).stdout)
            .unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|f| f["form"] == "1604-CF" && f["status"] == "superseded")
    );
    let holidays = text(&run_in(dir.path(), &["bir", "holidays", "--year", "2026"]).stdout);
    assert!(
        holidays.contains("2026-11-30  Mon  regular holiday          Bonifacio Day"),
        "{holidays}"
    );
    assert!(
        text(&run_in(dir.path(), &["bir", "holidays", "--year", "2027"]).stdout)
            .contains("Eid'l Fitr (provisional)")
    );
    let json: serde_json::Value = serde_json::from_slice(
        &run_in(
            dir.path(),
            &["bir", "holidays", "--year", "2026", "--format", "json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(json["days"].as_array().unwrap().len(), 24);
}

#[test]
fn override_is_stored_and_wins_in_the_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile("efps-a-vat-corporation.toml");
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "override",
            "1601-C",
            "2026-07",
            "--due",
            "2026-08-24",
            "--reason",
            "RR 99-2026 (typhoon)",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(
        "bir-overrides.toml: 1601-C 2026-07 now due 2026-08-24 (RR 99-2026 (typhoon))"
    ));
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "override",
            "2550Q",
            "2026-Q1",
            "--due",
            "2026-05-04",
            "--reason",
            "RMC 5-2026",
        ],
    );
    assert!(out.status.success());
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "override",
            "1601-C",
            "2026-07",
            "--due",
            "2026-08-26",
            "--reason",
            "RR 100-2026",
        ],
    );
    assert!(
        text(&out.stdout)
            .contains("replaced the earlier override: due 2026-08-24 (RR 99-2026 (typhoon))")
    );
    let stored = std::fs::read_to_string(dir.path().join("bir-overrides.toml")).unwrap();
    assert_eq!(stored.matches("[[override]]").count(), 2, "{stored}");
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "calendar",
            "--year",
            "2026",
            "--profile",
            &p,
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let july = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["form"] == "1601-C" && r["period"] == "2026-07")
        .unwrap();
    assert_eq!(july["due_date"], "2026-08-26");
    assert_eq!(july["override"]["computed_due_date"], "2026-08-17");
    let table = text(
        &run_in(
            dir.path(),
            &["bir", "calendar", "--year", "2026", "--profile", &p],
        )
        .stdout,
    );
    assert!(
        table.contains(
            "1601-C   2026-07  Wed 2026-08-26                OVERRIDE was 08-17: RR 100-2026"
        ),
        "{table}"
    );
}

fn fails_with(dir: &Path, args: &[&str], expected: &str) {
    let out = run_in(dir, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("plane-server: {expected}"),
        "{args:?}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_exits_2_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, body: &str| {
        std::fs::write(d.join(name), body).unwrap();
        name.to_string()
    };
    let head = "name = \"X\"\ntin = \"123-456-789-000\"\ntaxpayer = \"corporation\"\n";
    let unknown = write("unknown.toml", &format!("{head}forms = [\"2551M\"]\n"));
    fails_with(
        d,
        &["bir", "calendar", "--year", "2026", "--profile", &unknown],
        "unknown.toml:4:10: field `forms[0]`: form 2551M has no deadline: abolished from taxable year 2018 under TRAIN (RA 10963; RMC 26-2018): file the quarterly 2551Q; allowed: 1601-C, 1604-C, 2316, 0619-E, 1601-EQ, 2307, 1604-E, 0619-F, 1601-FQ, 1604-F, 1602Q, 1603Q, 1600-VT, 1600-PT, 2550Q, SLSP, 2551Q, 2000, 1702Q, 1702-RT, 1702-EX, 1702-MX, 1701Q, 1701A, 1701, 1700",
    );
    let tin = write(
        "tin.toml",
        "name = \"X\"\ntin = \"12345678\"\ntaxpayer = \"corporation\"\n",
    );
    fails_with(
        d,
        &["bir", "calendar", "--year", "2026", "--profile", &tin],
        "tin.toml:2:7: field `tin`: \"12345678\" is not a TIN; allowed: 9 digits and a 3 to 5 digit branch code, dashes optional (123-456-789-000, 123456789000, 123-456-789-00000)",
    );
    let group = write("group.toml", &format!("{head}efps_group = \"B\"\n"));
    fails_with(
        d,
        &["bir", "calendar", "--year", "2026", "--profile", &group],
        "group.toml:4:14: field `efps_group`: efps_group = \"B\" is set but efps is false: only eFPS filers have a group; allowed: efps = true with efps_group = \"A\"..\"E\", or no efps_group",
    );
    fails_with(
        d,
        &[
            "bir",
            "calendar",
            "--from",
            "2027-01-01",
            "--to",
            "2026-01-01",
        ],
        "the calendar request: field `from, to`: the range starts (2027-01-01) after it ends (2026-01-01); allowed: a start on or before the end",
    );
    fails_with(
        d,
        &[
            "bir",
            "override",
            "2551M",
            "2026-01",
            "--due",
            "2026-02-20",
            "--reason",
            "x",
        ],
        "form 2551M has no deadline: abolished from taxable year 2018 under TRAIN (RA 10963; RMC 26-2018): file the quarterly 2551Q",
    );
    fails_with(
        d,
        &[
            "bir",
            "override",
            "1601-Z",
            "2026-01",
            "--due",
            "2026-02-20",
            "--reason",
            "x",
        ],
        "unknown form \"1601-Z\"; known forms with deadlines: 1601-C, 1604-C, 2316, 0619-E, 1601-EQ, 2307, 1604-E, 0619-F, 1601-FQ, 1604-F, 1602Q, 1603Q, 1600-VT, 1600-PT, 2550Q, SLSP, 2551Q, 2000, 1702Q, 1702-RT, 1702-EX, 1702-MX, 1701Q, 1701A, 1701, 1700",
    );
    fails_with(
        d,
        &[
            "bir",
            "override",
            "1702Q",
            "2026-Q4x",
            "--due",
            "2026-02-20",
            "--reason",
            "x",
        ],
        "period \"2026-Q4x\" does not fit form 1702Q: expected a quarter, YYYY-Qn with n 1-4 (2026-Q1; fiscal quarters are numbered within the fiscal year, labelled by the year it ends in)",
    );
    // A bad existing override file is refused and kept as it was.
    let bad = "[[override]]\nform = \"1601-C\"\n";
    write("bir-overrides.toml", bad);
    fails_with(
        d,
        &[
            "bir",
            "override",
            "1601-C",
            "2026-01",
            "--due",
            "2026-02-20",
            "--reason",
            "x",
        ],
        "bir-overrides.toml:1:1: missing field `period`",
    );
    assert_eq!(
        std::fs::read_to_string(d.join("bir-overrides.toml")).unwrap(),
        bad
    );
    // The calendar reads the same default file, so it refuses too.
    fails_with(
        d,
        &["bir", "calendar", "--year", "2026"],
        "bir-overrides.toml:1:1: missing field `period`",
    );
    // A holiday year with more data lets 2027 through.
    let h2028 = write(
        "2028.toml",
        "[[year]]\nyear = 2028\ndays = [{ date = \"2028-01-01\", name = \"New Year's Day\", kind = \"regular\" }]\n",
    );
    std::fs::remove_file(d.join("bir-overrides.toml")).unwrap();
    let out = run_in(
        d,
        &[
            "bir",
            "calendar",
            "--year",
            "2027",
            "--holidays",
            &h2028,
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Clap's own usage errors exit 2 as well.
    assert_eq!(
        run_in(d, &["bir", "calendar", "--year", "twenty"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_year_out_of_range_exits_2_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        dir.path(),
        &["bir", "calendar", "--year", "2147483647"],
        "the calendar request: field `year`: 2147483647 is outside the years a calendar covers; allowed: 1901-9998",
    );
}

/// `bir calendar ... --format json` for a profile: its rows, and its stderr.
fn calendar_json(dir: &Path, profile: &str, when: &[&str]) -> (Vec<serde_json::Value>, String) {
    let mut args = vec!["bir", "calendar", "--profile", profile, "--format", "json"];
    args.extend_from_slice(when);
    let out = run_in(dir, &args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        text(&out.stderr),
    )
}

/// Every shipped profile, every year 2025 to 2028: a calendar, never a refusal; a year
/// beyond the proclaimed ones warns once, on stderr, and marks its dates.
#[test]
fn every_profile_has_a_calendar_for_every_year_from_2025_to_2028() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(profiles()).unwrap() {
        let p = entry.unwrap().path().display().to_string();
        for year in ["2025", "2026", "2027", "2028"] {
            let (rows, stderr) = calendar_json(dir.path(), &p, &["--year", year]);
            assert!(rows.len() >= 9, "{p} {year}: {}", rows.len());
            let provisional = rows.iter().filter(|r| r["provisional"] == true).count();
            let warnings = stderr.matches("warning:").count();
            assert_eq!(warnings, usize::from(provisional > 0), "{p} {year}");
            if year == "2028" {
                assert_eq!(provisional, rows.len(), "{p}: 2028 is not proclaimed");
            }
        }
    }
    // The table marks each provisional date and says why, once.
    let out = run_in(
        dir.path(),
        &[
            "bir",
            "calendar",
            "--year",
            "2028",
            "--profile",
            &profile("manual-individual-percentage-tax.toml"),
        ],
    );
    let table = text(&out.stdout);
    assert!(
        table.contains("2551Q    2028-Q1  Tue 2028-04-25*"),
        "{table}"
    );
    assert!(
        table.contains("* provisional (9 deadlines): the 2028 holidays are not proclaimed yet"),
        "{table}"
    );
    let out = run_in(dir.path(), &["bir", "holidays", "--year", "2030"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("Philippine holidays 2030 (provisional)\n"));
}

/// `--from 2026-01-01 --to 2026-12-31` lists what falls due in 2026, whatever its fiscal
/// year: for the fiscal-June corporation, the two FY2027 returns due in 2026 too.
#[test]
fn a_range_lists_what_falls_due_in_it_whatever_its_fiscal_year() {
    let dir = tempfile::tempdir().unwrap();
    let fiscal = profile("fiscal-june-corporation.toml");
    let year_2026 = ["--from", "2026-01-01", "--to", "2026-12-31"];
    let (rows, _) = calendar_json(dir.path(), &fiscal, &year_2026);
    let find = |form: &str, period: &str| {
        rows.iter()
            .find(|r| r["form"] == form && r["period"] == period)
            .map(|r| {
                (
                    r["due_date"].as_str().unwrap().to_string(),
                    r["provisional"].clone(),
                )
            })
    };
    assert_eq!(
        find("2550Q", "2027-Q1"),
        Some(("2026-10-26".into(), false.into()))
    );
    assert_eq!(
        find("1702Q", "2027-Q1"),
        Some(("2026-12-01".into(), false.into()))
    );
    assert!(
        rows.iter()
            .all(|r| r["due_date"].as_str().unwrap().starts_with("2026-"))
    );
    // Every shipped profile: the range holds exactly what each year's calendars put in 2026.
    for entry in std::fs::read_dir(profiles()).unwrap() {
        let p = entry.unwrap().path().display().to_string();
        let mut expected = std::collections::BTreeSet::new();
        for year in ["2025", "2026", "2027"] {
            for r in calendar_json(dir.path(), &p, &["--year", year]).0 {
                let due = r["due_date"].as_str().unwrap().to_string();
                if due.starts_with("2026-") {
                    expected.insert(format!("{} {} {due}", r["form"], r["period"]));
                }
            }
        }
        let (rows, _) = calendar_json(dir.path(), &p, &year_2026);
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["form"],
                    r["period"],
                    r["due_date"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "{p}: a deadline twice");
        assert_eq!(
            got.into_iter().collect::<std::collections::BTreeSet<_>>(),
            expected,
            "{p}"
        );
    }
}
