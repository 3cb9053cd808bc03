//! The holidays the law fixes, for years no proclamation (or holiday file) covers yet.
//!
//! The Philippine holidays act (RA 9492, amending the Revised Administrative Code) fixes
//! the regular holidays: New Year's Day, Araw ng Kagitingan, Labor Day, Independence
//! Day, National Heroes Day (the last Monday of August), Bonifacio Day, Christmas Day and
//! Rizal Day; Maundy Thursday and Good Friday follow from Easter. Everything else is
//! proclaimed each year and is **left out** here: the Eids (their dates come from the
//! Islamic calendar and are set by proclamation, often late), the special non-working
//! days, and any day a proclamation moves. Leaving out a real holiday gives a deadline a
//! day early, never late; adding a day that turns out not to be one would make it late.
//! Every deadline that relies on such a year is marked provisional.

use chrono::{Datelike, Days, NaiveDate, Weekday};

use crate::holidays::{Holiday, HolidayKind, HolidayYear, YearStatus};

/// Why a year computed here is provisional (shown with every deadline that relies on it).
pub(crate) fn reason(year: i32) -> String {
    format!(
        "no proclamation for {year} is known here, so its holidays are the ones RA 9492 fixes \
         (the Eids and special days are left out until proclaimed)"
    )
}

/// Easter Sunday of `year` (Gregorian; the anonymous algorithm of Meeus/Jones/Butcher).
///
/// ```
/// use plane_bir::holiday_law::easter;
/// assert_eq!(easter(2026).unwrap().to_string(), "2026-04-05");
/// assert_eq!(easter(2028).unwrap().to_string(), "2028-04-16");
/// ```
pub fn easter(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let (d, e) = (b.div_euclid(4), b.rem_euclid(4));
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let (i, k) = (c.div_euclid(4), c.rem_euclid(4));
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// The last Monday of August of `year` (National Heroes Day).
fn last_monday_of_august(year: i32) -> Option<NaiveDate> {
    let end = NaiveDate::from_ymd_opt(year, 8, 31)?;
    let back = end.weekday().days_since(Weekday::Mon);
    end.checked_sub_days(Days::new(u64::from(back)))
}

/// The regular holidays the law fixes in `year`, as a provisional [`HolidayYear`].
///
/// ```
/// use plane_bir::holiday_law::fixed_by_law;
/// let y = fixed_by_law(2029);
/// assert!(y.status.is_provisional());
/// let names: Vec<_> = y.days.iter().map(|d| format!("{} {}", d.date, d.name)).collect();
/// assert_eq!(names[..3], ["2029-01-01 New Year's Day", "2029-03-29 Maundy Thursday", "2029-03-30 Good Friday"]);
/// assert!(names.contains(&"2029-08-27 National Heroes Day".to_string()));
/// ```
pub fn fixed_by_law(year: i32) -> HolidayYear {
    let fixed = |month, day| NaiveDate::from_ymd_opt(year, month, day);
    let easter = easter(year);
    let before_easter = |n| easter.and_then(|e| e.checked_sub_days(Days::new(n)));
    let mut days: Vec<Holiday> = [
        (fixed(1, 1), "New Year's Day"),
        (before_easter(3), "Maundy Thursday"),
        (before_easter(2), "Good Friday"),
        (fixed(4, 9), "Araw ng Kagitingan"),
        (fixed(5, 1), "Labor Day"),
        (fixed(6, 12), "Independence Day"),
        (last_monday_of_august(year), "National Heroes Day"),
        (fixed(11, 30), "Bonifacio Day"),
        (fixed(12, 25), "Christmas Day"),
        (fixed(12, 30), "Rizal Day"),
    ]
    .into_iter()
    .filter_map(|(date, name)| {
        Some(Holiday {
            date: date?,
            name: name.to_owned(),
            kind: HolidayKind::Regular,
            provisional: false,
        })
    })
    .collect();
    days.sort_by_key(|d| d.date);
    days.dedup_by_key(|d| d.date);
    HolidayYear {
        year,
        status: YearStatus::Provisional,
        proclamation: None,
        source: "computed from RA 9492 (no holiday data for this year)".into(),
        note: None,
        provisional_reason: Some(reason(year)),
        days,
    }
}

/// The holiday the law fixes on `date`, if any (what [`fixed_by_law`] lists, without
/// building the whole year).
pub(crate) fn holiday_on(date: NaiveDate) -> Option<&'static str> {
    let year = date.year();
    let easter = easter(year)?;
    // Holy Week first: in some years Maundy Thursday or Good Friday falls on April 9,
    // and the list keeps that name too.
    Some(match (date.month(), date.day()) {
        _ if date + Days::new(3) == easter => "Maundy Thursday",
        _ if date + Days::new(2) == easter => "Good Friday",
        (1, 1) => "New Year's Day",
        (4, 9) => "Araw ng Kagitingan",
        (5, 1) => "Labor Day",
        (6, 12) => "Independence Day",
        (11, 30) => "Bonifacio Day",
        (12, 25) => "Christmas Day",
        (12, 30) => "Rizal Day",
        _ if Some(date) == last_monday_of_august(year) => "National Heroes Day",
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn easter_sundays() {
        // From published tables (python-dateutil's easter() agrees), each a Sunday: the
        // 1954/1981-type years where the full-moon correction applies, the earliest and
        // latest possible Easters (1818, 1943), and century years.
        for (year, day) in [
            (1583, "1583-04-10"),
            (1700, "1700-04-11"),
            (1818, "1818-03-22"),
            (1943, "1943-04-25"),
            (1954, "1954-04-18"),
            (1981, "1981-04-19"),
            (2049, "2049-04-18"),
            (2076, "2076-04-19"),
            (2100, "2100-03-28"),
            (2106, "2106-04-18"),
            (2133, "2133-04-19"),
            (2200, "2200-04-06"),
            (2201, "2201-04-19"),
            (2296, "2296-04-19"),
            (2400, "2400-04-16"),
            (3000, "3000-04-13"),
            (4099, "4099-04-19"),
            (2000, "2000-04-23"),
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2027, "2027-03-28"),
            (2028, "2028-04-16"),
            (2029, "2029-04-01"),
            (2030, "2030-04-21"),
            (2038, "2038-04-25"),
            (2285, "2285-03-22"),
        ] {
            assert_eq!(easter(year), Some(d(day)), "{year}");
        }
    }

    #[test]
    fn heroes_day_is_the_last_monday_of_august() {
        for (year, day) in [
            (2025, "2025-08-25"),
            (2026, "2026-08-31"),
            (2027, "2027-08-30"),
            (2028, "2028-08-28"),
            (2031, "2031-08-25"),
        ] {
            assert_eq!(last_monday_of_august(year), Some(d(day)), "{year}");
        }
    }

    #[test]
    fn the_year_and_the_single_day_agree() {
        for year in 2020..2060 {
            let listed = fixed_by_law(year);
            // Ten days, nine when Holy Week takes April 9 (2020, 2037, ...).
            assert!((9..=10).contains(&listed.days.len()), "{year}");
            let mut day = d(&format!("{year}-01-01"));
            while day.year() == year {
                let in_list = listed.days.iter().find(|h| h.date == day);
                assert_eq!(in_list.map(|h| h.name.as_str()), holiday_on(day), "{day}");
                day = day.succ_opt().unwrap();
            }
        }
    }

    #[test]
    fn the_2026_proclamation_contains_every_day_the_law_fixes() {
        // Proc. 1006 s. 2025 moved none of them: the law's days are a subset of it.
        let proclaimed = crate::Holidays::builtin();
        for h in fixed_by_law(2026).days {
            let listed = proclaimed.get(h.date).unwrap();
            assert_eq!(listed.name, h.name, "{}", h.date);
        }
    }
}
