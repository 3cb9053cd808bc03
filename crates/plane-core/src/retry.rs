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

use crate::{Error, RateLimiter};

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
/// `attempt` is called with the 1-based attempt number. The sleep before retrying a
/// 429 is a wait for budget, so it goes through `limiter` (when given) and shows in its
/// `waited` total.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    repeatable: bool,
    rng: &Arc<Mutex<StdRng>>,
    limiter: Option<&RateLimiter>,
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
        let (delay, for_budget) = {
            let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
            match &error {
                Error::RateLimited { retry_after, .. }
                    if rate_limited < policy.max_rate_limited_retries =>
                {
                    rate_limited += 1;
                    let delay = policy.rate_limited_delay(rate_limited, *retry_after, &mut *rng);
                    (delay, true)
                }
                e if repeatable && e.is_ambiguous() && failed < policy.max_retries => {
                    failed += 1;
                    (policy.backoff(failed, &mut *rng), false)
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
        match limiter {
            Some(limiter) if for_budget => limiter.pause(delay).await,
            _ => tokio::time::sleep(delay).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use http::Method;
    use tokio::time::Instant;

    fn rate_limited(retry_after: Option<u64>) -> Error {
        Error::RateLimited {
            method: Method::GET,
            path: "/api/v1/users/me/".into(),
            retry_after: retry_after.map(Duration::from_secs),
            attempts: 1,
        }
    }

    fn server_error() -> Error {
        Error::Server {
            method: Method::GET,
            path: "/x/".into(),
            status: 503,
            detail: "unavailable".into(),
            attempts: 1,
        }
    }

    fn rng() -> Arc<Mutex<StdRng>> {
        Arc::new(Mutex::new(StdRng::seed_from_u64(42)))
    }

    /// Runs `run` with scripted outcomes; returns the result, the number of calls
    /// and the times (since start) at which each attempt began.
    async fn script(
        policy: RetryPolicy,
        repeatable: bool,
        outcomes: Vec<Result<u32, Error>>,
    ) -> (Result<u32, Error>, Vec<Duration>) {
        let start = Instant::now();
        let outcomes = Mutex::new(outcomes.into_iter());
        let times = Mutex::new(Vec::new());
        let result = run(&policy, repeatable, &rng(), None, |_| {
            times.lock().unwrap().push(start.elapsed());
            let next = outcomes.lock().unwrap().next().unwrap_or(Ok(0));
            async move { next }
        })
        .await;
        (result, times.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_with_retry_after_is_waited_out() {
        let policy = RetryPolicy::default();
        let (result, times) = script(policy, false, vec![Err(rate_limited(Some(1))), Ok(7)]).await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(times.len(), 2);
        let waited = times[1];
        // Retry-After plus at most 20 % of the base delay of jitter.
        assert!(
            waited >= Duration::from_secs(1),
            "retried after only {waited:?}"
        );
        assert!(waited <= Duration::from_secs(1) + policy.base_delay.mul_f64(0.2));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_capped() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let (result, times) =
            script(policy, true, vec![Err(rate_limited(Some(3600))), Ok(1)]).await;
        assert!(result.is_ok());
        assert!(times[1] <= Duration::from_secs(6), "waited {:?}", times[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_retried_three_times_then_surfaces_with_the_attempt_count() {
        let outcomes = (0..10).map(|_| Err(rate_limited(Some(2)))).collect();
        let (result, times) = script(RetryPolicy::default(), true, outcomes).await;
        assert_eq!(times.len(), 4, "one try and three retries");
        match result {
            Err(Error::RateLimited {
                attempts,
                retry_after,
                ..
            }) => {
                assert_eq!(attempts, 4);
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_back_off_exponentially_with_full_jitter() {
        let policy = RetryPolicy::default();
        let outcomes = (0..10).map(|_| Err(server_error())).collect();
        let (result, times) = script(policy, true, outcomes).await;
        assert!(matches!(result, Err(Error::Server { attempts: 4, .. })));
        assert_eq!(times.len(), 4);
        for (n, pair) in times.windows(2).enumerate() {
            let ceiling = policy.base_delay * 2u32.pow(n as u32);
            let gap = pair[1] - pair[0];
            assert!(
                gap <= ceiling,
                "retry {} waited {gap:?} > {ceiling:?}",
                n + 1
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_is_never_retried_after_an_ambiguous_failure() {
        let (result, times) = script(
            RetryPolicy::default(),
            false,
            vec![Err(server_error()), Ok(1)],
        )
        .await;
        assert!(matches!(result, Err(Error::Server { attempts: 1, .. })));
        assert_eq!(times.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_retried() {
        let not_found = Error::NotFound {
            method: Method::GET,
            path: "/x/".into(),
            detail: "gone".into(),
        };
        let calls = AtomicU32::new(0);
        let result: Result<(), Error> = run(&RetryPolicy::default(), true, &rng(), None, |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            let e = Error::NotFound {
                method: Method::GET,
                path: "/x/".into(),
                detail: "gone".into(),
            };
            async move { Err(e) }
        })
        .await;
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(result.unwrap_err().to_string(), not_found.to_string());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sleep_before_retrying_a_429_counts_as_waiting_for_budget() {
        let limiter = RateLimiter::new(crate::Budget::per_minute(60), 0);
        let policy = RetryPolicy::default();
        let start = Instant::now();
        let outcomes = Mutex::new(vec![Err(rate_limited(Some(5))), Ok(1)].into_iter());
        let watcher = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                // Half-way through the sleep, the wait is visible and already counted.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                limiter.status()
            })
        };
        let result = run(&policy, false, &rng(), Some(&limiter), |_| {
            let next = outcomes.lock().unwrap().next().unwrap_or(Ok(0));
            async move { next }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        let slept = start.elapsed();
        assert!(slept >= Duration::from_secs(5), "{slept:?}");
        let during = watcher.await.unwrap();
        assert_eq!(during.waiting, 1);
        assert_eq!(during.waiting_since, Some(start));
        assert_eq!(during.waited, Duration::from_millis(2_500));
        let after = limiter.status();
        assert_eq!(after.waits, 1);
        assert_eq!(
            after.waited, slept,
            "the whole sleep, Retry-After and jitter"
        );
        assert_eq!((after.waiting, after.waiting_since), (0, None));
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range_and_respects_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..1000).map(|_| policy.backoff(3, &mut rng)).collect();
        let ceiling = policy.base_delay * 4;
        assert!(delays.iter().all(|d| *d <= ceiling));
        assert!(
            delays.iter().any(|d| *d < ceiling / 10),
            "never near zero: not full jitter"
        );
        assert!(
            delays.iter().any(|d| *d > ceiling * 9 / 10),
            "never near the ceiling"
        );
        assert!(policy.backoff(40, &mut rng) <= policy.max_delay);
    }
}
