//! `plane-server demo`: the whole loop on one machine, with no credentials.
//!
//! plane-fake plays Plane; the receiver and worker run as in production; the
//! fake's webhooks are signed like Plane's. A duplicate and a forged delivery
//! show the dedupe and the signature check.

use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use plane_core::{PlaneClient, WorkItemFields};
use plane_fake::FakePlane;
use plane_webhook::{
    BoxFuture, DeliveryStore, Envelope, EventHandler, EventKind, Handled, HandlerError, InboxItem,
    Payload, Status, SystemClock,
};
use tokio::net::TcpListener;

use crate::config::{Config, Overrides};

/// Prints the work item events the worker handled; any other event would be
/// recorded as ignored ("no handler for ...").
#[derive(Debug, Default)]
struct DemoHandler {
    handled: Mutex<Vec<String>>,
}

impl EventHandler for DemoHandler {
    fn name(&self) -> &str {
        "demo"
    }

    fn wants(&self, envelope: &Envelope) -> bool {
        envelope.kind == EventKind::WorkItem
    }

    fn handle<'a>(
        &'a self,
        item: &'a InboxItem,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        let line = match &envelope.payload {
            Payload::WorkItem(item) => format!(
                "{} {}: {:?}{}",
                envelope.event,
                envelope.action.as_str(),
                item.name.as_deref().unwrap_or("?"),
                match (
                    envelope.activity.as_ref().and_then(|a| a.field.as_deref()),
                    item.state_group()
                ) {
                    (Some(field), Some(group)) =>
                        format!(" ({field} changed; state group now {group})"),
                    (Some(field), None) => format!(" ({field} changed)"),
                    _ => String::new(),
                }
            ),
            other => format!(
                "{} {} (id {:?})",
                envelope.event,
                envelope.action.as_str(),
                other.id()
            ),
        };
        self.handled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("#{} {line}", item.id));
        Box::pin(async { Ok(Handled::Done) })
    }
}

/// Runs the demo and returns its report; an error if anything did not go as a
/// real deployment must.
pub async fn run() -> anyhow::Result<String> {
    let fake = FakePlane::builder()
        .start()
        .await
        .context("starting plane-fake")?;
    let dir = tempfile_dir()?;
    let secret = format!("plane_wh_{}", uuid::Uuid::new_v4().simple());
    let env = |name: &str| -> Option<String> {
        match name {
            "PLANE_BASE_URL" => Some(fake.base_url()),
            "PLANE_API_KEY" => Some(fake.api_key()),
            "PLANE_WORKSPACE_SLUG" => Some(fake.workspace_slug()),
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
    let handler = Arc::new(DemoHandler::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let running = crate::start(
        &config,
        store.clone(),
        vec![handler.clone()],
        listener,
        std::future::pending(),
    )
    .await?;
    let url = format!("http://{}/webhooks/plane", running.addr);
    fake.register_webhook(&url, &secret);

    let mut report = String::new();
    writeln!(
        report,
        "plane-fake at {}, receiver at {url}",
        fake.base_url()
    )?;
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .build()?;
    let items = client.work_items(fake.project_id());
    let first = items
        .create(
            &WorkItemFields::new("1601-C · October 2026")
                .external("plane-server-demo", "1601C-2026-10"),
        )
        .await?;
    items
        .create(
            &WorkItemFields::new("2550-Q · Q3 2026").external("plane-server-demo", "2550Q-2026-Q3"),
        )
        .await?;
    let done = client
        .states(fake.project_id())
        .list(&plane_core::ListParams::new())
        .await?
        .results
        .into_iter()
        .find(|s| s.group == Some(plane_core::StateGroup::Completed))
        .context("the fake has no completed state")?;
    items
        .update(first.id, &WorkItemFields::default().state(done.id))
        .await?;
    writeln!(
        report,
        "created 2 work items and completed one through the API: Plane sends 3 signed webhooks"
    )?;
    wait_for(|| async { Ok(store.list(None, 100).await?.len() >= 3) }).await?;

    // Plane CE retries with a new delivery id and the same body: a duplicate.
    let sender = fake.webhook_sender(&secret);
    let original = sender
        .send(
            &url,
            "issue",
            "updated",
            serde_json::json!({"id": first.id, "name": "re-sent"}),
            serde_json::json!({"field": "name"}),
        )
        .await?;
    let resent = sender
        .raw(&url, "issue", original.body.clone(), None)
        .await?;
    let forged = sender
        .raw(&url, "issue", original.body.clone(), Some("0".repeat(64)))
        .await?;
    writeln!(
        report,
        "sent an event (HTTP {:?}), re-sent it under a new delivery id (HTTP {:?}), and a forged copy (HTTP {:?})",
        original.status, resent.status, forged.status
    )?;
    wait_for(|| async {
        let stats = store.stats().await?;
        Ok(stats.pending + stats.processing + stats.failed == 0 && stats.done >= 4)
    })
    .await?;

    writeln!(report, "\nwhat the worker handled, once each:")?;
    for line in handler
        .handled
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        writeln!(report, "  {line}")?;
    }
    let metrics = &running.state.metrics;
    let (accepted, dup, forged_count) = (
        metrics.delivery_count("accepted", "new"),
        metrics.delivery_count("duplicate", "same_event"),
        metrics.delivery_count("rejected", "signature_mismatch"),
    );
    writeln!(
        report,
        "\ndeliveries: {accepted} accepted, {dup} duplicate (ignored), {forged_count} forged (401)"
    )?;
    let done_count = store.list(Some(Status::Done), 100).await?.len();
    let ignored_count = store.list(Some(Status::Ignored), 100).await?.len();
    writeln!(
        report,
        "inbox: {done_count} done, {ignored_count} ignored (no handler owns the event)"
    )?;
    running.shutdown().await?;
    fake.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    if (accepted, dup, forged_count, done_count, ignored_count) != (4, 1, 1, 4, 0)
        || forged.status != Some(401)
    {
        bail!("the demo did not go as expected:\n{report}");
    }
    Ok(report)
}

async fn wait_for<F, Fut>(mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    for _ in 0..200 {
        if done().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("timed out waiting for the deliveries")
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "plane-server-demo-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
