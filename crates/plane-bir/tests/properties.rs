//! Properties of every calendar: no deadline falls on a weekend or a listed holiday, and
//! none is earlier than its rule's date.
#![allow(clippy::unwrap_used)]

use chrono::{Datelike, Days, NaiveDate, Weekday};
use plane_bir::{Catalog, Holidays, Overrides, Profile, calendar, roll_forward};
use proptest::prelude::*;

fn business_day(date: NaiveDate, h: &Holidays) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        && h.get(date)
            .unwrap()
            .is_none_or(|d| !d.kind.moves_deadlines())
}

fn profile_text(
    corporation: bool,
    efps: Option<char>,
    year_end_month: u32,
    forms: &[&str],
) -> String {
    let mut t = String::from("name = \"P\"\ntin = \"123456789000\"\n");
    t += if corporation {
        "taxpayer = \"corporation\"\n"
    } else {
        "taxpayer = \"individual\"\n"
    };
    t += &format!(
        "year_end_month = {}\n",
        if corporation { year_end_month } else { 12 }
    );
    if let Some(g) = efps {
        t += &format!("efps = true\nefps_group = \"{g}\"\n");
    }
    let list: Vec<String> = forms.iter().map(|f| format!("{f:?}")).collect();
    t += &format!("forms = [{}]\n", list.join(", "));
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_deadline_on_a_non_business_day_or_before_its_rule(
        corporation in any::<bool>(),
        efps in proptest::option::of(proptest::sample::select(vec!['A', 'B', 'C', 'D', 'E'])),
        year_end_month in 1u32..=12,
        year in 2025i32..=2026,
        picks in proptest::sample::subsequence(Catalog::builtin().codes_with_deadlines(), 1..8),
    ) {
        // A fiscal year labelled 2025 starts in 2024, which has no holiday data.
        let year_end_month = if year == 2025 { 12 } else { year_end_month };
        let profile = Profile::parse(&profile_text(corporation, efps, year_end_month, &picks), "p.toml").unwrap();
        let h = Holidays::builtin();
        let deadlines = calendar(&profile, year, &h, &Overrides::none()).unwrap();
        prop_assert!(!deadlines.is_empty());
        for d in &deadlines {
            prop_assert!(business_day(d.due_date, &h), "{} {} on {}", d.form, d.period, d.due_date);
            prop_assert!(d.due_date >= d.rule_date, "{} {} before its rule", d.form, d.period);
            // moved_by lists exactly the days from the rule date up to the due date.
            let mut day = d.rule_date;
            for m in &d.moved_by {
                prop_assert_eq!(m.date, day);
                prop_assert!(!business_day(m.date, &h));
                day = day + Days::new(1);
            }
            prop_assert_eq!(day, d.due_date);
            if let Some(p) = d.payment_date {
                prop_assert!(business_day(p, &h));
                prop_assert!(p > d.due_date, "payment after filing");
                prop_assert!(p >= d.payment_rule_date.unwrap());
            }
            prop_assert!(d.period.year() == year || d.due_date.year() == year);
        }
    }

    #[test]
    fn roll_forward_lands_on_the_first_business_day(offset in 0u64..(365 * 3 - 20)) {
        let h = Holidays::builtin();
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Days::new(offset);
        let (day, moves) = roll_forward(start, &h).unwrap();
        prop_assert!(business_day(day, &h));
        prop_assert!(day >= start);
        prop_assert_eq!(moves.len() as i64, (day - start).num_days());
        prop_assert!(moves.iter().all(|m| !business_day(m.date, &h)));
    }
}

#[test]
fn holy_week_chains_four_days() {
    // Thu Apr 2 and Fri Apr 3 regular, Sat Apr 4 special, Sun Apr 5 -> Mon Apr 6, 2026.
    let (day, moves) = roll_forward("2026-04-02".parse().unwrap(), &Holidays::builtin()).unwrap();
    assert_eq!(day.to_string(), "2026-04-06");
    assert_eq!(moves.len(), 4);
    assert_eq!(
        moves[2].why,
        "Saturday, Black Saturday (special non-working day)"
    );
    // Dec 24 (Thu), 25 (Fri), Sat, Sun -> Mon Dec 28; Dec 30 (Wed), 31 (Thu), Jan 1 (Fri) -> Mon Jan 4, 2027.
    let (day, _) = roll_forward("2026-12-24".parse().unwrap(), &Holidays::builtin()).unwrap();
    assert_eq!(day.to_string(), "2026-12-28");
    let (day, moves) = roll_forward("2026-12-30".parse().unwrap(), &Holidays::builtin()).unwrap();
    assert_eq!(
        (day.to_string(), moves.len()),
        ("2027-01-04".to_string(), 5)
    );
    // A provisional (estimated) holiday moves the date and says so.
    let (day, moves) = roll_forward("2027-03-09".parse().unwrap(), &Holidays::builtin()).unwrap();
    assert_eq!(day.to_string(), "2027-03-10");
    assert!(
        moves[0].provisional && moves[0].why.ends_with("(regular holiday, provisional)"),
        "{:?}",
        moves[0]
    );
}
