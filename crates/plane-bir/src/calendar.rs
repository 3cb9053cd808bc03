//! The calendar: every deadline of a year for a profile, with the rule that produced each
//! date, every day that moved it, and the override that replaced it if any.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::catalog::{Basis, DueRule, EfpsRule, Form, Frequency, ordinal};
use crate::error::{Error, Result};
use crate::holidays::{Holidays, Move, roll_forward};
use crate::overrides::Overrides;
use crate::period::{Period, add_months, last_of};
use crate::profile::{Filing, Profile};

/// One deadline: a form, a period, and the day it must be filed (and paid).
///
/// Serialised (JSON) with the fields `form`, `form_name`, `period` (`2026-03`, `2026-Q1`,
/// `2026`), `months` (quarters only), `period_start`, `period_end`, `due_date` (filing),
/// `payment_date` (only where it differs), `rule`, `rule_date`, `moved_by`,
/// `payment_rule_date` and `payment_moved_by` (with `payment_date`), `override`,
/// `provisional` (always) and `provisional_reason` (when provisional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// The form, as the BIR writes it.
    pub form: String,
    /// The form's name.
    pub form_name: String,
    /// The period the return covers.
    #[serde(serialize_with = "as_display")]
    pub period: Period,
    /// For quarters: the months covered (`2025-07` ... for a fiscal quarter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub months: Vec<String>,
    /// First day of the period.
    pub period_start: NaiveDate,
    /// Last day of the period.
    pub period_end: NaiveDate,
    /// The filing deadline: the override's date if there is one.
    pub due_date: NaiveDate,
    /// The payment deadline, only where it differs from `due_date` (eFPS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_date: Option<NaiveDate>,
    /// The rule, in words.
    pub rule: String,
    /// The date the rule gives, before the weekend and holiday roll-forward.
    pub rule_date: NaiveDate,
    /// Each day that moved the computed filing date, in order (empty if none).
    pub moved_by: Vec<Move>,
    /// The payment rule's date, with `payment_date`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_rule_date: Option<NaiveDate>,
    /// The days that moved the payment date, with `payment_date`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_moved_by: Option<Vec<Move>>,
    /// The override that replaced the computed dates, if any.
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub overridden: Option<AppliedOverride>,
    /// The date relies on holidays that are not proclaimed yet (a provisional year, or an
    /// estimated day): it may still move when they are. Never set with an override, whose
    /// date is a person's.
    pub provisional: bool,
    /// Why, with `provisional`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisional_reason: Option<String>,
}

/// An override applied to a deadline: what it replaced and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedOverride {
    /// The reason or issuance (`RMC 12-2026`).
    pub reason: String,
    /// The filing date the rules gave.
    pub computed_due_date: NaiveDate,
    /// The payment date the rules gave, where it differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computed_payment_date: Option<NaiveDate>,
}

fn as_display<S: serde::Serializer>(v: &Period, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The periods of `form` that a calendar for `year` lists: months and quarters labelled
/// `year`, and taxable years labelled `year` (annual returns due in `year` are added by
/// [`calendar`], which knows their dates).
pub fn periods(profile: &Profile, form: &Form, year: i32) -> Result<Vec<Period>> {
    let schedule = form.schedule()?;
    let year_end_month = match schedule.basis {
        Basis::Calendar => 12,
        Basis::TaxableYear => profile.year_end_month,
    };
    Ok(match schedule.frequency {
        Frequency::Monthly => (1..=12)
            .filter(|m| !schedule.skip_months.contains(m))
            .map(|month| Period::Month { year, month })
            .collect(),
        Frequency::Quarterly => schedule
            .quarters
            .iter()
            .map(|&quarter| Period::Quarter {
                year,
                quarter,
                year_end_month,
            })
            .collect(),
        Frequency::Annual => vec![Period::Year {
            year,
            year_end_month,
        }],
    })
}

/// The period of `form` that `label` names (`2026-03`, `2026-Q1`, `2026`), in the
/// profile's taxable year where the form follows it.
///
/// ```
/// use plane_bir::{Catalog, Profile, calendar::period_of};
/// let profile = Profile::parse(
///     include_str!("../profiles/fiscal-june-corporation.toml"), "fiscal.toml")?;
/// let form = Catalog::builtin().get("1702Q").unwrap();
/// let q1 = period_of(&profile, form, "2027-q1")?;
/// assert_eq!(q1.months(), ["2026-07", "2026-08", "2026-09"]);
/// assert!(period_of(&profile, form, "2027-Q4").is_err(), "no 1702Q for the fourth quarter");
/// # Ok::<(), plane_bir::Error>(())
/// ```
pub fn period_of(profile: &Profile, form: &Form, label: &str) -> Result<Period> {
    let schedule = form.schedule()?;
    let bad = |expected: String| Error::BadPeriod {
        form: form.code.clone(),
        period: label.to_owned(),
        expected,
    };
    let normal = Period::check_label(label, schedule.frequency).map_err(|e| bad(e.into()))?;
    let year: i32 = normal
        .get(..4)
        .and_then(|y| y.parse().ok())
        .ok_or_else(|| bad("a year of four digits".into()))?;
    periods(profile, form, year)?
        .into_iter()
        .find(|p| p.to_string() == normal)
        .ok_or_else(|| bad(format!("one of the periods {} files", form.code)))
}

/// The years [`calendar`] accepts (a holiday file's years are 1900-9999; a calendar also
/// needs the year before, for annual returns, and the one after, for due dates).
pub const CALENDAR_YEARS: std::ops::RangeInclusive<i32> = 1901..=9998;

/// Every deadline of `year` for `profile`, sorted by filing date.
///
/// `year` selects the deadlines whose period lies in that year (months of the year,
/// quarters and taxable years labelled with it: a fiscal year is labelled by the year it
/// ends in), plus the annual returns that fall due in that year (the previous taxable year's).
///
/// ```
/// use plane_bir::{calendar, Holidays, Overrides, Profile};
/// let profile = Profile::parse(r#"
/// name = "Example Corp."
/// tin = "123-456-789-000"
/// taxpayer = "corporation"
/// forms = ["1601-C"]
/// "#, "example.toml").unwrap();
/// let deadlines = calendar(&profile, 2026, &Holidays::builtin(), &Overrides::none()).unwrap();
/// assert_eq!(deadlines.len(), 12);
/// // January's return: the 10th of February 2026 is a Tuesday.
/// assert_eq!(deadlines[0].due_date.to_string(), "2026-02-10");
/// // December's return is due Jan 15, 2027 (a Friday).
/// assert_eq!(deadlines[11].due_date.to_string(), "2027-01-15");
/// ```
pub fn calendar(
    profile: &Profile,
    year: i32,
    holidays: &Holidays,
    overrides: &Overrides,
) -> Result<Vec<Deadline>> {
    // The years a holiday file can hold; outside them the date arithmetic would overflow
    // (a panic) or wrap to nonsense dates before the holiday check could say so.
    if !CALENDAR_YEARS.contains(&year) {
        return Err(Error::Invalid {
            place: crate::error::Place {
                file: "the calendar request".into(),
                location: None,
            },
            field: "year".into(),
            problem: format!("{year} is outside the years a calendar covers"),
            allowed: format!("{}-{}", CALENDAR_YEARS.start(), CALENDAR_YEARS.end()),
        });
    }
    let mut out = Vec::new();
    for form in &profile.forms {
        for period in periods(profile, form, year)? {
            out.push(deadline(profile, form, period, holidays, overrides)?);
        }
        if form.schedule()?.frequency == Frequency::Annual {
            for period in periods(profile, form, year - 1)? {
                let d = deadline(profile, form, period, holidays, overrides)?;
                if d.due_date.year() == year {
                    out.push(d);
                }
            }
        }
    }
    sort(profile, &mut out);
    Ok(out)
}

/// By filing date, then the profile's form order, then period.
pub(crate) fn sort(profile: &Profile, deadlines: &mut [Deadline]) {
    let order = |code: &str| profile.forms.iter().position(|f| f.code == code);
    deadlines.sort_by(|a, b| {
        (a.due_date, order(&a.form), a.period).cmp(&(b.due_date, order(&b.form), b.period))
    });
}

/// The longest range [`deadlines_between`] takes, in years.
pub const MAX_RANGE_YEARS: i32 = 20;

/// Every deadline that falls due from `from` to `to` (both days included), whatever
/// period or fiscal year it belongs to, sorted by filing date.
///
/// A fiscal year's returns can fall due in the calendar year before the one that labels
/// them: a June year end's `2027-Q1` (July to September 2026) is due in 2026, and a range
/// over 2026 lists it.
///
/// ```
/// use plane_bir::{deadlines_between, Holidays, Overrides, Profile};
/// let profile = Profile::parse(
///     include_str!("../profiles/fiscal-june-corporation.toml"), "fiscal.toml")?;
/// let day = |s: &str| s.parse().unwrap();
/// let due = deadlines_between(&profile, day("2026-12-01"), day("2026-12-31"),
///     &Holidays::builtin(), &Overrides::none())?;
/// let first = &due[0];
/// assert_eq!((first.form.as_str(), first.period.to_string(), first.due_date.to_string()),
///            ("1702Q", "2027-Q1".to_string(), "2026-12-01".to_string()));
/// # Ok::<(), plane_bir::Error>(())
/// ```
pub fn deadlines_between(
    profile: &Profile,
    from: NaiveDate,
    to: NaiveDate,
    holidays: &Holidays,
    overrides: &Overrides,
) -> Result<Vec<Deadline>> {
    let invalid = |problem: String, allowed: String| Error::Invalid {
        place: crate::error::Place {
            file: "the calendar request".into(),
            location: None,
        },
        field: "from, to".into(),
        problem,
        allowed,
    };
    if from > to {
        return Err(invalid(
            format!("the range starts ({from}) after it ends ({to})"),
            "a start on or before the end".into(),
        ));
    }
    for date in [from, to] {
        if !CALENDAR_YEARS.contains(&date.year()) {
            return Err(invalid(
                format!("{date} is outside the years a calendar covers"),
                format!("{}-{}", CALENDAR_YEARS.start(), CALENDAR_YEARS.end()),
            ));
        }
    }
    if to.year() - from.year() > MAX_RANGE_YEARS {
        return Err(invalid(
            format!("{from} to {to} spans more than {MAX_RANGE_YEARS} years"),
            format!("at most {MAX_RANGE_YEARS} years"),
        ));
    }
    // A period's label year is at most one after its due year (fiscal quarters) and at
    // most one before it (annual returns, December's monthly ones).
    let mut out = Vec::new();
    for form in &profile.forms {
        for label_year in from.year() - 1..=to.year() + 1 {
            for period in periods(profile, form, label_year)? {
                let d = deadline(profile, form, period, holidays, overrides)?;
                if (from..=to).contains(&d.due_date) {
                    out.push(d);
                }
            }
        }
    }
    sort(profile, &mut out);
    Ok(out)
}

/// The deadline of one form for one period.
pub fn deadline(
    profile: &Profile,
    form: &Form,
    period: Period,
    holidays: &Holidays,
    overrides: &Overrides,
) -> Result<Deadline> {
    let schedule = form.schedule()?;
    let end = period.last_day();
    let staggered = match (profile.filing, schedule.efps, schedule.payment_day) {
        (Filing::Efps(group), EfpsRule::Staggered, Some(pay)) => Some((group, pay)),
        _ => None,
    };
    let (rule, rule_date, payment_rule_date) = match staggered {
        Some((group, pay_day)) => {
            let (y, m) = add_months(
                end.year(),
                end.month(),
                rule_months_after(&schedule.due) as i32,
            );
            let day = |d: u32| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_else(|| last_of(y, m));
            let text = format!(
                "eFPS group {group:?}: filing on the {} and payment on the {} of the month after the period",
                ordinal(group.filing_day()),
                ordinal(pay_day)
            );
            (text, day(group.filing_day()), Some(day(pay_day)))
        }
        None => {
            let (rule, prefix) = match schedule.december {
                Some(dec) if end.month() == 12 => (dec, "December's return: "),
                _ => (schedule.due, ""),
            };
            (
                format!("{prefix}{}", rule.describe()),
                rule_date(&rule, end),
                None,
            )
        }
    };
    let (due_date, moved_by) = roll_forward(rule_date, holidays)?;
    let payment = match payment_rule_date {
        Some(p) => Some((p, roll_forward(p, holidays)?)),
        None => None,
    };
    let mut reasons = Vec::new();
    provisional_reasons(holidays, rule_date, due_date, &moved_by, &mut reasons);
    if let Some((p, (date, moves))) = &payment {
        provisional_reasons(holidays, *p, *date, moves, &mut reasons);
    }
    let payment = payment.filter(|(_, (date, _))| *date != due_date);
    let mut d = Deadline {
        form: form.code.clone(),
        form_name: form.name.clone(),
        period,
        months: if matches!(period, Period::Quarter { .. }) {
            period.months()
        } else {
            Vec::new()
        },
        period_start: period.first_day(),
        period_end: end,
        due_date,
        payment_date: payment.as_ref().map(|(_, (date, _))| *date),
        rule,
        rule_date,
        moved_by,
        payment_rule_date: payment.as_ref().map(|(rule, _)| *rule),
        payment_moved_by: payment.map(|(_, (_, moves))| moves),
        overridden: None,
        provisional: !reasons.is_empty(),
        provisional_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
    };
    if let Some(o) = overrides.get(&form.code, &period.to_string()) {
        d.overridden = Some(AppliedOverride {
            reason: o.reason.clone(),
            computed_due_date: d.due_date,
            computed_payment_date: d.payment_date,
        });
        d.due_date = o.due;
        d.payment_date = o.payment.filter(|p| *p != o.due);
        d.provisional = false;
        d.provisional_reason = None;
    }
    Ok(d)
}

/// Why a date found by rolling `from` forward to `to` may still move: each year it
/// looked at that is provisional, and each estimated day that moved it (once each).
fn provisional_reasons(
    holidays: &Holidays,
    from: NaiveDate,
    to: NaiveDate,
    moves: &[Move],
    out: &mut Vec<String>,
) {
    let mut add = |reason: String| {
        if !out.contains(&reason) {
            out.push(reason);
        }
    };
    for year in from.year()..=to.year() {
        if let Some(reason) = holidays.why_provisional(year) {
            add(reason);
        }
    }
    for m in moves.iter().filter(|m| m.provisional) {
        if holidays.why_provisional(m.date.year()).is_none() {
            add(format!("{} ({}) is an estimated date", m.date, m.why));
        }
    }
}

fn rule_months_after(rule: &DueRule) -> u32 {
    match *rule {
        DueRule::DayOfMonth { months_after, .. } | DueRule::LastDayOfMonth { months_after } => {
            months_after
        }
        DueRule::DaysAfter { .. } => 1,
    }
}

/// The date a rule gives for a period ending on `end`, before any roll-forward.
///
/// ```
/// use plane_bir::{rule_date, DueRule};
/// let end = "2026-03-31".parse().unwrap();
/// assert_eq!(rule_date(&DueRule::DaysAfter { days: 60 }, end).to_string(), "2026-05-30");
/// assert_eq!(rule_date(&DueRule::LastDayOfMonth { months_after: 1 }, end).to_string(), "2026-04-30");
/// ```
pub fn rule_date(rule: &DueRule, end: NaiveDate) -> NaiveDate {
    match *rule {
        DueRule::DayOfMonth { months_after, day } => {
            let (y, m) = add_months(end.year(), end.month(), months_after as i32);
            NaiveDate::from_ymd_opt(y, m, day).unwrap_or_else(|| last_of(y, m))
        }
        DueRule::LastDayOfMonth { months_after } => {
            let (y, m) = add_months(end.year(), end.month(), months_after as i32);
            last_of(y, m)
        }
        DueRule::DaysAfter { days } => end + chrono::Days::new(u64::from(days)),
    }
}
