//! Properties of every calendar: no deadline falls on a weekend or a known holiday, none
//! is earlier than its rule's date, every one relying on a year that is not proclaimed is
//! provisional (the years beyond the data too), and a range lists every deadline due in it
//! once.
#![allow(clippy::unwrap_used)]

use chrono::{Datelike, Days, NaiveDate, Weekday};
use std::collections::BTreeSet;

use plane_bir::{Catalog, Holidays, Overrides, Profile, calendar, deadlines_between, roll_forward};
use proptest::prelude::*;

fn business_day(date: NaiveDate, h: &Holidays) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        && h.get(date).is_none_or(|d| !d.kind.moves_deadlines())
}

/// The years whose holidays are proclaimed in the compiled-in data.
const PROCLAIMED: [i32; 2] = [2025, 2026];

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
        year in 2024i32..=2040,
        picks in proptest::sample::subsequence(Catalog::builtin().codes_with_deadlines(), 1..8),
    ) {
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
            // Provisional exactly when a day it looked at lies outside the proclaimed
            // years, or an estimated holiday moved it.
            let mut looked_at = vec![(d.rule_date, d.due_date)];
            if let (Some(rule), Some(p)) = (d.payment_rule_date, d.payment_date) {
                looked_at.push((rule, p));
            }
            let unproclaimed = looked_at.iter().any(|(a, b)| {
                (a.year()..=b.year()).any(|y| !PROCLAIMED.contains(&y))
            });
            let estimated = d.moved_by.iter().chain(d.payment_moved_by.iter().flatten()).any(|m| m.provisional);
            prop_assert_eq!(d.provisional, unproclaimed || estimated, "{} {} due {}", d.form, d.period, d.due_date);
            prop_assert_eq!(d.provisional, d.provisional_reason.is_some());
        }
    }

    #[test]
    fn a_range_lists_every_deadline_due_in_it_once(
        year_end_month in 1u32..=12,
        start in 0u64..(365 * 6),
        length in 0u64..800,
        picks in proptest::sample::subsequence(Catalog::builtin().codes_with_deadlines(), 1..10),
    ) {
        let profile = Profile::parse(&profile_text(true, None, year_end_month, &picks), "p.toml").unwrap();
        let h = Holidays::builtin();
        let from = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Days::new(start);
        let to = from + Days::new(length);
        let listed = deadlines_between(&profile, from, to, &h, &Overrides::none()).unwrap();
        // Every year's calendar around the range, each (form, period) once.
        let mut expected = BTreeSet::new();
        for year in from.year() - 2..=to.year() + 2 {
            for d in calendar(&profile, year, &h, &Overrides::none()).unwrap() {
                if (from..=to).contains(&d.due_date) {
                    expected.insert((d.form.clone(), d.period.to_string(), d.due_date));
                }
            }
        }
        let got: Vec<_> = listed.iter().map(|d| (d.form.clone(), d.period.to_string(), d.due_date)).collect();
        let unique: BTreeSet<_> = got.iter().cloned().collect();
        prop_assert_eq!(unique.len(), got.len(), "a deadline listed twice");
        prop_assert_eq!(unique, expected);
        prop_assert!(listed.windows(2).all(|w| w[0].due_date <= w[1].due_date));
    }

    #[test]
    fn roll_forward_lands_on_the_first_business_day(offset in 0u64..(365 * 15)) {
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
