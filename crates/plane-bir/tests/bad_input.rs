//! Bad input gets a precise error: the file, the line and column, the field, and what is allowed.
#![allow(clippy::unwrap_used)]

use plane_bir::{Holidays, Overrides, Profile, calendar, deadlines_between};

const ALLOWED_FORMS: &str = "1601-C, 1604-C, 2316, 0619-E, 1601-EQ, 2307, 1604-E, 0619-F, 1601-FQ, 1604-F, 1602Q, 1603Q, 1600-VT, 1600-PT, 2550Q, SLSP, 2551Q, 2000, 1702Q, 1702-RT, 1702-EX, 1702-MX, 1701Q, 1701A, 1701, 1700";

fn load(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let err = Profile::load(&path).unwrap_err().to_string();
    (path.display().to_string(), err)
}

const HEAD: &str =
    "name = \"Bad Example Inc.\"\ntin = \"123-456-789-000\"\ntaxpayer = \"corporation\"\n";

#[test]
fn an_unknown_form() {
    let (file, err) = load(&format!("{HEAD}forms = [\"1601-C\", \"1601-X\"]\n"));
    assert_eq!(
        err,
        format!("{file}:4:20: field `forms[1]`: unknown form \"1601-X\"; allowed: {ALLOWED_FORMS}")
    );
    let (file, err) = load(&format!(
        "{HEAD}[applies]\nemployer = true\nextra_forms = [\"0605\"]\n"
    ));
    assert_eq!(
        err,
        format!(
            "{file}:6:16: field `applies.extra_forms[0]`: form 0605 has no deadline: the annual registration fee was abolished effective Jan 22, 2024 by the EOPT Act (RA 11976; RMC 14-2024); allowed: {ALLOWED_FORMS}"
        )
    );
}

#[test]
fn a_bad_tin() {
    let (file, err) = load("name = \"x\"\ntin = \"123-456-78-000\"\ntaxpayer = \"corporation\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:2:7: field `tin`: \"123-456-78-000\" is not a TIN; allowed: 9 digits and a 3 to 5 digit branch code, dashes optional (123-456-789-000, 123456789000, 123-456-789-00000)"
        )
    );
}

#[test]
fn a_group_without_efps() {
    let (file, err) = load(&format!("{HEAD}efps_group = \"C\"\n"));
    assert_eq!(
        err,
        format!(
            "{file}:4:14: field `efps_group`: efps_group = \"C\" is set but efps is false: only eFPS filers have a group; allowed: efps = true with efps_group = \"A\"..\"E\", or no efps_group"
        )
    );
}

#[test]
fn an_unknown_field_or_value_names_the_allowed_ones() {
    let (file, err) = load(&format!("{HEAD}taxpayer_kind = \"x\"\n"));
    assert!(err.starts_with(&format!("{file}:4:1: field `taxpayer_kind`: unknown field `taxpayer_kind`, expected one of `name`, `tin`, `taxpayer`")), "{err}");
    let (file, err) = load("name = \"x\"\ntin = \"123456789000\"\ntaxpayer = \"company\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:3:12: field `taxpayer`: unknown variant `company`, expected `corporation` or `individual`"
        )
    );
    let (file, err) = load("name = \"x\"\ntaxpayer = \"individual\"\n");
    assert!(
        err.starts_with(&format!("{file}:1:1: missing field `tin`")),
        "{err}"
    );
    let (file, err) = load(
        "name = \"x\"\ntin = \"123456789000\"\ntaxpayer = \"individual\"\nyear_end_month = 6\n",
    );
    assert!(
        err.starts_with(&format!(
            "{file}:4:18: field `year_end_month`: an individual's taxable year is the calendar year"
        )),
        "{err}"
    );
}

#[test]
fn a_range_that_is_backwards_or_too_wide() {
    let p = Profile::parse(&format!("{HEAD}forms = [\"1601-C\"]\n"), "p.toml").unwrap();
    let day = |s: &str| s.parse().unwrap();
    let h = Holidays::builtin();
    let err = deadlines_between(
        &p,
        day("2026-12-31"),
        day("2026-01-01"),
        &h,
        &Overrides::none(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "the calendar request: field `from, to`: the range starts (2026-12-31) after it ends (2026-01-01); allowed: a start on or before the end"
    );
    let err = deadlines_between(
        &p,
        day("2026-01-01"),
        day("2050-01-01"),
        &h,
        &Overrides::none(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("spans more than 20 years; allowed: at most 20 years"),
        "{err}"
    );
    // One day is a range.
    let one = deadlines_between(
        &p,
        day("2026-02-10"),
        day("2026-02-10"),
        &h,
        &Overrides::none(),
    )
    .unwrap();
    assert_eq!(one.len(), 1);
}

#[test]
fn a_missing_file_is_named() {
    let err = Profile::load(std::path::Path::new("/nonexistent/profile.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read /nonexistent/profile.toml: "),
        "{err}"
    );
}

#[test]
fn a_year_outside_the_calendar_range_is_an_error_not_a_panic() {
    let profile = Profile::whole_catalog();
    for year in [i32::MAX, i32::MIN, 0, 1900, 9999, 262_143] {
        let err = calendar(&profile, year, &Holidays::builtin(), &Overrides::none())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "the calendar request: field `year`: {year} is outside the years a calendar covers; allowed: 1901-9998"
            )
        );
    }
}
