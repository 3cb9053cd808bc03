//! Per-key sliding-log throttle, like DRF's `SimpleRateThrottle` used by Plane.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No throttle configured: no headers.
    Unlimited,
    Allowed {
        remaining: u32,
        reset_epoch: u64,
    },
    Refused {
        retry_after: u64,
    },
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: Option<(u32, Duration)>,
    logs: HashMap<String, VecDeque<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: Option<(u32, Duration)>) -> Self {
        RateLimiter {
            limit,
            logs: HashMap::new(),
        }
    }

    pub(crate) fn check(&mut self, key: &str, now: Instant) -> Decision {
        let Some((n, window)) = self.limit else {
            return Decision::Unlimited;
        };
        let log = self.logs.entry(key.to_owned()).or_default();
        // DRF drops entries that are at least one window old.
        while let Some(&oldest) = log.front() {
            if now.saturating_duration_since(oldest) >= window {
                log.pop_front();
            } else {
                break;
            }
        }
        if log.len() >= n as usize {
            // DRF's wait(): time until the oldest entry leaves the window, rounded up by
            // the Retry-After header; never advertise 0.
            let wait = match log.front() {
                Some(&oldest) => window.saturating_sub(now.saturating_duration_since(oldest)),
                None => window,
            };
            let secs = wait.as_secs_f64().ceil() as u64;
            return Decision::Refused {
                retry_after: secs.max(1),
            };
        }
        log.push_back(now);
        let remaining = n.saturating_sub(u32::try_from(log.len()).unwrap_or(u32::MAX));
        let reset = SystemTime::now()
            .checked_add(window)
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Decision::Allowed {
            remaining,
            reset_epoch: reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_log() {
        let mut rl = RateLimiter::new(Some((3, Duration::from_secs(10))));
        let t0 = Instant::now();
        let rem = |d| match d {
            Decision::Allowed { remaining, .. } => Some(remaining),
            _ => None,
        };
        assert_eq!(rem(rl.check("k", t0)), Some(2));
        assert_eq!(rem(rl.check("k", t0 + Duration::from_secs(1))), Some(1));
        assert_eq!(rem(rl.check("other", t0)), Some(2));
        assert_eq!(rem(rl.check("k", t0 + Duration::from_secs(2))), Some(0));
        assert_eq!(
            rl.check("k", t0 + Duration::from_millis(3500)),
            Decision::Refused { retry_after: 7 }
        );
        // The first entry leaves the window after 10 s.
        assert_eq!(rem(rl.check("k", t0 + Duration::from_secs(10))), Some(0));
    }
}
