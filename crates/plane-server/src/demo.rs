//! `plane-server demo`: the BIR loop on one machine, with no credentials.
//!
//! plane-fake plays Plane (with no rate limit, so the demo takes seconds); the receiver,
//! the worker and the handlers run as `serve` runs them, and the fake's webhooks are
//! signed like Plane's. Five steps, each printed with the API requests it cost:
//!
//! 1. sync a year of the example profile (`efps-a-vat-corporation.toml`);
//! 2. sync again: zero writes;
//! 3. a person closes one work item in the fake's web app: the signed webhook arrives and
//!    the deadline is filed, with no request back to Plane;
//! 4. someone edits a due date in Plane: the next sync restores it, with one write;
//! 5. the close re-sent (a duplicate: 200, nothing happens) and a forged copy (401).
//!
//! Any step that does not go as a real deployment must makes the demo fail.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use chrono::NaiveDate;
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, Holidays, Overrides as BirOverrides, Profile,
    SqliteDeadlineStore, SyncReport, SyncRequest, calendar,
};
use plane_core::{Budget, PlaneClient};
use plane_fake::{FakePlane, RunningFake};
use plane_webhook::{DeliveryStore, SqliteStore, SystemClock};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::config::{Config, Overrides};

/// The example profile, compiled in so the demo runs from anywhere.
const PROFILE: &str = include_str!("../../plane-bir/profiles/efps-a-vat-corporation.toml");
const YEAR: i32 = 2026;

struct Demo {
    fake: RunningFake,
    client: PlaneClient,
    profile: Profile,
    store: Arc<SqliteStore>,
    deadlines: Arc<SqliteDeadlineStore>,
    running: crate::Running,
    url: String,
    secret: String,
}

impl Demo {
    async fn sync(&self) -> anyhow::Result<SyncReport> {
        let deadlines = calendar(
            &self.profile,
            YEAR,
            &Holidays::builtin(),
            &BirOverrides::none(),
        )?;
        let request = SyncRequest {
            profile: &self.profile,
            deadlines: &deadlines,
            project: self.fake.project_id(),
            today: NaiveDate::from_ymd_opt(YEAR, 1, 5).context("a date")?,
            dry_run: false,
        };
        let report =
            plane_bir::sync(&self.client, self.deadlines.clone(), &request, &mut |_| {}).await?;
        self.settle().await?;
        Ok(report)
    }

    /// Waits until every webhook the fake sent was answered and the inbox is drained.
    async fn settle(&self) -> anyhow::Result<()> {
        self.fake.webhooks_settled().await;
        for _ in 0..2000 {
            let s = self.store.stats().await?;
            if s.pending + s.processing + s.failed == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("the inbox did not drain: {:?}", self.store.stats().await?)
    }

    async fn deadline(&self, work_item: Uuid) -> anyhow::Result<DeadlineRecord> {
        self.deadlines
            .all()
            .await?
            .into_iter()
            .find(|d| d.work_item_id == Some(work_item))
            .with_context(|| format!("no deadline has work item {work_item}"))
    }

    fn work_item(&self, id: Uuid) -> anyhow::Result<serde_json::Value> {
        self.fake
            .work_item_json(self.fake.project_id(), id)
            .with_context(|| format!("plane-fake has no work item {id}"))
    }

    fn name(&self, id: Uuid) -> String {
        self.work_item(id)
            .ok()
            .and_then(|w| w["name"].as_str().map(str::to_owned))
            .unwrap_or_else(|| id.to_string())
    }
}

fn cost(report: &SyncReport) -> String {
    let plural = if report.writes == 1 { "" } else { "s" };
    format!(
        "{} requests ({} write{plural})",
        report.requests, report.writes
    )
}

/// Runs the demo and returns its report; an error if anything did not go as a
/// real deployment must.
pub async fn run() -> anyhow::Result<String> {
    let fake = FakePlane::builder()
        .no_rate_limit()
        .start()
        .await
        .context("starting plane-fake")?;
    let dir = tempfile_dir()?;
    let secret = format!("plane_wh_{}", Uuid::new_v4().simple());
    let env = |name: &str| -> Option<String> {
        match name {
            "PLANE_WEBHOOK_SECRET" => Some(secret.clone()),
            _ => None,
        }
    };
    let overrides = Overrides {
        database: Some(dir.join("demo.db")),
        ..Overrides::default()
    };
    let config = Config::load(&overrides, &env)?;
    let store = crate::open_store(&config, Arc::new(SystemClock))?;
    let handlers = crate::handlers(&store)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let running = crate::start(
        &config,
        store.clone(),
        handlers,
        listener,
        std::future::pending(),
    )
    .await?;
    let url = format!("http://{}/webhooks/plane", running.addr);
    fake.register_webhook(&url, &secret);
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        // The fake has no rate limit; lift the client's 60 per minute too.
        .budget(Budget::new(1_000_000, Duration::from_secs(60)))
        .build()?;
    let demo = Demo {
        deadlines: Arc::new(SqliteDeadlineStore::open(&config.database)?),
        profile: Profile::parse(PROFILE, "efps-a-vat-corporation.toml")?,
        fake,
        client,
        store,
        running,
        url,
        secret,
    };
    let result = steps(&demo).await;
    let Demo { fake, running, .. } = demo;
    running.shutdown().await?;
    fake.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn steps(d: &Demo) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "plane-fake at {}, receiver at {}\nprofile: {}\n",
        d.fake.base_url(),
        d.url,
        d.profile.name
    )?;

    // 1. The first sync creates every deadline's work item.
    let first = d.sync().await?;
    writeln!(
        out,
        "1. sync {YEAR}: {} work items created, {} labels created: {}",
        first.created,
        first.labels_created,
        cost(&first)
    )?;
    ensure!(first.created > 0 && first.throttled == 0, "{out}");

    // 2. Nothing changed: only the listings.
    let second = d.sync().await?;
    writeln!(
        out,
        "2. sync again: {} unchanged: {}",
        second.unchanged,
        cost(&second)
    )?;
    ensure!(second.writes == 0 && second.created == 0, "{out}");

    // 3. A person closes a work item in Plane's web app.
    let all = d.deadlines.all().await?;
    let closed = all
        .first()
        .and_then(|r| r.work_item_id)
        .context("the sync recorded no work item")?;
    let edited = all
        .get(1)
        .and_then(|r| r.work_item_id)
        .context("the sync recorded one work item only")?;
    let ana = d.fake.add_user(serde_json::json!({"display_name": "ana"}));
    let done = d
        .fake
        .state_id(d.fake.project_id(), "completed")
        .context("the fake has no completed state")?;
    let requests = d.fake.request_count();
    let webhooks = d.fake.webhook_log().len();
    d.fake
        .as_user(ana)
        .patch_work_item(
            d.fake.project_id(),
            closed,
            serde_json::json!({"state": done.to_string()}),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    d.settle().await?;
    let close = d
        .fake
        .webhook_log()
        .into_iter()
        .skip(webhooks)
        .find(|w| w.json()["activity"]["field"] == "state")
        .context("no webhook for the close")?;
    let filed = d.deadline(closed).await?;
    let back = d.fake.request_count() - requests;
    writeln!(
        out,
        "3. ana closes {:?} in Plane: webhook HTTP {}, deadline {} by {} at {}: {back} requests to Plane",
        d.name(closed),
        close.status.unwrap_or(0),
        filed.status,
        filed.status_by.as_deref().unwrap_or("?"),
        filed
            .status_at
            .map_or_else(|| "?".into(), |t| t.to_rfc3339())
    )?;
    ensure!(
        filed.status == DeadlineStatus::Filed
            && filed.status_by.as_deref() == Some("ana")
            && back == 0,
        "{out}"
    );

    // 4. Someone moves a due date in Plane; the next sync puts it back.
    let due = d.work_item(edited)?["target_date"]
        .as_str()
        .context("a synced work item has a target_date")?
        .to_owned();
    let moved = due
        .parse::<NaiveDate>()?
        .checked_add_days(chrono::Days::new(7))
        .context("a date")?;
    let bob = d.fake.add_user(serde_json::json!({"display_name": "bob"}));
    d.fake
        .as_user(bob)
        .patch_work_item(
            d.fake.project_id(),
            edited,
            serde_json::json!({"target_date": moved.to_string()}),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    d.settle().await?;
    let restore = d.sync().await?;
    let now = d.work_item(edited)?["target_date"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    writeln!(
        out,
        "4. bob moves the due date of {:?} from {due} to {moved}; the next sync finds {} drifted and restores {now}: {}",
        d.name(edited),
        restore.drift.len(),
        cost(&restore)
    )?;
    ensure!(
        restore.writes == 1 && restore.drift.len() == 1 && now == due,
        "{out}"
    );

    // 5. The close again under a new delivery id (Plane's retry), and a forged copy.
    let metrics = &d.running.state.metrics;
    let (dup_before, done_before) = (
        metrics.delivery_count("duplicate", "same_event"),
        metrics.processed_count("done"),
    );
    let resent = d.fake.redeliver(&close).await?;
    let forged = d
        .fake
        .webhook_sender(&d.secret)
        .max_attempts(1)
        .raw(&d.url, "issue", close.body.clone(), Some("0".repeat(64)))
        .await?;
    d.settle().await?;
    let duplicates = metrics.delivery_count("duplicate", "same_event") - dup_before;
    let handled = metrics.processed_count("done") - done_before;
    writeln!(
        out,
        "5. the close re-sent under a new delivery id: HTTP {} ({duplicates} duplicate, {handled} handled); a forged copy: HTTP {}",
        resent.status.unwrap_or(0),
        forged.status.unwrap_or(0)
    )?;
    ensure!(
        resent.status == Some(200) && duplicates == 1 && handled == 0 && forged.status == Some(401),
        "{out}"
    );

    let inbox = d.store.stats().await?;
    writeln!(
        out,
        "\ninbox: {} done, {} ignored; deadlines: {} filed of {}",
        inbox.done,
        inbox.ignored,
        d.deadlines
            .all()
            .await?
            .iter()
            .filter(|r| r.status == DeadlineStatus::Filed)
            .count(),
        all.len()
    )?;
    Ok(out)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("plane-server-demo-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
