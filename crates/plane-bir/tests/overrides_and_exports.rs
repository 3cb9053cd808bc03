//! Overrides win and are shown as such, the override file keeps every entry, and the
//! exports (ICS, CSV, JSON) have the structure their readers need.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use plane_bir::{Holidays, Override, Overrides, Profile, calendar, save_override, to_csv, to_ics};

fn profile() -> Profile {
    Profile::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/efps-a-vat-corporation.toml"),
    )
    .unwrap()
}

fn date(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

#[test]
fn an_override_wins_and_shows_the_computed_date() {
    let mut overrides = Overrides::none();
    overrides.insert(
        Override::new(
            "1601-C",
            "2026-07",
            date("2026-08-24"),
            "RR 99-2026 (typhoon)",
        )
        .unwrap(),
    );
    let d = calendar(&profile(), 2026, &Holidays::builtin(), &overrides).unwrap();
    let july = d
        .iter()
        .find(|d| d.form == "1601-C" && d.period.to_string() == "2026-07")
        .unwrap();
    assert_eq!(july.due_date, date("2026-08-24"));
    let o = july.overridden.as_ref().unwrap();
    assert_eq!(
        (o.computed_due_date, o.reason.as_str()),
        (date("2026-08-17"), "RR 99-2026 (typhoon)")
    );
    let json = serde_json::to_value(july).unwrap();
    assert_eq!(json["due_date"], "2026-08-24");
    assert_eq!(json["override"]["computed_due_date"], "2026-08-17");
    // Other deadlines are untouched.
    let june = d
        .iter()
        .find(|d| d.form == "1601-C" && d.period.to_string() == "2026-06")
        .unwrap();
    assert!(june.overridden.is_none());
}

#[test]
fn the_override_file_keeps_every_entry_and_comment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overrides.toml");
    let a = Override::new("1601-C", "2026-07", date("2026-08-24"), "RR 99-2026").unwrap();
    assert_eq!(save_override(&path, &a).unwrap(), None);
    let text = std::fs::read_to_string(&path).unwrap() + "# a person's note\n";
    std::fs::write(&path, text).unwrap();
    let b = Override::new("2550q", "2026-q2", date("2026-07-31"), "RMC 88-2026").unwrap();
    assert_eq!(b.form, "2550Q");
    assert_eq!(b.period, "2026-Q2");
    save_override(&path, &b).unwrap();
    let a2 = Override::new("1601-C", "2026-07", date("2026-08-28"), "RR 100-2026").unwrap();
    assert_eq!(save_override(&path, &a2).unwrap(), Some(a));
    let loaded = Overrides::load(&path).unwrap();
    assert_eq!(loaded.entries(), [a2, b]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# a person's note"), "{text}");
    assert!(
        !dir.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp")),
        "no temp file left"
    );
}

#[test]
fn a_bad_override_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overrides.toml");
    let bad = "[[override]]\nform = \"1601-C\"\nperiod = \"2026-Q3\"\ndue = \"2026-08-24\"\nreason = \"x\"\n";
    std::fs::write(&path, bad).unwrap();
    let o = Override::new("1601-C", "2026-07", date("2026-08-24"), "RR 99-2026").unwrap();
    let err = save_override(&path, &o).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:3:10: field `override.period`: \"2026-Q3\" does not fit the form; allowed: a month, YYYY-MM (2026-03)",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
    let err = Override::new("2551M", "2026-07", date("2026-08-24"), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("form 2551M has no deadline: abolished"),
        "{err}"
    );
    let err = Override::new("1601-C", "2026-07", date("2026-08-24"), "  ")
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `reason`: empty"), "{err}");
}

#[test]
fn ics_is_rfc_5545_with_stable_uids() {
    let p = profile();
    let d = calendar(&p, 2026, &Holidays::builtin(), &Overrides::none()).unwrap();
    let ics = to_ics(&d, &p, "2026-12-01T08:30:00Z".parse().unwrap());
    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    assert!(
        !ics.replace("\r\n", "").contains('\n'),
        "every line ends in CRLF"
    );
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    let unfolded = ics.replace("\r\n ", "");
    let lines: Vec<&str> = unfolded.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[..2], ["BEGIN:VCALENDAR", "VERSION:2.0"]);
    assert!(lines.iter().any(|l| l.starts_with("PRODID:")));
    let events: Vec<&[&str]> = lines
        .split(|l| *l == "BEGIN:VEVENT")
        .skip(1)
        .map(|chunk| &chunk[..chunk.iter().position(|l| *l == "END:VEVENT").unwrap()])
        .collect();
    assert_eq!(events.len(), d.len());
    let mut uids = Vec::new();
    for (event, deadline) in events.iter().zip(&d) {
        let field = |name: &str| {
            event
                .iter()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {event:?}"))
        };
        assert_eq!(field("DTSTAMP:"), "20261201T083000Z");
        let start = field("DTSTART;VALUE=DATE:");
        let end = field("DTEND;VALUE=DATE:");
        assert_eq!(start, deadline.due_date.format("%Y%m%d").to_string());
        assert_eq!(
            end,
            (deadline.due_date + chrono::Days::new(1))
                .format("%Y%m%d")
                .to_string()
        );
        assert!(
            field("SUMMARY:").starts_with(&format!("BIR {} {}", deadline.form, deadline.period))
        );
        uids.push(field("UID:").to_string());
    }
    let q3 = events
        .iter()
        .find(|e| e.contains(&"UID:1601-EQ.2026-Q3.123456789000@plane-bir"))
        .unwrap();
    let description = q3.iter().find(|l| l.starts_with("DESCRIPTION:")).unwrap();
    assert!(
        description.contains("Saturday\\, Sunday") || description.contains("Sunday\\, All Saints"),
        "{description}"
    );
    assert!(
        description.contains("\\n"),
        "newlines escaped: {description}"
    );
    let mut unique = uids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), uids.len(), "one UID per form and period");
    // A later export keeps the UIDs (so a re-import updates) and raises SEQUENCE.
    let later = to_ics(&d, &p, "2026-12-02T08:30:00Z".parse().unwrap());
    let later_uids: Vec<&str> = later
        .replace("\r\n ", "")
        .lines()
        .filter_map(|l| l.strip_prefix("UID:"))
        .map(|s| s.trim_end().to_string())
        .map(|s| Box::leak(s.into_boxed_str()) as &str)
        .collect();
    assert_eq!(later_uids, uids);
    let seq = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("SEQUENCE:"))
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    assert!(seq(&later) > seq(&ics));
}

#[test]
fn csv_quotes_what_needs_quoting() {
    let mut overrides = Overrides::none();
    overrides.insert(
        Override::new(
            "2550Q",
            "2026-Q1",
            date("2026-05-04"),
            "RMC 5-2026, \"system downtime\"",
        )
        .unwrap(),
    );
    let d = calendar(&profile(), 2026, &Holidays::builtin(), &overrides).unwrap();
    let csv = to_csv(&d);
    let mut lines = csv.split("\r\n");
    assert_eq!(lines.next().unwrap(), plane_bir::csv::CSV_COLUMNS.join(","));
    let row = csv
        .split("\r\n")
        .find(|l| l.starts_with("2550Q,2026-Q1,"))
        .unwrap();
    assert!(
        row.ends_with(",\"RMC 5-2026, \"\"system downtime\"\"\",2026-04-27,false,"),
        "{row}"
    );
    assert_eq!(
        csv.split("\r\n").filter(|l| !l.is_empty()).count(),
        d.len() + 1
    );
}

/// An override for a period the form never has (0619-E's quarter-end months, 1702Q's
/// fourth quarter) would be stored and never apply: it is refused, saying which periods
/// the form has, in the command and in a file.
#[test]
fn an_override_for_a_period_the_form_does_not_have_is_refused() {
    let err = Override::new("0619-E", "2026-03", date("2026-04-20"), "RMC 1-2026")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "period \"2026-03\" does not fit form 0619-E: expected a month, YYYY-MM, other than months 3, 6, 9, 12 (the form has no return for them)"
    );
    let err = Override::new("1702Q", "2026-q4", date("2027-03-20"), "RMC 1-2026")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "period \"2026-q4\" does not fit form 1702Q: expected a quarter, YYYY-Qn, of quarters 1, 2, 3 (the form has no return for the others)"
    );
    let err = Overrides::parse(
        "[[override]]\nform = \"0619-F\"\nperiod = \"2026-12\"\ndue = \"2027-01-20\"\nreason = \"x\"\n",
        "o.toml",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "o.toml:3:10: field `override.period`: \"2026-12\" does not fit the form; allowed: a month, YYYY-MM, other than months 3, 6, 9, 12 (the form has no return for them)"
    );
    // The periods the form has still pass.
    Override::new("0619-E", "2026-04", date("2026-05-20"), "RMC 1-2026").unwrap();
    Override::new("1702Q", "2026-Q3", date("2026-12-20"), "RMC 1-2026").unwrap();
}
