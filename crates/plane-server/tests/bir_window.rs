//! The real binary, on 2026-12-05 (`--today`): `bir sync` without `--year` syncs the rolling
//! window, so the fiscal-June corporation's 1702Q due Tue 2026-12-01 is created (overdue,
//! urgent) with every deadline through 2027-12; `bir status` marks it overdue and filters.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use plane_fake::{FakePlane, RunningFake};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");

fn fiscal() -> String {
    format!(
        "{}/../plane-bir/profiles/fiscal-june-corporation.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

async fn run(fake: &RunningFake, dir: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("PLANE_BASE_URL", fake.base_url())
        .env("PLANE_WORKSPACE_SLUG", fake.workspace_slug())
        .env("PLANE_RATE_LIMIT_PER_MINUTE", "100000")
        .env("PLANE_API_KEY", fake.api_key())
        .current_dir(dir);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_without_a_year_covers_the_window_and_status_shows_what_is_overdue() {
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = fake.project_id().to_string();
    let db = dir.path().join("plane.db").display().to_string();
    let (p, d) = (fiscal(), dir.path());
    let sync_args = [
        "bir",
        "sync",
        "--profile",
        &p,
        "--project",
        &project,
        "--today",
        "2026-12-05",
        "--db",
        &db,
        "--format",
        "json",
    ];
    let out = run(&fake, d, &sync_args).await;
    // 2027's holidays are provisional: one warning for the run.
    assert_eq!(
        text(&out.stderr).matches("warning:").count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["covers"]["from"], "2026-12-01");
    assert_eq!(report["covers"]["to"], "2027-12-31");
    // 42 deadlines fall due 2026-12-01 to 2027-12-31 (the hand-written table of
    // plane-bir's horizon_against_fake test).
    assert_eq!(report["created"], 42, "{report}");

    // Run again the same day: nothing to write.
    let again = json(&run(&fake, d, &sync_args).await);
    assert_eq!(
        (again["created"].as_u64(), again["writes"].as_u64()),
        (Some(0), Some(0))
    );

    // bir status: the 1702Q is overdue on the 5th, the rest is pending.
    let status = |extra: &'static [&'static str]| {
        let mut args = vec![
            "bir",
            "status",
            "--db",
            &db,
            "--today",
            "2026-12-05",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let fake = &fake;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            json(&run(fake, d, &args).await)
        }
    };
    let all = status(&[]).await;
    assert_eq!(all.as_array().unwrap().len(), 42);
    // The work items, as plane-fake holds them.
    let items: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["work_item_id"].as_str().unwrap().parse().unwrap();
            fake.work_item_json(fake.project_id(), id).unwrap()
        })
        .collect();
    let ours: Vec<&Value> = items
        .iter()
        .filter(|i| i["external_source"] == "plane-bir")
        .collect();
    assert_eq!(ours.len(), 42);
    let q1 = ours
        .iter()
        .find(|i| i["external_id"] == "bir:111222333000:1702Q:2027-Q1")
        .unwrap();
    assert_eq!(q1["name"], "1702Q 2027-Q1 · due 2026-12-01");
    assert_eq!(q1["target_date"], "2026-12-01");
    assert_eq!(q1["priority"], "urgent");
    let last = ours
        .iter()
        .filter_map(|i| i["target_date"].as_str())
        .max()
        .unwrap();
    assert_eq!(last, "2027-12-10");
    assert!(
        !ours
            .iter()
            .any(|i| i["external_id"] == "bir:111222333000:2550Q:2027-Q1"),
        "a first sync reached back before this month"
    );

    let overdue = status(&["--status", "overdue"]).await;
    let overdue = overdue.as_array().unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(
        (
            &overdue[0]["form"],
            &overdue[0]["period"],
            &overdue[0]["filing_status"],
            &overdue[0]["days_overdue"]
        ),
        (
            &Value::from("1702Q"),
            &Value::from("2027-Q1"),
            &Value::from("pending"),
            &Value::from(4)
        )
    );
    let soon = status(&["--status", "pending", "--due-before", "2027-01-01"]).await;
    let soon: Vec<String> = soon
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["form"].as_str().unwrap(),
                r["period"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(soon, ["0619-E 2026-11", "1601-C 2026-11"]);
    // The table says overdue in words.
    let out = run(
        &fake,
        d,
        &[
            "bir",
            "status",
            "--db",
            &db,
            "--today",
            "2026-12-05",
            "--status",
            "overdue",
        ],
    )
    .await;
    let table = text(&out.stdout);
    assert!(
        table.contains("1702Q    2027-Q1  2026-12-01  overdue"),
        "{table}"
    );
    assert!(table.contains("1 overdue on 2026-12-05"), "{table}");
    // A bad status is refused with the allowed ones.
    let out = run(
        &fake,
        d,
        &["bir", "status", "--db", &db, "--status", "late"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[possible values: pending, in_progress, overdue, filed, void]"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_horizon_is_refused_before_anything_is_sent() {
    let fake = FakePlane::builder().no_rate_limit().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = fake.project_id().to_string();
    let p = fiscal();
    let config = dir.path().join("plane.toml");
    std::fs::write(&config, "[bir]\nahead = \"soon\"\n").unwrap();
    let c = config.display().to_string();
    for (extra, expected) in [
        (
            ["--ahead", "40m"],
            "\"40m\" is not a horizon: a number of months or years, 1m to 36m",
        ),
        (
            ["--config", c.as_str()],
            "configuration `bir.ahead`: \"soon\" is not a horizon",
        ),
        (["--year", "2026"], "cannot be used with"),
    ] {
        let mut args = vec!["bir", "sync", "--profile", &p, "--project", &project];
        args.extend(extra);
        if extra[0] == "--year" {
            args.extend(["--from", "2026-01-01"]);
        }
        let out = run(&fake, dir.path(), &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(fake.request_log().is_empty(), "{:?}", fake.request_log());
}
