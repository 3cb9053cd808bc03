//! Several `plane-server serve` replicas on one PostgreSQL, as a team behind a load
//! balancer runs them: real processes, real sockets, deliveries recorded from a real
//! Plane CE (and state changes built from one of them), each sent to a random replica and
//! its retries to the others. Skipped without `PLANE_TEST_DATABASE_URL`.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plane_bir::sync::external_id;
use plane_bir::{DeadlineRecord, DeadlineStatus, DeadlineStore, PgDeadlineStore};
use plane_postgres::testing;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/plane-ce/webhooks")
}

/// The throwaway secret of the recording instance, read from the fixtures' README so no
/// secret-shaped literal sits in the source.
fn recorded_secret() -> String {
    let readme = std::fs::read_to_string(fixtures().join("../README.md")).unwrap();
    readme
        .split_whitespace()
        .find(|w| w.starts_with("plane_wh_"))
        .unwrap()
        .to_owned()
}

/// A delivery as Plane sends it: the event header and the raw body, signed.
#[derive(Debug, Clone)]
struct Delivery {
    event: String,
    body: Vec<u8>,
    signature: String,
}

/// The recorded deliveries exactly as received, with their recorded signatures.
fn recorded() -> Vec<Delivery> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap())
                    .unwrap();
            let header = |name: &str| {
                meta["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
                    .map(|h| h[1].as_str().unwrap().to_owned())
                    .unwrap()
            };
            Delivery {
                event: header("X-Plane-Event"),
                body: std::fs::read(&path).unwrap(),
                signature: header("X-Plane-Signature"),
            }
        })
        .collect()
}

/// The recorded "state moved to Done" delivery of a synced work item, remade for `n`
/// work items of our own: same bytes but the work item's id, its external id and the
/// time (Plane's own spacing and escapes kept), signed with `secret`.
fn state_changes(n: usize, secret: &str) -> Vec<(uuid::Uuid, String, Delivery)> {
    let template =
        std::fs::read_to_string(fixtures().join("1795615128300_0003_issue.body")).unwrap();
    let (item, external, updated) = (
        "10726b93-2516-4e16-91f4-d6804b6c9979",
        "bir:000-123-456-00000:1601-C:2026-10",
        "2026-11-25T13:58:48.266470Z",
    );
    for needle in [item, external, updated] {
        assert!(template.contains(needle), "the recording changed: {needle}");
    }
    (0..n)
        .map(|i| {
            let work_item = uuid::Uuid::new_v4();
            let period = format!("{}-{:02}", 2030 + i / 12, i % 12 + 1);
            let ext = external_id(TIN, "1601-C", &period);
            let body = template
                .replace(item, &work_item.to_string())
                .replace(external, &ext)
                .replace(
                    updated,
                    &format!("2026-11-25T14:{:02}:{:02}.000000Z", i / 60, i % 60),
                );
            let signature = plane_fake::sign(secret, body.as_bytes());
            let delivery = Delivery {
                event: "issue".into(),
                body: body.into_bytes(),
                signature,
            };
            (work_item, ext, delivery)
        })
        .collect()
}

const TIN: &str = "000123456000";

/// The deadlines the state changes are about, as `bir sync` would have left them.
async fn deadlines(db: &plane_postgres::Database, items: &[(uuid::Uuid, String, Delivery)]) {
    let store = PgDeadlineStore::open(db.clone()).await.unwrap();
    let project = uuid::Uuid::new_v4();
    for (work_item, ext, _) in items {
        let period = ext.rsplit(':').next().unwrap().to_owned();
        store
            .record(&DeadlineRecord {
                external_id: ext.clone(),
                profile: TIN.into(),
                form: "1601-C".into(),
                period,
                due_date: "2031-01-10".parse().unwrap(),
                payment_date: None,
                project_id: project,
                work_item_id: Some(*work_item),
                pushed: None,
                fingerprint: None,
                status: DeadlineStatus::Pending,
                status_by: None,
                status_at: None,
            })
            .await
            .unwrap();
    }
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(dir: &Path, name: &str, url: &str, schema: &str, secrets: &str) -> Self {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        // A short lease, so what a killed replica held comes back within the test.
        std::fs::write(&config, "[worker]\nlease_seconds = 2\n").unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_plane-server"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
                url,
            ])
            .arg("--config")
            .arg(&config)
            .env("PLANE_DATABASE_SCHEMA", schema)
            .env("PLANE_WEBHOOK_SECRET", secrets)
            .env("RUST_LOG", "info")
            .env_remove("PLANE_DATABASE_URL")
            .env_remove("PLANE_API_KEY")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let replica = Self { child, port };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return replica;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "replica {name} did not listen: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/plane", self.port)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one attempt: `Some(status)` for an answer, `None` when the connection was refused
/// or closed without one (what Plane retries).
async fn send(http: &reqwest::Client, url: &str, d: &Delivery) -> Option<u16> {
    http.post(url)
        .header("content-type", "application/json")
        .header("x-plane-event", &d.event)
        .header("x-plane-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-plane-signature", &d.signature)
        .body(d.body.clone())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// How many deliveries are stored, and how many of them are not finished yet.
async fn inbox(db: &plane_postgres::Database) -> (i64, i64) {
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM deliveries), \
             (SELECT count(*) FROM inbox WHERE status NOT IN ('done', 'ignored'))",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits until every stored delivery is finished.
async fn drained(db: &plane_postgres::Database, expected: i64) {
    for _ in 0..600 {
        let (stored, open) = inbox(db).await;
        if stored == expected && open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not drained: {:?}", inbox(db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_store_and_process_every_event_once_through_a_sigkill() {
    let Some(pg) = testing::database("replicas").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("test-secret-{}", uuid::Uuid::new_v4().simple());
    let changes = state_changes(90, &secret);
    deadlines(pg.db(), &changes).await;
    let mut stream: Vec<Delivery> = changes.iter().map(|(_, _, d)| d.clone()).collect();
    stream.extend(recorded());
    let events = stream.len();
    // The first replica migrates; the others find the schema ready.
    let secrets = format!("{secret},{}", recorded_secret());
    let mut replicas: Vec<Option<Replica>> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            Some(Replica::start(
                dir.path(),
                name,
                pg.url(),
                pg.schema(),
                &secrets,
            ))
        })
        .collect();
    let http = reqwest::Client::new();
    let mut acknowledged = 0;
    for (i, delivery) in stream.iter().enumerate() {
        if i == events / 2 {
            // Mid-run, while it holds leases and is answering: SIGKILL.
            drop(replicas[0].take());
        }
        let first = (i * 7 + 3) % 3;
        // The delivery to one replica (retried elsewhere while unanswered, as Plane
        // retries a transport error), then Plane CE's retry with a new delivery id to
        // each other replica.
        let mut answered = None;
        for k in 0..3 {
            let Some(replica) = &replicas[(first + k) % 3] else {
                continue;
            };
            if let Some(status) = send(&http, &replica.url(), delivery).await {
                answered = Some(status);
                break;
            }
        }
        assert_eq!(answered, Some(200), "delivery {i} was not acknowledged");
        acknowledged += 1;
        for k in 1..3 {
            if let Some(replica) = &replicas[(first + k) % 3] {
                assert_eq!(send(&http, &replica.url(), delivery).await, Some(200));
            }
        }
    }
    assert_eq!(acknowledged, events);
    drained(pg.db(), events as i64).await;

    let client = pg.db().client().await.unwrap();
    // Stored once each: one row per event, whatever the retries and the kill.
    let keys: Vec<String> = client
        .query("SELECT event_key_text FROM deliveries", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys.len(), events);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), events);
    // Processed once each: every deadline filed by exactly one status change.
    let changed: i64 = client
        .query_one("SELECT count(*) FROM bir_status_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(changed, changes.len() as i64);
    let store = PgDeadlineStore::open_read_only(pg.db().clone())
        .await
        .unwrap();
    let all = store.all().await.unwrap();
    assert_eq!(all.len(), changes.len());
    assert!(
        all.iter().all(|d| d.status == DeadlineStatus::Filed),
        "{:?}",
        all.iter()
            .filter(|d| d.status != DeadlineStatus::Filed)
            .count()
    );
    // Nothing dead or failed: the killed replica's leases came back to the others.
    let unhappy: i64 = client
        .query_one(
            "SELECT count(*) FROM inbox WHERE status IN ('dead', 'failed')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unhappy, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_gets_closed_connections_never_a_lost_event_and_replicas_recover() {
    let Some(cluster) = testing::Cluster::start() else {
        return;
    };
    let url = cluster.url();
    let db = plane_postgres::Options::from_url(&url, None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("test-secret-{}", uuid::Uuid::new_v4().simple());
    let changes = state_changes(30, &secret);
    deadlines(&db, &changes).await;
    let replicas: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|name| Replica::start(dir.path(), name, &url, "plane", &secret))
        .collect();
    let http = reqwest::Client::new();
    let stream: Vec<&Delivery> = changes.iter().map(|(_, _, d)| d).collect();
    let mut unanswered = Vec::new();
    for (i, delivery) in stream.iter().enumerate() {
        if i == 10 {
            cluster.stop();
        }
        if i == 20 {
            cluster.start_server();
        }
        let replica = &replicas[i % 2];
        match send(&http, &replica.url(), delivery).await {
            Some(200) => {}
            // While the database is down the receiver closes the connection: Plane
            // retries it. Any answer (a 503 included) would count as delivered.
            None => unanswered.push(*delivery),
            Some(other) => panic!("delivery {i} was answered {other} while it was not stored"),
        }
    }
    assert!(
        unanswered.len() >= 5,
        "the database was down for ten deliveries; {} went unanswered",
        unanswered.len()
    );
    // Plane retries what got no answer; the replicas reconnect by themselves.
    for delivery in &unanswered {
        let mut status = None;
        for _ in 0..100 {
            status = send(&http, &replicas[0].url(), delivery).await;
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, Some(200));
    }
    drained(&db, stream.len() as i64).await;
    let store = PgDeadlineStore::open_read_only(db.clone()).await.unwrap();
    assert!(
        store
            .all()
            .await
            .unwrap()
            .iter()
            .all(|d| d.status == DeadlineStatus::Filed)
    );
    // Ready again, in fixed words.
    for replica in &replicas {
        let ready: serde_json::Value = http
            .get(format!("http://127.0.0.1:{}/readyz", replica.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["store"], "ok", "{ready}");
        assert_eq!(ready["backend"], "postgres", "{ready}");
    }
}

/// Three replicas' clients spending one key, each pacing itself and sharing the key's
/// budget through PostgreSQL: plane-fake, which limits the key as Plane does, never
/// refuses one, and no window holds more than the limit. (A short window keeps the test
/// short; the rule is the same at 60 a minute.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_on_one_key_stay_under_the_limit_together() {
    let Some(pg) = testing::database("budget_replicas").await else {
        return;
    };
    let (limit, window) = (12, Duration::from_secs(2));
    let fake = plane_fake::FakePlane::builder()
        .rate_limit(limit, window)
        .start()
        .await
        .unwrap();
    let name = format!("{} {}", fake.base_url(), fake.workspace_slug());
    let clients: Vec<plane_core::PlaneClient> = (0..3)
        .map(|_| {
            plane_core::PlaneClient::builder()
                .base_url(fake.base_url())
                .workspace_slug(fake.workspace_slug())
                .api_key(fake.api_key())
                .budget(plane_core::Budget::new(limit, window))
                .shared_budget(
                    plane_server::shared_budget::PgBudget::new(pg.options().clone(), name.clone())
                        .shared(),
                )
                .build()
                .unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    let mut work = Vec::new();
    for client in clients.clone() {
        work.push(tokio::spawn(async move {
            for _ in 0..12 {
                client.users().me().await.unwrap();
            }
        }));
    }
    for w in work {
        w.await.unwrap();
    }
    let took = started.elapsed();
    let log = fake.request_log();
    assert_eq!(log.len(), 36);
    assert!(log.iter().all(|r| r.status == 200), "a request was refused");
    let mut at: Vec<std::time::Instant> = log.iter().map(|r| r.at).collect();
    at.sort();
    for (i, &t) in at.iter().enumerate() {
        let in_window = at[i..].iter().filter(|&&u| u < t + window).count();
        assert!(in_window <= limit as usize, "{in_window} in a window");
    }
    // And the budget is spent, not wasted: 36 requests at 12 per 2 s take two windows
    // and a bit (each slot frees a window after its answer), not three replicas' worth
    // of waiting.
    assert!(took >= window * 2, "{took:?}");
    for client in &clients {
        assert_eq!(client.rate_limit().throttled, 0);
        assert_eq!(client.stats().retries, 0);
    }
}
