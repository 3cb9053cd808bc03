//! The sync against plane-fake (real sockets): every assertion is on the fake's request
//! log, its data and the store, never on wall time. Each scenario runs twice: without a
//! rate limit, and with the fake enforcing 60 requests per scaled window (1 s) and the
//! client configured with the same budget, where no 429 may reach the caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use futures::TryStreamExt;
use plane_bir::sync::{Action, EXTERNAL_SOURCE, Progress};
use plane_bir::{
    DeadlineStatus, DeadlineStore, Holidays, Override, Overrides, Profile, SqliteDeadlineStore,
    SyncReport, SyncRequest, calendar, sync,
};
use plane_core::{Budget, ListParams, PlaneClient, ProjectFields, RetryPolicy, WorkItem};
use plane_fake::{FakePlane, Fault, RunningFake};
use serde_json::{Value, json};
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Limit {
    Off,
    /// 60 requests per `WINDOW` on both sides: Plane's 60 per minute, scaled.
    Scaled,
}

struct Env {
    fake: RunningFake,
    client: PlaneClient,
    store: Arc<SqliteDeadlineStore>,
    dir: tempfile::TempDir,
    limit: Limit,
}

async fn env(limit: Limit) -> Env {
    let builder = FakePlane::builder();
    let fake = match limit {
        Limit::Off => builder.no_rate_limit(),
        Limit::Scaled => builder.rate_limit(60, WINDOW),
    }
    .start()
    .await
    .unwrap();
    let client = client_for(&fake, limit, RetryPolicy::default());
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDeadlineStore::open(dir.path().join("plane.db")).unwrap());
    Env {
        fake,
        client,
        store,
        dir,
        limit,
    }
}

fn client_for(fake: &RunningFake, limit: Limit, retry: RetryPolicy) -> PlaneClient {
    let builder = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .retry_policy(retry);
    match limit {
        // The client's default budget is Plane Cloud's 60 per minute: lift it.
        Limit::Off => builder.budget(Budget::new(1_000_000, Duration::from_secs(60))),
        Limit::Scaled => builder.budget(Budget::new(60, WINDOW)),
    }
    .build()
    .unwrap()
}

fn corporation() -> Profile {
    Profile::parse(
        include_str!("../profiles/efps-a-vat-corporation.toml"),
        "efps-a-vat-corporation.toml",
    )
    .unwrap()
}

fn individual() -> Profile {
    Profile::parse(
        include_str!("../profiles/manual-individual-percentage-tax.toml"),
        "manual-individual-percentage-tax.toml",
    )
    .unwrap()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()
}

fn deadlines(profile: &Profile, overrides: &Overrides) -> Vec<plane_bir::Deadline> {
    calendar(profile, 2026, &Holidays::builtin(), overrides).unwrap()
}

impl Env {
    async fn sync(
        &self,
        profile: &Profile,
        deadlines: &[plane_bir::Deadline],
        project: Uuid,
        today: NaiveDate,
    ) -> SyncReport {
        self.sync_with(
            &self.client,
            self.store.clone(),
            profile,
            deadlines,
            project,
            today,
        )
        .await
        .unwrap()
    }

    async fn sync_with(
        &self,
        client: &PlaneClient,
        store: Arc<SqliteDeadlineStore>,
        profile: &Profile,
        deadlines: &[plane_bir::Deadline],
        project: Uuid,
        today: NaiveDate,
    ) -> plane_bir::Result<SyncReport> {
        let request = SyncRequest {
            profile,
            deadlines,
            project,
            today,
            dry_run: false,
        };
        let mut seen = Vec::new();
        let report = sync(client, store, &request, &mut |p: Progress| seen.push(p)).await?;
        // Progress counts up to the plan, one step per write.
        let planned = seen.first().map_or(0, |p| p.planned);
        assert_eq!(seen.len(), planned + 1, "{seen:?}");
        self.assert_no_429(&report);
        Ok(report)
    }

    fn assert_no_429(&self, report: &SyncReport) {
        assert_eq!(report.throttled, 0, "{:?}: 429s were seen", self.limit);
        let refused = self
            .fake
            .request_log()
            .iter()
            .filter(|r| r.status == 429)
            .count();
        assert_eq!(refused, 0, "{:?}: the fake refused requests", self.limit);
    }

    fn writes(&self) -> Vec<(String, String)> {
        self.fake
            .request_log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| (r.method, r.path))
            .collect()
    }
}

/// Every work item of a project, through the test's own client (same key, same budget).
async fn plane_items(env: &Env, project: Uuid) -> Vec<WorkItem> {
    env.client
        .work_items(project)
        .stream(ListParams::new().per_page(1000))
        .try_collect()
        .await
        .unwrap()
}

fn assert_no_duplicates(items: &[WorkItem], expected: usize) {
    let mut ids: Vec<&str> = items
        .iter()
        .filter(|i| i.external_source.as_deref() == Some(EXTERNAL_SOURCE))
        .map(|i| i.external_id.as_deref().unwrap())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "duplicate external ids in Plane");
    assert_eq!(all, expected, "work items of ours in Plane");
}

fn count(log: &[(String, String)], method: &str, path_part: &str) -> usize {
    log.iter()
        .filter(|(m, p)| m == method && p.contains(path_part))
        .count()
}

// ---------------------------------------------------------------------------------------

async fn first_sync_creates_everything_and_second_costs_only_listings(limit: Limit) {
    let env = env(limit).await;
    let profile = corporation();
    let list = deadlines(&profile, &Overrides::none());
    let project = env.fake.project_id();

    let first = env.sync(&profile, &list, project, today()).await;
    assert_eq!(first.created, list.len());
    assert_eq!((first.updated, first.unchanged), (0, 0));
    let forms: std::collections::BTreeSet<_> = list.iter().map(|d| d.form.clone()).collect();
    assert_eq!(first.labels_created, forms.len(), "one label per form");
    let log = env.writes();
    assert_eq!(count(&log, "POST", "/work-items/"), list.len());
    assert_eq!(count(&log, "POST", "/labels/"), forms.len());
    assert_eq!(log.len(), list.len() + forms.len(), "{log:?}");
    assert_eq!(first.writes as usize, log.len());

    let items = plane_items(&env, project).await;
    assert_no_duplicates(&items, list.len());
    let todo = env.fake.state_id(project, "unstarted").unwrap();
    for item in &items {
        assert_eq!(
            item.state.as_ref().unwrap().id(),
            todo,
            "new items start in Todo"
        );
        assert_eq!(item.labels.len(), 1);
    }
    // Every deadline is in the store, with its work item.
    let rows = env.store.all().await.unwrap();
    assert_eq!(rows.len(), list.len());
    assert!(
        rows.iter()
            .all(|r| r.work_item_id.is_some() && r.status == DeadlineStatus::Pending)
    );

    env.fake.clear_request_log();
    let second = env.sync(&profile, &list, project, today()).await;
    assert_eq!(
        (second.created, second.updated, second.unchanged),
        (0, 0, list.len())
    );
    assert!(second.drift.is_empty());
    assert_eq!(second.writes, 0);
    let log = env.fake.request_log();
    let paths: Vec<&str> = log.iter().map(|r| r.path.as_str()).collect();
    assert!(log.iter().all(|r| r.method == "GET"), "{paths:?}");
    assert_eq!(
        log.len(),
        3,
        "states, labels, one page of work items: {paths:?}"
    );
    assert!(paths[0].ends_with("/states/") && paths[1].ends_with("/labels/"));
    assert!(paths[2].ends_with("/work-items/"));
    assert!(
        log[2]
            .query
            .as_deref()
            .unwrap_or("")
            .contains("per_page=1000"),
        "{:?}",
        log[2].query
    );
    assert_eq!(second.requests, 3);
}

#[tokio::test]
async fn first_sync_creates_everything_and_second_costs_only_listings_unlimited() {
    first_sync_creates_everything_and_second_costs_only_listings(Limit::Off).await;
}

#[tokio::test]
async fn first_sync_creates_everything_and_second_costs_only_listings_at_60_per_window() {
    first_sync_creates_everything_and_second_costs_only_listings(Limit::Scaled).await;
}

async fn one_override_costs_exactly_one_write(limit: Limit) {
    let env = env(limit).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    env.sync(&profile, &list, project, today()).await;

    let mut overrides = Overrides::none();
    let target = list.iter().find(|d| d.form == "2550Q").unwrap();
    let new_due = target.due_date + chrono::Days::new(14);
    overrides.insert(
        Override::new(
            "2550Q",
            &target.period.to_string(),
            new_due,
            "RMC 99-2026 (test)",
        )
        .unwrap(),
    );
    let changed = deadlines(&profile, &overrides);
    env.fake.clear_request_log();
    let report = env.sync(&profile, &changed, project, today()).await;
    assert_eq!((report.created, report.updated), (0, 1));
    assert_eq!(report.unchanged, list.len() - 1);
    assert!(report.drift.is_empty(), "our own change is not drift");
    let log = env.writes();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, "PATCH");
    let change = &report.plan[0];
    assert_eq!(change.action, Action::Update);
    assert!(change.fields.contains(&"target_date") && change.fields.contains(&"name"));

    let row = env
        .store
        .all()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.form == "2550Q" && r.period == target.period.to_string())
        .unwrap();
    let item = env
        .fake
        .work_item_json(project, row.work_item_id.unwrap())
        .unwrap();
    assert_eq!(item["target_date"], new_due.to_string());
    assert!(
        item["description_html"]
            .as_str()
            .unwrap()
            .contains("RMC 99-2026 (test)")
    );
    assert_eq!(row.due_date, new_due);

    env.fake.clear_request_log();
    let again = env.sync(&profile, &changed, project, today()).await;
    assert_eq!(again.writes, 0);
}

#[tokio::test]
async fn one_override_costs_exactly_one_write_unlimited() {
    one_override_costs_exactly_one_write(Limit::Off).await;
}

#[tokio::test]
async fn one_override_costs_exactly_one_write_at_60_per_window() {
    one_override_costs_exactly_one_write(Limit::Scaled).await;
}

async fn a_run_that_dies_after_plane_created_an_item_leaves_no_duplicate(limit: Limit) {
    let env = env(limit).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    // The 5th create takes effect in Plane, then its answer is lost; a client that does
    // not retry gives up there, like a process killed at that instant.
    env.fake.inject(
        Fault::drop_after_handling()
            .method("POST")
            .path_contains("/work-items/")
            .skip(4),
    );
    let no_retry = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let dying = client_for(&env.fake, env.limit, no_retry);
    let failed = env
        .sync_with(&dying, env.store.clone(), &profile, &list, project, today())
        .await;
    assert!(failed.is_err(), "the run should have died: {failed:?}");
    assert_eq!(env.fake.work_item_count(project), 5);
    assert_eq!(
        env.store.all().await.unwrap().len(),
        4,
        "the 5th was never recorded"
    );

    let rerun = env.sync(&profile, &list, project, today()).await;
    assert_eq!(rerun.created, list.len() - 5);
    assert_eq!(rerun.adopted, 1, "the item Plane created is adopted");
    assert_no_duplicates(&plane_items(&env, project).await, list.len());

    // With retries (the default), a lost answer is resolved by plane-core's lookup by
    // external id: another taxpayer's items in the same project, the 2nd create's answer
    // lost.
    env.fake.clear_request_log();
    env.fake.inject(
        Fault::drop_after_handling()
            .method("POST")
            .path_contains("/work-items/")
            .skip(1),
    );
    let maria = individual();
    let fresh = deadlines(&maria, &Overrides::none());
    let report = env.sync(&maria, &fresh, project, today()).await;
    assert_eq!(
        env.fake
            .request_log()
            .iter()
            .filter(|r| r.status == 0)
            .count(),
        1
    );
    assert_eq!(report.created, fresh.len());
    assert_no_duplicates(&plane_items(&env, project).await, list.len() + fresh.len());
}

#[tokio::test]
async fn a_run_that_dies_after_plane_created_an_item_leaves_no_duplicate_unlimited() {
    a_run_that_dies_after_plane_created_an_item_leaves_no_duplicate(Limit::Off).await;
}

#[tokio::test]
async fn a_run_that_dies_after_plane_created_an_item_leaves_no_duplicate_at_60_per_window() {
    a_run_that_dies_after_plane_created_an_item_leaves_no_duplicate(Limit::Scaled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_aborted_mid_flight_then_rerun_leaves_no_duplicate() {
    let env = env(Limit::Off).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    // Five creates go through; the sixth hangs before Plane handles it, so the abort
    // lands inside a request whatever the machine's speed (no race with a finished run).
    env.fake.inject(
        Fault::delay(Duration::from_secs(3600))
            .method("POST")
            .path_contains("/work-items/")
            .skip(5),
    );
    let (client, store) = (env.client.clone(), env.store.clone());
    let (p, l) = (profile.clone(), list.clone());
    let task = tokio::spawn(async move {
        let request = SyncRequest {
            profile: &p,
            deadlines: &l,
            project,
            today: today(),
            dry_run: false,
        };
        sync(&client, store, &request, &mut |_| {}).await
    });
    let creates = |fake: &RunningFake| {
        fake.request_log()
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("/work-items/"))
            .count()
    };
    let mut waited = 0;
    while creates(&env.fake) < 5 {
        assert!(waited < 6000, "the sync never got to 5 creates");
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += 1;
    }
    task.abort();
    let _ = task.await;
    env.fake.clear_faults();
    let before = env.fake.work_item_count(project);
    assert_eq!(before, 5);

    let rerun = env.sync(&profile, &list, project, today()).await;
    assert_eq!(rerun.created, list.len() - before);
    assert_no_duplicates(&plane_items(&env, project).await, list.len());
}

async fn an_empty_database_adopts_what_plane_has(limit: Limit) {
    let env = env(limit).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    env.sync(&profile, &list, project, today()).await;

    // Another machine: same Plane, a new database.
    let other = Arc::new(SqliteDeadlineStore::open(env.dir.path().join("other.db")).unwrap());
    env.fake.clear_request_log();
    let report = env
        .sync_with(
            &env.client,
            other.clone(),
            &profile,
            &list,
            project,
            today(),
        )
        .await
        .unwrap();
    assert_eq!(report.created, 0);
    assert_eq!(report.adopted, list.len());
    assert_eq!(report.unchanged, list.len());
    assert_eq!(env.writes(), Vec::<(String, String)>::new());
    assert_eq!(report.requests, 3);
    assert_eq!(other.all().await.unwrap().len(), list.len());
    assert_no_duplicates(&plane_items(&env, project).await, list.len());

    // And from then on it is a normal store: no writes.
    env.fake.clear_request_log();
    let again = env
        .sync_with(&env.client, other, &profile, &list, project, today())
        .await
        .unwrap();
    assert_eq!((again.writes, again.adopted), (0, 0));
}

#[tokio::test]
async fn an_empty_database_adopts_what_plane_has_unlimited() {
    an_empty_database_adopts_what_plane_has(Limit::Off).await;
}

#[tokio::test]
async fn an_empty_database_adopts_what_plane_has_at_60_per_window() {
    an_empty_database_adopts_what_plane_has(Limit::Scaled).await;
}

async fn drift_made_by_a_person_is_reported_and_restored(limit: Limit) {
    let env = env(limit).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    env.sync(&profile, &list, project, today()).await;
    let rows = env.store.all().await.unwrap();
    let (a, b) = (&rows[0], &rows[1]);
    let (a_id, b_id) = (a.work_item_id.unwrap(), b.work_item_id.unwrap());
    let a_before = env.fake.work_item_json(project, a_id).unwrap();
    let b_before = env.fake.work_item_json(project, b_id).unwrap();

    let ana = env.fake.add_user(json!({"display_name": "ana"}));
    let person = env.fake.as_user(ana);
    person
        .patch_work_item(
            project,
            a_id,
            json!({"name": "someone renamed this", "target_date": "2026-12-30"}),
        )
        .unwrap();
    // A start date after our target date: restoring the target must clear it.
    person
        .patch_work_item(
            project,
            b_id,
            json!({"start_date": "2026-12-01", "target_date": "2026-12-31"}),
        )
        .unwrap();

    env.fake.clear_request_log();
    let report = env.sync(&profile, &list, project, today()).await;
    assert_eq!(report.drift.len(), 2, "{:?}", report.drift);
    let drift_a = report
        .drift
        .iter()
        .find(|d| d.work_item_id == a_id)
        .unwrap();
    assert_eq!(drift_a.fields, ["name", "target_date"]);
    assert_eq!((report.updated, report.created), (2, 0));
    let log = env.writes();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|(m, _)| m == "PATCH"));
    let a_after = env.fake.work_item_json(project, a_id).unwrap();
    let b_after = env.fake.work_item_json(project, b_id).unwrap();
    assert_eq!(a_after["name"], a_before["name"]);
    assert_eq!(a_after["target_date"], a_before["target_date"]);
    assert_eq!(b_after["target_date"], b_before["target_date"]);
    assert_eq!(b_after["start_date"], Value::Null);

    env.fake.clear_request_log();
    let quiet = env.sync(&profile, &list, project, today()).await;
    assert!(quiet.drift.is_empty());
    assert_eq!(quiet.writes, 0);
}

#[tokio::test]
async fn drift_made_by_a_person_is_reported_and_restored_unlimited() {
    drift_made_by_a_person_is_reported_and_restored(Limit::Off).await;
}

#[tokio::test]
async fn drift_made_by_a_person_is_reported_and_restored_at_60_per_window() {
    drift_made_by_a_person_is_reported_and_restored(Limit::Scaled).await;
}

async fn a_second_profile_syncs_to_a_second_project(limit: Limit) {
    let env = env(limit).await;
    let first_project = env.fake.project_id();
    let second_project = env
        .client
        .projects()
        .create(&ProjectFields::new("Maria Santos", "MARIA"))
        .await
        .unwrap()
        .id;
    let (corp, maria) = (corporation(), individual());
    let (corp_list, maria_list) = (
        deadlines(&corp, &Overrides::none()),
        deadlines(&maria, &Overrides::none()),
    );
    env.sync(&corp, &corp_list, first_project, today()).await;
    let report = env.sync(&maria, &maria_list, second_project, today()).await;
    assert_eq!(report.created, maria_list.len());
    assert_no_duplicates(&plane_items(&env, first_project).await, corp_list.len());
    assert_no_duplicates(&plane_items(&env, second_project).await, maria_list.len());
    let rows = env.store.all().await.unwrap();
    assert_eq!(rows.len(), corp_list.len() + maria_list.len());
    assert!(
        rows.iter()
            .filter(|r| r.project_id == second_project)
            .all(|r| r.external_id.starts_with("bir:987654321"))
    );

    env.fake.clear_request_log();
    let a = env.sync(&corp, &corp_list, first_project, today()).await;
    let b = env.sync(&maria, &maria_list, second_project, today()).await;
    assert_eq!((a.writes, b.writes), (0, 0));
    assert_eq!(env.fake.request_log().len(), 6);
}

#[tokio::test]
async fn a_second_profile_syncs_to_a_second_project_unlimited() {
    a_second_profile_syncs_to_a_second_project(Limit::Off).await;
}

#[tokio::test]
async fn a_second_profile_syncs_to_a_second_project_at_60_per_window() {
    a_second_profile_syncs_to_a_second_project(Limit::Scaled).await;
}

#[tokio::test]
async fn priority_follows_days_left_but_filed_items_are_left_alone() {
    let env = env(Limit::Off).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    env.sync(&profile, &list, project, today()).await;
    let rows = env.store.all().await.unwrap();
    let closed = rows[2].work_item_id.unwrap();
    let ana = env.fake.add_user(json!({"display_name": "ana"}));
    let done = env.fake.state_id(project, "completed").unwrap();
    env.fake
        .as_user(ana)
        .patch_work_item(project, closed, json!({"state": done.to_string()}))
        .unwrap();

    // 60 days later most buckets moved; the filed item keeps its priority.
    env.fake.clear_request_log();
    let later = today() + chrono::Days::new(60);
    let report = env.sync(&profile, &list, project, later).await;
    assert!(report.updated > 0);
    assert!(report.drift.is_empty());
    let log = env.writes();
    assert_eq!(log.len(), report.updated);
    assert!(
        log.iter()
            .all(|(_, path)| !path.contains(&closed.to_string())),
        "the filed item was patched"
    );
    for change in &report.plan {
        assert_eq!(change.fields, ["priority"]);
    }
    let row = env
        .store
        .all()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.work_item_id == Some(closed))
        .unwrap();
    assert_eq!(row.status, DeadlineStatus::Filed, "status taken from Plane");

    // The same day again: zero writes.
    env.fake.clear_request_log();
    let again = env.sync(&profile, &list, project, later).await;
    assert_eq!(again.writes, 0);
}

#[tokio::test]
async fn a_dry_run_writes_nothing_anywhere() {
    let env = env(Limit::Off).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    let request = SyncRequest {
        profile: &profile,
        deadlines: &list,
        project,
        today: today(),
        dry_run: true,
    };
    let report = sync(&env.client, env.store.clone(), &request, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.created, list.len());
    assert_eq!(report.writes, 0);
    assert!(env.writes().is_empty());
    assert!(env.store.all().await.unwrap().is_empty());
    assert_eq!(
        report
            .plan
            .iter()
            .filter(|c| c.action == Action::Create)
            .count(),
        list.len()
    );
}

#[tokio::test]
async fn an_existing_label_of_the_same_name_is_used_not_created() {
    let env = env(Limit::Off).await;
    let profile = individual();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    let existing = Uuid::new_v4();
    env.fake.insert_label_json(
        project,
        json!({"id": existing.to_string(), "name": "BIR 2551Q"}),
    );
    let report = env.sync(&profile, &list, project, today()).await;
    assert_eq!(report.created, list.len());
    assert_eq!(report.labels_created, 2, "1701Q and 1701A, not 2551Q");
    assert_eq!(count(&env.writes(), "POST", "/labels/"), 2);
    let items = plane_items(&env, project).await;
    let with_it = items
        .iter()
        .filter(|i| i.labels.first().map(|l| l.id()) == Some(existing))
        .count();
    assert_eq!(with_it, list.iter().filter(|d| d.form == "2551Q").count());
}

/// A person's priority is left alone until the days-left bucket moves (module docs), and
/// it is not taken for the sync's own: the runs after it, with or without a drift restore
/// on the same item, write nothing.
#[tokio::test]
async fn a_priority_set_by_a_person_stays_until_the_bucket_moves() {
    let env = env(Limit::Off).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    env.sync(&profile, &list, project, today()).await;
    let rows = env.store.all().await.unwrap();
    let (a_id, b_id) = (rows[0].work_item_id.unwrap(), rows[1].work_item_id.unwrap());
    let ana = env.fake.add_user(json!({"display_name": "ana"}));
    let person = env.fake.as_user(ana);
    person
        .patch_work_item(project, a_id, json!({"priority": "none"}))
        .unwrap();
    // Priority and an owned field: the drift is restored, the priority kept.
    person
        .patch_work_item(
            project,
            b_id,
            json!({"priority": "none", "name": "renamed by ana"}),
        )
        .unwrap();

    env.fake.clear_request_log();
    let first = env.sync(&profile, &list, project, today()).await;
    assert_eq!(first.drift.len(), 1, "{:?}", first.drift);
    assert_eq!(env.writes().len(), 1, "only the drift restore");
    for run in 0..2 {
        env.fake.clear_request_log();
        let again = env.sync(&profile, &list, project, today()).await;
        assert_eq!(
            (again.writes, again.updated),
            (0, 0),
            "run {run} after the person's change: {:?}",
            again.plan
        );
    }
    for id in [a_id, b_id] {
        assert_eq!(
            env.fake.work_item_json(project, id).unwrap()["priority"],
            "none"
        );
    }
    // Once the bucket moves, the sync's priority is back.
    let later = today() + chrono::Days::new(60);
    env.sync(&profile, &list, project, later).await;
    assert_eq!(
        env.fake.work_item_json(project, a_id).unwrap()["priority"],
        "urgent"
    );
}

/// Each successful run records itself (when it finished, its requests, writes and
/// rate-limit wait) for `serve`'s `plane_bir_last_sync_*` gauges, replacing the run
/// before; a dry run and a failed run leave the record as it was.
#[tokio::test]
async fn a_successful_run_records_itself_and_a_dry_or_failed_run_does_not() {
    let env = env(Limit::Scaled).await;
    let profile = corporation();
    let project = env.fake.project_id();
    let list = deadlines(&profile, &Overrides::none());
    let dry = SyncRequest {
        profile: &profile,
        deadlines: &list,
        project,
        today: today(),
        dry_run: true,
    };
    let planned = sync(&env.client, env.store.clone(), &dry, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(planned.created, list.len());
    assert_eq!(
        env.store.sync_runs().await.unwrap(),
        [],
        "a dry run is not a sync"
    );

    // Plane refuses the first listing: nothing is recorded.
    let refuse_states = || {
        plane_fake::Fault::status(403)
            .method("GET")
            .path_contains("/states/")
            .times(1)
    };
    env.fake.inject(refuse_states());
    let failed = env
        .sync_with(
            &env.client,
            env.store.clone(),
            &profile,
            &list,
            project,
            today(),
        )
        .await
        .unwrap_err();
    assert!(failed.to_string().contains("states"), "{failed}");
    assert_eq!(env.store.sync_runs().await.unwrap(), []);

    let before = chrono::Utc::now();
    let first = env.sync(&profile, &list, project, today()).await;
    let after = chrono::Utc::now();
    let runs = env.store.sync_runs().await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(
        (
            run.profile.as_str(),
            run.project_id,
            run.requests,
            run.writes,
            run.waited.as_millis()
        ),
        (
            "123456789000",
            project,
            first.requests,
            first.writes,
            first.waited.as_millis()
        )
    );
    assert!(
        before <= run.finished_at && run.finished_at <= after,
        "{run:?}"
    );

    // The next run replaces it: three listings, no write.
    let second = env.sync(&profile, &list, project, today()).await;
    let runs = env.store.sync_runs().await.unwrap();
    assert_eq!(runs.len(), 1, "one row per profile: {runs:?}");
    assert_eq!((runs[0].requests, runs[0].writes), (second.requests, 0));
    assert_eq!(second.requests, 3);
    assert!(runs[0].finished_at >= run.finished_at);

    // A failed run after it leaves the last success.
    env.fake.inject(refuse_states());
    env.sync_with(
        &env.client,
        env.store.clone(),
        &profile,
        &list,
        project,
        today(),
    )
    .await
    .unwrap_err();
    assert_eq!(env.store.sync_runs().await.unwrap(), runs);
}
