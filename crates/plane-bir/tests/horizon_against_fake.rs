//! No deadline is missing across year ends, fiscal-year ends and years whose holidays are
//! not proclaimed: the rolling window against plane-fake, a provisional year that is then
//! proclaimed (one write per changed work item), and an overdue deadline. Expected tables
//! are written by hand; their weekdays were checked apart from this code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use futures::TryStreamExt;
use plane_bir::horizon::{self, Ahead, Window};
use plane_bir::sync::{EXTERNAL_SOURCE, Progress};
use plane_bir::{
    Deadline, DeadlineStatus, DeadlineStore, Holidays, Overrides, Profile, SqliteDeadlineStore,
    SyncReport, SyncRequest, calendar, sync,
};
use plane_core::{Budget, ListParams, PlaneClient, Priority, WorkItem};
use plane_fake::{FakePlane, RunningFake};
use serde_json::json;

struct Env {
    fake: RunningFake,
    client: PlaneClient,
    store: Arc<SqliteDeadlineStore>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    let client = PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .api_key(fake.api_key())
        .budget(Budget::new(1_000_000, Duration::from_secs(60)))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDeadlineStore::open(dir.path().join("plane.db")).unwrap());
    Env {
        fake,
        client,
        store,
        _dir: dir,
    }
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn fiscal() -> Profile {
    Profile::parse(
        include_str!("../profiles/fiscal-june-corporation.toml"),
        "fiscal-june-corporation.toml",
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

impl Env {
    async fn sync(
        &self,
        profile: &Profile,
        deadlines: &[Deadline],
        today: NaiveDate,
    ) -> SyncReport {
        let request = SyncRequest {
            profile,
            deadlines,
            project: self.fake.project_id(),
            today,
            dry_run: false,
        };
        sync(
            &self.client,
            self.store.clone(),
            &request,
            &mut |_: Progress| {},
        )
        .await
        .unwrap()
    }

    /// What `bir sync` without `--year` syncs on `today`.
    async fn window(
        &self,
        profile: &Profile,
        today: NaiveDate,
        holidays: &Holidays,
    ) -> Vec<Deadline> {
        let records = self
            .store
            .deadlines_of(&plane_bir::sync::profile_key(profile))
            .await
            .unwrap();
        horizon::deadlines(
            profile,
            self.fake.project_id(),
            Window::rolling(today, Ahead::default(), None),
            &records,
            holidays,
            &Overrides::none(),
        )
        .unwrap()
    }

    /// Our work items by external id; fails on a duplicate.
    async fn items(&self) -> BTreeMap<String, WorkItem> {
        let items: Vec<WorkItem> = self
            .client
            .work_items(self.fake.project_id())
            .stream(ListParams::new().per_page(1000))
            .try_collect()
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for item in items {
            if item.external_source.as_deref() == Some(EXTERNAL_SOURCE) {
                let ext = item.external_id.clone().unwrap();
                assert!(out.insert(ext.clone(), item).is_none(), "{ext} twice");
            }
        }
        out
    }

    fn patches(&self) -> Vec<String> {
        self.fake
            .request_log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

/// `form period` of each work item, and its name's due date.
fn keys(items: &BTreeMap<String, WorkItem>) -> BTreeSet<String> {
    items
        .values()
        .map(|i| {
            let name = i.name.clone().unwrap();
            // "1702Q 2027-Q1 · due 2026-12-01"
            let (what, due) = name.split_once(" · due ").unwrap();
            format!("{what} {due}")
        })
        .collect()
}

/// The fiscal-June corporation's deadlines due 2026-12-01 to 2027-12-31 (form, period,
/// weekday and date), written out by hand from the rules; weekdays checked apart.
const FISCAL_WINDOW_2026_12: &[(&str, &str, &str)] = &[
    ("1702Q", "2027-Q1", "Tue 2026-12-01"), // 60 days after 2026-09-30 = Sun 11-29; Mon 30 Bonifacio
    ("1601-C", "2026-11", "Thu 2026-12-10"),
    ("0619-E", "2026-11", "Thu 2026-12-10"),
    ("1601-C", "2026-12", "Fri 2027-01-15"),
    ("2307", "2026-Q4", "Wed 2027-01-20"),
    ("2550Q", "2027-Q2", "Mon 2027-01-25"),
    ("1604-C", "2026", "Mon 2027-02-01"),
    ("2316", "2026", "Mon 2027-02-01"),
    ("1601-EQ", "2026-Q4", "Mon 2027-02-01"),
    ("1601-C", "2027-01", "Wed 2027-02-10"),
    ("0619-E", "2027-01", "Wed 2027-02-10"),
    ("1604-E", "2026", "Mon 2027-03-01"),
    ("1702Q", "2027-Q2", "Mon 2027-03-01"), // 60 days after 2026-12-31
    ("1601-C", "2027-02", "Wed 2027-03-10"),
    ("0619-E", "2027-02", "Wed 2027-03-10"),
    ("1601-C", "2027-03", "Mon 2027-04-12"),
    ("2307", "2027-Q1", "Tue 2027-04-20"),
    ("2550Q", "2027-Q3", "Mon 2027-04-26"),
    ("1601-EQ", "2027-Q1", "Fri 2027-04-30"),
    ("1601-C", "2027-04", "Mon 2027-05-10"),
    ("0619-E", "2027-04", "Mon 2027-05-10"),
    ("1702Q", "2027-Q3", "Mon 2027-05-31"), // 60 days after 2027-03-31 = Sun 05-30
    ("1601-C", "2027-05", "Thu 2027-06-10"),
    ("0619-E", "2027-05", "Thu 2027-06-10"),
    ("1601-C", "2027-06", "Mon 2027-07-12"),
    ("2307", "2027-Q2", "Tue 2027-07-20"),
    ("2550Q", "2027-Q4", "Mon 2027-07-26"),
    ("1601-EQ", "2027-Q2", "Mon 2027-08-02"),
    ("1601-C", "2027-07", "Tue 2027-08-10"),
    ("0619-E", "2027-07", "Tue 2027-08-10"),
    ("1601-C", "2027-08", "Fri 2027-09-10"),
    ("0619-E", "2027-08", "Fri 2027-09-10"),
    ("1601-C", "2027-09", "Mon 2027-10-11"),
    ("1702-RT", "2027", "Fri 2027-10-15"), // FY ending June 2027: the 15th of the 4th month
    ("2307", "2027-Q3", "Wed 2027-10-20"),
    ("2550Q", "2028-Q1", "Mon 2027-10-25"), // FY2028 starts July 2027
    ("1601-EQ", "2027-Q3", "Tue 2027-11-02"), // Sun 10-31, Mon 11-01 All Saints' Day
    ("1601-C", "2027-10", "Wed 2027-11-10"),
    ("0619-E", "2027-10", "Wed 2027-11-10"),
    ("1702Q", "2028-Q1", "Mon 2027-11-29"),
    ("1601-C", "2027-11", "Fri 2027-12-10"),
    ("0619-E", "2027-11", "Fri 2027-12-10"),
];

fn table(rows: &[(&str, &str, &str)]) -> BTreeSet<String> {
    rows.iter()
        .map(|(form, period, due)| format!("{form} {period} {}", &due[4..]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rolling_window_crosses_year_and_fiscal_year_ends_without_a_duplicate() {
    let env = env().await;
    let profile = fiscal();
    let h = Holidays::builtin();

    // 2026-12-05: the window is 2026-12-01 to 2027-12-31.
    let dec = env.window(&profile, day("2026-12-05"), &h).await;
    let listed: Vec<String> = dec
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d.form,
                d.period,
                d.due_date.format("%a %Y-%m-%d")
            )
        })
        .collect();
    let expected: Vec<String> = FISCAL_WINDOW_2026_12
        .iter()
        .map(|(f, p, d)| format!("{f} {p} {d}"))
        .collect();
    assert_eq!(listed, expected);
    let report = env.sync(&profile, &dec, day("2026-12-05")).await;
    assert_eq!(report.created, FISCAL_WINDOW_2026_12.len());
    let items = env.items().await;
    assert_eq!(keys(&items), table(FISCAL_WINDOW_2026_12));
    // The return due this week is there, overdue on the 5th, so urgent; a first sync
    // reaches no further back (2550Q 2027-Q1 was due 2026-10-26).
    let q1 = &items["bir:111222333000:1702Q:2027-Q1"];
    assert_eq!(q1.priority, Some(Priority::Urgent));
    assert!(!items.contains_key("bir:111222333000:2550Q:2027-Q1"));
    // January's return is 51 days ahead: low.
    assert_eq!(
        items["bir:111222333000:2550Q:2027-Q2"].priority,
        Some(Priority::Low)
    );

    // A month later, across the year end: the open overdue 1702Q stays, January 2028's
    // returns come in, nothing is created twice.
    env.fake.clear_request_log();
    let jan = env.window(&profile, day("2027-01-04"), &h).await;
    assert!(
        jan.iter()
            .any(|d| d.form == "1702Q" && d.period.to_string() == "2027-Q1")
    );
    let report = env.sync(&profile, &jan, day("2027-01-04")).await;
    let new_in_january: BTreeSet<String> = table(&[
        ("1601-C", "2027-12", "Mon 2028-01-17"), // the 15th is a Saturday
        ("2307", "2027-Q4", "Thu 2028-01-20"),
        ("2550Q", "2028-Q2", "Tue 2028-01-25"),
        ("1604-C", "2027", "Mon 2028-01-31"),
        ("2316", "2027", "Mon 2028-01-31"),
        ("1601-EQ", "2027-Q4", "Mon 2028-01-31"),
    ]);
    assert_eq!(report.created, new_in_january.len(), "{:?}", report.plan);
    let items = env.items().await;
    let mut expected = table(FISCAL_WINDOW_2026_12);
    expected.extend(new_in_january);
    assert_eq!(keys(&items), expected);
    let posts = env
        .patches()
        .iter()
        .filter(|w| w.starts_with("POST"))
        .count();
    assert_eq!(posts, 6 + report.labels_created);

    // The same deadlines reached through a labelled year keep their work items.
    let year_2027 = calendar(&profile, 2027, &h, &Overrides::none()).unwrap();
    env.sync(&profile, &year_2027, day("2027-01-04")).await;
    let items = env.items().await;
    for d in &year_2027 {
        let ext = plane_bir::sync::external_id("111222333000", &d.form, &d.period.to_string());
        assert!(items.contains_key(&ext), "{ext}");
    }

    // Overdue and still open on 2027-01-27: the January VAT return turns urgent.
    env.fake.clear_request_log();
    let late = env.window(&profile, day("2027-01-27"), &h).await;
    env.sync(&profile, &late, day("2027-01-27")).await;
    let items = env.items().await;
    assert_eq!(
        items["bir:111222333000:2550Q:2027-Q2"].priority,
        Some(Priority::Urgent)
    );

    // Filed in Plane: the next window lets it go (no write to it again).
    let q1_id = items["bir:111222333000:1702Q:2027-Q1"].id;
    let ana = env.fake.add_user(json!({"display_name": "ana"}));
    let done = env
        .fake
        .state_id(env.fake.project_id(), "completed")
        .unwrap();
    env.fake
        .as_user(ana)
        .patch_work_item(env.fake.project_id(), q1_id, json!({"state": done}))
        .unwrap();
    env.sync(&profile, &late, day("2027-01-27")).await;
    let row = env
        .store
        .all()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.work_item_id == Some(q1_id))
        .unwrap();
    assert_eq!(row.status, DeadlineStatus::Filed);
    let feb = env.window(&profile, day("2027-02-02"), &h).await;
    assert!(
        !feb.iter()
            .any(|d| d.form == "1702Q" && d.period.to_string() == "2027-Q1")
    );
    env.fake.clear_request_log();
    env.sync(&profile, &feb, day("2027-02-02")).await;
    assert!(
        !env.patches().iter().any(|w| w.contains(&q1_id.to_string())),
        "{:?}",
        env.patches()
    );
}

/// The individual's 2028 (provisional), then the same year with its holidays proclaimed
/// and one day more: 2551Q 2028-Q1 moves from Tue 04-25 to Wed 04-26.
const INDIVIDUAL_2028: &[(&str, &str, &str)] = &[
    ("1701A", "2027", "Mon 2028-04-17"), // the 15th is a Saturday
    ("2551Q", "2028-Q1", "Tue 2028-04-25"),
    ("1701Q", "2028-Q1", "Mon 2028-05-15"),
    ("2551Q", "2028-Q2", "Tue 2028-07-25"),
    ("1701Q", "2028-Q2", "Tue 2028-08-15"),
    ("2551Q", "2028-Q3", "Wed 2028-10-25"),
    ("1701Q", "2028-Q3", "Wed 2028-11-15"),
    ("2551Q", "2028-Q4", "Thu 2029-01-25"),
    ("1701A", "2028", "Mon 2029-04-16"), // the 15th is a Sunday
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisional_date_moves_with_one_write_when_the_year_is_proclaimed() {
    let env = env().await;
    let profile = individual();
    let before = calendar(&profile, 2028, &Holidays::builtin(), &Overrides::none()).unwrap();
    let listed: Vec<(String, String, String)> = before
        .iter()
        .map(|d| {
            (
                d.form.clone(),
                d.period.to_string(),
                d.due_date.format("%a %Y-%m-%d").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = INDIVIDUAL_2028
        .iter()
        .map(|(f, p, d)| (f.to_string(), p.to_string(), d.to_string()))
        .collect();
    assert_eq!(listed, expected);
    assert!(before.iter().all(|d| d.provisional));
    env.sync(&profile, &before, day("2028-01-05")).await;
    let items = env.items().await;
    let q1 = &items["bir:98765432100000:2551Q:2028-Q1"];
    let html = q1.description_html.clone().unwrap();
    assert!(
        html.contains("Provisional date") && html.contains("2028 holidays are not proclaimed"),
        "{html}"
    );

    // The proclamation arrives (a holiday file): the law's days and one special day more.
    let mut h = Holidays::builtin();
    let mut file = String::from(
        "[[year]]\nyear = 2028\nreplace = true\nstatus = \"proclaimed\"\nproclamation = \"Proc. 0 s. 2027 (a test's)\"\ndays = [\n",
    );
    for d in &h.year(2028).days {
        file += &format!(
            "  {{ date = \"{}\", name = \"{}\", kind = \"regular\" }},\n",
            d.date, d.name
        );
    }
    file += "  { date = \"2028-04-25\", name = \"A special day\", kind = \"special-non-working\" },\n]\n";
    h.merge_str(&file, "2028.toml").unwrap();
    let after = calendar(&profile, 2028, &h, &Overrides::none()).unwrap();
    let moved: Vec<_> = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a.due_date != b.due_date)
        .map(|(a, _)| (a.form.as_str(), a.period.to_string(), a.due_date))
        .collect();
    assert_eq!(moved, [("2551Q", "2028-Q1".to_string(), day("2028-04-26"))]);
    // Seven rely on 2028 only and are firm now; the last two rely on 2029 still.
    let firm = after.iter().filter(|d| !d.provisional).count();
    assert_eq!(firm, 7);

    env.fake.clear_request_log();
    let report = env.sync(&profile, &after, day("2028-01-05")).await;
    assert_eq!(report.rescheduled.len(), 1);
    let m = &report.rescheduled[0];
    assert_eq!(
        (
            m.form.as_str(),
            m.period.as_str(),
            m.from,
            m.to,
            m.provisional
        ),
        (
            "2551Q",
            "2028-Q1",
            day("2028-04-25"),
            day("2028-04-26"),
            false
        )
    );
    // One PATCH per work item whose content changed: the moved one, and the six others
    // that lose their provisional note; the two 2029 ones are untouched.
    let writes = env.patches();
    assert_eq!(writes.len(), 7, "{writes:?}");
    assert!(writes.iter().all(|w| w.starts_with("PATCH")));
    let q1_writes = writes
        .iter()
        .filter(|w| w.contains(&q1.id.to_string()))
        .count();
    assert_eq!(q1_writes, 1);
    let items = env.items().await;
    let q1 = &items["bir:98765432100000:2551Q:2028-Q1"];
    assert_eq!(q1.target_date, Some(day("2028-04-26")));
    assert!(!q1.description_html.clone().unwrap().contains("Provisional"));
    let stored = env
        .store
        .all()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.work_item_id == Some(q1.id))
        .unwrap();
    assert_eq!(stored.due_date, day("2028-04-26"));

    // And nothing more the run after.
    env.fake.clear_request_log();
    let report = env.sync(&profile, &after, day("2028-01-05")).await;
    assert_eq!((report.writes, report.rescheduled.len()), (0, 0));
}
