//! Client-side pacing under Plane's per-key budget.
//!
//! Plane (DRF) keeps a sliding log per key: a request is allowed if fewer than N
//! requests were logged in the last window. The limiter mirrors that log so the
//! server never has to say no:
//!
//! * a request takes a slot; the slot is released one window after its *response*
//!   arrived. The server logged the request somewhere between send and response, so
//!   counting from the response is always safe, with no guessed safety margin;
//! * `X-RateLimit-Remaining` below the threshold while the local log still thinks
//!   there is room means someone else spends the same key: hold everyone until
//!   `X-RateLimit-Reset`;
//! * a 429 holds everyone for `Retry-After`.
//!
//! One limiter is shared by all clones of a client, so concurrent tasks share it.
//!
//! Several processes spending one key (replicas) cannot see each other's requests in
//! their own log: each sees only its own answers' `X-RateLimit-*`. Give their clients one
//! [`SharedBudget`] (plane-server keeps one in PostgreSQL) and every request also takes a
//! slot in it, counted, like the local log, until one window after its response.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::BoxFuture;

/// A request budget several processes spend together: each request takes a slot in it
/// (besides the process's own [`RateLimiter`]), and the slot counts until one window
/// after the request's response, as the local log does.
///
/// An error (the shared store is down) is logged and the request goes on under the local
/// limiter alone: a 429 is then retried as usual, which beats stopping all work.
pub trait SharedBudget: Send + Sync + fmt::Debug {
    /// Takes a slot for one request now: `Ok(Ok(slot))`; or `Ok(Err(wait))` when the
    /// budget is spent, `wait` being when to ask again.
    fn try_take(&self, budget: Budget) -> BoxFuture<'_, Result<Result<u64, Duration>, String>>;

    /// The request holding `slot` got its answer (or was cancelled): the slot counts
    /// from now until one window later.
    fn finished(&self, slot: u64) -> BoxFuture<'_, ()>;
}

/// How many requests a key may make per window.
///
/// ```
/// use plane_core::Budget;
/// use std::time::Duration;
/// assert_eq!(Budget::default(), Budget::per_minute(60));
/// assert_eq!(Budget::SERVICE_TOKEN.requests, 300);
/// let fast = Budget::new(20, Duration::from_secs(1));
/// assert_eq!(fast.window, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests allowed per window.
    pub requests: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Budget {
    /// Plane's budget for service tokens (`APIToken.is_service`): 300 per minute.
    pub const SERVICE_TOKEN: Budget = Budget::per_minute(300);

    /// `requests` per `window`. A zero budget is raised to one request.
    pub const fn new(requests: u32, window: Duration) -> Self {
        Self {
            requests: if requests == 0 { 1 } else { requests },
            window,
        }
    }

    /// `requests` per 60 seconds.
    pub const fn per_minute(requests: u32) -> Self {
        Self::new(requests, Duration::from_secs(60))
    }
}

impl Default for Budget {
    /// Plane's default: 60 requests per minute per key (Cloud, and CE unless
    /// `API_KEY_RATE_LIMIT` is set).
    fn default() -> Self {
        Self::per_minute(60)
    }
}

/// What the limiter knows, for display and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The last `X-RateLimit-Remaining` Plane sent.
    pub remaining: Option<u32>,
    /// The last `X-RateLimit-Reset` Plane sent.
    pub reset: Option<SystemTime>,
    /// The last `Retry-After` of a 429.
    pub last_retry_after: Option<Duration>,
    /// How many times a request waited for budget (finished waits, 429 retry sleeps
    /// included).
    pub waits: u64,
    /// The total time requests spent waiting for budget: finished waits, the sleeps
    /// before retrying a 429, and the part of every wait still running, so it grows
    /// during a long wait (concurrent waits add up).
    pub waited: Duration,
    /// 429 answers seen (including retried ones).
    pub throttled: u64,
    /// Requests waiting for budget right now (a 429 retry sleep included).
    pub waiting: u32,
    /// When the oldest wait still running began; `None` when nothing waits. A progress
    /// display can show "waiting for the rate limit since ..." from this.
    pub waiting_since: Option<Instant>,
}

/// What a response said about the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Observation {
    pub remaining: Option<u32>,
    pub reset: Option<SystemTime>,
    pub retry_after: Option<Duration>,
}

impl Observation {
    pub(crate) fn from_headers(headers: &http::HeaderMap, retry_after_cap: Duration) -> Self {
        let int =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        Self {
            remaining: int("x-ratelimit-remaining").and_then(|v| u32::try_from(v).ok()),
            // Checked: a header is untrusted input and must not overflow the clock.
            reset: int("x-ratelimit-reset")
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s))),
            retry_after: parse_retry_after(headers).map(|d| d.min(retry_after_cap)),
        }
    }
}

/// `Retry-After` as delta-seconds (what DRF sends) or as an HTTP date.
fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let when =
        UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(when.timestamp()).ok()?))?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The shared pacer. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    budget: Budget,
    threshold: u32,
    state: Mutex<State>,
    released: Notify,
    across: Option<Arc<dyn SharedBudget>>,
}

#[derive(Default)]
struct State {
    in_flight: u32,
    /// Response times of finished requests still inside the window, oldest first.
    finished: VecDeque<Instant>,
    hold_until: Option<Instant>,
    /// Start of every wait still running (one entry per waiting request).
    waits_running: Vec<Instant>,
    status: RateLimitStatus,
}

impl State {
    fn begin_wait(&mut self, since: Instant) {
        self.waits_running.push(since);
    }

    /// Moves a running wait into the totals.
    fn end_wait(&mut self, since: Instant, now: Instant) {
        if let Some(i) = self.waits_running.iter().position(|&t| t == since) {
            self.waits_running.swap_remove(i);
        }
        self.status.waits += 1;
        self.status.waited += now.saturating_duration_since(since);
    }
}

/// Ends a wait if the waiting future is dropped (a cancelled request).
struct RunningWait<'a> {
    limiter: &'a RateLimiter,
    since: Option<Instant>,
}

impl RunningWait<'_> {
    fn begin(&mut self, state: &mut State, now: Instant) {
        if self.since.is_none() {
            self.since = Some(now);
            state.begin_wait(now);
        }
    }

    fn end(&mut self, state: &mut State, now: Instant) {
        if let Some(since) = self.since.take() {
            state.end_wait(since, now);
        }
    }
}

impl Drop for RunningWait<'_> {
    fn drop(&mut self) {
        if self.since.is_some() {
            let mut state = self.limiter.lock();
            self.end(&mut state, Instant::now());
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("budget", &self.shared.budget)
            .field("threshold", &self.shared.threshold)
            .field("status", &self.status())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter for `budget`; when Plane reports fewer than `threshold` requests
    /// left that this limiter did not account for, it waits for the reset.
    pub fn new(budget: Budget, threshold: u32) -> Self {
        Self::build(budget, threshold, None)
    }

    /// As [`new`](Self::new), every request also taking a slot in `shared`, the budget
    /// the other processes spending the key share.
    pub fn with_shared(budget: Budget, threshold: u32, shared: Arc<dyn SharedBudget>) -> Self {
        Self::build(budget, threshold, Some(shared))
    }

    fn build(budget: Budget, threshold: u32, across: Option<Arc<dyn SharedBudget>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                budget,
                threshold,
                state: Mutex::new(State::default()),
                released: Notify::new(),
                across,
            }),
        }
    }

    /// The configured budget.
    pub fn budget(&self) -> Budget {
        self.shared.budget
    }

    /// The last seen rate-limit state, with the waits running now counted in.
    pub fn status(&self) -> RateLimitStatus {
        let state = self.lock();
        let now = Instant::now();
        let mut status = state.status;
        for &since in &state.waits_running {
            status.waited += now.saturating_duration_since(since);
        }
        status.waiting = u32::try_from(state.waits_running.len()).unwrap_or(u32::MAX);
        status.waiting_since = state.waits_running.iter().min().copied();
        status
    }

    /// Sleeps `delay` as a wait for budget (the pause before retrying a 429), so it
    /// shows in [`RateLimitStatus::waited`] and [`RateLimitStatus::waiting_since`].
    pub(crate) async fn pause(&self, delay: Duration) {
        let mut wait = RunningWait {
            limiter: self,
            since: None,
        };
        wait.begin(&mut self.lock(), Instant::now());
        tokio::time::sleep(delay).await;
        let mut state = self.lock();
        wait.end(&mut state, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a
        // few plain assignments.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a request may be sent under the budget and takes a slot.
    pub async fn acquire(&self) -> Permit {
        let window = self.shared.budget.window;
        let capacity = self.shared.budget.requests;
        let mut wait = RunningWait {
            limiter: self,
            since: None,
        };
        loop {
            // Register for wake-ups before looking, so a release between the look
            // and the wait is not missed.
            let released = self.shared.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let wait_until = {
                let mut state = self.lock();
                let now = Instant::now();
                while state.finished.front().is_some_and(|&t| t + window <= now) {
                    state.finished.pop_front();
                }
                // `None`: a local slot was taken. `Some(until)`: wait (for a release when
                // `until` is `None`).
                let until = if let Some(hold) = state.hold_until.filter(|&h| h > now) {
                    Some(Some(hold))
                } else if state.in_flight + (state.finished.len() as u32) < capacity {
                    state.in_flight += 1;
                    None
                } else {
                    Some(state.finished.front().map(|&t| t + window))
                };
                if let Some(until) = until
                    && wait.since.is_none()
                {
                    wait.begin(&mut state, now);
                    tracing::debug!(
                        wait_ms = until.map(|t| (t - now).as_millis() as u64),
                        "plane rate limit: waiting for budget"
                    );
                }
                until
            };
            let Some(wait_until) = wait_until else {
                // A local slot is ours; with a shared budget, a slot there too.
                let mut permit = Permit {
                    limiter: self.clone(),
                    observation: None,
                    slot: None,
                };
                if let Some(across) = &self.shared.across {
                    permit.slot = self.take_shared(across.as_ref(), &mut wait).await;
                }
                wait.end(&mut self.lock(), Instant::now());
                return permit;
            };
            match wait_until {
                Some(t) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(t) => {}
                        () = released => {}
                    }
                }
                None => released.await,
            }
        }
    }

    /// Waits for a slot in the shared budget (counted as a wait for budget); `None` when
    /// the shared store failed and the request goes on under the local limiter alone.
    async fn take_shared(
        &self,
        across: &dyn SharedBudget,
        wait: &mut RunningWait<'_>,
    ) -> Option<u64> {
        let window = self.shared.budget.window;
        loop {
            match across.try_take(self.shared.budget).await {
                Ok(Ok(slot)) => return Some(slot),
                Ok(Err(delay)) => {
                    wait.begin(&mut self.lock(), Instant::now());
                    tracing::debug!(
                        wait_ms = delay.as_millis() as u64,
                        "plane rate limit: the shared budget is spent; waiting"
                    );
                    // Never longer than a window: a slot of a dead process frees by then.
                    tokio::time::sleep(delay.clamp(Duration::from_millis(10), window)).await;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "plane rate limit: the shared budget cannot be read; pacing by this \
                         process alone for this request"
                    );
                    return None;
                }
            }
        }
    }

    fn release(&self, observation: Option<Observation>) {
        {
            let mut state = self.lock();
            let now = Instant::now();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.finished.push_back(now);
            if let Some(obs) = observation {
                self.apply(&mut state, now, obs);
            }
        }
        self.shared.released.notify_waiters();
    }

    fn apply(&self, state: &mut State, now: Instant, obs: Observation) {
        if let Some(retry_after) = obs.retry_after {
            state.status.last_retry_after = Some(retry_after);
            state.status.throttled += 1;
            let until = now + retry_after;
            state.hold_until = Some(state.hold_until.map_or(until, |h| h.max(until)));
            tracing::warn!(
                retry_after_s = retry_after.as_secs_f64(),
                "plane rate limit: 429, holding all requests"
            );
        }
        if obs.remaining.is_some() {
            state.status.remaining = obs.remaining;
            state.status.reset = obs.reset;
        }
        // With a shared budget the other spenders are the replicas, already counted there:
        // a low `X-RateLimit-Remaining` is their doing, not news (a spender outside them is
        // still caught by a 429, whose Retry-After holds everyone).
        if let (Some(remaining), Some(reset), None) =
            (obs.remaining, obs.reset, &self.shared.across)
        {
            let used_locally = state.in_flight + state.finished.len() as u32;
            let room_locally = self.shared.budget.requests.saturating_sub(used_locally);
            if remaining < self.shared.threshold && remaining < room_locally {
                let delay = reset
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .min(self.shared.budget.window);
                let until = now + delay;
                state.hold_until = Some(state.hold_until.map_or(until, |h| h.max(until)));
                tracing::info!(
                    remaining,
                    room_locally,
                    wait_ms = delay.as_millis() as u64,
                    "plane rate limit: another client spends this key; pausing until reset"
                );
            }
        }
    }
}

/// A slot in the budget, held while a request is in flight. Dropping it releases
/// the slot (a cancelled request may still have reached Plane, so it counts).
#[derive(Debug)]
pub struct Permit {
    limiter: RateLimiter,
    observation: Option<Observation>,
    /// The slot taken in the shared budget, if any.
    slot: Option<u64>,
}

impl Permit {
    pub(crate) fn observe(&mut self, observation: Observation) {
        self.observation = Some(observation);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.observation.take());
        if let (Some(slot), Some(across)) = (self.slot.take(), &self.limiter.shared.across) {
            // Drop cannot wait: tell the shared budget from a task. If it never runs, the
            // slot still ends (the store counts it from when it was taken, plus slack).
            let across = across.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { across.finished(slot).await });
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn observation(remaining: u32, reset_in: u64) -> Observation {
        Observation {
            remaining: Some(remaining),
            reset: Some(SystemTime::now() + Duration::from_secs(reset_in)),
            retry_after: None,
        }
    }

    /// A shared budget in memory: what PostgreSQL keeps for plane-server's replicas.
    #[derive(Debug, Default)]
    struct SharedLog {
        /// (slot, taken at, answered at).
        slots: Mutex<Vec<(u64, Instant, Option<Instant>)>>,
        taken: Mutex<Vec<Instant>>,
        failing: std::sync::atomic::AtomicBool,
    }

    impl SharedBudget for SharedLog {
        fn try_take(&self, budget: Budget) -> BoxFuture<'_, Result<Result<u64, Duration>, String>> {
            Box::pin(async move {
                if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err("the shared store is down".into());
                }
                let now = Instant::now();
                let mut slots = self.slots.lock().unwrap();
                slots.retain(|(_, _, done)| done.is_none_or(|d| d + budget.window > now));
                if slots.len() < budget.requests as usize {
                    let id = slots.iter().map(|s| s.0).max().unwrap_or(0) + 1;
                    slots.push((id, now, None));
                    self.taken.lock().unwrap().push(now);
                    return Ok(Ok(id));
                }
                let next = slots
                    .iter()
                    .filter_map(|(_, _, done)| done.map(|d| d + budget.window - now))
                    .min()
                    .unwrap_or(Duration::from_millis(100));
                Ok(Err(next))
            })
        }

        fn finished(&self, slot: u64) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                for s in self.slots.lock().unwrap().iter_mut() {
                    if s.0 == slot {
                        s.2 = Some(Instant::now());
                    }
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_processes_on_one_shared_budget_stay_under_it_together() {
        let shared = Arc::new(SharedLog::default());
        let budget = Budget::new(3, Duration::from_secs(10));
        let one = RateLimiter::with_shared(budget, 0, shared.clone());
        let two = RateLimiter::with_shared(budget, 0, shared.clone());
        let run = |limiter: RateLimiter| async move {
            for _ in 0..4 {
                let permit = limiter.acquire().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(permit);
                tokio::task::yield_now().await;
            }
            limiter.status()
        };
        let (a, b) = tokio::join!(tokio::spawn(run(one)), tokio::spawn(run(two)));
        let (a, b) = (a.unwrap(), b.unwrap());
        let taken = shared.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 8);
        // Each process alone would send 3 at once; together they never exceed 3 in any
        // window (each slot counts from its answer, 50 ms after it was taken).
        for (i, &t) in taken.iter().enumerate() {
            let in_window = taken[i..]
                .iter()
                .filter(|&&u| u < t + budget.window)
                .count();
            assert!(
                in_window <= 3,
                "{in_window} requests in the window from {i}"
            );
        }
        assert!(a.waits + b.waits >= 2, "someone waited: {a:?} {b:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_budget_that_fails_leaves_the_local_limiter_in_charge() {
        let shared = Arc::new(SharedLog::default());
        shared
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let limiter = RateLimiter::with_shared(Budget::new(2, Duration::from_secs(10)), 0, shared);
        let start = Instant::now();
        for _ in 0..3 {
            drop(limiter.acquire().await);
        }
        assert_eq!(
            start.elapsed().as_secs(),
            10,
            "the local budget still paces"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_never_exceeded_within_a_window() {
        let limiter = RateLimiter::new(Budget::new(3, Duration::from_secs(10)), 0);
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..7 {
            let permit = limiter.acquire().await;
            starts.push(start.elapsed());
            drop(permit);
        }
        let secs: Vec<u64> = starts.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 0, 0, 10, 10, 10, 20]);
        let status = limiter.status();
        assert_eq!(status.waits, 2);
        assert_eq!(status.waited, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_wait_is_visible_and_counted_while_it_lasts() {
        let limiter = RateLimiter::new(Budget::new(1, Duration::from_secs(10)), 0);
        drop(limiter.acquire().await);
        let start = Instant::now();
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move { drop(limiter.acquire().await) }
        });
        tokio::time::sleep(Duration::from_secs(4)).await;
        let during = limiter.status();
        assert_eq!(during.waiting, 1);
        assert_eq!(during.waiting_since, Some(start));
        assert_eq!(
            during.waited,
            Duration::from_secs(4),
            "live, before the wait ends"
        );
        assert_eq!(during.waits, 0);
        waiter.await.expect("waiter panicked");
        let after = limiter.status();
        assert_eq!((after.waiting, after.waiting_since), (0, None));
        assert_eq!((after.waits, after.waited), (1, Duration::from_secs(10)));

        // A wait whose request is cancelled stops counting when it is dropped.
        let cancelled = tokio::time::timeout(Duration::from_secs(3), limiter.acquire()).await;
        assert!(cancelled.is_err());
        let status = limiter.status();
        assert_eq!((status.waiting, status.waiting_since), (0, None));
        assert_eq!(status.waited, Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_frees_one_window_after_the_response_not_the_request() {
        let limiter = RateLimiter::new(Budget::new(1, Duration::from_secs(10)), 0);
        let start = Instant::now();
        let permit = limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(4)).await; // a slow response
        drop(permit);
        let _next = limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_hold_slots_and_wake_waiters_when_done() {
        let limiter = RateLimiter::new(Budget::new(1, Duration::from_millis(100)), 0);
        let first = limiter.acquire().await;
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                let start = Instant::now();
                let _p = limiter.acquire().await;
                start.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(first);
        let waited = waiter.await.expect("waiter panicked");
        assert_eq!(waited, Duration::from_millis(5_100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_every_task_for_retry_after() {
        let limiter = RateLimiter::new(Budget::new(100, Duration::from_secs(60)), 0);
        let mut permit = limiter.acquire().await;
        permit.observe(Observation {
            retry_after: Some(Duration::from_secs(7)),
            ..Observation::default()
        });
        let start = Instant::now();
        drop(permit);
        let _p = limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
        assert_eq!(limiter.status().throttled, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn budget_spent_elsewhere_makes_it_wait_for_the_reset() {
        let limiter = RateLimiter::new(Budget::new(60, Duration::from_secs(60)), 5);
        let mut permit = limiter.acquire().await;
        // Locally 59 left, but Plane says 2: another client uses this key.
        permit.observe(observation(2, 30));
        drop(permit);
        let start = Instant::now();
        let _p = limiter.acquire().await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(29) && waited <= Duration::from_secs(30),
            "{waited:?}"
        );
        assert_eq!(limiter.status().remaining, Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn low_remaining_that_the_limiter_accounts_for_costs_no_extra_wait() {
        let limiter = RateLimiter::new(Budget::new(5, Duration::from_secs(60)), 5);
        let start = Instant::now();
        for remaining in (1..5).rev() {
            let mut permit = limiter.acquire().await;
            permit.observe(observation(remaining, 60));
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn headers_are_parsed_leniently() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-ratelimit-remaining",
            "57".parse().unwrap_or_else(|_| unreachable!()),
        );
        headers.insert(
            "x-ratelimit-reset",
            "1795614180".parse().unwrap_or_else(|_| unreachable!()),
        );
        headers.insert(
            "retry-after",
            "51".parse().unwrap_or_else(|_| unreachable!()),
        );
        let obs = Observation::from_headers(&headers, Duration::from_secs(30));
        assert_eq!(obs.remaining, Some(57));
        assert_eq!(
            obs.reset,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_614_180))
        );
        assert_eq!(obs.retry_after, Some(Duration::from_secs(30)), "capped");

        let mut odd = http::HeaderMap::new();
        odd.insert(
            "x-ratelimit-remaining",
            "lots".parse().unwrap_or_else(|_| unreachable!()),
        );
        let obs = Observation::from_headers(&odd, Duration::from_secs(30));
        assert_eq!(obs, Observation::default());

        // Hostile values are ignored, never a panic.
        let mut hostile = http::HeaderMap::new();
        for (name, value) in [
            ("x-ratelimit-reset", "18446744073709551615"),
            ("retry-after", "1e30"),
        ] {
            hostile.insert(name, value.parse().unwrap_or_else(|_| unreachable!()));
        }
        let obs = Observation::from_headers(&hostile, Duration::from_secs(30));
        assert_eq!((obs.reset, obs.retry_after), (None, None));
        hostile.insert(
            "retry-after",
            "-5".parse().unwrap_or_else(|_| unreachable!()),
        );
        let obs = Observation::from_headers(&hostile, Duration::from_secs(30));
        assert_eq!(obs.retry_after, None);
    }
}
