//! The real binary in OAuth mode against plane-fake, with `RUST_LOG=trace`:
//! `oauth bot`, `oauth authorize-url` → `oauth exchange` (state checked),
//! `oauth status`, `check` (auth and expiry; renewal across restarts with the
//! persisted rotated refresh token) and `serve` (its `/readyz` calls Plane with the
//! stored token). Everything they print is scanned
//! for the client secret, the encryption key and every token Plane issued.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use plane_fake::{FakePlane, RunningFake};

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");
const CLIENT_ID: &str = "client-1";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

struct Env {
    vars: Vec<(String, String)>,
    outputs: Vec<String>,
}

impl Env {
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "trace");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs to the end off the async runtime (the fake keeps serving).
    async fn run(&mut self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args, extra);
        let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        self.outputs.push(format!(
            "$ {args:?}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
        output
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn all(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn setup(fake: &RunningFake, dir: &Path, secret: &str, key: &str) -> Env {
    let secret_file = dir.join("client-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    Env {
        vars: vec![
            ("PLANE_BASE_URL".into(), fake.base_url()),
            ("PLANE_WORKSPACE_SLUG".into(), fake.workspace_slug()),
            ("PLANE_OAUTH_CLIENT_ID".into(), CLIENT_ID.into()),
            (
                "PLANE_OAUTH_CLIENT_SECRET_FILE".into(),
                secret_file.display().to_string(),
            ),
            ("PLANE_TOKEN_ENCRYPTION_KEY".into(), key.into()),
            (
                "PLANE_DATABASE_URL".into(),
                dir.join("plane.db").display().to_string(),
            ),
        ],
        outputs: Vec::new(),
    }
}

/// Follows the authorize URL as a browser would; returns `(code, state)`.
async fn approve(url: &str) -> (String, String) {
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let get = |k: &str| {
        location
            .query_pairs()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    (get("code"), get("state"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_commands_check_and_serve_work_and_print_no_token_or_secret_at_trace_level() {
    let secret = format!("fake-client-secret-{}", uuid::Uuid::new_v4().simple());
    let key =
        base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let fake = FakePlane::builder()
        .no_rate_limit()
        .oauth_app(CLIENT_ID, secret.clone(), REDIRECT)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = setup(&fake, dir.path(), &secret, &key);
    let installation = fake.oauth_installation_id();

    // The bot token.
    let out = env
        .run(&["oauth", "bot", "--installation", &installation], &[])
        .await;
    assert!(out.status.success(), "{}", all(&out));
    assert!(stdout(&out).contains(&format!(
        "stored the bot token of installation:{installation}"
    )));
    let bot = [("PLANE_OAUTH_INSTALLATION_ID", installation.as_str())];
    let out = env.run(&["check"], &bot).await;
    assert!(out.status.success(), "{}", all(&out));
    let text = stdout(&out);
    assert!(
        text.contains("auth:            OAuth bot token of installation"),
        "{text}"
    );
    assert!(text.contains("token expires:   20"), "{text}");
    assert_eq!(
        fake.token_requests().len(),
        1,
        "check used the stored bot token"
    );

    // A user token: authorize-url, then exchange; the state is checked.
    let user = [
        ("PLANE_OAUTH_USER", "ops"),
        ("PLANE_OAUTH_REDIRECT_URI", REDIRECT),
    ];
    let out = env.run(&["oauth", "authorize-url"], &user).await;
    assert!(out.status.success(), "{}", all(&out));
    let url = stdout(&out).trim().to_owned();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let (code, state) = approve(&url).await;
    let out = env
        .run(
            &["oauth", "exchange", "--code", &code, "--state", "forged"],
            &user,
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("run `plane-server oauth authorize-url` again"));
    let out = env
        .run(
            &["oauth", "exchange", "--code", &code, "--state", &state],
            &user,
        )
        .await;
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        stdout(&out).contains("stored the token of user:ops"),
        "{}",
        all(&out)
    );
    let out = env
        .run(
            &["oauth", "exchange", "--code", &code, "--state", &state],
            &user,
        )
        .await;
    assert!(!out.status.success(), "a state is used once");

    // Status lists both, without values, with or without the key.
    let out = env
        .run(&["oauth", "status", "--format", "json"], &user)
        .await;
    assert!(out.status.success(), "{}", all(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owners: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["owner"].as_str().unwrap())
        .collect();
    assert_eq!(
        owners,
        [format!("installation:{installation}").as_str(), "user:ops"]
    );
    let db = dir.path().join("plane.db").display().to_string();
    let mut bare = Command::new(BIN);
    bare.args(["oauth", "status", "--db", &db])
        .env_clear()
        .env("RUST_LOG", "trace");
    let out = tokio::task::spawn_blocking(move || bare.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", all(&out));
    assert!(stdout(&out).contains("user:ops"), "{}", all(&out));
    env.outputs.push(all(&out));

    // Revoked access token: check renews with the refresh token, in one process,
    // then again in the next with the rotated token it persisted.
    for round in 0..2 {
        fake.revoke_access_tokens();
        let before = fake.token_requests().len();
        let out = env.run(&["check"], &user).await;
        assert!(out.status.success(), "round {round}: {}", all(&out));
        assert!(stdout(&out).contains("auth:            OAuth user token of ops"));
        let renewals: Vec<_> = fake.token_requests()[before..]
            .iter()
            .map(|r| (r.grant_type.clone(), r.status))
            .collect();
        assert_eq!(
            renewals,
            [("refresh_token".to_owned(), 200)],
            "round {round}"
        );
    }

    // An API key as well: a configuration error naming both.
    let api_key = format!("plane_api_{}", "0".repeat(32));
    let both = [("PLANE_API_KEY", api_key.as_str())];
    let out = env.run(&["check"], &[bot[0], both[0]]).await;
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(
        all(&out).contains("PLANE_API_KEY and plane.oauth.client_id"),
        "{}",
        all(&out)
    );

    // Plane's token endpoint unreachable (a fresh database: no stored token to start
    // with): exit 4, not a configuration error.
    let fresh = dir.path().join("fresh.db").display().to_string();
    let out = env
        .run(
            &["check"],
            &[
                bot[0],
                ("PLANE_BASE_URL", "http://127.0.0.1:9"),
                ("PLANE_DATABASE_URL", fresh.as_str()),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", all(&out));
    assert!(
        all(&out).contains("Plane is not reachable: POST /auth/o/token/"),
        "{}",
        all(&out)
    );
    assert!(
        !Path::new(&fresh).exists(),
        "check created the database for the token store"
    );

    // serve, started and stopped, in OAuth mode.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let webhook = format!("fake-webhook-secret-{}", uuid::Uuid::new_v4().simple());
    let mut serve = env.command(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &[user[0], user[1], ("PLANE_WEBHOOK_SECRET", webhook.as_str())],
    );
    let mut child = serve
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut up = false;
    for _ in 0..500 {
        if reqwest::get(&health).await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // /readyz asks Plane who we are: with the stored user token as a Bearer, no API key.
    fake.clear_request_log();
    let ready = match up {
        true => reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap(),
        false => serde_json::Value::Null,
    };
    let to_plane: Vec<_> = fake
        .request_log()
        .into_iter()
        .filter(|r| !r.path.starts_with("/auth/o/"))
        .map(|r| (r.path, r.bearer, r.sent_api_key, r.status))
        .collect();
    let issued = fake.issued_tokens();
    let latest_access = issued.len() - 2; // the last exchange issued access, then refresh
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    env.outputs.push(all(&out));
    assert!(up, "serve did not come up: {}", all(&out));
    assert_eq!(ready["plane"], "ok", "{ready}");
    assert_eq!(
        to_plane,
        [(
            "/api/v1/users/me/".to_owned(),
            Some(plane_fake::Bearer::Issued(latest_access)),
            false,
            200
        )],
        "serve used the user's stored token"
    );

    // The scan.
    let printed = env.outputs.join("\n");
    assert!(printed.contains("TRACE"), "trace logging was on");
    let mut secrets = fake.issued_tokens();
    assert!(secrets.len() >= 5, "{}", secrets.len());
    secrets.extend([secret, key, webhook]);
    for s in &secrets {
        assert!(
            !printed.contains(s.as_str()),
            "a secret or token was printed"
        );
    }
}

/// The same commands with the tokens in PostgreSQL (`PLANE_DATABASE_URL=postgres://…`, a
/// schema of the test's own): `oauth bot`, `authorize-url` → `exchange`, `status` with
/// and without the key, and `check` renewing the user token with its refresh token in one
/// process, then in the next with the rotated one it stored. Nothing is printed of a
/// token or a secret. Skipped without `PLANE_TEST_DATABASE_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_commands_keep_the_tokens_in_postgresql() {
    let Some(pg) = plane_postgres::testing::database("oauth_cli").await else {
        return;
    };
    let secret = format!("fake-client-secret-{}", uuid::Uuid::new_v4().simple());
    let key =
        base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let fake = FakePlane::builder()
        .no_rate_limit()
        .oauth_app(CLIENT_ID, secret.clone(), REDIRECT)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = setup(&fake, dir.path(), &secret, &key);
    env.vars.retain(|(k, _)| k != "PLANE_DATABASE_URL");
    env.vars.extend([
        ("PLANE_DATABASE_URL".to_owned(), pg.url().to_owned()),
        ("PLANE_DATABASE_SCHEMA".to_owned(), pg.schema().to_owned()),
    ]);
    if let Ok(password) = std::env::var("PGPASSWORD") {
        env.vars.push(("PGPASSWORD".to_owned(), password));
    }
    let installation = fake.oauth_installation_id();
    let location = format!("(schema {})", pg.schema());

    let out = env
        .run(&["oauth", "bot", "--installation", &installation], &[])
        .await;
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        stdout(&out).contains(&format!(
            "stored the bot token of installation:{installation}"
        )) && stdout(&out).contains(&location),
        "{}",
        all(&out)
    );

    let user = [
        ("PLANE_OAUTH_USER", "ops"),
        ("PLANE_OAUTH_REDIRECT_URI", REDIRECT),
    ];
    let out = env.run(&["oauth", "authorize-url"], &user).await;
    assert!(out.status.success(), "{}", all(&out));
    let (code, state) = approve(stdout(&out).trim()).await;
    let out = env
        .run(
            &["oauth", "exchange", "--code", &code, "--state", &state],
            &user,
        )
        .await;
    assert!(out.status.success(), "{}", all(&out));
    assert!(
        stdout(&out).contains("stored the token of user:ops") && stdout(&out).contains(&location),
        "{}",
        all(&out)
    );

    let out = env
        .run(&["oauth", "status", "--format", "json"], &user)
        .await;
    assert!(out.status.success(), "{}", all(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owners: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["owner"].as_str().unwrap())
        .collect();
    assert_eq!(
        owners,
        [format!("installation:{installation}").as_str(), "user:ops"]
    );
    // With `--db postgres://…` and no key or client secret.
    let mut bare = Command::new(BIN);
    bare.args(["oauth", "status", "--db", pg.url()])
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("PLANE_DATABASE_SCHEMA", pg.schema());
    let out = tokio::task::spawn_blocking(move || bare.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", all(&out));
    assert!(stdout(&out).contains("user:ops"), "{}", all(&out));
    env.outputs.push(all(&out));

    // Revoked access token: check renews through the store in PostgreSQL, and the next
    // process starts from the rotated pair it stored.
    for round in 0..2 {
        fake.revoke_access_tokens();
        let before = fake.token_requests().len();
        let out = env.run(&["check"], &user).await;
        let text = all(&out);
        assert!(
            text.contains("authenticated:") && text.contains("token expires:   20"),
            "round {round}: {text}"
        );
        let renewals: Vec<_> = fake.token_requests()[before..]
            .iter()
            .map(|r| (r.grant_type.clone(), r.status))
            .collect();
        assert_eq!(
            renewals,
            [("refresh_token".to_owned(), 200)],
            "round {round}"
        );
    }

    let printed = env.outputs.join("\n");
    assert!(printed.contains("TRACE"), "trace logging was on");
    let mut secrets = fake.issued_tokens();
    assert!(secrets.len() >= 5, "{}", secrets.len());
    secrets.extend([secret, key]);
    for s in &secrets {
        assert!(
            !printed.contains(s.as_str()),
            "a secret or token was printed"
        );
    }
}
