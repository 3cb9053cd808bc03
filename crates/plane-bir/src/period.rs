//! Periods a return covers: a month, a (calendar or fiscal) quarter, a (taxable) year.

use std::fmt;

use chrono::{Datelike, Days, NaiveDate};

use crate::catalog::Frequency;

/// The period a return covers.
///
/// Quarters and years carry the month their taxable year ends in: for a fiscal year
/// ending in June, `2026-Q1` is July to September 2025, the way the BIR's forms name it
/// ("for the year ended 06/2026, 1st quarter").
///
/// ```
/// use plane_bir::Period;
/// let q1 = Period::Quarter { year: 2026, quarter: 1, year_end_month: 6 };
/// assert_eq!(q1.to_string(), "2026-Q1");
/// assert_eq!(q1.months(), ["2025-07", "2025-08", "2025-09"]);
/// assert_eq!(Period::Month { year: 2026, month: 3 }.to_string(), "2026-03");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// A calendar month.
    Month {
        /// Year.
        year: i32,
        /// Month, 1-12.
        month: u32,
    },
    /// A quarter of the taxable year that ends in `year_end_month` of `year`.
    Quarter {
        /// The year the taxable year ends in.
        year: i32,
        /// 1-4, counted from the start of the taxable year.
        quarter: u32,
        /// 12 for calendar quarters.
        year_end_month: u32,
    },
    /// A taxable year ending in `year_end_month` of `year`.
    Year {
        /// The year it ends in.
        year: i32,
        /// 12 for a calendar year.
        year_end_month: u32,
    },
}

impl Period {
    /// The first day of the period.
    pub fn first_day(&self) -> NaiveDate {
        let (y, m) = match *self {
            Period::Month { year, month } => (year, month),
            Period::Quarter { .. } | Period::Year { .. } => {
                let (y, m) = self.last_month();
                let span = if matches!(self, Period::Quarter { .. }) {
                    2
                } else {
                    11
                };
                add_months(y, m, -span)
            }
        };
        first_of(y, m)
    }

    /// The last day of the period.
    pub fn last_day(&self) -> NaiveDate {
        let (y, m) = self.last_month();
        last_of(y, m)
    }

    fn last_month(&self) -> (i32, u32) {
        match *self {
            Period::Month { year, month } => (year, month),
            Period::Quarter {
                year,
                quarter,
                year_end_month,
            } => add_months(year, year_end_month, 3 * quarter as i32 - 12),
            Period::Year {
                year,
                year_end_month,
            } => (year, year_end_month),
        }
    }

    /// The months the period covers, as `YYYY-MM`.
    pub fn months(&self) -> Vec<String> {
        let (y, m) = (self.first_day().year(), self.first_day().month());
        let n = match self {
            Period::Month { .. } => 1,
            Period::Quarter { .. } => 3,
            Period::Year { .. } => 12,
        };
        (0..n)
            .map(|i| {
                let (y, m) = add_months(y, m, i);
                format!("{y:04}-{m:02}")
            })
            .collect()
    }

    /// The label's year: the month's year, or the year the taxable year ends in.
    pub fn year(&self) -> i32 {
        match *self {
            Period::Month { year, .. }
            | Period::Quarter { year, .. }
            | Period::Year { year, .. } => year,
        }
    }

    /// Checks that `label` has the shape a form of this frequency uses (`2026-03`,
    /// `2026-Q1`, `2026`) and returns it normalised (upper-case `Q`).
    ///
    /// ```
    /// use plane_bir::{Frequency, Period};
    /// assert_eq!(Period::check_label("2026-q2", Frequency::Quarterly).unwrap(), "2026-Q2");
    /// assert!(Period::check_label("2026-13", Frequency::Monthly).is_err());
    /// ```
    pub fn check_label(label: &str, frequency: Frequency) -> Result<String, &'static str> {
        let label = label.trim();
        let year_ok = |y: &str| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit());
        match frequency {
            Frequency::Monthly => {
                let expected = "a month, YYYY-MM (2026-03)";
                let (y, m) = label.split_once('-').ok_or(expected)?;
                let m: u32 = m.parse().map_err(|_| expected)?;
                if year_ok(y) && (1..=12).contains(&m) && label.len() == 7 {
                    Ok(format!("{y}-{m:02}"))
                } else {
                    Err(expected)
                }
            }
            Frequency::Quarterly => {
                let expected = "a quarter, YYYY-Qn with n 1-4 (2026-Q1; fiscal quarters are numbered within the fiscal year, labelled by the year it ends in)";
                let (y, q) = label.split_once('-').ok_or(expected)?;
                let q = q.strip_prefix(['Q', 'q']).ok_or(expected)?;
                if year_ok(y) && matches!(q, "1" | "2" | "3" | "4") {
                    Ok(format!("{y}-Q{q}"))
                } else {
                    Err(expected)
                }
            }
            Frequency::Annual => {
                if year_ok(label) {
                    Ok(label.to_string())
                } else {
                    Err("a taxable year, YYYY (the year it ends in)")
                }
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Period::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Period::Quarter { year, quarter, .. } => write!(f, "{year:04}-Q{quarter}"),
            Period::Year { year, .. } => write!(f, "{year:04}"),
        }
    }
}

/// `(year, month)` plus `n` months (n may be negative).
pub(crate) fn add_months(year: i32, month: u32, n: i32) -> (i32, u32) {
    let index = year * 12 + month as i32 - 1 + n;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

pub(crate) fn first_of(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

pub(crate) fn last_of(year: i32, month: u32) -> NaiveDate {
    let (y, m) = add_months(year, month, 1);
    first_of(y, m)
        .checked_sub_days(Days::new(1))
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn quarters_of_a_june_fiscal_year() {
        let q = |quarter| Period::Quarter {
            year: 2026,
            quarter,
            year_end_month: 6,
        };
        assert_eq!(
            (q(1).first_day(), q(1).last_day()),
            (d("2025-07-01"), d("2025-09-30"))
        );
        assert_eq!(
            (q(2).first_day(), q(2).last_day()),
            (d("2025-10-01"), d("2025-12-31"))
        );
        assert_eq!(
            (q(3).first_day(), q(3).last_day()),
            (d("2026-01-01"), d("2026-03-31"))
        );
        assert_eq!(
            (q(4).first_day(), q(4).last_day()),
            (d("2026-04-01"), d("2026-06-30"))
        );
        let y = Period::Year {
            year: 2026,
            year_end_month: 6,
        };
        assert_eq!(
            (y.first_day(), y.last_day()),
            (d("2025-07-01"), d("2026-06-30"))
        );
        assert_eq!(y.months().len(), 12);
    }

    #[test]
    fn calendar_quarters_and_months() {
        let q4 = Period::Quarter {
            year: 2026,
            quarter: 4,
            year_end_month: 12,
        };
        assert_eq!(
            (q4.first_day(), q4.last_day()),
            (d("2026-10-01"), d("2026-12-31"))
        );
        assert_eq!(
            Period::Month {
                year: 2028,
                month: 2
            }
            .last_day(),
            d("2028-02-29")
        );
        assert_eq!(add_months(2026, 1, -1), (2025, 12));
        assert_eq!(add_months(2026, 12, 1), (2027, 1));
    }

    #[test]
    fn labels() {
        assert_eq!(
            Period::check_label("2026-3", Frequency::Monthly),
            Err("a month, YYYY-MM (2026-03)")
        );
        assert_eq!(
            Period::check_label("2026-03", Frequency::Monthly),
            Ok("2026-03".into())
        );
        assert!(Period::check_label("2026-Q5", Frequency::Quarterly).is_err());
        assert!(Period::check_label("2026-03", Frequency::Annual).is_err());
        assert_eq!(
            Period::check_label("2026", Frequency::Annual),
            Ok("2026".into())
        );
    }
}
