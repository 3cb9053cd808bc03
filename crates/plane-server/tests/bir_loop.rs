//! The loop back, end to end: a profile synced into plane-fake, then people closing,
//! cancelling and reopening its work items in the fake's web app. Plane's signed webhooks
//! reach the real receiver, the worker runs the handlers `serve` runs, and the deadline
//! follows, with no request back to Plane. Assertions are on the store, the metrics and
//! the fake's request log, never on wall time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use plane_bir::{DeadlineRecord, DeadlineStatus, DeadlineStore};
use plane_fake::SentWebhook;
use plane_webhook::{DeliveryStore, Status, SystemClock};
use serde_json::json;
use uuid::Uuid;

mod bir_service;

use bir_service::BirService as Loop;

/// The day the example's syncs count from.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()
}

impl Loop {
    async fn deadline(&self, work_item: Uuid) -> DeadlineRecord {
        self.deadlines
            .all()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.work_item_id == Some(work_item))
            .unwrap()
    }

    /// A person moves a work item to the first state of `group`, in the web app.
    async fn move_to(&self, person: Uuid, work_item: Uuid, group: &str) -> DateTime<Utc> {
        let project = self.fake.project_id();
        let state = self.fake.state_id(project, group).unwrap();
        let item = self
            .fake
            .as_user(person)
            .patch_work_item(project, work_item, json!({"state": state.to_string()}))
            .unwrap();
        self.settle().await;
        item["updated_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    }

    fn processed(&self, result: &'static str) -> u64 {
        self.running.state.metrics.processed_count(result)
    }

    /// The webhook that carried a work item's move to `group`.
    fn state_webhook(&self, work_item: Uuid, group: &str) -> SentWebhook {
        self.fake
            .webhook_log()
            .into_iter()
            .find(|w| {
                let j = w.json();
                j["data"]["id"] == work_item.to_string()
                    && j["activity"]["field"] == "state"
                    && j["data"]["state"]["group"] == group
            })
            .expect("the state change's webhook")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_close_cancel_and_reopen_deadlines_in_plane_and_nothing_is_written_back() {
    let l = Loop::start(Arc::new(SystemClock)).await;
    let first = l.sync(today()).await;
    assert!(first.created > 10, "{first:?}");
    l.settle().await;
    // From here on, every request to Plane's API would be the connector's.
    l.fake.clear_request_log();
    let all = l.deadlines.all().await.unwrap();
    let item = all[0].work_item_id.unwrap();
    let other = all[1].work_item_id.unwrap();
    let ana = l.fake.add_user(json!({"display_name": "ana"}));
    let bob = l.fake.add_user(json!({"display_name": "bob"}));
    let done_before = l.processed("done");

    let at = l.move_to(ana, item, "completed").await;
    let d = l.deadline(item).await;
    assert_eq!(d.status, DeadlineStatus::Filed);
    assert_eq!(d.status_by.as_deref(), Some("ana"));
    assert_eq!(d.status_at, Some(at));

    l.move_to(bob, item, "cancelled").await;
    let d = l.deadline(item).await;
    assert_eq!(
        (d.status, d.status_by.as_deref()),
        (DeadlineStatus::Void, Some("bob"))
    );

    l.move_to(ana, item, "started").await;
    assert_eq!(l.deadline(item).await.status, DeadlineStatus::InProgress);
    let at = l.move_to(ana, item, "unstarted").await;
    let d = l.deadline(item).await;
    assert_eq!(d.status, DeadlineStatus::Pending, "reopened");
    assert_eq!(d.status_at, Some(at));
    assert_eq!(l.processed("done") - done_before, 4);

    // The close, re-sent as Plane's retries do (new delivery id, same body): a duplicate,
    // answered 200 and never applied again (the deadline stays reopened).
    let resent = l
        .fake
        .redeliver(&l.state_webhook(item, "completed"))
        .await
        .unwrap();
    assert_eq!(resent.status, Some(200));
    l.settle().await;
    assert_eq!(
        l.running
            .state
            .metrics
            .delivery_count("duplicate", "same_event"),
        1
    );
    assert_eq!(l.deadline(item).await.status, DeadlineStatus::Pending);
    assert_eq!(l.processed("done") - done_before, 4);

    // Someone else's work item: completed as not ours, counted apart.
    let foreign: Uuid = l.fake.insert_work_item("not a deadline")["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let not_ours = l.processed("not_ours");
    l.move_to(ana, foreign, "completed").await;
    assert_eq!(l.processed("not_ours") - not_ours, 1);

    // A rename or a new due date of ours is drift: no status change and no date change
    // here (C-18: Plane never changes a date), each delivery ignored with the reason.
    let ignored = l.processed("ignored");
    let before = l.deadline(other).await;
    l.fake
        .as_user(bob)
        .patch_work_item(
            l.fake.project_id(),
            other,
            json!({"name": "renamed by bob", "target_date": "2030-01-31"}),
        )
        .unwrap();
    l.settle().await;
    assert_eq!(l.processed("ignored") - ignored, 2);
    let after = l.deadline(other).await;
    assert_eq!(after.status, DeadlineStatus::Pending);
    assert_eq!(
        (after.form, after.period, after.due_date, after.payment_date),
        (
            before.form,
            before.period,
            before.due_date,
            before.payment_date
        )
    );
    let notes: Vec<String> = l
        .store
        .list(Some(Status::Ignored), 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| d.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("name") && n.contains("drift")),
        "{notes:?}"
    );

    // A person who shares the connector's API key (a small team): the event's actor is the
    // very user the sync writes as. The close still applies, and nothing is written back.
    let shared = all[2].work_item_id.unwrap();
    l.move_to(l.fake.user_id(), shared, "completed").await;
    assert_eq!(l.deadline(shared).await.status, DeadlineStatus::Filed);

    // `bir status` shows what the handler recorded.
    l.move_to(bob, other, "completed").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plane-server"))
        .args(["bir", "status", "--format", "json", "--db"])
        .arg(&l.db)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["work_item_id"] == other.to_string())
        .unwrap();
    assert_eq!(
        (row["status"].as_str(), row["filed_by"].as_str()),
        (Some("filed"), Some("bob"))
    );

    // The handler never wrote to Plane: not one API request since the sync.
    assert_eq!(l.fake.request_log().len(), 0, "{:?}", l.fake.request_log());
    l.running.shutdown().await.unwrap();
}

/// Echo against drift, through real signed webhooks from plane-fake after a sync: every
/// write of the sync comes back and is recorded as `echo` (done, with a note), a person's
/// move of a due date is drift (ignored, with the reason), and the sync restoring it is an
/// echo again. Counted in `/metrics` apart from drift and from `not_ours`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syncs_own_writes_come_back_as_echo_and_a_persons_edit_as_drift() {
    let l = Loop::start(Arc::new(SystemClock)).await;
    let issue_webhooks = |action: &str| {
        l.fake
            .webhook_log()
            .into_iter()
            .filter(|w| {
                let j = w.json();
                j["event"] == "issue" && j["action"] == action
            })
            .count()
    };

    // The first sync creates every work item; each create comes back as one `created`
    // webhook, whether it is handled before or after the sync recorded the work item.
    let first = l.sync(today()).await;
    assert!(first.created > 10, "{first:?}");
    l.settle().await;
    assert_eq!(issue_webhooks("created"), first.created);
    assert_eq!(issue_webhooks("updated"), 0, "a create is one delivery");
    assert_eq!(l.processed("echo"), first.created as u64);
    assert_eq!(
        (l.processed("ignored"), l.processed("not_ours")),
        (0, 0),
        "the sync's own creates are neither drift nor someone else's"
    );
    let echoes: Vec<_> = l
        .store
        .list(Some(Status::Done), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.note.as_deref().is_some_and(|n| n.contains("echo")))
        .collect();
    assert_eq!(
        echoes.len(),
        first.created,
        "each echo is done, with its note"
    );

    // A person moves a due date in Plane: one delivery, drift, not an echo.
    let item = l.deadlines.all().await.unwrap()[0].work_item_id.unwrap();
    let due = l.fake.work_item_json(l.fake.project_id(), item).unwrap()["target_date"]
        .as_str()
        .unwrap()
        .parse::<NaiveDate>()
        .unwrap();
    let bob = l.fake.add_user(json!({"display_name": "bob"}));
    l.fake
        .as_user(bob)
        .patch_work_item(
            l.fake.project_id(),
            item,
            json!({"target_date": (due + chrono::Days::new(7)).to_string()}),
        )
        .unwrap();
    l.settle().await;
    assert_eq!(issue_webhooks("updated"), 1);
    assert_eq!(l.processed("echo"), first.created as u64, "no new echo");
    assert_eq!(l.processed("ignored"), 1);
    let drift = l
        .store
        .list(Some(Status::Ignored), 10)
        .await
        .unwrap()
        .remove(0);
    let reason = drift.note.unwrap_or_default();
    assert!(
        reason.contains("target_date") && reason.contains("drift"),
        "{reason}"
    );

    // The next sync restores the date with one PATCH; its webhook is the sync's echo.
    let restore = l.sync(today()).await;
    assert_eq!((restore.drift.len(), restore.writes), (1, 1), "{restore:?}");
    l.settle().await;
    assert_eq!(issue_webhooks("updated"), 2);
    assert_eq!(l.processed("echo"), first.created as u64 + 1);
    assert_eq!(l.processed("ignored"), 1, "the restore is not drift");
    assert_eq!(l.processed("not_ours"), 0);

    // `/metrics` counts them apart.
    let metrics = l.running.state.metrics.render();
    for line in [
        format!(
            r#"plane_inbox_processed_total{{result="echo"}} {}"#,
            first.created + 1
        ),
        r#"plane_inbox_processed_total{result="ignored"} 1"#.to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }

    // `deliveries list` shows the echo as done, with its note.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plane-server"))
        .args([
            "deliveries",
            "list",
            "--status",
            "done",
            "--format",
            "json",
            "--limit",
            "1000",
            "--db",
        ])
        .arg(&l.db)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let restored = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "updated")
        .collect::<Vec<_>>();
    assert_eq!(restored.len(), 1, "{rows:#}");
    assert!(
        restored[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("echo") && n.contains("target_date")),
        "{rows:#}"
    );
    l.running.shutdown().await.unwrap();
}
