//! One user token shared by several processes (issue 20): the renewal lease, the re-read
//! under it, the compare-and-swap save, the re-read after `invalid_grant`, and token
//! responses that cannot be used as they are. Against plane-fake, which rotates refresh
//! tokens and refuses a spent one; every assertion is on its log of token requests.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use plane_core::oauth::{OAuthApp, Pkce, RefreshingToken, TokenSet, TokenSink, random_state};
use plane_core::{BoxFuture, ExposeSecret, SecretString, TokenSource};
use plane_fake::{FakePlane, Fault, RunningFake};
use plane_server::token_store::{SqliteTokenStore, StoreSink, TokenKey, TokenOwner, TokenStore};

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");
const CLIENT_ID: &str = "client-1";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

struct Env {
    fake: RunningFake,
    secret: String,
    key: String,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
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
    }
}

fn owner() -> TokenOwner {
    TokenOwner::User("ops".into())
}

impl Env {
    fn app(&self) -> OAuthApp {
        OAuthApp::new(&self.fake.base_url(), CLIENT_ID, self.secret.clone()).unwrap()
    }

    /// A connection of its own to the one database file, as another process has.
    fn store(&self) -> Arc<SqliteTokenStore> {
        let key = TokenKey::from_base64("test", &self.key).unwrap();
        Arc::new(SqliteTokenStore::open(self.dir.path().join("plane.db"), key).unwrap())
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
    fn process(&self, loaded: &TokenSet, store: Arc<SqliteTokenStore>) -> RefreshingToken {
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_takes_the_pair_the_first_renewed_instead_of_spending_r1_again() {
    let env = env().await;
    let first = env.authorize().await;
    let (serve_store, sync_store) = (env.store(), env.store());
    serve_store.save(&owner(), &expired(&first)).unwrap();
    let serve = env.process(&expired(&first), serve_store.clone());
    let sync = env.process(&expired(&first), sync_store);

    let renewed_by_sync = sync.token().await.unwrap();
    let stored = serve_store.load(&owner()).unwrap().unwrap();
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_renewing_at_once_spend_the_refresh_token_once() {
    let env = env().await;
    let first = env.authorize().await;
    let (a_store, b_store) = (env.store(), env.store());
    a_store.save(&owner(), &expired(&first)).unwrap();
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

/// `oauth exchange` stores a new grant while `serve` runs on the old one: at its next
/// renewal `serve` takes the new grant, and spends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_process_picks_up_a_new_grant_at_its_next_renewal() {
    let env = env().await;
    let old = env.authorize().await;
    let store = env.store();
    store.save(&owner(), &old).unwrap();
    let serve = env.process(&expired(&old), store.clone());
    let new = env.authorize().await;
    env.store().save(&owner(), &new).unwrap(); // what `oauth exchange` does
    let token = serve.token().await.unwrap();
    assert_eq!(token.expose_secret(), pair(&new).0);
    assert_eq!(env.grants(), expect(&[CODE_200, CODE_200]));
    // The stored grant is the new one still: the old pair never overwrote it.
    assert_eq!(pair(&store.load(&owner()).unwrap().unwrap()), pair(&new));
}

/// The compare and swap itself: a renewal whose spent refresh token is no longer the
/// stored one keeps the stored pair, and says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_lost_the_race_keeps_the_stored_pair() {
    let env = env().await;
    let store = env.store();
    let set = |n: u32| TokenSet {
        access_token: SecretString::from(format!("fake-access-{n}")),
        refresh_token: Some(SecretString::from(format!("fake-refresh-{n}"))),
        expires_at: None,
        scope: None,
    };
    store.save(&owner(), &set(2)).unwrap();
    assert!(
        store
            .try_lease(&owner(), "me", Duration::from_secs(60))
            .unwrap()
    );
    assert!(
        !store
            .try_lease(&owner(), "another", Duration::from_secs(60))
            .unwrap(),
        "a lease is held by one at a time"
    );
    let spent = set(1).refresh_token.unwrap();
    let kept = store
        .compare_and_save(&owner(), &spent, &set(3), "me")
        .unwrap();
    assert_eq!(pair(&kept.unwrap()), pair(&set(2)));
    assert_eq!(pair(&store.load(&owner()).unwrap().unwrap()), pair(&set(2)));
    // The lease ended with it.
    assert!(
        store
            .try_lease(&owner(), "another", Duration::from_secs(60))
            .unwrap()
    );
    store.release(&owner(), "another").unwrap();
    // With the stored refresh token spent, the new pair is stored.
    let spent = set(2).refresh_token.unwrap();
    assert!(
        store
            .compare_and_save(&owner(), &spent, &set(3), "me")
            .unwrap()
            .is_none()
    );
    assert_eq!(pair(&store.load(&owner()).unwrap().unwrap()), pair(&set(3)));
    // A lease whose holder died runs out.
    assert!(
        store
            .try_lease(&owner(), "dead", Duration::from_millis(1))
            .unwrap()
    );
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        store
            .try_lease(&owner(), "me", Duration::from_secs(60))
            .unwrap()
    );
}

/// A process of an older build spends R1 without the lease while this one holds R1 too:
/// Plane refuses this one's R1, and it reads the store once more and goes on with the
/// pair the other stored, instead of asking the user to authorize again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_reads_the_store_once_more() {
    let env = env().await;
    let first = env.authorize().await;
    let store = env.store();
    store.save(&owner(), &expired(&first)).unwrap();
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
    let stored = store.load(&owner()).unwrap().unwrap();
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
    store: Arc<SqliteTokenStore>,
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
                self.store.save(&owner(), &theirs).unwrap();
            }
            Ok(stored)
        })
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_token_responses_are_read_clamped_or_refused_without_losing_the_refresh_token() {
    let env = env().await;
    let first = env.authorize().await;
    let store = env.store();
    store.save(&owner(), &expired(&first)).unwrap();
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
        let stored = store.load(&owner()).unwrap().unwrap();
        store.save(&owner(), &expired(&stored)).unwrap();
        let before = pair(&stored);
        env.fake.revoke_access_tokens();
        let this_round = env.process(&expired(&stored), store.clone());
        let token = this_round.token().await.unwrap();
        refreshes += 1;
        assert_ne!(token.expose_secret(), before.0, "{odd}");
        let stored = store.load(&owner()).unwrap().unwrap();
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
    let stored = store.load(&owner()).unwrap().unwrap();
    store.save(&owner(), &expired(&stored)).unwrap();
    let mac = env.process(&expired(&stored), store.clone());
    let err = mac.token().await.unwrap_err().to_string();
    assert!(
        err.contains("token_type \"mac\" is not Bearer (RFC 6749 §7.1)"),
        "{err}"
    );
    let kept = store.load(&owner()).unwrap().unwrap();
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
    env.store().save(&owner(), &expired(&first)).unwrap();
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
    env.store().save(&owner(), &first).unwrap();
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
    env.store().save(&owner(), &new).unwrap();
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

/// A sink whose first `end_renewal` with a pair fails (a database busy past every retry):
/// the pair Plane issued must not be lost.
#[derive(Debug)]
struct FailingOnce {
    inner: StoreSink,
    failed: std::sync::atomic::AtomicBool,
}

impl TokenSink for FailingOnce {
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        self.inner.save(tokens)
    }

    fn begin_renewal(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        self.inner.begin_renewal()
    }

    fn end_renewal<'a>(
        &'a self,
        spent: &'a SecretString,
        renewed: Option<&'a TokenSet>,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, plane_core::Error>> {
        if renewed.is_some() && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async move {
                // The lease is given back, as a store that failed its transaction leaves it.
                self.inner.end_renewal(spent, None).await?;
                Err(plane_core::Error::Token {
                    message: "the database stayed busy".into(),
                })
            });
        }
        self.inner.end_renewal(spent, renewed)
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        self.inner.load()
    }
}

/// The save after a refresh fails: the caller gets the error, and the next call stores the
/// kept pair and uses it, instead of presenting the spent refresh token from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_whose_save_failed_is_stored_at_the_next_call_not_lost() {
    let env = env().await;
    let first = env.authorize().await;
    let store = env.store();
    store.save(&owner(), &expired(&first)).unwrap();
    let sink = Arc::new(FailingOnce {
        inner: StoreSink::new(store.clone(), owner()),
        failed: std::sync::atomic::AtomicBool::new(false),
    });
    let this = env.app().refreshing_token(expired(&first)).persist_to(sink);
    let err = this.token().await.unwrap_err().to_string();
    assert!(err.contains("the database stayed busy"), "{err}");
    // The store still holds the spent R1.
    assert_eq!(pair(&store.load(&owner()).unwrap().unwrap()), pair(&first));
    let token = this.token().await.unwrap();
    let stored = store.load(&owner()).unwrap().unwrap();
    assert_eq!(pair(&stored).0, token.expose_secret());
    assert_ne!(pair(&stored).1, pair(&first).1);
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
}

/// A caller that gives up during the refresh (a request's timeout) does not cut the
/// renewal: the new pair is stored all the same, and another process takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_mid_refresh_does_not_lose_the_new_pair() {
    let env = env().await;
    let first = env.authorize().await;
    let store = env.store();
    store.save(&owner(), &expired(&first)).unwrap();
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
    while pair(&store.load(&owner()).unwrap().unwrap()).1 == pair(&first).1 {
        polls += 1;
        assert!(polls < 3000, "the new pair was never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = env.process(&expired(&first), env.store());
    let token = other.token().await.unwrap();
    assert_eq!(
        token.expose_secret(),
        pair(&store.load(&owner()).unwrap().unwrap()).0
    );
    assert_eq!(env.grants(), expect(&[CODE_200, REFRESH_200]));
}
