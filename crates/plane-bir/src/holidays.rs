//! Philippine national holidays, as per-year data.
//!
//! The compiled-in data (`data/holidays.toml`) covers 2025, 2026 and 2027; see that file
//! for its sources and what is incomplete (2027 is derived from the rules and its Eids are
//! provisional estimates). A holiday file of the same shape adds years or days, or with
//! `replace = true` replaces a year:
//!
//! ```toml
//! [[year]]
//! year = 2028
//! source = "Proclamation No. ... s. 2027"
//! days = [
//!   { date = "2028-01-01", name = "New Year's Day", kind = "regular" },
//! ]
//! ```
//!
//! A date in a year with no data is an error ([`Error::NoHolidayData`]), never a silent
//! weekend-only calendar.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{Error, Place, Result};

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
    /// Not yet proclaimed (an estimate): still moves deadlines, flagged in every move.
    pub provisional: bool,
}

/// One year's holidays and where they come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HolidayYear {
    /// The year.
    pub year: i32,
    /// `proclaimed`, `partial`, ... as the file says.
    pub status: String,
    /// Where the dates come from.
    pub source: String,
    /// What is incomplete or uncertain.
    pub note: Option<String>,
    /// The days, in date order.
    pub days: Vec<Holiday>,
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
    status: Option<String>,
    source: Option<String>,
    note: Option<String>,
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

    /// The compiled-in years (2025, 2026, 2027).
    ///
    /// ```
    /// let h = plane_bir::Holidays::builtin();
    /// assert_eq!(h.years(), [2025, 2026, 2027]);
    /// let day: chrono::NaiveDate = "2026-11-30".parse().unwrap();
    /// assert_eq!(h.get(day).unwrap().unwrap().name, "Bonifacio Day");
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
    /// days = [{ date = "2028-01-01", name = "New Year's Day", kind = "regular" }]
    /// "#, "mine.toml").unwrap();
    /// assert_eq!(h.years(), [2025, 2026, 2027, 2028]);
    ///
    /// let err = h.merge_str("[[year]]\nyear = 2028\ndays = [{ date = \"2029-01-01\", name = \"x\", kind = \"regular\" }]\n", "bad.toml");
    /// assert_eq!(err.unwrap_err().to_string(),
    ///     "bad.toml:3:18: field `year.days[0].date`: 2029-01-01 is not in year 2028; allowed: dates of 2028, YYYY-MM-DD");
    /// ```
    pub fn merge_str(&mut self, text: &str, file: &str) -> Result<()> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| crate::error::syntax(file, text, &e))?;
        let mut parsed = Vec::new();
        for y in raw.year {
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
            for (i, d) in y.days.into_iter().enumerate() {
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
            parsed.push((year, y.replace, y.status, y.source, y.note, days));
        }
        // Only touch self once the whole file is valid.
        for (year, replace, status, source, note, days) in parsed {
            let source = source.unwrap_or_else(|| file.to_string());
            match self.years.get_mut(&year) {
                Some(existing) if !replace => {
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
                            status: status.unwrap_or_else(|| "user".into()),
                            source,
                            note,
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

    /// One year, or [`Error::NoHolidayData`].
    pub fn year(&self, year: i32) -> Result<&HolidayYear> {
        self.years.get(&year).ok_or_else(|| Error::NoHolidayData {
            year,
            needed_for: None,
            available: self.years(),
        })
    }

    /// The holiday on `date`, if any; [`Error::NoHolidayData`] if its year has no data.
    pub fn get(&self, date: NaiveDate) -> Result<Option<&Holiday>> {
        Ok(self.year(date.year())?.days.iter().find(|h| h.date == date))
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
    /// True when a provisional (estimated) holiday caused it.
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
        let holiday = holidays.get(day)?.filter(|h| h.kind.moves_deadlines());
        let why = match (weekend, holiday) {
            (None, None) => return Ok((day, moves)),
            (Some(w), None) => w.to_string(),
            (w, Some(h)) => {
                let h_text = format!(
                    "{} ({}{})",
                    h.name,
                    h.kind.describe(),
                    if h.provisional { ", provisional" } else { "" }
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
            provisional: holiday.is_some_and(|h| h.provisional),
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
        let y2026 = h.year(2026).expect("2026");
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
        assert!(
            h.year(2027)
                .expect("2027")
                .days
                .iter()
                .filter(|d| d.provisional)
                .all(|d| d.name.starts_with("Eid"))
        );
        assert_eq!(
            h.year(2027)
                .expect("2027")
                .days
                .iter()
                .filter(|d| d.provisional)
                .count(),
            2
        );
        assert!(
            h.year(2027)
                .expect("2027")
                .note
                .as_deref()
                .is_some_and(|n| n.contains("INCOMPLETE"))
        );
    }

    #[test]
    fn a_year_without_data_is_an_error() {
        let err = Holidays::builtin()
            .get(d("2028-01-03"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no holiday data for 2028: holiday data covers 2025, 2026, 2027"),
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
        assert_eq!(h.year(2027).expect("2027").days.len(), 1);
        h.merge_str("[[year]]\nyear = 2026\ndays = [{ date = \"2026-06-24\", name = \"Manila Day\", kind = \"special-non-working\" }]\n", "u.toml").expect("ok");
        assert_eq!(
            h.get(d("2026-06-24"))
                .expect("2026")
                .map(|x| x.name.as_str()),
            Some("Manila Day")
        );
        assert!(
            h.get(d("2026-11-30")).expect("2026").is_some(),
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
        assert_eq!(h.years(), [2025, 2026, 2027]);
    }
}
