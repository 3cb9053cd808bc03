//! A store wrapper for tests: counts `stats` calls and completions, and can be broken.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plane_webhook::{
    BoxFuture, DeliveryRecord, DeliveryStore, Error, FailOutcome, InboxItem, InboxStats,
    NewDelivery, RecordOutcome, Status,
};

/// Wraps a store; `stats_calls` counts the expensive count-by-status calls.
#[derive(Debug)]
pub struct ProbeStore {
    pub inner: Arc<dyn DeliveryStore>,
    pub stats_calls: AtomicUsize,
    /// `complete` calls, `complete_all` calls, and the items these carried.
    pub complete_calls: AtomicUsize,
    pub complete_all_calls: AtomicUsize,
    pub completed_together: AtomicUsize,
    /// When set, every call fails as a store with a full disk would.
    pub broken: AtomicBool,
    /// With `broken`: fail as a database that cannot be reached instead.
    pub unreachable: AtomicBool,
}

impl ProbeStore {
    pub fn new(inner: Arc<dyn DeliveryStore>) -> Self {
        Self {
            inner,
            stats_calls: AtomicUsize::new(0),
            complete_calls: AtomicUsize::new(0),
            complete_all_calls: AtomicUsize::new(0),
            completed_together: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
            unreachable: AtomicBool::new(false),
        }
    }

    fn fail<T: Send + 'static>(&self) -> Option<BoxFuture<'static, Result<T, Error>>> {
        let unreachable = self.unreachable.load(Ordering::SeqCst);
        self.broken.load(Ordering::SeqCst).then(|| {
            Box::pin(async move {
                Err(if unreachable {
                    Error::Unavailable {
                        target: "postgres://probe@10.0.0.9/secret-db".into(),
                        operation: "test",
                        message: "connection refused".into(),
                    }
                } else {
                    disk_full()
                })
            }) as BoxFuture<'static, Result<T, Error>>
        })
    }
}

/// What a store with a full disk answers.
fn disk_full() -> Error {
    Error::Store {
        path: "/secret/path/probe.db".into(),
        operation: "test",
        message: "disk full".into(),
    }
}

impl DeliveryStore for ProbeStore {
    fn record(&self, d: NewDelivery) -> BoxFuture<'_, Result<RecordOutcome, Error>> {
        self.fail().unwrap_or_else(|| self.inner.record(d))
    }
    fn claim<'a>(
        &'a self,
        w: &'a str,
        l: usize,
        d: Duration,
    ) -> BoxFuture<'a, Result<Vec<InboxItem>, Error>> {
        self.fail().unwrap_or_else(|| self.inner.claim(w, l, d))
    }
    fn complete<'a>(&'a self, i: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>> {
        self.complete_calls.fetch_add(1, Ordering::SeqCst);
        self.fail().unwrap_or_else(|| self.inner.complete(i))
    }
    fn complete_all<'a>(&'a self, items: &'a [InboxItem]) -> BoxFuture<'a, Vec<Result<(), Error>>> {
        self.complete_all_calls.fetch_add(1, Ordering::SeqCst);
        self.completed_together
            .fetch_add(items.len(), Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            let answers = items.iter().map(|_| Err(disk_full())).collect();
            return Box::pin(async move { answers });
        }
        self.inner.complete_all(items)
    }
    fn ignore<'a>(&'a self, i: &'a InboxItem, r: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        self.fail().unwrap_or_else(|| self.inner.ignore(i, r))
    }
    fn complete_noted<'a>(
        &'a self,
        i: &'a InboxItem,
        n: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.fail()
            .unwrap_or_else(|| self.inner.complete_noted(i, n))
    }
    fn extend<'a>(&'a self, i: &'a InboxItem, d: Duration) -> BoxFuture<'a, Result<(), Error>> {
        self.fail().unwrap_or_else(|| self.inner.extend(i, d))
    }
    fn fail<'a>(
        &'a self,
        i: &'a InboxItem,
        e: &'a str,
    ) -> BoxFuture<'a, Result<FailOutcome, Error>> {
        ProbeStore::fail(self).unwrap_or_else(|| self.inner.fail(i, e))
    }
    fn release<'a>(&'a self, i: &'a InboxItem) -> BoxFuture<'a, Result<(), Error>> {
        self.fail().unwrap_or_else(|| self.inner.release(i))
    }
    fn list(
        &self,
        s: Option<Status>,
        l: usize,
    ) -> BoxFuture<'_, Result<Vec<DeliveryRecord>, Error>> {
        self.fail().unwrap_or_else(|| self.inner.list(s, l))
    }
    fn replay(&self, id: i64) -> BoxFuture<'_, Result<(), Error>> {
        self.fail().unwrap_or_else(|| self.inner.replay(id))
    }
    fn purge(&self, d: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        self.fail().unwrap_or_else(|| self.inner.purge(d))
    }
    fn stats(&self) -> BoxFuture<'_, Result<InboxStats, Error>> {
        self.stats_calls.fetch_add(1, Ordering::SeqCst);
        self.fail().unwrap_or_else(|| self.inner.stats())
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.fail().unwrap_or_else(|| self.inner.ping())
    }
}
