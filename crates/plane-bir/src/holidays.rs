//! Philippine national holidays, as per-year data, and the law's days beyond it.
//!
//! The compiled-in data (`data/holidays.toml`) covers 2025 to 2028; see that file for its
//! sources. Each year says whether it is `proclaimed` or `provisional` (2027: derived
//! from the rules; 2028: not proclaimed yet, computed from the law), and names its
//! proclamation where there is one. A holiday file of the same shape adds years or days,
//! or with `replace = true` replaces a year:
//!
//! ```toml
//! [[year]]
//! year = 2028
//! status = "proclaimed"          # the default for a year a file brings
//! proclamation = "Proc. No. ... s. 2027"
//! replace = true
//! days = [
//!   { date = "2028-01-01", name = "New Year's Day", kind = "regular" },
//! ]
//! ```
//!
//! A year with no data is never refused: its holidays are the ones the law fixes
//! ([`crate::holiday_law`]), and the year is provisional. Every deadline
//! whose date relies on a provisional year (or on an estimated day) says so
//! ([`Deadline::provisional`](crate::Deadline::provisional)).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{Error, Place, Result};
use crate::holiday_law::{self, fixed_by_law};

const HOLIDAYS_TOML: &str = include_str!("../data/holidays.toml");

static BUILTIN: LazyLock<Holidays> = LazyLock::new(|| {
    let mut h = Holidays::empty();
    h.merge_str(HOLIDAYS_TOML, "plane-bir/data/holidays.toml")
        .expect("the compiled-in data/holidays.toml is valid (checked by holidays tests)");
    h
});

/// What kind of day a holiday is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HolidayKind {
    /// A regular holiday: moves deadlines.
    Regular,
    /// A special (non-working) day: moves deadlines too.
    SpecialNonWorking,
    /// A special working day: a business day, listed for reference only.
    SpecialWorking,
}

impl HolidayKind {
    /// The words used in output.
    pub fn describe(self) -> &'static str {
        match self {
            HolidayKind::Regular => "regular holiday",
            HolidayKind::SpecialNonWorking => "special non-working day",
            HolidayKind::SpecialWorking => "special working day",
        }
    }

    /// Whether a deadline on this day moves to the next business day.
    pub fn moves_deadlines(self) -> bool {
        self != HolidayKind::SpecialWorking
    }
}

/// One holiday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holiday {
    /// The day.
    pub date: NaiveDate,
    /// Its name.
    pub name: String,
    /// Regular, special non-working or special working.
    pub kind: HolidayKind,
    /// This day is an estimate (an Eid not yet proclaimed): it still moves deadlines, and
    /// each move it causes is provisional.
    pub provisional: bool,
}

/// Whether a year's holidays are proclaimed, or may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum YearStatus {
    /// Transcribed from the year's proclamations.
    Proclaimed,
    /// Derived from rules or not complete (`partial` is read as this): a deadline that
    /// relies on the year is provisional.
    #[serde(alias = "partial")]
    Provisional,
}

impl YearStatus {
    /// `proclaimed` or `provisional`.
    pub fn as_str(self) -> &'static str {
        match self {
            YearStatus::Proclaimed => "proclaimed",
            YearStatus::Provisional => "provisional",
        }
    }

    /// Whether deadlines relying on the year are provisional.
    pub fn is_provisional(self) -> bool {
        self == YearStatus::Provisional
    }
}

/// One year's holidays and where they come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HolidayYear {
    /// The year.
    pub year: i32,
    /// Proclaimed or provisional.
    pub status: YearStatus,
    /// The proclamation that lists the year (`Proc. 1006 s. 2025`), where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proclamation: Option<String>,
    /// Where the dates come from.
    pub source: String,
    /// What is incomplete or uncertain.
    pub note: Option<String>,
    /// Why the year is provisional, in a sentence (with `status = provisional`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisional_reason: Option<String>,
    /// The days, in date order.
    pub days: Vec<Holiday>,
}

impl HolidayYear {
    /// Why deadlines relying on this year are provisional; `None` when it is proclaimed.
    pub fn why_provisional(&self) -> Option<String> {
        self.status.is_provisional().then(|| {
            self.provisional_reason
                .clone()
                .unwrap_or_else(|| format!("the {} holidays are not proclaimed yet", self.year))
        })
    }
}

/// Holidays for a set of years.
#[derive(Debug, Clone, Default)]
pub struct Holidays {
    years: BTreeMap<i32, HolidayYear>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    year: Vec<RawYear>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    year: Spanned<i32>,
    #[serde(default)]
    replace: bool,
    status: Option<YearStatus>,
    proclamation: Option<String>,
    source: Option<String>,
    note: Option<String>,
    provisional_reason: Option<String>,
    #[serde(default)]
    days: Vec<RawDay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDay {
    date: Spanned<String>,
    name: String,
    kind: HolidayKind,
    #[serde(default)]
    provisional: bool,
}

impl Holidays {
    /// No years at all.
    pub fn empty() -> Self {
        Holidays::default()
    }

    /// The compiled-in years (2025 to 2028).
    ///
    /// ```
    /// let h = plane_bir::Holidays::builtin();
    /// assert_eq!(h.years(), [2025, 2026, 2027, 2028]);
    /// let day: chrono::NaiveDate = "2026-11-30".parse().unwrap();
    /// assert_eq!(h.get(day).unwrap().name, "Bonifacio Day");
    /// // Beyond the data: the law's days, provisional.
    /// let day: chrono::NaiveDate = "2031-11-30".parse().unwrap();
    /// assert_eq!(h.get(day).unwrap().name, "Bonifacio Day");
    /// assert!(h.year(2031).status.is_provisional());
    /// ```
    pub fn builtin() -> Self {
        BUILTIN.clone()
    }

    /// Adds a holiday file: new years are added, days of an existing year are added (a day
    /// on a date already listed replaces it), and a year with `replace = true` replaces the
    /// year wholesale.
    pub fn merge_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.merge_str(&text, &path.display().to_string())
    }

    /// As [`merge_file`](Self::merge_file), from text; `file` names it in errors.
    ///
    /// ```
    /// let mut h = plane_bir::Holidays::builtin();
    /// h.merge_str(r#"
    /// [[year]]
    /// year = 2028
    /// replace = true
    /// days = [{ date = "2028-01-01", name = "New Year's Day", kind = "regular" }]
    /// "#, "mine.toml").unwrap();
    /// assert_eq!(h.years(), [2025, 2026, 2027, 2028]);
    /// assert!(!h.year(2028).status.is_provisional(), "a file's year is proclaimed unless it says not");
    ///
    /// let err = h.merge_str("[[year]]\nyear = 2028\ndays = [{ date = \"2029-01-01\", name = \"x\", kind = \"regular\" }]\n", "bad.toml");
    /// assert_eq!(err.unwrap_err().to_string(),
    ///     "bad.toml:3:18: field `year.days[0].date`: 2029-01-01 is not in year 2028; allowed: dates of 2028, YYYY-MM-DD");
    /// ```
    pub fn merge_str(&mut self, text: &str, file: &str) -> Result<()> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| crate::error::syntax(file, text, &e))?;
        let mut parsed = Vec::new();
        for mut y in raw.year {
            let year = *y.year.get_ref();
            if !(1900..=9999).contains(&year) {
                return Err(Error::Invalid {
                    place: Place::at(file, text, y.year.span()),
                    field: "year.year".into(),
                    problem: format!("{year} is not a year"),
                    allowed: "1900-9999".into(),
                });
            }
            let mut days: BTreeMap<NaiveDate, Holiday> = BTreeMap::new();
            for (i, d) in std::mem::take(&mut y.days).into_iter().enumerate() {
                let field = format!("year.days[{i}].date");
                let date: NaiveDate =
                    d.date
                        .get_ref()
                        .trim()
                        .parse()
                        .map_err(|_| Error::Invalid {
                            place: Place::at(file, text, d.date.span()),
                            field: field.clone(),
                            problem: format!("{:?} is not a date", d.date.get_ref()),
                            allowed: "YYYY-MM-DD".into(),
                        })?;
                if date.year() != year {
                    return Err(Error::Invalid {
                        place: Place::at(file, text, d.date.span()),
                        field,
                        problem: format!("{date} is not in year {year}"),
                        allowed: format!("dates of {year}, YYYY-MM-DD"),
                    });
                }
                if days.contains_key(&date) {
                    return Err(Error::Invalid {
                        place: Place::at(file, text, d.date.span()),
                        field,
                        problem: format!("{date} is listed twice"),
                        allowed: "each date once per year".into(),
                    });
                }
                days.insert(
                    date,
                    Holiday {
                        date,
                        name: d.name,
                        kind: d.kind,
                        provisional: d.provisional,
                    },
                );
            }
            parsed.push((y, year, days));
        }
        // Only touch self once the whole file is valid.
        for (y, year, days) in parsed {
            let source = y.source.unwrap_or_else(|| file.to_string());
            match self.years.get_mut(&year) {
                Some(existing) if !y.replace => {
                    // Days added to a year keep its status unless the file says otherwise.
                    if let Some(status) = y.status {
                        existing.status = status;
                    }
                    if y.proclamation.is_some() {
                        existing.proclamation = y.proclamation;
                    }
                    if y.provisional_reason.is_some() {
                        existing.provisional_reason = y.provisional_reason;
                    }
                    let note = y.note;
                    let mut merged: BTreeMap<_, _> =
                        existing.days.drain(..).map(|h| (h.date, h)).collect();
                    merged.extend(days);
                    existing.days = merged.into_values().collect();
                    existing.source = format!("{}; {source}", existing.source);
                    if let Some(note) = note {
                        existing.note = Some(match existing.note.take() {
                            Some(old) => format!("{old}\n{note}"),
                            None => note,
                        });
                    }
                }
                _ => {
                    self.years.insert(
                        year,
                        HolidayYear {
                            year,
                            // A file that brings a year brings its real holidays.
                            status: y.status.unwrap_or(YearStatus::Proclaimed),
                            proclamation: y.proclamation,
                            source,
                            note: y.note,
                            provisional_reason: y.provisional_reason,
                            days: days.into_values().collect(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// The years with data, ascending.
    pub fn years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    /// One year: its data, or for a year without data the days the law fixes
    /// ([`fixed_by_law`], provisional).
    pub fn year(&self, year: i32) -> Cow<'_, HolidayYear> {
        match self.years.get(&year) {
            Some(y) => Cow::Borrowed(y),
            None => Cow::Owned(fixed_by_law(year)),
        }
    }

    /// The holiday on `date`, if any (for a year without data, one the law fixes).
    pub fn get(&self, date: NaiveDate) -> Option<Cow<'_, Holiday>> {
        match self.years.get(&date.year()) {
            Some(y) => y.days.iter().find(|h| h.date == date).map(Cow::Borrowed),
            None => holiday_law::holiday_on(date).map(|name| {
                Cow::Owned(Holiday {
                    date,
                    name: name.to_owned(),
                    kind: HolidayKind::Regular,
                    provisional: false,
                })
            }),
        }
    }

    /// Why deadlines relying on `year` are provisional (`None` for a proclaimed year).
    ///
    /// ```
    /// let h = plane_bir::Holidays::builtin();
    /// assert_eq!(h.why_provisional(2026), None);
    /// assert!(h.why_provisional(2030).unwrap().contains("RA 9492"));
    /// ```
    pub fn why_provisional(&self, year: i32) -> Option<String> {
        match self.years.get(&year) {
            Some(y) => y.why_provisional(),
            None => Some(holiday_law::reason(year)),
        }
    }

    /// Every listed day (of any kind) in the years given, in date order.
    pub fn all(&self) -> impl Iterator<Item = &Holiday> {
        self.years.values().flat_map(|y| y.days.iter())
    }
}

/// A day that moved a deadline, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The day that was not a business day.
    pub date: NaiveDate,
    /// `Saturday`, `Sunday`, `Bonifacio Day (regular holiday)`, or both.
    pub why: String,
    /// True when a provisional holiday caused it (an estimated day, or a day of a year
    /// whose holidays are not proclaimed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

/// Moves `date` forward, a day at a time, until it is neither a Saturday, a Sunday nor a
/// holiday that moves deadlines (RMC 65-2016); returns the business day and every day skipped.
///
/// ```
/// use plane_bir::{roll_forward, Holidays};
/// let h = Holidays::builtin();
/// // Sat 2026-11-28 -> Sun 29 -> Mon 30 is Bonifacio Day -> Tue 2026-12-01.
/// let (day, moves) = roll_forward("2026-11-28".parse().unwrap(), &h).unwrap();
/// assert_eq!(day.to_string(), "2026-12-01");
/// let why: Vec<_> = moves.iter().map(|m| m.why.as_str()).collect();
/// assert_eq!(why, ["Saturday", "Sunday", "Bonifacio Day (regular holiday)"]);
/// ```
pub fn roll_forward(date: NaiveDate, holidays: &Holidays) -> Result<(NaiveDate, Vec<Move>)> {
    let mut day = date;
    let mut moves = Vec::new();
    for _ in 0..=366 {
        let weekend = match day.weekday() {
            Weekday::Sat => Some("Saturday"),
            Weekday::Sun => Some("Sunday"),
            _ => None,
        };
        let holiday = holidays.get(day).filter(|h| h.kind.moves_deadlines());
        let provisional = holiday
            .as_ref()
            .is_some_and(|h| h.provisional || holidays.why_provisional(day.year()).is_some());
        let why = match (weekend, holiday) {
            (None, None) => return Ok((day, moves)),
            (Some(w), None) => w.to_string(),
            (w, Some(h)) => {
                let h_text = format!(
                    "{} ({}{})",
                    h.name,
                    h.kind.describe(),
                    if provisional { ", provisional" } else { "" }
                );
                match w {
                    Some(w) => format!("{w}, {h_text}"),
                    None => h_text,
                }
            }
        };
        moves.push(Move {
            date: day,
            why,
            provisional,
        });
        day = day.succ_opt().ok_or(Error::NoBusinessDay { from: date })?;
    }
    Err(Error::NoBusinessDay { from: date })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn the_compiled_in_years() {
        let h = Holidays::builtin();
        let y2026 = h.year(2026);
        let moving = y2026
            .days
            .iter()
            .filter(|d| d.kind.moves_deadlines())
            .count();
        // Reference §5: 12 regular + 8 special non-working days in 2026.
        assert_eq!(moving, 20);
        assert_eq!(
            y2026
                .days
                .iter()
                .filter(|d| d.kind == HolidayKind::Regular)
                .count(),
            12
        );
        let statuses: Vec<_> = [2025, 2026, 2027, 2028]
            .map(|y| h.year(y).status.as_str())
            .into();
        assert_eq!(
            statuses,
            ["proclaimed", "proclaimed", "provisional", "provisional"]
        );
        assert_eq!(
            h.year(2026).proclamation.as_deref(),
            Some("Proc. 1006 s. 2025")
        );
        let y2027 = h.year(2027);
        assert!(
            y2027
                .days
                .iter()
                .filter(|d| d.provisional)
                .all(|d| d.name.starts_with("Eid"))
        );
        assert_eq!(y2027.days.iter().filter(|d| d.provisional).count(), 2);
        assert!(
            y2027
                .note
                .as_deref()
                .is_some_and(|n| n.contains("INCOMPLETE"))
        );
        for year in [2027, 2028] {
            let reason = h.why_provisional(year).unwrap_or_default();
            assert!(reason.contains(&year.to_string()), "{year}: {reason}");
        }
    }

    #[test]
    fn the_shipped_2028_is_what_the_law_fixes() {
        let shipped = Holidays::builtin();
        let shipped = shipped.year(2028);
        let law = fixed_by_law(2028);
        let pick = |y: &HolidayYear| -> Vec<(NaiveDate, String, HolidayKind)> {
            y.days
                .iter()
                .map(|d| (d.date, d.name.clone(), d.kind))
                .collect()
        };
        assert_eq!(pick(&shipped), pick(&law));
        // Weekdays checked by hand against a printed 2028 calendar.
        let days: Vec<String> = shipped
            .days
            .iter()
            .map(|d| d.date.format("%a %m-%d").to_string())
            .collect();
        assert_eq!(
            days,
            [
                "Sat 01-01",
                "Sun 04-09",
                "Thu 04-13",
                "Fri 04-14",
                "Mon 05-01",
                "Mon 06-12",
                "Mon 08-28",
                "Thu 11-30",
                "Mon 12-25",
                "Sat 12-30"
            ]
        );
    }

    #[test]
    fn a_year_without_data_is_the_law_and_provisional() {
        let h = Holidays::builtin();
        assert_eq!(
            h.get(d("2029-04-09")).map(|x| x.name.clone()).as_deref(),
            Some("Araw ng Kagitingan")
        );
        assert!(
            h.get(d("2029-08-21")).is_none(),
            "special days are left out"
        );
        // Sat 2029-06-30 -> Sun -> Mon 07-02 is a business day; no holiday moved it.
        let (day, moves) = roll_forward(d("2029-06-30"), &h).expect("rolls");
        assert_eq!(day, d("2029-07-02"));
        assert!(moves.iter().all(|m| !m.provisional));
        // Fri 2029-11-30 is Bonifacio Day by law: provisional move.
        let (day, moves) = roll_forward(d("2029-11-30"), &h).expect("rolls");
        assert_eq!(day, d("2029-12-03"));
        assert_eq!(moves[0].why, "Bonifacio Day (regular holiday, provisional)");
        assert!(moves[0].provisional);
    }

    #[test]
    fn a_file_that_brings_a_year_makes_it_proclaimed() {
        let mut h = Holidays::builtin();
        h.merge_str(
            "[[year]]\nyear = 2028\nreplace = true\nproclamation = \"Proc. 99 s. 2027\"\ndays = [{ date = \"2028-11-27\", name = \"Bonifacio Day\", kind = \"regular\" }]\n",
            "2028.toml",
        )
        .expect("valid");
        let y = h.year(2028);
        assert_eq!(y.status, YearStatus::Proclaimed);
        assert_eq!(y.proclamation.as_deref(), Some("Proc. 99 s. 2027"));
        assert_eq!(h.why_provisional(2028), None);
        // Adding a day without a status keeps the year's.
        let mut h = Holidays::builtin();
        h.merge_str(
            "[[year]]\nyear = 2028\ndays = [{ date = \"2028-06-24\", name = \"Manila Day\", kind = \"special-non-working\" }]\n",
            "local.toml",
        )
        .expect("valid");
        assert!(h.why_provisional(2028).is_some());
        let err = h
            .merge_str("[[year]]\nyear = 2028\nstatus = \"final\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.toml:3:10: field `year.status`: unknown variant `final`"),
            "{err}"
        );
    }

    #[test]
    fn special_working_days_are_business_days() {
        // Wed 2026-02-25 is EDSA day, a special working day.
        let (day, moves) = roll_forward(d("2026-02-25"), &Holidays::builtin()).expect("rolls");
        assert_eq!((day, moves.len()), (d("2026-02-25"), 0));
    }

    #[test]
    fn replace_and_add() {
        let mut h = Holidays::builtin();
        h.merge_str("[[year]]\nyear = 2027\nreplace = true\ndays = [{ date = \"2027-03-10\", name = \"Eid'l Fitr\", kind = \"regular\" }]\n", "u.toml").expect("ok");
        assert_eq!(h.year(2027).days.len(), 1);
        h.merge_str("[[year]]\nyear = 2026\ndays = [{ date = \"2026-06-24\", name = \"Manila Day\", kind = \"special-non-working\" }]\n", "u.toml").expect("ok");
        assert_eq!(
            h.get(d("2026-06-24")).map(|x| x.name.clone()).as_deref(),
            Some("Manila Day")
        );
        assert!(
            h.get(d("2026-11-30")).is_some(),
            "kept the compiled-in days"
        );
    }

    #[test]
    fn a_bad_file_changes_nothing_and_says_where() {
        let mut h = Holidays::builtin();
        let err = h
            .merge_str("[[year]]\nyear = 2028\ndays = [{ date = \"2028-01-01\", name = \"x\", kind = \"holiday\" }]\n", "u.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("u.toml:3:"), "{err}");
        assert!(err.contains("unknown variant `holiday`, expected one of `regular`, `special-non-working`, `special-working`"), "{err}");
        assert_eq!(h.years(), [2025, 2026, 2027, 2028]);
    }
}
