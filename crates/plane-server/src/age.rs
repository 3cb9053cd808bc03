//! Ages and intervals like `7d`, `12h`, `1h30m`, parsed by `humantime`.
//!
//! Only seconds, minutes, hours and days are taken. humantime also reads
//! weeks, months (`M`) and years; `--older-than 1M` (a month) next to `1m` (a
//! minute) is one shift key away from purging the wrong deliveries, so those
//! units are refused.

use std::time::Duration;

/// The unit spellings taken (humantime's, for s, m, h and d).
const UNITS: [&str; 19] = [
    "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes", "h", "hr",
    "hrs", "hour", "hours", "d", "day", "days", "",
];

/// Parses an age like `7d`, `12h`, `30m`, `45s` or `1h 30m`.
///
/// ```
/// use std::time::Duration;
/// use plane_server::age::parse_age;
/// assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
/// assert_eq!(parse_age("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_age("7w").unwrap_err().contains("unit \"w\""));
/// ```
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Some(unit) = text
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .find(|unit| !UNITS.contains(unit))
    {
        return Err(format!(
            "{text:?}: unit {unit:?} is not taken; use d, h, m or s (like 7d, 12h, 30m, 45s)"
        ));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not an age like 7d, 12h, 30m or 45s: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ages_in_seconds_minutes_hours_and_days() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn other_units_ambiguous_units_and_nonsense_are_errors() {
        let weeks = parse_age("7w").unwrap_err();
        assert!(weeks.contains("unit \"w\""), "{weeks}");
        assert!(parse_age("1M").is_err(), "a month is not a minute");
        assert!(parse_age("2y").is_err());
        assert!(parse_age("soon").is_err());
        assert!(parse_age("90").is_err(), "a unit is required");
        assert!(parse_age("").is_err());
        assert!(
            parse_age("213503982334602000000d").is_err(),
            "overflow must not wrap"
        );
    }
}
