//! CSV export (RFC 4180): one row per deadline.

use crate::calendar::Deadline;

/// The columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "form",
    "period",
    "period_start",
    "period_end",
    "due_date",
    "payment_date",
    "rule",
    "rule_date",
    "moved_by",
    "override_reason",
    "computed_due_date",
    "provisional",
    "provisional_reason",
];

/// The calendar as CSV with a header row; CRLF line ends, fields quoted where needed.
///
/// ```
/// use plane_bir::{calendar, to_csv, Holidays, Overrides, Profile};
/// let p = Profile::parse("name = \"X\"\ntin = \"123456789000\"\ntaxpayer = \"corporation\"\nforms = [\"1702Q\"]\n", "x.toml").unwrap();
/// let csv = to_csv(&calendar(&p, 2026, &Holidays::builtin(), &Overrides::none()).unwrap());
/// let second = csv.lines().nth(1).unwrap();
/// assert!(second.starts_with("1702Q,2026-Q1,2026-01-01,2026-03-31,2026-06-01,,60 days after the period ends,2026-05-30,2026-05-30 Saturday; 2026-05-31 Sunday,"), "{second}");
/// assert!(second.ends_with(",false,"), "{second}");
/// ```
pub fn to_csv(deadlines: &[Deadline]) -> String {
    let mut out = CSV_COLUMNS.join(",") + "\r\n";
    for d in deadlines {
        let moved: Vec<_> = d
            .moved_by
            .iter()
            .map(|m| format!("{} {}", m.date, m.why))
            .collect();
        let fields = [
            d.form.clone(),
            d.period.to_string(),
            d.period_start.to_string(),
            d.period_end.to_string(),
            d.due_date.to_string(),
            d.payment_date.map(|p| p.to_string()).unwrap_or_default(),
            d.rule.clone(),
            d.rule_date.to_string(),
            moved.join("; "),
            d.overridden
                .as_ref()
                .map(|o| o.reason.clone())
                .unwrap_or_default(),
            d.overridden
                .as_ref()
                .map(|o| o.computed_due_date.to_string())
                .unwrap_or_default(),
            d.provisional.to_string(),
            d.provisional_reason.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = fields.iter().map(|f| quote(f)).collect();
        out += &row.join(",");
        out += "\r\n";
    }
    out
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
