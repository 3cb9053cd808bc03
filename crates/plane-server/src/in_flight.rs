//! A bound on webhook requests in flight (`server.max_in_flight`).
//!
//! A request takes a permit before its body is read and keeps it until its
//! delivery is stored. Past the limit, requests wait for a permit with their
//! bodies unread: they stay in the socket, and TCP flow control slows the
//! senders down. So at most `limit` bodies (each up to `server.body_limit_bytes`)
//! are buffered at once, however many slow or hostile senders connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default for `server.max_in_flight`: 64 bodies of at most 1 MiB.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Shared by every request of a router.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use plane_server::in_flight::InFlightLimit;
/// let limit = InFlightLimit::new(1);
/// let permit = limit.acquire().await;
/// assert_eq!((limit.current(), limit.peak()), (1, 1));
/// drop(permit);
/// assert_eq!(limit.current(), 0);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct InFlightLimit {
    semaphore: Arc<Semaphore>,
    limit: usize,
    current: Gauge,
    waiting: Gauge,
    peak: Arc<AtomicUsize>,
}

/// Held while a request's body is read, verified and stored.
#[derive(Debug)]
pub struct InFlightPermit {
    _permit: OwnedSemaphorePermit,
    current: Gauge,
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        self.current.dec();
    }
}

impl InFlightLimit {
    /// At most `limit` requests at once (at least 1).
    pub fn new(limit: usize) -> Self {
        Self::with_gauges(limit, Gauge::default(), Gauge::default(), Gauge::default())
    }

    /// As [`InFlightLimit::new`], counting into these metrics gauges.
    pub(crate) fn with_gauges(
        limit: usize,
        current: Gauge,
        waiting: Gauge,
        limit_gauge: Gauge,
    ) -> Self {
        let limit = limit.max(1);
        limit_gauge.set(i64::try_from(limit).unwrap_or(i64::MAX));
        current.set(0);
        waiting.set(0);
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
            current,
            waiting,
            peak: Arc::default(),
        }
    }

    /// Waits for a permit (first come, first served).
    pub async fn acquire(&self) -> InFlightPermit {
        /// Counts a waiting request for as long as it waits (also when dropped).
        struct Waiting(Gauge);
        impl Drop for Waiting {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.waiting.inc();
        let waiting = Waiting(self.waiting.clone());
        let permit = match self.semaphore.clone().acquire_owned().await {
            Ok(permit) => permit,
            // Only `close` fails an acquire, and nothing closes this semaphore.
            Err(_) => unreachable!("the in-flight semaphore is never closed"),
        };
        drop(waiting);
        let now = usize::try_from(self.current.inc() + 1).unwrap_or(usize::MAX);
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlightPermit {
            _permit: permit,
            current: self.current.clone(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests holding a permit now.
    pub fn current(&self) -> usize {
        usize::try_from(self.current.get()).unwrap_or(0)
    }

    /// Requests waiting for a permit now, their bodies unread.
    pub fn waiting(&self) -> usize {
        usize::try_from(self.waiting.get()).unwrap_or(0)
    }

    /// The most requests that ever held a permit at once: never above the limit.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}
