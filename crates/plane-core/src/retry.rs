//! Bounded retries: exponential backoff with full jitter, `Retry-After` honoured.
//!
//! backon was considered: its jitter adds a random amount on top of the delay
//! rather than drawing the whole delay at random ("full jitter"), and the delay
//! here must also yield to a server's `Retry-After`; the policy is a few lines.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Error;

/// When and how often failed requests are tried again.
///
/// * 429: up to `max_rate_limited_retries` (default 3), waiting `Retry-After`
///   (capped at `max_retry_after`) or, without it, the backoff.
/// * 5xx, timeouts and connection failures: up to `max_retries` (default 3), but
///   only for requests that are safe to repeat (GET, PUT, DELETE). A POST is never
///   repeated blindly.
///
/// ```
/// use plane_core::RetryPolicy;
/// use std::time::Duration;
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.max_rate_limited_retries, 3);
/// // Full jitter: the n-th delay is drawn from [0, min(cap, base * 2^n)].
/// let mut rng = policy.rng(Some(7));
/// let d = policy.backoff(2, &mut rng);
/// assert!(d <= Duration::from_millis(2_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of 5xx/timeouts/connection failures of idempotent requests.
    pub max_retries: u32,
    /// Retries of 429 answers.
    pub max_rate_limited_retries: u32,
    /// The first backoff ceiling; doubles on each retry.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_rate_limited_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            max_rate_limited_retries: 0,
            ..Self::default()
        }
    }

    /// The random source for jitter; a seed makes delays reproducible in tests.
    pub fn rng(&self, seed: Option<u64>) -> StdRng {
        match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        }
    }

    /// The delay before retry number `retry` (1-based): uniform in
    /// `[0, min(max_delay, base_delay * 2^(retry-1))]`.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        ceiling.mul_f64(rng.random_range(0.0..=1.0))
    }

    /// The delay before retrying a 429: the server's `Retry-After` (already capped)
    /// plus a little jitter so that concurrent clients do not return in lockstep,
    /// or the backoff when the server gave none.
    pub fn rate_limited_delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        match retry_after {
            Some(after) => {
                after.min(self.max_retry_after)
                    + self.base_delay.mul_f64(rng.random_range(0.0..=0.2))
            }
            None => self.backoff(retry, rng),
        }
    }
}

/// The retry loop, independent of HTTP so it can be tested with paused time.
///
/// `attempt` is called with the 1-based attempt number.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    repeatable: bool,
    rng: &Arc<Mutex<StdRng>>,
    mut attempt: F,
) -> Result<T, Error>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut rate_limited = 0;
    let mut failed = 0;
    let mut number = 0;
    loop {
        number += 1;
        let error = match attempt(number).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let delay = {
            let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
            match &error {
                Error::RateLimited { retry_after, .. }
                    if rate_limited < policy.max_rate_limited_retries =>
                {
                    rate_limited += 1;
                    policy.rate_limited_delay(rate_limited, *retry_after, &mut *rng)
                }
                e if repeatable && e.is_ambiguous() && failed < policy.max_retries => {
                    failed += 1;
                    policy.backoff(failed, &mut *rng)
                }
                _ => return Err(error.with_attempts(number)),
            }
        };
        tracing::warn!(
            attempt = number,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "plane request failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}
