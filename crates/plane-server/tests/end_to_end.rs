//! The service on a real socket, fed by plane-fake's signed webhooks.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plane_core::{PlaneClient, WorkItemFields};
use plane_fake::FakePlane;
use plane_server::config::{Config, Overrides};
use plane_webhook::{
    BoxFuture, DeliveryStore, Envelope, EventHandler, Handled, HandlerError, InboxItem,
    SqliteStore, Status, StoreConfig,
};
use tokio::net::TcpListener;

/// Counts how often each (event, object, field) was handled.
#[derive(Debug, Default)]
struct Counting {
    seen: Mutex<HashMap<String, u32>>,
    delay: Duration,
    fail: bool,
}

impl EventHandler for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    fn handle<'a>(
        &'a self,
        _: &'a InboxItem,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            if self.fail {
                return Err(HandlerError::new("Plane said no"));
            }
            let field = envelope
                .activity
                .as_ref()
                .and_then(|a| a.field.clone())
                .unwrap_or_default();
            let key = format!(
                "{} {} {:?} {field}",
                envelope.event,
                envelope.action.as_str(),
                envelope.payload.id()
            );
            *self.seen.lock().unwrap().entry(key).or_default() += 1;
            Ok(Handled::Done)
        })
    }
}

fn config(secret: &str, db: &std::path::Path) -> Config {
    let secret = secret.to_owned();
    Config::load(
        &Overrides {
            database: Some(db.to_owned()),
            ..Overrides::default()
        },
        &move |name| (name == "PLANE_WEBHOOK_SECRET").then(|| secret.clone()),
    )
    .unwrap()
}

/// The service on a real socket, its SQLite store in a temporary directory.
struct Harness {
    _dir: tempfile::TempDir,
    secret: String,
    /// The SQLite store (also when the service got a wrapper around it).
    store: Arc<dyn DeliveryStore>,
    running: plane_server::Running,
    url: String,
}

impl Harness {
    async fn start(handler: Arc<dyn EventHandler>, store_config: StoreConfig) -> Self {
        Self::start_with(handler, store_config, |_| {}, |store| store).await
    }

    /// `tweak` adjusts the configuration; `wrap` decides what the service gets
    /// in place of the plain store.
    async fn start_with(
        handler: Arc<dyn EventHandler>,
        store_config: StoreConfig,
        tweak: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn DeliveryStore>) -> Arc<dyn DeliveryStore>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = format!("plane_wh_{}", uuid::Uuid::new_v4().simple());
        let mut cfg = config(&secret, &dir.path().join("deliveries.db"));
        tweak(&mut cfg);
        let store: Arc<dyn DeliveryStore> =
            Arc::new(SqliteStore::open(&cfg.database, store_config).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = plane_server::start(
            &cfg,
            wrap(store.clone()),
            vec![handler],
            listener,
            std::future::pending(),
        )
        .await
        .unwrap();
        let url = format!("http://{}/webhooks/plane", running.addr);
        Self {
            _dir: dir,
            secret,
            store,
            running,
            url,
        }
    }

    /// Sends one signed `issue` event, as Plane does (retrying transport errors only).
    async fn send(&self, action: &str, name: &str) -> plane_fake::WebhookDelivery {
        plane_fake::WebhookSender::new(&self.secret)
            .backoff(Duration::from_millis(20))
            .send(
                &self.url,
                "issue",
                action,
                serde_json::json!({"id": uuid::Uuid::new_v4(), "name": name}),
                serde_json::json!({}),
            )
            .await
            .unwrap()
    }
}

/// Waits for a condition (up to 30 s, a bound for a stalled test, not a margin).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..3000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_from_plane_are_handled_exactly_once_even_when_resent() {
    let handler = Arc::new(Counting::default());
    let h = Harness::start(handler.clone(), StoreConfig::default()).await;
    let (store, url, secret) = (&h.store, &h.url, &h.secret);

    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    fake.register_webhook(url, secret);
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .build()
        .unwrap();
    let items = client.work_items(fake.project_id());
    for n in 0..5 {
        let item = items
            .create(&WorkItemFields::new(format!("filing {n}")))
            .await
            .unwrap();
        items
            .update(
                item.id,
                &WorkItemFields::new(format!("filing {n} (renamed)"))
                    .priority(plane_core::Priority::High),
            )
            .await
            .unwrap();
    }
    // 5 creates + 5 × 2 changed fields.
    eventually("15 deliveries", async || {
        store.list(None, 100).await.unwrap().len() == 15
    })
    .await;

    // One more event, then the same body three times under new delivery ids,
    // as Plane CE's retries send it.
    let sender = fake.webhook_sender(secret);
    let original = sender
        .send(
            url,
            "issue",
            "updated",
            serde_json::json!({"id": uuid::Uuid::new_v4(), "name": "x"}),
            serde_json::json!({"field": "name"}),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let again = sender
            .raw(url, "issue", original.body.clone(), None)
            .await
            .unwrap();
        assert_eq!(again.status, Some(200));
    }
    eventually("the inbox to drain", async || {
        let s = store.stats().await.unwrap();
        s.pending + s.processing + s.failed == 0 && s.done == 16
    })
    .await;
    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 16, "{seen:#?}");
    assert!(
        seen.values().all(|n| *n == 1),
        "handled more than once: {seen:#?}"
    );
    assert_eq!(
        h.running
            .state
            .metrics
            .delivery_count("duplicate", "same_event"),
        3
    );
    h.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_are_retried_with_backoff_then_parked_as_dead() {
    let handler = Arc::new(Counting {
        fail: true,
        ..Counting::default()
    });
    let store_config = StoreConfig {
        max_attempts: 3,
        retry_base: Duration::from_millis(20),
        ..StoreConfig::default()
    };
    let h = Harness::start(handler, store_config).await;
    let store = &h.store;
    h.send("created", "doomed").await;
    eventually("the item to be parked", async || {
        store.stats().await.unwrap().dead == 1
    })
    .await;
    let dead = store.list(Some(Status::Dead), 1).await.unwrap().remove(0);
    assert_eq!(dead.attempts, 3);
    assert!(
        dead.last_error
            .unwrap()
            .contains("handler counting: Plane said no")
    );
    h.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_current_item_and_gives_back_the_rest() {
    let handler = Arc::new(Counting {
        delay: Duration::from_millis(300),
        ..Counting::default()
    });
    let h = Harness::start(handler.clone(), StoreConfig::default()).await;
    let store = h.store.clone();
    for n in 0..4 {
        assert_eq!(
            h.send("created", &format!("slow {n}")).await.status,
            Some(200)
        );
    }
    eventually("the worker to start", async || {
        store.stats().await.unwrap().processing > 0
    })
    .await;
    h.running.shutdown().await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.processing, 0,
        "a leased item was left behind: {stats:?}"
    );
    assert_eq!(stats.done + stats.pending, 4, "{stats:?}");
    assert!(stats.done >= 1 && stats.pending >= 1, "{stats:?}");
    let seen: u32 = handler.seen.lock().unwrap().values().sum();
    assert_eq!(u64::from(seen), stats.done);
    // What was given back has its attempt returned.
    assert!(
        store
            .list(Some(Status::Pending), 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.attempts == 0)
    );
}

/// A store whose first `record` calls fail, as a full disk would.
#[derive(Debug)]
struct FailingRecords {
    inner: Arc<dyn DeliveryStore>,
    failures_left: std::sync::atomic::AtomicUsize,
}

impl DeliveryStore for FailingRecords {
    fn record(
        &self,
        d: plane_webhook::NewDelivery,
    ) -> BoxFuture<'_, Result<plane_webhook::RecordOutcome, plane_webhook::Error>> {
        use std::sync::atomic::Ordering;
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async {
                Err(plane_webhook::Error::Store {
                    path: "test.db".into(),
                    operation: "record a delivery",
                    message: "disk full".into(),
                })
            });
        }
        self.inner.record(d)
    }
    fn claim<'a>(
        &'a self,
        w: &'a str,
        l: usize,
        d: Duration,
    ) -> BoxFuture<'a, Result<Vec<plane_webhook::InboxItem>, plane_webhook::Error>> {
        self.inner.claim(w, l, d)
    }
    fn complete<'a>(
        &'a self,
        i: &'a plane_webhook::InboxItem,
    ) -> BoxFuture<'a, Result<(), plane_webhook::Error>> {
        self.inner.complete(i)
    }
    fn ignore<'a>(
        &'a self,
        i: &'a plane_webhook::InboxItem,
        r: &'a str,
    ) -> BoxFuture<'a, Result<(), plane_webhook::Error>> {
        self.inner.ignore(i, r)
    }
    fn complete_noted<'a>(
        &'a self,
        i: &'a plane_webhook::InboxItem,
        n: &'a str,
    ) -> BoxFuture<'a, Result<(), plane_webhook::Error>> {
        self.inner.complete_noted(i, n)
    }
    fn fail<'a>(
        &'a self,
        i: &'a plane_webhook::InboxItem,
        e: &'a str,
    ) -> BoxFuture<'a, Result<plane_webhook::FailOutcome, plane_webhook::Error>> {
        self.inner.fail(i, e)
    }
    fn release<'a>(
        &'a self,
        i: &'a plane_webhook::InboxItem,
    ) -> BoxFuture<'a, Result<(), plane_webhook::Error>> {
        self.inner.release(i)
    }
    fn extend<'a>(
        &'a self,
        i: &'a plane_webhook::InboxItem,
        d: Duration,
    ) -> BoxFuture<'a, Result<(), plane_webhook::Error>> {
        self.inner.extend(i, d)
    }
    fn list(
        &self,
        s: Option<Status>,
        l: usize,
    ) -> BoxFuture<'_, Result<Vec<plane_webhook::DeliveryRecord>, plane_webhook::Error>> {
        self.inner.list(s, l)
    }
    fn replay(&self, id: i64) -> BoxFuture<'_, Result<(), plane_webhook::Error>> {
        self.inner.replay(id)
    }
    fn purge(&self, d: Duration) -> BoxFuture<'_, Result<u64, plane_webhook::Error>> {
        self.inner.purge(d)
    }
    fn stats(&self) -> BoxFuture<'_, Result<plane_webhook::InboxStats, plane_webhook::Error>> {
        self.inner.stats()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_cannot_be_stored_gets_no_answer_so_plane_sends_it_again() {
    let handler = Arc::new(Counting::default());
    let h = Harness::start_with(
        handler.clone(),
        StoreConfig::default(),
        |_| {},
        |inner| {
            Arc::new(FailingRecords {
                inner,
                failures_left: std::sync::atomic::AtomicUsize::new(2),
            })
        },
    )
    .await;
    let sqlite = &h.store;
    // plane-fake's sender behaves like Plane CE: it retries only transport errors.
    let delivery = h.send("created", "kept").await;
    assert_eq!(delivery.status, Some(200));
    assert_eq!(
        delivery.delivery_ids.len(),
        3,
        "two dropped connections, then stored"
    );
    eventually("the item to be handled", async || {
        sqlite.stats().await.unwrap().done == 1
    })
    .await;
    assert_eq!(handler.seen.lock().unwrap().values().sum::<u32>(), 1);
    assert_eq!(
        h.running
            .state
            .metrics
            .delivery_count("rejected", "store_unavailable"),
        2
    );
    h.running.shutdown().await.unwrap();
}

/// Panics on the first event it sees, handles the rest.
#[derive(Debug, Default)]
struct PanicsOnce {
    panicked: std::sync::atomic::AtomicBool,
    handled: std::sync::atomic::AtomicUsize,
}

impl EventHandler for PanicsOnce {
    fn name(&self) -> &str {
        "panics-once"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    fn handle<'a>(
        &'a self,
        _: &'a InboxItem,
        _: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        Box::pin(async move {
            if !self
                .panicked
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                panic!("handler bug");
            }
            self.handled
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Handled::Done)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_item_and_the_worker_carries_on() {
    let handler = Arc::new(PanicsOnce::default());
    let store_config = StoreConfig {
        retry_base: Duration::from_millis(20),
        ..StoreConfig::default()
    };
    let h = Harness::start(handler.clone(), store_config).await;
    let store = &h.store;
    for n in 0..3 {
        h.send("created", &format!("item {n}")).await;
    }
    eventually("all three handled", async || {
        store.stats().await.unwrap().done == 3
    })
    .await;
    assert_eq!(
        handler.handled.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the panicked item was retried"
    );
    h.running.shutdown().await.unwrap();
}

/// Many slow senders, few slots: past `server.max_in_flight` a request waits
/// with its body unread, so at most that many bodies are buffered at once (the
/// memory bound is `max_in_flight × body_limit_bytes`), and no sender is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_slow_senders_wait_with_their_bodies_unread() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LIMIT: usize = 2;
    const SENDERS: usize = 8;
    let h = Harness::start_with(
        Arc::new(Counting::default()),
        StoreConfig::default(),
        |c| c.max_in_flight = LIMIT,
        |s| s,
    )
    .await;
    let limit = h.running.state.in_flight.clone();
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        let body = format!(
            r#"{{"event": "issue", "action": "created", "webhook_id": null, "workspace_id": null, "data": {{"id": "{}", "name": "slow {n}"}}, "activity": {{"field": null}}}}"#,
            uuid::Uuid::new_v4()
        )
        .into_bytes();
        let head = format!(
            "POST /webhooks/plane HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             x-plane-event: issue\r\nx-plane-delivery: {}\r\nx-plane-signature: {}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            uuid::Uuid::new_v4(),
            plane_webhook::Verifier::sign(&h.secret, &body),
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(h.running.addr)
            .await
            .unwrap();
        // The headers and the first bytes of the body, then nothing for now.
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..10]).await.unwrap();
        senders.push((stream, body));
    }
    eventually("every request to reach the limiter", async || {
        limit.current() + limit.waiting() == SENDERS
    })
    .await;
    assert_eq!(
        (limit.current(), limit.waiting()),
        (LIMIT, SENDERS - LIMIT),
        "LIMIT bodies are being read, the rest wait unread"
    );
    for (stream, body) in &mut senders {
        stream.write_all(&body[10..]).await.unwrap();
    }
    for (mut stream, _) in senders {
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(
        limit.peak(),
        LIMIT,
        "more bodies were buffered at once than the limit"
    );
    assert_eq!(h.store.list(None, 100).await.unwrap().len(), SENDERS);
    h.running.shutdown().await.unwrap();
}
