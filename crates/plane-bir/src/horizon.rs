//! The horizon a sync covers: a rolling window of due dates, not a labelled year.
//!
//! A daily `bir sync` without `--year` covers every deadline **due** from the first day of
//! the current month to the end of the month [`Ahead`] months later (12 by default),
//! whatever period or fiscal year it belongs to: on 2026-12-05 that is 2026-12-01 to
//! 2027-12-31, so a fiscal-June corporation's `1702Q 2027-Q1` (due 2026-12-01) is in it,
//! and nothing depends on someone switching `--year` in January.
//!
//! Deadlines synced earlier that are still open (pending or in progress) stay in every
//! window, recomputed from their form and period, so an overdue one stays visible and
//! its priority turns urgent. A first sync reaches no further back than the window's
//! start: a company that starts using the connector does not get a year of returns it
//! already filed as overdue work items.
//!
//! A deadline is keyed by its form and period label, whichever window or `--year`
//! reached it, so it keeps one work item ([`external_id`](crate::sync::external_id)).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use uuid::Uuid;

use crate::calendar::{Deadline, deadline, deadlines_between, period_of, sort};
use crate::error::Result;
use crate::holidays::Holidays;
use crate::overrides::Overrides;
use crate::period::{add_months, first_of, last_of};
use crate::profile::Profile;
use crate::store::DeadlineRecord;

/// How far ahead a rolling window reaches, in whole months: `12m` (the default) or `1y`.
///
/// ```
/// use plane_bir::horizon::Ahead;
/// assert_eq!("12m".parse::<Ahead>().unwrap(), Ahead::default());
/// assert_eq!("2y".parse::<Ahead>().unwrap().months(), 24);
/// assert_eq!("1y".parse::<Ahead>().unwrap().to_string(), "12m");
/// assert_eq!("12".parse::<Ahead>().unwrap_err(),
///     "\"12\" is not a horizon: a number of months or years, 1m to 36m (12m, 18m, 1y, 2y)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    months: u32,
}

impl Ahead {
    /// The most a window reaches ahead (three years).
    pub const MAX_MONTHS: u32 = 36;

    /// The months ahead.
    pub fn months(self) -> u32 {
        self.months
    }
}

impl Default for Ahead {
    fn default() -> Self {
        Ahead { months: 12 }
    }
}

impl FromStr for Ahead {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a horizon: a number of months or years, 1m to {}m (12m, 18m, 1y, 2y)",
                Self::MAX_MONTHS
            )
        };
        let t = text.trim();
        let (number, per) = match t.char_indices().last() {
            Some((i, 'm')) => (&t[..i], 1),
            Some((i, 'y')) => (&t[..i], 12),
            _ => return Err(bad()),
        };
        let months = number
            .parse::<u32>()
            .ok()
            .and_then(|n| n.checked_mul(per))
            .filter(|m| (1..=Self::MAX_MONTHS).contains(m))
            .ok_or_else(bad)?;
        Ok(Ahead { months })
    }
}

impl fmt::Display for Ahead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.months)
    }
}

/// A range of due dates, both days included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first due date covered.
    pub from: NaiveDate,
    /// The last due date covered.
    pub to: NaiveDate,
}

impl Window {
    /// From the first of `today`'s month (or `from`, when given) to the last day of the
    /// month `ahead` months after today's.
    ///
    /// ```
    /// use plane_bir::horizon::{Ahead, Window};
    /// let today = "2026-12-05".parse().unwrap();
    /// let w = Window::rolling(today, Ahead::default(), None);
    /// assert_eq!(w.to_string(), "2026-12-01 to 2027-12-31");
    /// let from = "2026-11-15".parse().unwrap();
    /// assert_eq!(Window::rolling(today, "1m".parse().unwrap(), Some(from)).to_string(),
    ///            "2026-11-15 to 2027-01-31");
    /// ```
    pub fn rolling(today: NaiveDate, ahead: Ahead, from: Option<NaiveDate>) -> Window {
        let (y, m) = add_months(today.year(), today.month(), ahead.months() as i32);
        Window {
            from: from.unwrap_or_else(|| first_of(today.year(), today.month())),
            to: last_of(y, m),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.from, self.to)
    }
}

/// The deadlines a sync of `window` covers for `profile` in `project`: every one due in
/// the window, and every open one (pending or in progress) that `records` (the store's
/// rows of the profile) hold for that project, wherever its due date lies, recomputed
/// with today's holidays and overrides. Each form and period once, sorted by filing date.
///
/// A stored row whose form the profile no longer files, or whose period it can no longer
/// name, is left out (and left alone, with a warning for the latter).
pub fn deadlines(
    profile: &Profile,
    project: Uuid,
    window: Window,
    records: &[DeadlineRecord],
    holidays: &Holidays,
    overrides: &Overrides,
) -> Result<Vec<Deadline>> {
    let mut out = deadlines_between(profile, window.from, window.to, holidays, overrides)?;
    let mut seen: BTreeSet<(String, String)> = out
        .iter()
        .map(|d| (d.form.clone(), d.period.to_string()))
        .collect();
    for r in records {
        if r.status.is_closed() || r.project_id != project {
            continue;
        }
        let Some(form) = profile.forms.iter().find(|f| f.code == r.form) else {
            continue;
        };
        if !seen.insert((r.form.clone(), r.period.clone())) {
            continue;
        }
        // A row the profile can no longer name (its taxable year changed, say) is left
        // alone rather than stopping the sync of every other deadline.
        let period = match period_of(profile, form, &r.period) {
            Ok(period) => period,
            Err(e) => {
                tracing::warn!(deadline = %r.external_id, error = %e, "an open deadline synced before is left out of the window");
                continue;
            }
        };
        out.push(deadline(profile, form, period, holidays, overrides)?);
    }
    sort(profile, &mut out);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::DeadlineStatus;

    fn record(form: &str, period: &str, project: Uuid) -> DeadlineRecord {
        DeadlineRecord {
            external_id: format!("bir:111222333000:{form}:{period}"),
            profile: "111222333000".into(),
            form: form.into(),
            period: period.into(),
            due_date: "2026-01-01".parse().unwrap(),
            payment_date: None,
            project_id: project,
            work_item_id: None,
            pushed: None,
            fingerprint: None,
            status: DeadlineStatus::Pending,
            status_by: None,
            status_at: None,
        }
    }

    #[test]
    fn open_rows_join_the_window_and_rows_it_cannot_name_are_left_out() {
        let profile = Profile::parse(
            include_str!("../profiles/fiscal-june-corporation.toml"),
            "fiscal.toml",
        )
        .unwrap();
        let project = Uuid::nil();
        let window = Window::rolling("2026-12-05".parse().unwrap(), Ahead::default(), None);
        let rows = [
            // Open and overdue, before the window: kept.
            record("2550Q", "2027-Q1", project),
            // A period 1702Q never has: left out, the rest goes on.
            record("1702Q", "2027-Q4", project),
            // A form the profile does not file: left out.
            record("2551Q", "2026-Q1", project),
            // Another project's row: left out.
            record("1601-C", "2026-01", Uuid::from_u128(1)),
        ];
        let out = deadlines(
            &profile,
            project,
            window,
            &rows,
            &Holidays::builtin(),
            &Overrides::none(),
        )
        .unwrap();
        let before: Vec<String> = out
            .iter()
            .filter(|d| d.due_date < window.from)
            .map(|d| format!("{} {} {}", d.form, d.period, d.due_date))
            .collect();
        assert_eq!(before, ["2550Q 2027-Q1 2026-10-26"]);
    }
}
