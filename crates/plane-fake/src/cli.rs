//! Argument parsing helpers shared by the `plane-fake` binary and its tests.

use std::time::Duration;

/// Parses a `--rate-limit` value: `"N/Ds"` (N requests per D seconds), `"N/Dms"`
/// (per D milliseconds) or `"none"`. Returns `None` for no limit.
///
/// ```
/// use plane_fake::cli::parse_rate_limit;
/// use std::time::Duration;
/// assert_eq!(parse_rate_limit("60/60s"), Ok(Some((60, Duration::from_secs(60)))));
/// assert_eq!(parse_rate_limit("5/250ms"), Ok(Some((5, Duration::from_millis(250)))));
/// assert_eq!(parse_rate_limit("none"), Ok(None));
/// assert!(parse_rate_limit("60 per minute").is_err());
/// ```
pub fn parse_rate_limit(s: &str) -> Result<Option<(u32, Duration)>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad =
        || format!("invalid rate limit {s:?}: expected N/Ds, N/Dms or none (e.g. 60/60s, 5/500ms)");
    let (n, window) = s.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let window = window.trim();
    let duration = if let Some(ms) = window.strip_suffix("ms") {
        Duration::from_millis(ms.parse().map_err(|_| bad())?)
    } else if let Some(secs) = window.strip_suffix('s') {
        Duration::from_secs(secs.parse().map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    if duration.is_zero() {
        return Err(format!(
            "invalid rate limit {s:?}: the window must be longer than 0"
        ));
    }
    Ok(Some((n, duration)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        assert_eq!(parse_rate_limit("NONE"), Ok(None));
        assert_eq!(
            parse_rate_limit(" 1/1s "),
            Ok(Some((1, Duration::from_secs(1))))
        );
        for bad in [
            "", "60", "60/", "/60s", "x/60s", "60/60", "60/xs", "60/0s", "-1/5s", "60/1m",
        ] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }
}
