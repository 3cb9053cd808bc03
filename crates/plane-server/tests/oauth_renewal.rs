//! One user token shared by several processes (issue 20) or replicas (issue 21): the
//! renewal lease, the re-read under it, the compare-and-swap save, the re-read after
//! `invalid_grant`, and token responses that cannot be used as they are. Against
//! plane-fake, which rotates refresh tokens and refuses a spent one; every assertion is on
//! its log of token requests.
//!
//! The library-level tests run on both token stores by the same bodies (`sqlite::NAME`,
//! `postgres::NAME`; the latter need `PLANE_TEST_DATABASE_URL`, see
//! `scripts/with-postgres.sh`, and are skipped without it). The tests that run the
//! `plane-server` binary use SQLite; one test stops and restarts a PostgreSQL cluster of
//! its own (`plane_postgres::testing::Cluster`, skipped likewise).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use plane_core::oauth::{OAuthApp, Pkce, RefreshingToken, TokenSet, TokenSink, random_state};
use plane_core::{BoxFuture, ExposeSecret, SecretString, TokenSource};
use plane_fake::{FakePlane, Fault, RunningFake};
use plane_postgres::testing::TestDatabase;
use plane_server::token_store::{
    PgTokenStore, SqliteTokenStore, StoreSink, TokenKey, TokenOwner, TokenStore,
};

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");
const CLIENT_ID: &str = "client-1";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

struct Env {
    fake: RunningFake,
    secret: String,
    key: String,
    dir: tempfile::TempDir,
    /// The PostgreSQL schema the stores share; SQLite's file in `dir` without one.
    pg: Option<TestDatabase>,
}

/// A test's environment on SQLite.
async fn env() -> Env {
    env_on(None).await
}

/// A test's environment with its tokens in `pg` (a schema of its own), or in SQLite.
async fn env_on(pg: Option<TestDatabase>) -> Env {
    let secret = format!("fake-client-secret-{}", uuid::Uuid::new_v4().simple());
    let key =
        base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
    let fake = FakePlane::builder()
        .no_rate_limit()
        .oauth_app(CLIENT_ID, secret.clone(), REDIRECT)
        .start()
        .await
        .unwrap();
    Env {
        fake,
        secret,
        key,
        dir: tempfile::tempdir().unwrap(),
        pg,
    }
}

/// Runs each named test body once per token store: `sqlite::NAME` and `postgres::NAME`,
/// the latter skipped (with plane-postgres's message) without a test database.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::env_on(None).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(pg) = plane_postgres::testing::database(stringify!($name)).await
                    else {
                        return;
                    };
                    super::$name(super::env_on(Some(pg)).await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_second_process_takes_the_pair_the_first_renewed_instead_of_spending_r1_again,
    two_processes_renewing_at_once_spend_the_refresh_token_once,
    three_replicas_at_expiry_make_one_refresh_grant_and_all_keep_working,
    three_replicas_sharing_a_bot_token_make_one_grant,
    a_replica_that_died_holding_the_lease_delays_the_renewal_only_until_it_runs_out,
    a_running_process_picks_up_a_new_grant_at_its_next_renewal,
    a_refused_refresh_token_reads_the_store_once_more,
    odd_token_responses_are_read_clamped_or_refused_without_losing_the_refresh_token,
    a_pair_whose_save_failed_is_stored_at_the_next_call_not_lost,
    a_caller_that_gives_up_mid_refresh_does_not_lose_the_new_pair,
    a_pair_whose_save_failed_is_stored_as_soon_as_the_database_is_back,
    a_replica_that_finds_the_renewal_in_doubt_waits_for_the_pair_instead_of_spending_r1,
    a_renewal_that_stays_in_doubt_fails_by_name_and_never_presents_r1,
    the_spend_record_needs_the_lease_and_only_its_holder_ends_it,
);

fn owner() -> TokenOwner {
    TokenOwner::User("ops".into())
}

impl Env {
    fn app(&self) -> OAuthApp {
        OAuthApp::new(&self.fake.base_url(), CLIENT_ID, self.secret.clone()).unwrap()
    }

    /// A store of its own on the one database, as another process (a connection to the
    /// file) or another replica (a pool of its own) has.
    async fn store(&self) -> Arc<dyn TokenStore> {
        let key = TokenKey::from_base64("test", &self.key).unwrap();
        match &self.pg {
            Some(pg) => {
                let db = pg.options().clone().pool_size(4).connect().await.unwrap();
                Arc::new(PgTokenStore::open(db, key).await.unwrap())
            }
            None => {
                Arc::new(SqliteTokenStore::open(self.dir.path().join("plane.db"), key).unwrap())
            }
        }
    }

    /// A user token pair by the authorization-code grant with PKCE, as `oauth exchange`
    /// gets it.
    async fn authorize(&self) -> TokenSet {
        let (app, pkce, state) = (self.app(), Pkce::new(), random_state());
        let url = app.authorize_url(REDIRECT, &["projects:read"], &state, Some(&pkce));
        let answer = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        app.exchange_code(&code, REDIRECT, Some(&pkce))
            .await
            .unwrap()
    }

    /// A process's token source: what it loaded at start, renewing through `store`.
    fn process(&self, loaded: &TokenSet, store: Arc<dyn TokenStore>) -> RefreshingToken {
        let sink: Arc<dyn TokenSink> = Arc::new(StoreSink::new(store, owner()));
        self.app().refreshing_token(loaded.clone()).persist_to(sink)
    }

    /// `plane-server ARGS` as an operator runs it in OAuth user mode on this database:
    /// the client secret and the key from files and variables, never on the command line.
    fn plane_server(&self, args: &[&str]) -> Command {
        let secret_file = self.dir.path().join("client-secret");
        std::fs::write(&secret_file, &self.secret).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "warn")
            .env("PLANE_BASE_URL", self.fake.base_url())
            .env("PLANE_WORKSPACE_SLUG", self.fake.workspace_slug())
            .env("PLANE_OAUTH_CLIENT_ID", CLIENT_ID)
            .env("PLANE_OAUTH_CLIENT_SECRET_FILE", &secret_file)
            .env("PLANE_OAUTH_USER", "ops")
            .env("PLANE_OAUTH_REDIRECT_URI", REDIRECT)
            .env("PLANE_TOKEN_ENCRYPTION_KEY", &self.key)
            .env("PLANE_DATABASE_URL", self.dir.path().join("plane.db"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// `(grant_type, status)` of every token request so far.
    fn grants(&self) -> Vec<(String, u16)> {
        self.fake
            .token_requests()
            .into_iter()
            .map(|r| (r.grant_type, r.status))
            .collect()
    }
}

/// The pair as a process loads it when its access token is due for renewal.
fn expired(tokens: &TokenSet) -> TokenSet {
    TokenSet {
        expires_at: Some(Utc::now() - chrono::Duration::minutes(5)),
        ..tokens.clone()
    }
}

fn pair(t: &TokenSet) -> (String, String) {
    (
        t.access_token.expose_secret().to_owned(),
        t.refresh_token
            .as_ref()
            .map(|r| r.expose_secret().to_owned())
            .unwrap_or_default(),
    )
}

const CODE_200: (&str, u16) = ("authorization_code", 200);
const REFRESH_200: (&str, u16) = ("refresh_token", 200);

fn expect(grants: &[(&str, u16)]) -> Vec<(String, u16)> {
    grants.iter().map(|(g, s)| (g.to_string(), *s)).collect()
}

/// The review's sequence: `serve` and `bir sync` load {AT1, R1}; the sync renews (R1 is
/// spent, {AT2, R2} stored); then `serve` renews. It must take {AT2, R2} from the store,
/// not present R1 again.
async fn a_second_process_takes_the_pair_the_first_renewed_instead_of_spending_r1_again(env: Env) {
    let first = env.authorize().await;
    let (serve_store, sync_store) = (env.store().await, env.store().await);
    serve_store.save(&owner(), &expired(&first)).await.unwrap();
    let serve = env.process(&expired(&first), serve_store.clone());
    let sync = env.process(&expired(&first), sync_store);

    let renewed_by_sync = sync.token().await.unwrap();
    let stored = serve_store.load(&owner()).await.unwrap().unwrap();
    assert_eq!(pair(&stored).0, renewed_by_sync.expose_secret());
    assert_ne!(pair(&stored).1, pair(&first).1, "the refresh token rotated");

    let used_by_serve = serve.token().await.unwrap();
    assert_eq!(
        used_by_serve.expose_secret(),
        renewed_by_sync.expose_secret()
    );
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    // Both keep working against the API with it.
    let client = plane_core::PlaneClient::builder()
        .base_url(env.fake.base_url())
        .workspace_slug(env.fake.workspace_slug())
        .bearer(serve)
        .build()
        .unwrap();
    client.users().me().await.unwrap();
}

/// Both processes find the token due at the same moment: exactly one refresh grant, and
/// both end up with its access token.
async fn two_processes_renewing_at_once_spend_the_refresh_token_once(env: Env) {
    let first = env.authorize().await;
    let (a_store, b_store) = (env.store().await, env.store().await);
    a_store.save(&owner(), &expired(&first)).await.unwrap();
    // The grant takes a while: the second process certainly arrives during it.
    env.fake.inject(
        Fault::delay(Duration::from_millis(300))
            .path_contains("/auth/o/token/")
            .times(1),
    );
    let a = env.process(&expired(&first), a_store);
    let b = env.process(&expired(&first), b_store);
    let (ta, tb) = tokio::join!(a.token(), b.token());
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_eq!(ta.expose_secret(), tb.expose_secret());
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
}

/// Issue 21, for a bot token (an app installation): the three replicas renew under the
/// same lease, so one `client_credentials` grant serves them all, and each takes the token
/// the first stored.
async fn three_replicas_sharing_a_bot_token_make_one_grant(env: Env) {
    let installation = TokenOwner::Installation(env.fake.oauth_installation_id().to_string());
    // The grant takes a while: the other two certainly arrive during it.
    env.fake.inject(
        Fault::delay(Duration::from_millis(300))
            .path_contains("/auth/o/token/")
            .times(1),
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let sink: Arc<dyn TokenSink> =
            Arc::new(StoreSink::new(env.store().await, installation.clone()));
        replicas.push(
            env.app()
                .bot_token(env.fake.oauth_installation_id().to_string())
                .persist_to(sink),
        );
    }
    let tokens = futures::future::join_all(replicas.iter().map(|r| r.token())).await;
    let tokens: Vec<String> = tokens
        .into_iter()
        .map(|t| t.unwrap().expose_secret().to_owned())
        .collect();
    assert_eq!(env.grants(), expect(&[("client_credentials", 200)]));
    assert!(tokens.iter().all(|t| t == &tokens[0]), "one bot token");
    let stored = env
        .store()
        .await
        .load(&installation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.access_token.expose_secret(), tokens[0]);
}

/// Issue 21: three replicas, each with a store (a pool) of its own on one database, find
/// the shared user token due at the same moment. Exactly one refresh grant among them;
/// none presents a spent refresh token (plane-fake would answer 400, and does when the
/// spent one is presented on purpose at the end); all three end with the one new access
/// token, and it works against the API.
async fn three_replicas_at_expiry_make_one_refresh_grant_and_all_keep_working(env: Env) {
    let first = env.authorize().await;
    env.store()
        .await
        .save(&owner(), &expired(&first))
        .await
        .unwrap();
    // The grant takes a while: the other two certainly arrive during it.
    env.fake.inject(
        Fault::delay(Duration::from_millis(300))
            .path_contains("/auth/o/token/")
            .times(1),
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Arc::new(env.process(&expired(&first), env.store().await)));
    }
    let tokens = futures::future::join_all(replicas.iter().map(|r| r.token())).await;
    let tokens: Vec<String> = tokens
        .into_iter()
        .map(|t| t.unwrap().expose_secret().to_owned())
        .collect();
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    assert!(tokens.iter().all(|t| t == &tokens[0]), "one access token");
    let stored = env.store().await.load(&owner()).await.unwrap().unwrap();
    assert_eq!(pair(&stored).0, tokens[0]);
    assert_ne!(
        pair(&stored).1,
        pair(&first).1,
        "the rotated refresh token is stored"
    );
    // Every replica works against the API with it, and none renews again.
    for replica in &replicas {
        let client = plane_core::PlaneClient::builder()
            .base_url(env.fake.base_url())
            .workspace_slug(env.fake.workspace_slug())
            .bearer(replica.clone())
            .build()
            .unwrap();
        client.users().me().await.unwrap();
    }
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    // plane-fake does refuse a spent refresh token: so no 400 above means none was used.
    let refused = env
        .app()
        .refresh(first.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, plane_core::Error::AuthorizationExpired { .. }),
        "{refused}"
    );
    assert_eq!(
        env.grants(),
        expect(&[CODE_200, REFRESH_200, ("refresh_token", 400)])
    );
}

/// A replica died while it held the renewal lease (taken, never released; its pool is
/// gone). Another replica whose token is due waits for the lease to run out on the
/// database's clock, not a moment less, then renews: one grant, and it works.
async fn a_replica_that_died_holding_the_lease_delays_the_renewal_only_until_it_runs_out(env: Env) {
    let first = env.authorize().await;
    let dead = env.store().await;
    dead.save(&owner(), &expired(&first)).await.unwrap();
    let lasting = Duration::from_secs(2);
    let leased_at = std::time::Instant::now();
    assert!(
        dead.try_lease(&owner(), "pid 4242 / a replica that died", lasting)
            .await
            .unwrap()
    );
    drop(dead);
    let alive = env.process(&expired(&first), env.store().await);
    let token = tokio::time::timeout(Duration::from_secs(30), alive.token())
        .await
        .expect("the dead replica's lease was never taken over")
        .unwrap();
    let waited = leased_at.elapsed();
    assert!(
        waited >= lasting - Duration::from_millis(100),
        "renewed after {waited:?}, inside the dead replica's lease"
    );
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    let stored = env.store().await.load(&owner()).await.unwrap().unwrap();
    assert_eq!(pair(&stored).0, token.expose_secret());
}

/// `oauth exchange` stores a new grant while `serve` runs on the old one: at its next
/// renewal `serve` takes the new grant, and spends nothing.
async fn a_running_process_picks_up_a_new_grant_at_its_next_renewal(env: Env) {
    let old = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &old).await.unwrap();
    let serve = env.process(&expired(&old), store.clone());
    let new = env.authorize().await;
    env.store().await.save(&owner(), &new).await.unwrap(); // what `oauth exchange` does
    let token = serve.token().await.unwrap();
    assert_eq!(token.expose_secret(), pair(&new).0);
    assert_eq!(env.grants(), expect(&[CODE_200, CODE_200]));
    // The stored grant is the new one still: the old pair never overwrote it.
    assert_eq!(
        pair(&store.load(&owner()).await.unwrap().unwrap()),
        pair(&new)
    );
}

/// A process of an older build spends R1 without the lease while this one holds R1 too:
/// Plane refuses this one's R1, and it reads the store once more and goes on with the
/// pair the other stored, instead of asking the user to authorize again.
async fn a_refused_refresh_token_reads_the_store_once_more(env: Env) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    let sink = Arc::new(RacedSink {
        inner: StoreSink::new(store.clone(), owner()),
        app: env.app(),
        store: store.clone(),
        raced: std::sync::atomic::AtomicBool::new(false),
    });
    let this = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(sink.clone());
    let token = this.token().await.unwrap();
    let stored = store.load(&owner()).await.unwrap().unwrap();
    assert_eq!(token.expose_secret(), pair(&stored).0);
    // The old build's grant, this one's refused R1, and no further grant.
    assert_eq!(
        env.grants(),
        expect(&[CODE_200, REFRESH_200, ("refresh_token", 400)])
    );
}

/// Lets an "older build" spend the refresh token right after this process read the store
/// under its lease, the way a process that takes no lease can.
#[derive(Debug)]
struct RacedSink {
    inner: StoreSink,
    app: OAuthApp,
    store: Arc<dyn TokenStore>,
    raced: std::sync::atomic::AtomicBool,
}

impl TokenSink for RacedSink {
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        self.inner.save(tokens)
    }

    fn begin_renewal(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        Box::pin(async move {
            let stored = self.inner.begin_renewal().await?;
            if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst)
                && let Some(r) = stored.as_ref().and_then(|s| s.refresh_token.clone())
            {
                let theirs = self.app.refresh(&r).await.unwrap();
                self.store.save(&owner(), &theirs).await.unwrap();
            }
            Ok(stored)
        })
    }

    fn spending<'a>(
        &'a self,
        replaces: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        self.inner.spending(replaces)
    }

    fn end_renewal<'a>(
        &'a self,
        spent: &'a SecretString,
        renewed: Option<&'a TokenSet>,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, plane_core::Error>> {
        self.inner.end_renewal(spent, renewed)
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        self.inner.load()
    }
}

/// Token responses that cannot be used as they are: a lifetime as a string or a float
/// is read; a huge or zero one is clamped (no panic, no renewal on every call); a
/// `token_type` other than Bearer is refused, and the rotated refresh token it carried
/// is stored all the same, so the next renewal does not present the spent one.
async fn odd_token_responses_are_read_clamped_or_refused_without_losing_the_refresh_token(
    env: Env,
) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    let this = env.process(&expired(&first), store.clone());
    let mut refreshes = 0;
    for (odd, seconds) in [
        (serde_json::json!({"expires_in": "3600"}), 3600),
        (serde_json::json!({"expires_in": 3600.0}), 3600),
        (serde_json::json!({"expires_in": 1e13}), 366 * 24 * 3600),
        (serde_json::json!({"expires_in": 0}), 10),
    ] {
        env.fake.override_token_responses(odd.clone());
        // Due again: what the previous round stored has run out.
        let stored = store.load(&owner()).await.unwrap().unwrap();
        store.save(&owner(), &expired(&stored)).await.unwrap();
        let before = pair(&stored);
        env.fake.revoke_access_tokens();
        let this_round = env.process(&expired(&stored), store.clone());
        let token = this_round.token().await.unwrap();
        refreshes += 1;
        assert_ne!(token.expose_secret(), before.0, "{odd}");
        let stored = store.load(&owner()).await.unwrap().unwrap();
        let left = (stored.expires_at.unwrap() - Utc::now()).num_seconds();
        assert!(
            (seconds - 5..=seconds).contains(&left),
            "{odd}: {left} s left"
        );
    }
    drop(this);

    // A MAC token: refused by name, and the new refresh token is kept.
    env.fake
        .override_token_responses(serde_json::json!({"token_type": "mac"}));
    let stored = store.load(&owner()).await.unwrap().unwrap();
    store.save(&owner(), &expired(&stored)).await.unwrap();
    let mac = env.process(&expired(&stored), store.clone());
    let err = mac.token().await.unwrap_err().to_string();
    assert!(
        err.contains("token_type \"mac\" is not Bearer (RFC 6749 §7.1)"),
        "{err}"
    );
    let kept = store.load(&owner()).await.unwrap().unwrap();
    assert_ne!(pair(&kept).1, pair(&stored).1, "the rotated refresh token");
    // Back to a sane server: the next renewal spends the kept one, not the spent one.
    env.fake.override_token_responses(serde_json::json!({}));
    mac.token().await.unwrap();
    let statuses: Vec<u16> = env
        .grants()
        .iter()
        .filter(|(g, _)| g == "refresh_token")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(statuses, vec![200; refreshes + 2]);
}

/// Two real `plane-server check` processes on one database whose stored user token is
/// due: exactly one refresh grant between them, both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plane_server_processes_renew_the_shared_token_once() {
    let env = env().await;
    let first = env.authorize().await;
    env.store()
        .await
        .save(&owner(), &expired(&first))
        .await
        .unwrap();
    env.fake.inject(
        Fault::delay(Duration::from_millis(500))
            .path_contains("/auth/o/token/")
            .times(1),
    );
    let check = || env.plane_server(&["check"]).spawn().unwrap();
    let (a, b) = (check(), check());
    let wait = |child: std::process::Child| {
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
    };
    let (a, b): (Output, Output) = (wait(a).await.unwrap(), wait(b).await.unwrap());
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
}

/// A running `serve` and `oauth exchange`: the new grant is stored while `serve` holds the
/// old one; when Plane refuses the old access token, `serve` takes the stored new grant at
/// that renewal, spends no refresh token, and keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_picks_up_a_new_grant_stored_while_it_runs() {
    let env = env().await;
    let first = env.authorize().await;
    env.store().await.save(&owner(), &first).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = env
        .plane_server(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PLANE_WEBHOOK_SECRET", "fake-webhook-secret")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &'static str| async move {
        let answer = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await;
        answer.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    // Up, with the old pair loaded (`/readyz` would ask Plane, and keep the answer 30 s).
    let mut polls = 0;
    while get("/healthz").await != 200 {
        polls += 1;
        assert!(polls < 1500, "serve never became ready");
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old access token is revoked, and `oauth exchange` stores a new grant.
    env.fake.revoke_access_tokens();
    let new = env.authorize().await;
    env.store().await.save(&owner(), &new).await.unwrap();
    env.fake.clear_request_log();
    assert_eq!(get("/readyz").await, 200);
    let issued = env.fake.issued_tokens();
    let new_index = issued
        .iter()
        .position(|t| t == new.access_token.expose_secret())
        .unwrap();
    let last = env
        .fake
        .request_log()
        .into_iter()
        .rfind(|r| !r.path.starts_with("/auth/o/"))
        .unwrap();
    assert_eq!(last.bearer, Some(plane_fake::Bearer::Issued(new_index)));
    assert_eq!(last.status, 200);
    assert_eq!(env.grants(), expect(&[CODE_200, CODE_200]));
    serve.kill().unwrap();
    serve.wait().unwrap();
}

/// The client secret, codes and tokens never go over plain http off loopback: `check`
/// refuses to start (exit 2) and names the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_is_refused_before_anything_is_sent() {
    let env = env().await;
    for (base, redirect, key) in [
        ("http://plane.example.com", REDIRECT, "plane.base_url"),
        (
            env.fake.base_url().as_str(),
            "http://connector.example.com/cb",
            "plane.oauth.redirect_uri",
        ),
    ] {
        let out = env
            .plane_server(&["check"])
            .env("PLANE_BASE_URL", base)
            .env("PLANE_OAUTH_REDIRECT_URI", redirect)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{base} {redirect}: {stderr}");
        assert!(
            stderr.contains(&format!("configuration `{key}`"))
                && stderr.contains("is not https://"),
            "{stderr}"
        );
    }
    assert!(env.fake.token_requests().is_empty());
}

/// A sink whose saves of a renewed pair fail while its database is "down" (out of reach
/// of this process only: the others still reach it). A failed save leaves the store as a
/// failed transaction does: the lease and the spend record stay, and the stored pair is
/// the one whose refresh token was spent.
#[derive(Debug)]
struct Failing {
    inner: StoreSink,
    down: AtomicBool,
}

impl Failing {
    /// Down from the start.
    fn down(inner: StoreSink) -> Arc<Self> {
        Arc::new(Self {
            inner,
            down: AtomicBool::new(true),
        })
    }

    /// The database is back.
    fn back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    fn refused(&self) -> Option<plane_core::Error> {
        self.down
            .load(Ordering::SeqCst)
            .then(|| plane_core::Error::Token {
                message: "the database stayed busy".into(),
            })
    }
}

impl TokenSink for Failing {
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        match self.refused() {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.save(tokens),
        }
    }

    fn begin_renewal(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        self.inner.begin_renewal()
    }

    fn spending<'a>(
        &'a self,
        replaces: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        self.inner.spending(replaces)
    }

    fn end_renewal<'a>(
        &'a self,
        spent: &'a SecretString,
        renewed: Option<&'a TokenSet>,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, plane_core::Error>> {
        match self.refused().filter(|_| renewed.is_some()) {
            Some(e) => Box::pin(async move { Err(e) }),
            None => self.inner.end_renewal(spent, renewed),
        }
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        self.inner.load()
    }
}

/// Waits (bounded) until `store` holds a pair other than `old`, and returns it.
async fn stored_other_than(store: &Arc<dyn TokenStore>, old: &TokenSet) -> TokenSet {
    let started = std::time::Instant::now();
    loop {
        let stored = store.load(&owner()).await.unwrap().unwrap();
        if pair(&stored) != pair(old) {
            return stored;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new pair was never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The save after a refresh fails: the caller gets the error, and the next call stores the
/// kept pair and uses it, instead of presenting the spent refresh token from the store.
async fn a_pair_whose_save_failed_is_stored_at_the_next_call_not_lost(env: Env) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    let sink = Failing::down(StoreSink::new(store.clone(), owner()));
    let this = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(sink.clone());
    let err = this.token().await.unwrap_err().to_string();
    assert!(err.contains("the database stayed busy"), "{err}");
    // The store still holds the spent R1.
    assert_eq!(
        pair(&store.load(&owner()).await.unwrap().unwrap()),
        pair(&first)
    );
    sink.back();
    let token = this.token().await.unwrap();
    let stored = store.load(&owner()).await.unwrap().unwrap();
    assert_eq!(pair(&stored).0, token.expose_secret());
    assert_ne!(pair(&stored).1, pair(&first).1);
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
}

/// The review of issue 21: a pair whose save failed was stored only at the process's next
/// call, which on `serve` can be minutes later. It is stored as soon as the database takes
/// it, by the renewal's own task, with no further call; another process then takes it
/// and spends nothing.
async fn a_pair_whose_save_failed_is_stored_as_soon_as_the_database_is_back(env: Env) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    let sink = Failing::down(StoreSink::new(store.clone(), owner()));
    let this = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(sink.clone());
    let err = this.token().await.unwrap_err().to_string();
    assert!(err.contains("the database stayed busy"), "{err}");
    // A try or two fail meanwhile; the store still holds the spent R1, and a process about
    // to exit is told (`settle`: what `check` and `bir sync` wait on before they exit).
    assert!(
        !this.settle(Duration::from_secs(1)).await,
        "the pair is not stored yet"
    );
    assert_eq!(
        pair(&store.load(&owner()).await.unwrap().unwrap()),
        pair(&first)
    );
    sink.back();
    assert!(
        this.settle(Duration::from_secs(30)).await,
        "settle returns once the pair is stored"
    );
    let stored = stored_other_than(&store, &first).await;
    assert_ne!(pair(&stored).1, pair(&first).1);
    let other = env.process(&expired(&first), env.store().await);
    let token = other.token().await.unwrap();
    assert_eq!(token.expose_secret(), pair(&stored).0);
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    drop(this);
}

/// Replica A spends R1 and cannot store R2 (the database restarts), and its lease runs
/// out before the database takes R2 (a restart longer than the lease; a 1 s lease here).
/// Replica B's token is due then: it takes the lease, finds the stored R1 named by A's
/// spend record, and waits instead of presenting R1 (which Plane would refuse, logging
/// the user out); once A's database is back A stores R2, and B takes it. Plane is asked
/// once.
async fn a_replica_that_finds_the_renewal_in_doubt_waits_for_the_pair_instead_of_spending_r1(
    env: Env,
) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    let a_sink =
        Failing::down(StoreSink::new(store.clone(), owner()).with_lease(Duration::from_secs(1)));
    let a = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(a_sink.clone());
    a.token().await.unwrap_err();
    // A's lease runs out (on the database's clock).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = env.process(&expired(&first), env.store().await);
    let b = tokio::spawn(async move { b.token().await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !b.is_finished(),
        "B must wait while the renewal is in doubt"
    );
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    a_sink.back();
    let token = tokio::time::timeout(Duration::from_secs(30), b)
        .await
        .expect("B never took the pair A stored")
        .unwrap()
        .unwrap();
    let stored = store.load(&owner()).await.unwrap().unwrap();
    assert_eq!(token.expose_secret(), pair(&stored).0);
    assert_ne!(pair(&stored).1, pair(&first).1);
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    drop(a);
}

/// As above, but A stays out of reach of the database (or died with R2): B never presents
/// R1. After its wait it fails, saying the renewal is in doubt and why; the store names
/// the renewal in doubt meanwhile. Once A stores R2, B's next call takes it.
async fn a_renewal_that_stays_in_doubt_fails_by_name_and_never_presents_r1(env: Env) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    let a_sink =
        Failing::down(StoreSink::new(store.clone(), owner()).with_lease(Duration::from_secs(1)));
    let a = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(a_sink.clone());
    a.token().await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r1 = first.refresh_token.clone().unwrap();
    let doubt = store
        .renewal_in_doubt(&owner(), "another holder", &r1)
        .await
        .unwrap()
        .expect("A's spend record names the stored R1");
    assert!(doubt.holder.starts_with("pid "), "{doubt:?}");
    let b_sink: Arc<dyn TokenSink> = Arc::new(
        StoreSink::new(env.store().await, owner()).with_in_doubt_wait(Duration::from_secs(1)),
    );
    let b = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(b_sink);
    let err = b.token().await.unwrap_err().to_string();
    assert!(
        err.contains("renewal in doubt: another replica (pid ")
            && err.contains(
                "spent the refresh token of user:ops but could not store the new one; it will \
                 store it when the database is back"
            )
            && err.contains("authorize again"),
        "{err}"
    );
    assert!(!err.contains(r1.expose_secret()), "{err}");
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    // A's database is back: A stores R2, the record goes with it, and B takes R2.
    a_sink.back();
    let stored = stored_other_than(&store, &first).await;
    assert!(
        store
            .renewal_in_doubt(&owner(), "another holder", &r1)
            .await
            .unwrap()
            .is_none()
    );
    let token = b.token().await.unwrap();
    assert_eq!(token.expose_secret(), pair(&stored).0);
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
    drop(a);
}

/// The spend record itself: written only under the writer's own lease (which it extends),
/// seen as a renewal in doubt by every other holder and not by its own, kept when the
/// lease runs out and another holder takes it (and when that one releases), and ended
/// only by its holder's release or save, with the save done whoever holds the lease.
async fn the_spend_record_needs_the_lease_and_only_its_holder_ends_it(env: Env) {
    let (store, other) = (env.store().await, env.store().await);
    let r1 = SecretString::from("fake-refresh-1".to_owned());
    let doubt = |holder: &'static str| {
        let (store, r1) = (other.clone(), r1.clone());
        async move {
            store
                .renewal_in_doubt(&owner(), holder, &r1)
                .await
                .unwrap()
                .map(|d| d.holder)
        }
    };
    let long = Duration::from_secs(60);
    assert!(store.try_lease(&owner(), "a", long).await.unwrap());
    assert!(!other.mark_spending(&owner(), "b", &r1, long).await.unwrap());
    assert_eq!(doubt("b").await, None, "nothing recorded without the lease");
    assert!(store.mark_spending(&owner(), "a", &r1, long).await.unwrap());
    assert_eq!(doubt("b").await.as_deref(), Some("a"));
    assert_eq!(
        doubt("a").await,
        None,
        "its own record is no doubt to a holder"
    );
    // Only for that refresh token.
    let r2 = SecretString::from("fake-refresh-2".to_owned());
    assert!(
        other
            .renewal_in_doubt(&owner(), "b", &r2)
            .await
            .unwrap()
            .is_none()
    );
    other.release(&owner(), "b").await.unwrap();
    assert_eq!(doubt("b").await.as_deref(), Some("a"));
    store.release(&owner(), "a").await.unwrap();
    assert_eq!(doubt("b").await, None, "a release by its holder ends it");

    // A holder past its lease: the record outlives the lease, the holder can no longer
    // record a spend, and the other holder's release leaves it.
    let short = Duration::from_secs(1);
    assert!(store.try_lease(&owner(), "a", short).await.unwrap());
    assert!(
        store
            .mark_spending(&owner(), "a", &r1, short)
            .await
            .unwrap()
    );
    let started = std::time::Instant::now();
    while !other.try_lease(&owner(), "b", long).await.unwrap() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(doubt("b").await.as_deref(), Some("a"));
    assert!(
        !store
            .mark_spending(&owner(), "a", &r1, short)
            .await
            .unwrap()
    );
    other.release(&owner(), "b").await.unwrap();
    assert_eq!(doubt("b").await.as_deref(), Some("a"));
    // Its save goes through (the compare holds), whoever has the lease, and ends it.
    assert!(other.try_lease(&owner(), "b", long).await.unwrap());
    let renewed = TokenSet {
        access_token: SecretString::from("fake-access-2".to_owned()),
        refresh_token: Some(r2.clone()),
        expires_at: None,
        scope: None,
    };
    assert!(
        store
            .compare_and_save(&owner(), &r1, &renewed, "a")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(doubt("b").await, None);
    assert_eq!(
        pair(&other.load(&owner()).await.unwrap().unwrap()),
        pair(&renewed)
    );
    // The lease stayed b's.
    assert!(!store.try_lease(&owner(), "a", long).await.unwrap());
}

/// A caller that gives up during the refresh (a request's timeout) does not cut the
/// renewal: the new pair is stored all the same, and another process takes it.
async fn a_caller_that_gives_up_mid_refresh_does_not_lose_the_new_pair(env: Env) {
    let first = env.authorize().await;
    let store = env.store().await;
    store.save(&owner(), &expired(&first)).await.unwrap();
    env.fake.inject(
        Fault::delay(Duration::from_millis(400))
            .path_contains("/auth/o/token/")
            .times(1),
    );
    let impatient = env.process(&expired(&first), store.clone());
    let gave_up = tokio::time::timeout(Duration::from_millis(50), impatient.token()).await;
    assert!(gave_up.is_err(), "the caller was meant to give up first");
    // The renewal goes on without it; wait for its save (bounded generously).
    let mut polls = 0;
    while pair(&store.load(&owner()).await.unwrap().unwrap()).1 == pair(&first).1 {
        polls += 1;
        assert!(polls < 3000, "the new pair was never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = env.process(&expired(&first), env.store().await);
    let token = other.token().await.unwrap();
    assert_eq!(
        token.expose_secret(),
        pair(&store.load(&owner()).await.unwrap().unwrap()).0
    );
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
}

/// The review of issue 21, on a real PostgreSQL restart: replica A spends R1, the database
/// stops while Plane answers, so A cannot store R2, and A's lease (2 s here) runs out
/// before the database is back. Replica B's token is due as soon as it is: whichever
/// comes first, A's task storing R2 or B finding the renewal in doubt, B never presents
/// the spent R1, and goes on with R2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_during_a_renewal_never_makes_another_replica_spend_r1() {
    let Some(cluster) = plane_postgres::testing::Cluster::start() else {
        return;
    };
    let env = env().await;
    let key = || TokenKey::from_base64("test", &env.key).unwrap();
    let options = plane_postgres::Options::from_url(&cluster.url(), None).unwrap();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let db = options.clone().pool_size(2).connect().await.unwrap();
        stores.push(Arc::new(PgTokenStore::open(db, key()).await.unwrap()) as Arc<dyn TokenStore>);
    }
    let (store_a, store_b) = (stores[0].clone(), stores[1].clone());
    let first = env.authorize().await;
    store_a.save(&owner(), &expired(&first)).await.unwrap();

    // Replica A renews; Plane takes 3 s to answer, and the database stops meanwhile.
    env.fake.inject(
        Fault::delay(Duration::from_secs(3))
            .path_contains("/auth/o/token/")
            .times(1),
    );
    let sink_a: Arc<dyn TokenSink> =
        Arc::new(StoreSink::new(store_a.clone(), owner()).with_lease(Duration::from_secs(2)));
    let a = env
        .app()
        .refreshing_token(expired(&first))
        .persist_to(sink_a);
    let renewing = tokio::spawn(async move {
        let result = a.token().await;
        (a, result)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| cluster.stop());
    let (_a, result_a) = renewing.await.unwrap();
    let failed = result_a.unwrap_err().to_string();
    assert!(
        failed.contains("could not store the renewed token"),
        "{failed}"
    );
    // Down past A's lease, then back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| cluster.start_server());

    // Replica B's access token is due too: it renews through the same database.
    let b = env.process(&expired(&first), store_b.clone());
    let token = tokio::time::timeout(Duration::from_secs(60), b.token())
        .await
        .expect("B never got a token")
        .unwrap();
    let stored = store_b.load(&owner()).await.unwrap().unwrap();
    assert_eq!(token.expose_secret(), pair(&stored).0);
    assert_ne!(pair(&stored).1, pair(&first).1);
    assert_eq!(
        env.grants(),
        expect(&[CODE_200, REFRESH_200]),
        "a spent refresh token was presented to Plane, or Plane was asked twice"
    );
}
