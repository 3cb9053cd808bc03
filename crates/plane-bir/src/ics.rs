//! iCalendar (RFC 5545) export: one all-day event per deadline.
//!
//! Each event's UID is built from the form, the period and the taxpayer's TIN, so
//! importing a newer export updates the same events instead of adding copies; SEQUENCE
//! grows with the export time so calendar apps accept the newer dates. A provisional
//! date is `STATUS:TENTATIVE`, with the reason in its description.

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::calendar::Deadline;
use crate::profile::Profile;

/// The calendar as RFC 5545 text (CRLF line ends, lines folded at 75 octets).
///
/// ```
/// use plane_bir::{calendar, to_ics, Holidays, Overrides, Profile};
/// let p = Profile::parse("name = \"X\"\ntin = \"123456789000\"\ntaxpayer = \"corporation\"\nforms = [\"1601-C\"]\n", "x.toml").unwrap();
/// let d = calendar(&p, 2026, &Holidays::builtin(), &Overrides::none()).unwrap();
/// let ics = to_ics(&d, &p, "2026-01-05T00:00:00Z".parse().unwrap());
/// assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
/// assert!(ics.contains("UID:1601-C.2026-01.123456789000@plane-bir\r\n"));
/// assert!(ics.contains("DTSTART;VALUE=DATE:20260210\r\nDTEND;VALUE=DATE:20260211\r\n"));
/// // December's return is due in 2027, whose holidays are provisional here.
/// assert_eq!(ics.matches("STATUS:CONFIRMED\r\n").count(), 11);
/// assert_eq!(ics.matches("STATUS:TENTATIVE\r\n").count(), 1);
/// ```
pub fn to_ics(deadlines: &[Deadline], profile: &Profile, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |text: &str| fold(&mut out, text);
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line(&format!(
        "PRODID:-//plane-connector//plane-bir {}//EN",
        env!("CARGO_PKG_VERSION")
    ));
    line("CALSCALE:GREGORIAN");
    line("METHOD:PUBLISH");
    line(&format!(
        "X-WR-CALNAME:{}",
        escape(&format!("BIR deadlines: {}", profile.name))
    ));
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    // Minutes since 2024-01-01: a later export always has a higher SEQUENCE.
    let sequence = (now.timestamp() - 1_704_067_200).max(0) / 60;
    let who = profile
        .tin
        .as_ref()
        .map_or("catalog".to_string(), |t| t.digits().to_string());
    for d in deadlines {
        line("BEGIN:VEVENT");
        line(&format!("UID:{}.{}.{who}@plane-bir", d.form, d.period));
        line(&format!("DTSTAMP:{stamp}"));
        line(&format!("SEQUENCE:{sequence}"));
        line(&format!("DTSTART;VALUE=DATE:{}", ymd(d.due_date)));
        line(&format!(
            "DTEND;VALUE=DATE:{}",
            ymd(d.due_date + Days::new(1))
        ));
        let pay = if d.payment_date.is_some() {
            "file"
        } else {
            "file and pay"
        };
        line(&format!(
            "SUMMARY:{}",
            escape(&format!("BIR {} {}: {pay}", d.form, d.period))
        ));
        line(&format!("DESCRIPTION:{}", escape(&describe(d))));
        // A date that may still move when the year's holidays are proclaimed.
        line(if d.provisional {
            "STATUS:TENTATIVE"
        } else {
            "STATUS:CONFIRMED"
        });
        line("CATEGORIES:BIR");
        line("TRANSP:TRANSPARENT");
        line("END:VEVENT");
    }
    line("END:VCALENDAR");
    out
}

fn describe(d: &Deadline) -> String {
    let mut s = format!("{} ({}).\nPeriod {}", d.form_name, d.form, d.period);
    if !d.months.is_empty() {
        s += &format!(" ({} to {})", d.period_start, d.period_end);
    }
    s += &format!(".\nFile by {}", d.due_date);
    if let Some(p) = d.payment_date {
        s += &format!("; pay by {p}");
    }
    s += &format!(".\nRule: {} ({})", d.rule, d.rule_date);
    if !d.moved_by.is_empty() {
        let why: Vec<_> = d
            .moved_by
            .iter()
            .map(|m| format!("{} {}", m.date, m.why))
            .collect();
        s += &format!(", moved by {}", why.join("; "));
    }
    s.push('.');
    if let Some(o) = &d.overridden {
        s += &format!(
            "\nOverride: {} (computed {}).",
            o.reason, o.computed_due_date
        );
    }
    if let Some(why) = &d.provisional_reason {
        s += &format!("\nProvisional: {why}.");
    }
    s
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// RFC 5545 TEXT escaping: backslash, semicolon, comma, newline.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `text` as one content line, folded so no line exceeds 75 octets (not counting
/// CRLF) and no UTF-8 character is split.
fn fold(out: &mut String, text: &str) {
    let mut width = 0;
    for c in text.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_lines_short_and_characters_whole() {
        let mut out = String::new();
        let text = format!("DESCRIPTION:{}", "ñ".repeat(100));
        fold(&mut out, &text);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let unfolded = out.trim_end_matches("\r\n").replace("\r\n ", "");
        assert_eq!(unfolded, text);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }
}
