//! The business gauges (`plane_bir_*`) and the Plane check gauge, as a scrape of the
//! running server shows them: after a `bir sync` into plane-fake, and after people file,
//! cancel and start deadlines in Plane (the BIR handler changes the store; the worker's
//! `done` asks for a refresh). "Now" is the delivery store's clock, fixed here, so every
//! figure is exact; waits are on conditions, bounded only so a stalled test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, NaiveDate, Utc};
use http::Request;
use plane_bir::{
    DeadlineRecord, DeadlineStatus, DeadlineStore, SqliteDeadlineStore, StatusChange, SyncRun,
};
use plane_fake::FakePlane;
use plane_server::app::{AppState, PLANE_CHECK_EVERY, router};
use plane_server::config::{Config, Overrides as ConfigOverrides};
use plane_server::connector::Connector;
use plane_server::metrics::{
    DEADLINE_REFRESH, DEADLINE_SETTLE, DeadlineFigures, Metrics, refresh_deadlines,
};
use plane_webhook::{DeliveryStore, ManualClock, MemoryStore, StoreConfig};
use serde_json::json;
use tokio::sync::watch;
use tower::ServiceExt;
use uuid::Uuid;

/// 18:00 on 2026-03-01 in Manila.
const NOW: &str = "2026-03-01T10:00:00Z";
const NOW_UNIX: i64 = 1_772_359_200;
/// The key of efps-a-vat-corporation.toml (its TIN's digits).
const PROFILE: &str = "123456789000";

fn now() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

fn config_with(database: PathBuf, env: Vec<(&'static str, String)>) -> Config {
    Config::load(
        &ConfigOverrides {
            database: Some(database),
            ..ConfigOverrides::default()
        },
        &move |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()),
    )
    .unwrap()
}

/// The sample lines of the `plane_bir_*` families, sorted.
fn bir_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("plane_bir_"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn sorted(lines: &[String]) -> Vec<String> {
    let mut lines = lines.to_vec();
    lines.sort();
    lines
}

mod bir_service;

use bir_service::BirService as Service;

impl Service {
    async fn scrape(&self) -> String {
        let response = reqwest::get(format!("http://{}/metrics", self.running.addr))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Scrapes until the `plane_bir_*` samples are exactly `expected`.
    async fn wait_for_bir_lines(&self, expected: &[String]) {
        let expected = sorted(expected);
        let mut last = String::new();
        let found = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                last = self.scrape().await;
                if bir_lines(&last) == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "the plane_bir_* samples never became\n{}\nlast scrape:\n{last}",
            expected.join("\n")
        );
    }

    async fn deadline(&self, form: &str, period: &str) -> DeadlineRecord {
        self.deadlines
            .all()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.form == form && d.period == period)
            .unwrap_or_else(|| panic!("no deadline {form} {period}"))
    }

    /// A person moves a deadline's work item to the first state of `group`, in Plane.
    async fn move_to(&self, person: Uuid, form: &str, period: &str, group: &str) {
        let item = self.deadline(form, period).await.work_item_id.unwrap();
        let project = self.fake.project_id();
        let state = self.fake.state_id(project, group).unwrap();
        self.fake
            .as_user(person)
            .patch_work_item(project, item, json!({"state": state.to_string()}))
            .unwrap();
        self.settle().await;
    }
}

/// The `plane_bir_*` samples for these per-status counts and figures.
fn expected(
    [pending, in_progress, overdue, filed, void]: [u64; 5],
    next_seconds: i64,
    synced_at: i64,
) -> Vec<String> {
    let p = PROFILE;
    vec![
        format!(r#"plane_bir_deadlines{{profile="{p}",status="pending"}} {pending}"#),
        format!(r#"plane_bir_deadlines{{profile="{p}",status="in_progress"}} {in_progress}"#),
        format!(r#"plane_bir_deadlines{{profile="{p}",status="overdue"}} {overdue}"#),
        format!(r#"plane_bir_deadlines{{profile="{p}",status="filed"}} {filed}"#),
        format!(r#"plane_bir_deadlines{{profile="{p}",status="void"}} {void}"#),
        format!(r#"plane_bir_overdue_deadlines{{profile="{p}"}} {overdue}"#),
        format!(r#"plane_bir_next_unfiled_deadline_seconds{{profile="{p}"}} {next_seconds}"#),
        format!(r#"plane_bir_last_sync_timestamp_seconds{{profile="{p}"}} {synced_at}"#),
        format!(r#"plane_bir_last_sync_rate_limit_wait_seconds{{profile="{p}"}} 0.0"#),
        format!("plane_bir_deadlines_refreshed_timestamp_seconds {NOW_UNIX}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_gauges_after_a_sync_and_after_deadlines_are_filed_in_plane() {
    let s = Service::start(Arc::new(ManualClock::new(now().timestamp_millis()))).await;

    // Read at start: the tables exist (serve creates them) and hold nothing yet.
    s.wait_for_bir_lines(&[format!(
        "plane_bir_deadlines_refreshed_timestamp_seconds {NOW_UNIX}"
    )])
    .await;

    let before = Utc::now();
    let report = s.sync(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()).await;
    let after = Utc::now();
    assert_eq!(report.created, 43, "{report:?}");
    s.settle().await;
    // The sync's record, in the store it shares with serve.
    let runs = s.deadlines.sync_runs().await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run: &SyncRun = &runs[0];
    assert_eq!(
        (run.profile.as_str(), run.project_id, run.writes),
        (PROFILE, s.fake.project_id(), report.writes)
    );
    assert!(
        before <= run.finished_at && run.finished_at <= after,
        "{run:?}"
    );
    let synced_at = run.finished_at.timestamp();

    // The sync is another process for serve: its changes show at the next read, which a
    // handled event or the minute brings; here the test asks for it.
    s.running.state.metrics.refresh_deadlines_soon();
    // On 2026-03-01 (Manila): 1604-C and 2316 (due 02-02), 1601-C and 0619-E 2026-01
    // (due 02-16) are overdue; the next is 1604-E 2025, due 03-02, whose day ends at
    // 2026-03-02T16:00Z, 30 hours from now.
    s.wait_for_bir_lines(&expected([39, 0, 4, 0, 0], 30 * 3600, synced_at))
        .await;

    // People in Plane: ana files the next one and an overdue one, bob cancels another
    // overdue one, and ana starts the March withholding return.
    let ana = s.fake.add_user(json!({"display_name": "ana"}));
    let bob = s.fake.add_user(json!({"display_name": "bob"}));
    s.move_to(ana, "1604-E", "2025", "completed").await;
    s.move_to(ana, "1604-C", "2025", "completed").await;
    s.move_to(bob, "2316", "2025", "cancelled").await;
    s.move_to(ana, "1601-C", "2026-02", "started").await;
    assert_eq!(
        s.deadline("1604-E", "2025").await.status,
        DeadlineStatus::Filed,
        "the handler marked it filed"
    );
    // No request here: the handled events asked for the read. The next open deadline is
    // now the February returns (one in progress), due 03-16: 15 days and 6 hours away.
    s.wait_for_bir_lines(&expected(
        [37, 1, 2, 2, 1],
        15 * 86_400 + 6 * 3600,
        synced_at,
    ))
    .await;

    let text = s.scrape().await;
    for family in [
        "plane_bir_deadlines",
        "plane_bir_overdue_deadlines",
        "plane_bir_next_unfiled_deadline_seconds",
        "plane_bir_last_sync_timestamp_seconds",
        "plane_bir_last_sync_rate_limit_wait_seconds",
        "plane_bir_deadlines_refreshed_timestamp_seconds",
        "plane_connector_plane_check",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} gauge\n")),
            "{family} has no gauge TYPE in\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP in\n{text}"
        );
    }
    assert!(
        text.lines()
            .find(|l| l.starts_with("# HELP plane_bir_deadlines "))
            .unwrap()
            .contains("bounded by the profiles"),
        "the profile label's bound is stated"
    );
    // No API key: the Plane check has not run (it first runs after 5 minutes).
    assert!(!text.contains("plane_connector_plane_check{"), "{text}");
}

fn record(form: &str, due: &str, status: DeadlineStatus) -> (DeadlineRecord, Uuid) {
    let item = Uuid::new_v4();
    (
        DeadlineRecord {
            external_id: format!("bir:{PROFILE}:{form}:{due}"),
            profile: PROFILE.into(),
            form: form.into(),
            period: due.into(),
            due_date: due.parse().unwrap(),
            payment_date: None,
            project_id: Uuid::nil(),
            work_item_id: Some(item),
            pushed: None,
            fingerprint: None,
            status,
            status_by: None,
            status_at: None,
        },
        item,
    )
}

/// Polls (on tokio's clock, paused here) until the figures satisfy `done`.
async fn wait_for_figures(
    metrics: &Metrics,
    done: impl Fn(&DeadlineFigures) -> bool,
) -> DeadlineFigures {
    tokio::time::timeout(Duration::from_secs(3600), async {
        loop {
            if let Some(figures) = metrics.deadline_figures().filter(|f| done(f)) {
                return figures;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the figures change (a bound for a stalled test)")
}

fn filed(f: &DeadlineFigures) -> u64 {
    f.profiles.get(PROFILE).map_or(0, |p| p.deadlines[3])
}

/// The refresh loop on paused tokio time: a read at start, one a minute, one shortly
/// after a handled event, and none in between; "now" from the clock it is given.
#[tokio::test(start_paused = true)]
async fn the_store_is_read_at_start_every_minute_and_soon_after_a_handled_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let store = SqliteDeadlineStore::open(&db).unwrap();
    let (r, item) = record("1601-C", "2026-03-16", DeadlineStatus::Pending);
    store.record(&r).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let clock = Arc::new(ManualClock::new(now().timestamp_millis()));
    let (stop, stopped) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let task = tokio::spawn(refresh_deadlines(
        metrics.clone(),
        db.clone(),
        clock.clone(),
        stopped,
    ));

    let first = wait_for_figures(&metrics, |_| true).await;
    assert!(started.elapsed() < DEADLINE_SETTLE, "read at start");
    assert_eq!(first.refreshed_at, NOW_UNIX);
    assert_eq!(first.profiles[PROFILE].deadlines, [1, 0, 0, 0, 0]);

    // A change nobody announces (the sync is another process) waits for the minute.
    let change = |status, at: &str| StatusChange {
        work_item_id: item,
        status,
        by: None,
        at: at.parse().unwrap(),
        event: None,
    };
    store
        .apply_status(&change(DeadlineStatus::Filed, "2026-03-01T09:00:00Z"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    let second = wait_for_figures(&metrics, |f| filed(f) == 1).await;
    assert!(
        started.elapsed() >= DEADLINE_REFRESH,
        "read before the minute: {:?}",
        started.elapsed()
    );
    assert_eq!(second.refreshed_at, NOW_UNIX + 3600, "now is the clock's");

    // What the worker does when a handler acted: a read DEADLINE_SETTLE later.
    store
        .apply_status(&change(DeadlineStatus::Pending, "2026-03-01T09:30:00Z"))
        .await
        .unwrap();
    let asked = tokio::time::Instant::now();
    metrics.started();
    metrics.processed("done", Duration::ZERO);
    wait_for_figures(&metrics, |f| filed(f) == 0).await;
    let took = asked.elapsed();
    assert!(
        DEADLINE_SETTLE <= took && took < DEADLINE_REFRESH,
        "read {took:?} after a handled event"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(3600), task)
        .await
        .expect("the loop stops")
        .unwrap();
}

/// A store that cannot be read yet leaves the gauges without samples, and is read once
/// it exists.
#[tokio::test(start_paused = true)]
async fn a_store_that_does_not_exist_yet_is_read_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let metrics = Arc::new(Metrics::default());
    let clock = Arc::new(ManualClock::new(now().timestamp_millis()));
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(refresh_deadlines(
        metrics.clone(),
        db.clone(),
        clock,
        stopped,
    ));
    tokio::time::sleep(DEADLINE_REFRESH / 2).await;
    assert_eq!(metrics.deadline_figures(), None);
    let text = metrics.render();
    assert!(text.contains("# TYPE plane_bir_deadlines gauge"), "{text}");
    assert_eq!(bir_lines(&text), Vec::<String>::new());

    let store = SqliteDeadlineStore::open(&db).unwrap();
    store
        .record(&record("0619-E", "2026-03-16", DeadlineStatus::Pending).0)
        .await
        .unwrap();
    let figures = wait_for_figures(&metrics, |_| true).await;
    assert_eq!(figures.profiles[PROFILE].deadlines, [1, 0, 0, 0, 0]);
}

/// Manila days: a deadline is due until Manila midnight after its due day, then overdue;
/// filed and void ones are never next; profiles are apart.
#[test]
fn figures_count_manila_days_and_render_as_exact_lines() {
    let records = [
        record("1601-C", "2026-04-15", DeadlineStatus::Pending).0,
        record("0619-E", "2026-04-15", DeadlineStatus::InProgress).0,
        record("2550Q", "2026-04-14", DeadlineStatus::Filed).0,
        record("1702Q", "2026-04-10", DeadlineStatus::Void).0,
        record("1601-EQ", "2026-04-30", DeadlineStatus::Pending).0,
        DeadlineRecord {
            profile: "name-sari-sari".into(),
            external_id: "bir:name-sari-sari:2551Q:2026-Q1".into(),
            ..record("2551Q", "2026-04-27", DeadlineStatus::Pending).0
        },
    ];
    let runs = [SyncRun {
        profile: PROFILE.into(),
        project_id: Uuid::nil(),
        finished_at: "2026-04-15T01:02:03.456Z".parse().unwrap(),
        requests: 3,
        writes: 0,
        waited: Duration::from_millis(1500),
    }];
    let metrics = Metrics::default();

    // One second before midnight in Manila on the due day: still due, 1 s left.
    let last_second: DateTime<Utc> = "2026-04-15T15:59:59Z".parse().unwrap();
    metrics.set_deadline_figures(DeadlineFigures::compute(&records, &runs, last_second));
    let p = PROFILE;
    assert_eq!(
        bir_lines(&metrics.render()),
        sorted(&[
            format!(r#"plane_bir_deadlines{{profile="{p}",status="pending"}} 2"#),
            format!(r#"plane_bir_deadlines{{profile="{p}",status="in_progress"}} 1"#),
            format!(r#"plane_bir_deadlines{{profile="{p}",status="overdue"}} 0"#),
            format!(r#"plane_bir_deadlines{{profile="{p}",status="filed"}} 1"#),
            format!(r#"plane_bir_deadlines{{profile="{p}",status="void"}} 1"#),
            r#"plane_bir_deadlines{profile="name-sari-sari",status="pending"} 1"#.into(),
            r#"plane_bir_deadlines{profile="name-sari-sari",status="in_progress"} 0"#.into(),
            r#"plane_bir_deadlines{profile="name-sari-sari",status="overdue"} 0"#.into(),
            r#"plane_bir_deadlines{profile="name-sari-sari",status="filed"} 0"#.into(),
            r#"plane_bir_deadlines{profile="name-sari-sari",status="void"} 0"#.into(),
            format!(r#"plane_bir_overdue_deadlines{{profile="{p}"}} 0"#),
            r#"plane_bir_overdue_deadlines{profile="name-sari-sari"} 0"#.into(),
            format!(r#"plane_bir_next_unfiled_deadline_seconds{{profile="{p}"}} 1"#),
            // 2026-04-27 ends at 2026-04-27T16:00Z: 12 days and 1 second later.
            r#"plane_bir_next_unfiled_deadline_seconds{profile="name-sari-sari"} 1036801"#.into(),
            format!(r#"plane_bir_last_sync_timestamp_seconds{{profile="{p}"}} 1776214923"#),
            format!(r#"plane_bir_last_sync_rate_limit_wait_seconds{{profile="{p}"}} 1.5"#),
            "plane_bir_deadlines_refreshed_timestamp_seconds 1776268799".into(),
        ])
    );

    // At midnight the two open ones of the 15th are overdue; the next is the 30th's.
    let midnight: DateTime<Utc> = "2026-04-15T16:00:00Z".parse().unwrap();
    let figures = DeadlineFigures::compute(&records, &runs, midnight);
    let ours = &figures.profiles[PROFILE];
    assert_eq!(ours.deadlines, [1, 0, 2, 1, 1]);
    assert_eq!(ours.overdue(), 2);
    assert_eq!(ours.next_unfiled_seconds, Some(15 * 86_400));
    metrics.set_deadline_figures(figures);
    let text = metrics.render();
    assert!(
        text.lines()
            .any(|l| l == format!(r#"plane_bir_overdue_deadlines{{profile="{p}"}} 2"#)),
        "{text}"
    );

    // Nothing open ahead: no sample, rather than a made-up number.
    let all_filed: Vec<_> = records
        .iter()
        .map(|r| DeadlineRecord {
            status: DeadlineStatus::Filed,
            ..r.clone()
        })
        .collect();
    let figures = DeadlineFigures::compute(&all_filed, &[], midnight);
    assert!(
        figures
            .profiles
            .values()
            .all(|p| p.next_unfiled_seconds.is_none() && p.last_sync.is_none())
    );
}

fn app_state(env: Vec<(&'static str, String)>) -> AppState {
    let dir = std::env::temp_dir();
    let config = config_with(
        dir.join("unused.db"),
        [vec![("PLANE_WEBHOOK_SECRET", "plane_wh_test".into())], env].concat(),
    );
    let store = Arc::new(MemoryStore::new(StoreConfig::default()));
    let connector = Connector::new(&config, store as Arc<dyn DeliveryStore>).unwrap();
    AppState::new(connector, Arc::new(Metrics::default()), &config)
}

fn check_lines(answer: &str) -> Vec<String> {
    [
        "ok",
        "unauthorized",
        "unreachable",
        "no_answer",
        "not_checked",
    ]
    .iter()
    .map(|r| {
        format!(
            r#"plane_connector_plane_check{{result="{r}"}} {}"#,
            i32::from(*r == answer)
        )
    })
    .collect()
}

fn check_samples(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("plane_connector_plane_check{"))
        .map(str::to_owned)
        .collect()
}

async fn readyz(state: &AppState) -> serde_json::Value {
    let response = router(state.clone())
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// What `/readyz` says about Plane is the gauge: nothing before the first check, then
/// 1 for the answer and 0 for the other words. The key never shows.
#[tokio::test]
async fn the_plane_check_gauge_follows_readyz() {
    let fake = FakePlane::builder().start().await.unwrap();
    for (key, word) in [
        (fake.api_key(), "ok"),
        ("plane_api_refused".to_owned(), "unauthorized"),
    ] {
        let state = app_state(vec![
            ("PLANE_API_KEY", key.clone()),
            ("PLANE_BASE_URL", fake.base_url()),
        ]);
        assert_eq!(check_samples(&state.metrics.render()), Vec::<String>::new());
        assert_eq!(readyz(&state).await["plane"], word);
        let text = state.metrics.render();
        assert_eq!(check_samples(&text), check_lines(word), "{text}");
        assert!(!text.contains(&key));
    }
}

/// `serve` asks Plane itself every 5 minutes (paused time), so the Plane alerts do not
/// depend on someone probing `/readyz`; the first time one period after start.
#[tokio::test(start_paused = true)]
async fn serve_checks_plane_every_five_minutes_without_a_probe() {
    // No API key: the check answers not_checked without a request.
    let state = app_state(vec![]);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(plane_server::app::check_plane(state.clone(), stopped));
    tokio::time::sleep(PLANE_CHECK_EVERY - Duration::from_secs(1)).await;
    assert_eq!(check_samples(&state.metrics.render()), Vec::<String>::new());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        check_samples(&state.metrics.render()),
        check_lines("not_checked")
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(600), task)
        .await
        .expect("the check stops")
        .unwrap();
}

/// With the store in PostgreSQL (the configuration's `postgres://` URL and schema), the
/// gauges read it there, creating nothing: an empty schema reads as no deadlines, and what
/// a sync and a replica's handler record shows at the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_read_the_deadlines_from_postgres_and_create_nothing() {
    let Some(pg) = plane_postgres::testing::database("bir_gauges").await else {
        return;
    };
    let mut env = vec![("PLANE_DATABASE_SCHEMA", pg.schema().to_owned())];
    if let Ok(password) = std::env::var("PGPASSWORD") {
        env.push(("PGPASSWORD", password));
    }
    let config = config_with(PathBuf::from(pg.url()), env);
    assert!(config.postgres.is_some());
    let metrics = Arc::new(Metrics::default());
    let clock = Arc::new(ManualClock::new(now().timestamp_millis()));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(refresh_deadlines(metrics.clone(), &config, clock, stopped));

    // Real time here (the database is real): a bound well short of wait_for_figures' own.
    async fn within<T>(figures: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), figures)
            .await
            .expect("the gauges were not read from PostgreSQL")
    }
    let first = within(wait_for_figures(&metrics, |_| true)).await;
    assert!(first.profiles.is_empty(), "{first:?}");
    assert_eq!(first.refreshed_at, NOW_UNIX);
    assert_eq!(pg.db().schema_version("bir").await.unwrap(), None);

    // A sync records a deadline and its run; a replica's handler files it later.
    let store = plane_bir::PgDeadlineStore::open(pg.db().clone())
        .await
        .unwrap();
    let (r, item) = record("1601-C", "2026-03-16", DeadlineStatus::Pending);
    store.record(&r).await.unwrap();
    let finished_at: DateTime<Utc> = "2026-03-01T09:30:00.123456Z".parse().unwrap();
    store
        .record_sync_run(&SyncRun {
            profile: PROFILE.into(),
            project_id: Uuid::nil(),
            finished_at,
            requests: 3,
            writes: 1,
            waited: Duration::ZERO,
        })
        .await
        .unwrap();
    metrics.refresh_deadlines_soon();
    within(wait_for_figures(&metrics, |f| !f.profiles.is_empty())).await;
    // Due 2026-03-16, whose Manila day ends 15 days and 6 hours after now.
    assert_eq!(
        bir_lines(&metrics.render()),
        sorted(&expected(
            [1, 0, 0, 0, 0],
            15 * 86_400 + 6 * 3600,
            finished_at.timestamp()
        ))
    );

    store
        .apply_status(&StatusChange {
            work_item_id: item,
            status: DeadlineStatus::Filed,
            by: Some("ana".into()),
            at: "2026-03-01T09:45:00Z".parse().unwrap(),
            event: Some("delivery-1".into()),
        })
        .await
        .unwrap();
    metrics.refresh_deadlines_soon();
    let figures = within(wait_for_figures(&metrics, |f| filed(f) == 1)).await;
    assert_eq!(figures.profiles[PROFILE].deadlines, [0, 0, 0, 1, 0]);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the loop stops")
        .unwrap();
}
