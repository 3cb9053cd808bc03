//! What the worker does with each handler outcome, and the `/metrics` counts
//! per result. Paused tokio time, in-memory store: no socket, no wall time.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use plane_server::metrics::Metrics;
use plane_server::worker::{Worker, WorkerConfig};
use plane_webhook::{
    BoxFuture, Clock, DeliveryRecord, DeliveryStore, Envelope, EventHandler, EventKind, Handled,
    HandlerError, InboxItem, MemoryStore, NewDelivery, Payload, Status, StoreConfig,
};
use tokio::sync::{Notify, watch};

#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        1_700_000_000_000 + i64::try_from(self.0.elapsed().as_millis()).unwrap()
    }
}

/// Owns work item events; answers by the item's name.
#[derive(Debug)]
struct Scripted {
    store: Arc<MemoryStore>,
}

impl EventHandler for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn wants(&self, envelope: &Envelope) -> bool {
        envelope.kind == EventKind::WorkItem
    }
    fn handle<'a>(
        &'a self,
        item: &'a InboxItem,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<Handled, HandlerError>> {
        let Payload::WorkItem(data) = &envelope.payload else {
            panic!("wants() let a non-work-item through")
        };
        let name = data.name.clone().unwrap_or_default();
        Box::pin(async move {
            match name.as_str() {
                "done" => Ok(Handled::Done),
                "not ours" => Ok(Handled::NotOurs),
                "stale" => Ok(Handled::Ignored {
                    reason: "older than what we have".into(),
                }),
                "echo" => Ok(Handled::Echo {
                    note: "echo of the sync's create".into(),
                }),
                "completed" => {
                    // As complete_with would, in the handler's own transaction.
                    self.store.complete(item).await.unwrap();
                    Ok(Handled::Completed)
                }
                _ => Err(HandlerError::new("Plane said no")),
            }
        })
    }
}

async fn record(store: &MemoryStore, event: &str, name: &str) -> i64 {
    let body = format!(
        r#"{{"event": "{event}", "action": "updated", "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "{name}"}}}}"#
    )
    .into_bytes();
    let envelope = Envelope::parse(&body).unwrap();
    match store
        .record(NewDelivery::new(
            uuid::Uuid::new_v4(),
            &envelope.head(),
            body,
        ))
        .await
        .unwrap()
    {
        plane_webhook::RecordOutcome::New { id } => id,
        other => panic!("{other:?}"),
    }
}

async fn run_until_settled(
    store: &Arc<MemoryStore>,
    handlers: Vec<Arc<dyn EventHandler>>,
    metrics: &Arc<Metrics>,
) -> Vec<DeliveryRecord> {
    metrics.seed(&store.stats().await.unwrap());
    let (stop, stopped) = watch::channel(false);
    let worker = Worker {
        store: store.clone(),
        handlers,
        metrics: metrics.clone(),
        queued: Arc::new(Notify::new()),
        enabled: true,
        config: WorkerConfig {
            name: "test".into(),
            lease: Duration::from_secs(60),
            batch: 4,
            poll: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 86_400),
            purge_interval: Duration::from_secs(86_400),
        },
    };
    let running = tokio::spawn(worker.run(stopped));
    loop {
        let stats = store.stats().await.unwrap();
        if stats.pending + stats.processing + stats.failed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    let mut rows = store.list(None, 100).await.unwrap();
    rows.sort_by_key(|r| r.id);
    rows
}

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(StoreConfig {
        max_attempts: 2,
        retry_base: Duration::from_secs(1),
        clock: Arc::new(TokioClock(tokio::time::Instant::now())),
        ..StoreConfig::default()
    }))
}

#[tokio::test(start_paused = true)]
async fn each_outcome_finishes_the_item_its_own_way_and_is_counted() {
    let store = store();
    let mut ids = Vec::new();
    for name in ["done", "not ours", "stale", "completed", "boom", "echo"] {
        ids.push(record(&store, "issue", name).await);
    }
    let project = record(&store, "project", "p").await;
    let metrics = Arc::new(Metrics::default());
    let handler: Arc<dyn EventHandler> = Arc::new(Scripted {
        store: store.clone(),
    });
    let rows = run_until_settled(&store, vec![handler], &metrics).await;
    let summary: Vec<(Status, Option<&str>)> =
        rows.iter().map(|r| (r.status, r.note.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (Status::Done, None),
            (Status::Done, None),
            (Status::Ignored, Some("older than what we have")),
            (Status::Done, None),
            (Status::Dead, None),
            (Status::Done, Some("echo of the sync's create")),
            (Status::Ignored, Some("no handler for project.updated")),
        ]
    );
    assert_eq!(rows[6].id, project);
    assert_eq!(
        rows[4].last_error.as_deref(),
        Some("handler scripted: Plane said no")
    );
    for (result, n) in [
        ("done", 2),
        ("not_ours", 1),
        ("echo", 1),
        ("ignored", 2),
        ("failed", 1),
        ("dead", 1),
        ("lease_lost", 0),
    ] {
        assert_eq!(metrics.processed_count(result), n, "{result}");
    }
    assert_eq!(metrics.backlog(), 0, "every finished item left the backlog");
    let text = metrics.render();
    assert!(
        text.contains("# HELP plane_inbox_processed Inbox items processed, by result"),
        "{text}"
    );
    let help = text
        .lines()
        .find(|l| l.starts_with("# HELP plane_inbox_processed "))
        .unwrap();
    for result in [
        "done",
        "not_ours",
        "echo",
        "ignored",
        "failed",
        "dead",
        "lease_lost",
    ] {
        assert!(help.contains(result), "{result} is not explained in {help}");
    }
    assert!(
        text.contains("# TYPE plane_inbox_processed counter"),
        "{text}"
    );
    for line in [
        r#"plane_inbox_processed_total{result="not_ours"} 1"#,
        r#"plane_inbox_processed_total{result="echo"} 1"#,
        r#"plane_inbox_processed_total{result="ignored"} 2"#,
        r#"plane_inbox_processed_total{result="failed"} 1"#,
        r#"plane_inbox_processed_total{result="dead"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_no_handler_at_all_nothing_is_marked_done() {
    let store = store();
    record(&store, "issue", "done").await;
    let metrics = Arc::new(Metrics::default());
    let rows = run_until_settled(&store, Vec::new(), &metrics).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, Status::Ignored);
    assert_eq!(
        rows[0].note.as_deref(),
        Some("no handler for issue.updated")
    );
    assert_eq!(metrics.processed_count("done"), 0);
    assert_eq!(metrics.processed_count("ignored"), 1);

    // Replayed with a handler that owns the event, it is handled and done.
    store.replay(rows[0].id).await.unwrap();
    let handler: Arc<dyn EventHandler> = Arc::new(Scripted {
        store: store.clone(),
    });
    let rows = run_until_settled(&store, vec![handler], &metrics).await;
    assert_eq!(
        (rows[0].status, rows[0].note.as_deref()),
        (Status::Done, None)
    );
    assert_eq!(metrics.processed_count("done"), 1);
}
