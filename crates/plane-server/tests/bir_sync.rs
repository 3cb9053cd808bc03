//! The real binary: `bir sync` and `bir status` against plane-fake, exit codes, the JSON
//! summary, --dry-run, profiles from the config file, a kill -9 mid-sync, and OAuth
//! (`[plane.oauth]`) instead of an API key. On PostgreSQL (skipped without
//! `PLANE_TEST_DATABASE_URL`): the same sync and status, and two syncs of one project at
//! once (the second exits 75 naming the first, or waits for it with --wait).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use plane_fake::{FakePlane, RunningFake};
use plane_postgres::testing::TestDatabase;
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");

fn profile(name: &str) -> String {
    format!(
        "{}/../plane-bir/profiles/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

struct Env {
    fake: RunningFake,
    dir: tempfile::TempDir,
    /// The PostgreSQL schema of the test, when the store is there (`--db URL`).
    pg: Option<TestDatabase>,
}

impl Env {
    async fn new() -> Env {
        Env::with(FakePlane::builder().no_rate_limit()).await
    }

    async fn with(builder: plane_fake::FakePlaneBuilder) -> Env {
        let fake = builder.start().await.unwrap();
        Env {
            fake,
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        }
    }

    /// An environment whose store is a PostgreSQL schema of its own; `None` (skipped)
    /// without a test database.
    async fn postgres(name: &str) -> Option<Env> {
        Env::postgres_with(name, FakePlane::builder().no_rate_limit()).await
    }

    /// As [`Env::postgres`], with plane-fake built by `builder`.
    async fn postgres_with(name: &str, builder: plane_fake::FakePlaneBuilder) -> Option<Env> {
        let pg = plane_postgres::testing::database(name).await?;
        Some(Env {
            pg: Some(pg),
            ..Env::with(builder).await
        })
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("plane.db")
    }

    /// What `--db` names: the SQLite file, or the PostgreSQL URL.
    fn db_arg(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url().to_owned(),
            None => self.db().display().to_string(),
        }
    }

    /// Whether anything created the deadline store: the file, or the `bir` tables.
    async fn store_exists(&self) -> bool {
        match &self.pg {
            Some(pg) => pg.db().schema_version("bir").await.unwrap().is_some(),
            None => self.db().exists(),
        }
    }

    /// The deadline store, as the test reads it.
    async fn deadlines(&self) -> Vec<plane_bir::DeadlineRecord> {
        use plane_bir::DeadlineStore as _;
        match &self.pg {
            Some(pg) => plane_bir::PgDeadlineStore::open_read_only(pg.db().clone())
                .await
                .unwrap()
                .all()
                .await
                .unwrap(),
            None => plane_bir::SqliteDeadlineStore::open_read_only(self.db())
                .unwrap()
                .all()
                .await
                .unwrap(),
        }
    }

    fn command(&self, args: &[&str], with_key: bool) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "warn")
            .env("PLANE_BASE_URL", self.fake.base_url())
            .env("PLANE_WORKSPACE_SLUG", self.fake.workspace_slug())
            .env("PLANE_RATE_LIMIT_PER_MINUTE", "100000")
            .current_dir(self.dir.path());
        if let Some(pg) = &self.pg {
            cmd.env("PLANE_DATABASE_SCHEMA", pg.schema());
            if let Ok(password) = std::env::var("PGPASSWORD") {
                cmd.env("PGPASSWORD", password);
            }
        }
        if with_key {
            cmd.env("PLANE_API_KEY", self.fake.api_key());
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args, true);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    fn sync_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "bir",
            "sync",
            "--year",
            "2026",
            "--today",
            "2026-01-05",
            "--format",
            "json",
            "--db",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.db_arg());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    async fn sync_json(&self, extra: &[&str]) -> Value {
        let args = self.sync_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn writes(fake: &RunningFake) -> usize {
    fake.request_log()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_prints_the_summary_and_a_second_run_writes_nothing_and_status_lists_every_deadline() {
    sync_then_status(&Env::new().await).await;
}

/// The same, with the store in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_sync_prints_the_summary_and_a_second_run_writes_nothing_and_status_lists_every_deadline()
 {
    let Some(env) = Env::postgres("bir_sync_status").await else {
        return;
    };
    sync_then_status(&env).await;
    assert_eq!(
        env.deadlines().await.len(),
        env.fake.work_item_count(env.fake.project_id())
    );
}

async fn sync_then_status(env: &Env) {
    let project = env.fake.project_id().to_string();
    let corp = profile("efps-a-vat-corporation");

    // A dry run: a plan, nothing written, no database created.
    let plan = env
        .sync_json(&["--profile", &corp, "--project", &project, "--dry-run"])
        .await;
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["writes"], 0);
    assert_eq!(writes(&env.fake), 0);
    assert!(!env.store_exists().await, "a dry run created the database");
    let planned = plan["created"].as_u64().unwrap();
    assert!(planned > 20);
    assert!(plan["profiles"][0]["plan"].as_array().unwrap().len() as u64 > planned);

    let first = env
        .sync_json(&["--profile", &corp, "--project", &project])
        .await;
    for key in [
        "created",
        "updated",
        "unchanged",
        "drift",
        "requests",
        "writes",
        "waited_ms",
    ] {
        assert!(first[key].is_u64(), "{key} missing: {first}");
    }
    assert_eq!(first["created"].as_u64().unwrap(), planned);
    assert_eq!(
        first["writes"].as_u64().unwrap() as usize,
        writes(&env.fake)
    );

    env.fake.clear_request_log();
    let second = env
        .sync_json(&["--profile", &corp, "--project", &project])
        .await;
    assert_eq!(second["writes"], 0);
    assert_eq!(second["requests"], 3);
    assert_eq!(second["unchanged"].as_u64().unwrap(), planned);
    assert_eq!(env.fake.request_log().len(), 3);

    let out = env
        .run(&[
            "bir",
            "status",
            "--format",
            "json",
            "--today",
            "2026-01-05",
            "--db",
            &env.db_arg(),
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len() as u64, planned);
    for row in rows {
        for key in [
            "form",
            "period",
            "due_date",
            "status",
            "work_item_id",
            "filed_by",
            "filed_at",
        ] {
            assert!(row.get(key).is_some(), "{key} missing: {row}");
        }
        // Nothing is overdue on the sync's day: the first is due 2026-01-15.
        assert_eq!(row["status"], "pending");
        assert!(row["work_item_id"].is_string());
    }
    let table = env.run(&["bir", "status", "--db", &env.db_arg()]).await;
    assert!(text(&table.stdout).starts_with("FORM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_profiles_from_the_config_file_each_go_to_their_own_project() {
    let env = Env::new().await;
    let first = env.fake.project_id();
    let client = plane_core::PlaneClient::builder()
        .base_url(env.fake.base_url())
        .workspace_slug(env.fake.workspace_slug())
        .api_key(env.fake.api_key())
        .build()
        .unwrap();
    let second = client
        .projects()
        .create(&plane_core::ProjectFields::new("Maria", "MARIA"))
        .await
        .unwrap()
        .id;
    let config = env.dir.path().join("plane.toml");
    std::fs::write(
        &config,
        format!(
            "[bir]\nproject = \"{first}\"\n\n[[bir.profiles]]\nfile = \"{}\"\n\n\
             [[bir.profiles]]\nfile = \"{}\"\nproject = \"{second}\"\n",
            profile("efps-a-vat-corporation"),
            profile("manual-individual-percentage-tax"),
        ),
    )
    .unwrap();
    let summary = env.sync_json(&["--config", config.to_str().unwrap()]).await;
    let profiles = summary["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0]["project"], first.to_string());
    assert_eq!(profiles[1]["project"], second.to_string());
    let (a, b) = (
        profiles[0]["created"].as_u64().unwrap() as usize,
        profiles[1]["created"].as_u64().unwrap() as usize,
    );
    assert_eq!(env.fake.work_item_count(first), a);
    assert_eq!(env.fake.work_item_count(second), b);
    assert_eq!(summary["created"].as_u64().unwrap() as usize, a + b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_naming_the_flag_variable_or_key() {
    let env = Env::new().await;
    let corp = profile("efps-a-vat-corporation");
    let project = env.fake.project_id().to_string();
    let cases: Vec<(Vec<String>, bool, &str)> = vec![
        (
            env.sync_args(&["--profile", &corp]),
            true,
            "PLANE_BIR_PROJECT_ID",
        ),
        (env.sync_args(&[]), true, "--profile"),
        (
            env.sync_args(&["--profile", &corp, "--project", &project]),
            false,
            "PLANE_API_KEY",
        ),
        (
            env.sync_args(&[
                "--profile",
                "/nonexistent/profile.toml",
                "--project",
                &project,
            ]),
            true,
            "/nonexistent/profile.toml",
        ),
    ];
    for (args, with_key, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.command(&args, with_key);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let bad_project = env.dir.path().join("bad.toml");
    std::fs::write(&bad_project, "[bir]\nproject = \"not-a-uuid\"\n").unwrap();
    let args = env.sync_args(&[
        "--profile",
        &corp,
        "--config",
        bad_project.to_str().unwrap(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bir.project"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(writes(&env.fake), 0);

    // status never creates a database.
    let missing = env.dir.path().join("none.db");
    let out = env
        .run(&["bir", "status", "--db", missing.to_str().unwrap()])
        .await;
    assert!(!out.status.success());
    assert!(!missing.exists());
}

/// kill -9 once the fake has seen some creates; the rerun adopts what was created and
/// creates the rest, with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_sync_then_a_rerun_leaves_no_duplicate() {
    let env = Env::new().await;
    let project = env.fake.project_id();
    let corp = profile("efps-a-vat-corporation");
    // Five creates go through; the sixth hangs before Plane handles it, so the kill lands
    // mid-run whatever the machine's speed (the run cannot finish first).
    env.fake.inject(
        plane_fake::Fault::delay(Duration::from_secs(3600))
            .method("POST")
            .path_contains("/work-items/")
            .skip(5),
    );
    let args = env.sync_args(&["--profile", &corp, "--project", &project.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = env
        .command(&args, true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let creates = |fake: &RunningFake| {
        fake.request_log()
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("/work-items/"))
            .count()
    };
    let mut polls = 0;
    while creates(&env.fake) < 5 {
        assert!(polls < 12_000, "the sync never reached 5 creates");
        assert!(child.try_wait().unwrap().is_none(), "the sync ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
        polls += 1;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.fake.clear_faults();
    let before = env.fake.work_item_count(project);
    assert_eq!(before, 5);

    let summary = env
        .sync_json(&["--profile", &corp, "--project", &project.to_string()])
        .await;
    let total = before + summary["created"].as_u64().unwrap() as usize;
    assert_eq!(env.fake.work_item_count(project), total);
    assert_external_ids_unique(&env, project, total).await;
    // And the database knows every one of them.
    assert_eq!(env.deadlines().await.len(), total);
}

async fn assert_external_ids_unique(env: &Env, project: uuid::Uuid, expected: usize) {
    use futures::TryStreamExt;
    let client = plane_core::PlaneClient::builder()
        .base_url(env.fake.base_url())
        .workspace_slug(env.fake.workspace_slug())
        .api_key(env.fake.api_key())
        .build()
        .unwrap();
    let items: Vec<plane_core::WorkItem> = client
        .work_items(project)
        .stream(plane_core::ListParams::new().per_page(1000))
        .try_collect()
        .await
        .unwrap();
    let mut ids: Vec<String> = items.into_iter().filter_map(|i| i.external_id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), n), (expected, expected), "duplicates in Plane");
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), `bir sync` draws a progress
/// bar of writes done against writes planned, with the time spent waiting for the rate limit;
/// with stderr piped, as in every other test here, it draws nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_sync_shows_writes_against_planned_and_the_rate_limit_wait() {
    let env = Env::new().await;
    let project = env.fake.project_id().to_string();
    let corp = profile("efps-a-vat-corporation");
    let mut args = env.sync_args(&["--profile", &corp, "--project", &project]);
    args.insert(0, BIN.to_owned());
    // `script -c` runs a shell command line: these arguments are paths, UUIDs and words.
    assert!(
        args.iter().all(|a| !a.contains([' ', '\'', '"', '$'])),
        "{args:?}"
    );
    // The same environment as every other run here, through a pseudo-terminal.
    let plain = env.command(&[], true);
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &args.join(" "), "/dev/null"])
        .env_clear()
        .envs(plain.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("TERM", "xterm")
        .current_dir(env.dir.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}{}", text(&out.stderr));
    let planned = writes(&env.fake);
    assert!(planned > 20, "{planned}");
    assert!(
        screen.contains(&format!("/{planned} writes")),
        "no bar counting {planned} planned writes in:\n{screen}"
    );
    assert!(screen.contains("rate-limit wait"), "{screen}");

    // Piped: no bar, only the JSON summary on stdout.
    let again = env
        .run(
            &env.sync_args(&["--profile", &corp, "--project", &project])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(
        !text(&again.stderr).contains("writes,"),
        "{}",
        text(&again.stderr)
    );
}

/// `[plane.oauth]` with an installation: `bir sync` fetches the app's bot token itself,
/// stores it (encrypted) before using it, and every API request carries exactly that token
/// as a Bearer and no API key. A second run starts from the stored token; after Plane revoked
/// it, one 401 leads to one new token and one retry, and the rerun writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_in_oauth_mode_sends_the_bearer_token_plane_issued_and_no_api_key() {
    use base64::Engine as _;
    use plane_fake::Bearer;
    use plane_server::token_store::SqliteTokenStore;

    let secret = format!("fake-client-secret-{}", uuid::Uuid::new_v4().simple());
    let env = Env::with(FakePlane::builder().no_rate_limit().oauth_app(
        "client-1",
        secret.clone(),
        "http://127.0.0.1:9/oauth/callback",
    ))
    .await;
    let project = env.fake.project_id();
    let corp = profile("efps-a-vat-corporation");
    let installation = env.fake.oauth_installation_id();
    let config = env.dir.path().join("plane.toml");
    std::fs::write(
        &config,
        format!("[plane.oauth]\nclient_id = \"client-1\"\ninstallation_id = \"{installation}\"\n"),
    )
    .unwrap();
    let secret_file = env.dir.path().join("client-secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let key =
        base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let args = env.sync_args(&[
        "--profile",
        &corp,
        "--project",
        &project.to_string(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let sync = || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.command(&args, false);
        cmd.env("PLANE_OAUTH_CLIENT_SECRET_FILE", &secret_file)
            .env("PLANE_TOKEN_ENCRYPTION_KEY", &key);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let is_api = |r: &plane_fake::RequestRecord| !r.path.starts_with("/auth/o/");
    let grants = |fake: &RunningFake| -> Vec<(String, u16)> {
        fake.token_requests()
            .into_iter()
            .map(|r| (r.grant_type, r.status))
            .collect()
    };

    let first = sync().await;
    let created = first["created"].as_u64().unwrap() as usize;
    assert!(created > 20, "{first}");
    assert_eq!(env.fake.work_item_count(project), created);
    assert_eq!(grants(&env.fake), [("client_credentials".to_owned(), 200)]);
    let issued = env.fake.issued_tokens();
    assert_eq!(issued.len(), 1, "a bot token has no refresh token");
    let log = env.fake.request_log();
    let api: Vec<_> = log.iter().filter(|r| is_api(r)).collect();
    assert!(api.len() > created, "{} API requests", api.len());
    for r in &api {
        assert_eq!(
            (r.bearer, r.sent_api_key, r.authenticated),
            (Some(Bearer::Issued(0)), false, true),
            "{} {}",
            r.method,
            r.path
        );
        assert!(r.status < 400, "{} {}: {}", r.method, r.path, r.status);
    }
    // Stored before use: the database lists the installation's token.
    let stored = SqliteTokenStore::open_for_listing(env.db())
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].owner, format!("installation:{installation}"));

    // Revoked: the next run starts with the stored token, is refused once, fetches one
    // new token and goes on with it.
    env.fake.revoke_access_tokens();
    env.fake.clear_request_log();
    let second = sync().await;
    assert_eq!(second["writes"], 0, "{second}");
    assert_eq!(second["unchanged"].as_u64().unwrap() as usize, created);
    assert_eq!(
        grants(&env.fake),
        [
            ("client_credentials".to_owned(), 200),
            ("client_credentials".to_owned(), 200)
        ]
    );
    let seen: Vec<(Option<Bearer>, bool, u16)> = env
        .fake
        .request_log()
        .iter()
        .filter(|r| is_api(r))
        .map(|r| (r.bearer, r.sent_api_key, r.status))
        .collect();
    assert_eq!(seen[0], (Some(Bearer::Issued(0)), false, 401), "{seen:?}");
    assert!(seen.len() > 1, "{seen:?}");
    for s in &seen[1..] {
        assert_eq!(*s, (Some(Bearer::Issued(1)), false, 200), "{seen:?}");
    }
    assert_eq!(env.fake.work_item_count(project), created);
}

/// Two `bir sync` processes on one project in one PostgreSQL schema. The first is held up
/// by a slow create in plane-fake, so it holds the project's lock for a while: a second
/// sync exits 75 naming the first (its pid, from PostgreSQL's view of the lock), and a
/// third with --wait says it waits and for whom, runs once the first has finished, and
/// creates nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_second_sync_of_a_project_exits_75_naming_the_first_or_waits_for_it() {
    let Some(env) = Env::postgres("bir_sync_lock").await else {
        return;
    };
    let project = env.fake.project_id();
    let corp = profile("efps-a-vat-corporation");
    // Three creates go through; the fourth is answered 10 s late: the first sync holds the
    // lock at least that long, well past the other two starting.
    env.fake.inject(
        plane_fake::Fault::delay(Duration::from_secs(10))
            .method("POST")
            .path_contains("/work-items/")
            .skip(3),
    );
    let args = env.sync_args(&["--profile", &corp, "--project", &project.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = tokio::process::Command::from(env.command(&args, true))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first_pid = first.id().unwrap();
    let creates = |fake: &RunningFake| {
        fake.request_log()
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("/work-items/"))
            .count()
    };
    // It takes the lock before its first request: once it creates, it holds it.
    tokio::time::timeout(Duration::from_secs(60), async {
        while creates(&env.fake) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first sync never reached 3 creates");

    let second = env.run(&args).await;
    let err = text(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{err}");
    assert!(
        err.contains(&format!("plane-server bir pid {first_pid}")),
        "the holder is not named: {err}"
    );
    assert!(err.contains(&project.to_string()), "{err}");
    assert!(err.contains("--wait"), "{err}");
    assert!(second.stdout.is_empty());

    let mut wait_args = args.clone();
    wait_args.push("--wait");
    let mut third = tokio::process::Command::from(env.command(&wait_args, true))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(third.stderr.take().unwrap()).lines();
    let waiting = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("waiting") {
                return line;
            }
        }
        panic!("the waiting sync ended without saying it waits");
    })
    .await
    .expect("the waiting sync never said it waits");
    assert!(
        waiting.contains(&format!("plane-server bir pid {first_pid}")),
        "{waiting}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first sync ended before the third waited"
    );

    let first = first.wait_with_output().await.unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let created = first["created"].as_u64().unwrap() as usize;
    assert!(created > 20, "{first}");

    let third = third.wait_with_output().await.unwrap();
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest += &line;
        rest.push('\n');
    }
    assert!(third.status.success(), "{rest}");
    let third: Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(third["created"], 0, "{third}");
    assert_eq!(third["writes"], 0, "{third}");
    assert_eq!(env.fake.work_item_count(project), created);
    assert_external_ids_unique(&env, project, created).await;
    assert_eq!(env.deadlines().await.len(), created);
}

/// Issue 21: three replicas sync at once (one profile and project each) with one key that
/// plane-fake limits to 60 requests a minute, as Plane does. They share the key's budget
/// through PostgreSQL: Plane never answers 429, no minute holds more than 60 requests,
/// the busiest minute uses the budget to within 5 %, and nothing waits past the minute
/// its slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_three_replicas_syncing_with_one_key_stay_under_60_a_minute_together() {
    let Some(env) = Env::postgres_with("bir_sync_budget", FakePlane::builder()).await else {
        return;
    };
    // The projects exist before the clock starts (made without the API: no budget spent).
    let projects = [
        env.fake.project_id(),
        quiet_project(&env.fake, "Maria", "MARIA"),
        quiet_project(&env.fake, "Jose", "JOSE"),
    ];
    let profiles = [
        "efps-a-vat-corporation",
        "manual-individual-percentage-tax",
        "fiscal-june-corporation",
    ];
    let mut runs = Vec::new();
    for (name, project) in profiles.iter().zip(projects) {
        let args: Vec<String> = [
            "bir",
            "sync",
            "--ahead",
            "6m",
            "--today",
            "2026-12-05",
            "--format",
            "json",
            "--profile",
            &profile(name),
            "--project",
            &project.to_string(),
            "--db",
            &env.db_arg(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.command(&args, true);
        cmd.env("PLANE_RATE_LIMIT_PER_MINUTE", "60");
        runs.push(tokio::task::spawn_blocking(move || cmd.output().unwrap()));
    }
    for run in runs {
        let out = run.await.unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let log = env.fake.request_log();
    let refused = log.iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 0, "Plane refused {refused} requests");
    assert!(
        log.len() > 60,
        "{} requests: not enough to need a second minute",
        log.len()
    );
    let mut at: Vec<std::time::Instant> = log.iter().map(|r| r.at).collect();
    at.sort();
    let minute = Duration::from_secs(60);
    let busiest = (0..at.len())
        .map(|i| at[i..].iter().filter(|&&u| u < at[i] + minute).count())
        .max()
        .unwrap();
    assert!(busiest <= 60, "{busiest} requests in one minute");
    assert!(
        busiest >= 57,
        "the busiest minute used only {busiest} of 60"
    );
    // Used, not wasted: once the first minute's slots free up, what is left goes out at
    // once. (Each replica pacing alone, with the others' spending only seen in
    // `X-RateLimit-Remaining`, holds until Plane's reset and needs a third minute.)
    let last = at[at.len() - 1] - at[0];
    assert!(
        last < Duration::from_secs(90),
        "the last request went {last:?} after the first"
    );
}

/// A project with Plane's five default states, put straight into plane-fake: its rate
/// limit (what the test measures) counts none of it.
fn quiet_project(fake: &RunningFake, name: &str, identifier: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    fake.insert_project_json(serde_json::json!({"id": id, "name": name, "identifier": identifier}));
    for (i, (state, group)) in [
        ("Backlog", "backlog"),
        ("Todo", "unstarted"),
        ("In Progress", "started"),
        ("Done", "completed"),
        ("Cancelled", "cancelled"),
    ]
    .into_iter()
    .enumerate()
    {
        fake.insert_state_json(
            id,
            serde_json::json!({
                "id": uuid::Uuid::new_v4(),
                "name": state,
                "group": group,
                "sequence": (i + 1) as f64 * 15000.0,
            }),
        );
    }
    id
}
