//! The BIR loop as `serve` runs it, for end-to-end tests: plane-fake, the real receiver
//! and worker with the handlers `serve` runs, Plane's signed webhooks pointed at it, and
//! the deadline store beside the deliveries in one SQLite file.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use plane_bir::{
    Holidays, Overrides, Profile, SqliteDeadlineStore, SyncReport, SyncRequest, calendar, sync,
};
use plane_core::{Budget, PlaneClient};
use plane_fake::{FakePlane, RunningFake};
use plane_server::config::{Config, Overrides as ConfigOverrides};
use plane_webhook::{Clock, DeliveryStore, SqliteStore};
use tokio::net::TcpListener;
use uuid::Uuid;

pub struct BirService {
    pub fake: RunningFake,
    pub _dir: tempfile::TempDir,
    pub db: std::path::PathBuf,
    pub store: Arc<SqliteStore>,
    pub deadlines: Arc<SqliteDeadlineStore>,
    pub running: plane_server::Running,
}

impl BirService {
    /// Started as `serve` starts, on `clock` (the delivery store's "now").
    pub async fn start(clock: Arc<dyn Clock>) -> BirService {
        let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("plane.db");
        let secret = format!("plane_wh_{}", Uuid::new_v4().simple());
        let env_secret = secret.clone();
        let config = Config::load(
            &ConfigOverrides {
                database: Some(db.clone()),
                ..ConfigOverrides::default()
            },
            &move |name| (name == "PLANE_WEBHOOK_SECRET").then(|| env_secret.clone()),
        )
        .unwrap();
        // As `serve` does: the store, then the handlers (which create the deadline tables).
        let store = plane_server::open_store(&config, clock).unwrap();
        let handlers = plane_server::handlers(&store).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = plane_server::start(
            &config,
            store.clone(),
            handlers,
            listener,
            std::future::pending(),
        )
        .await
        .unwrap();
        fake.register_webhook(format!("http://{}/webhooks/plane", running.addr), secret);
        let deadlines = Arc::new(SqliteDeadlineStore::open(&db).unwrap());
        BirService {
            fake,
            _dir: dir,
            db,
            store,
            deadlines,
            running,
        }
    }

    /// `bir sync` of the example profile's 2026 calendar, counting days from `today`.
    pub async fn sync(&self, today: NaiveDate) -> SyncReport {
        let profile = Profile::parse(
            include_str!("../../../plane-bir/profiles/efps-a-vat-corporation.toml"),
            "efps-a-vat-corporation.toml",
        )
        .unwrap();
        let deadlines = calendar(&profile, 2026, &Holidays::builtin(), &Overrides::none()).unwrap();
        let client = PlaneClient::builder()
            .base_url(self.fake.base_url())
            .workspace_slug(self.fake.workspace_slug())
            .api_key(self.fake.api_key())
            .budget(Budget::new(1_000_000, Duration::from_secs(60)))
            .build()
            .unwrap();
        let request = SyncRequest {
            profile: &profile,
            deadlines: &deadlines,
            project: self.fake.project_id(),
            today,
            dry_run: false,
        };
        sync(&client, self.deadlines.clone(), &request, &mut |_| {})
            .await
            .unwrap()
    }

    /// Waits until every webhook the fake sent was answered and the worker drained the inbox,
    /// and counted what it did (an item is counted just after its outcome is stored).
    pub async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(60), async {
            self.fake.webhooks_settled().await;
            loop {
                let s = self.store.stats().await.unwrap();
                if s.pending + s.processing + s.failed == 0
                    && self.running.state.metrics.backlog() == 0
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the inbox drains (a bound for a stalled test, not a margin)");
    }
}
