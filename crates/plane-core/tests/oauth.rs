//! OAuth against plane-fake's Plane Cloud endpoints: each grant, PKCE, renewal
//! before expiry, one renewal for many requests, one renewal and one retry after
//! a 401, typed refusals, and tokens persisted before they are used.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plane_core::oauth::{OAuthApp, Pkce, TokenSet, TokenSink, random_state};
use plane_core::{BoxFuture, Budget, Error, ExposeSecret, PlaneClient, TokenSource};
use plane_fake::{FakePlane, Fault, RunningFake};

const CLIENT_ID: &str = "client-1";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

/// Obviously fake, made at run time.
fn secret() -> String {
    format!("fake-client-secret-{}", std::process::id())
}

async fn fake() -> RunningFake {
    FakePlane::builder()
        .no_rate_limit()
        .oauth_app(CLIENT_ID, secret(), REDIRECT)
        .start()
        .await
        .unwrap()
}

fn app(fake: &RunningFake) -> OAuthApp {
    OAuthApp::new(&fake.base_url(), CLIENT_ID, secret()).unwrap()
}

fn client(fake: &RunningFake, source: impl TokenSource + 'static) -> PlaneClient {
    PlaneClient::builder()
        .base_url(fake.base_url())
        .workspace_slug(fake.workspace_slug())
        .budget(Budget::new(10_000, Duration::from_secs(60)))
        .bearer(source)
        .build()
        .unwrap()
}

/// What a browser does with the authorize URL: follow it to the callback and
/// read `code` and `state` (the fake consents at once).
async fn authorize(url: &str) -> (String, String) {
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302, "{:?}", answer.text().await);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let callback = url::Url::parse(&location).unwrap();
    let get = |k: &str| {
        callback
            .query_pairs()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
    };
    (get("code").unwrap(), get("state").unwrap())
}

/// A user token pair by the authorization-code grant with PKCE.
async fn user_tokens(fake: &RunningFake) -> TokenSet {
    let app = app(fake);
    let pkce = Pkce::new();
    let state = random_state();
    let url = app.authorize_url(
        REDIRECT,
        &["projects:read", "profile:read"],
        &state,
        Some(&pkce),
    );
    let (code, returned) = authorize(&url).await;
    assert_eq!(returned, state, "the callback brings the state back");
    app.exchange_code(&code, REDIRECT, Some(&pkce))
        .await
        .unwrap()
}

/// `(grant_type, status)` of every token request so far.
fn grants(fake: &RunningFake) -> Vec<(String, u16)> {
    fake.token_requests()
        .into_iter()
        .map(|r| (r.grant_type, r.status))
        .collect()
}

/// Statuses of the API requests to `users/me/`, in order.
fn me_statuses(fake: &RunningFake) -> Vec<u16> {
    fake.request_log()
        .iter()
        .filter(|r| r.path == "/api/v1/users/me/")
        .map(|r| r.status)
        .collect()
}

/// Remembers every saved set; fails while `failing` is set.
#[derive(Debug, Default)]
struct MemorySink {
    saved: Mutex<Vec<TokenSet>>,
    failing: Mutex<bool>,
}

impl MemorySink {
    fn last(&self) -> TokenSet {
        self.saved.lock().unwrap().last().cloned().unwrap()
    }
}

impl TokenSink for MemorySink {
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if *self.failing.lock().unwrap() {
                return Err(Error::Token {
                    message: "the test store is failing".into(),
                });
            }
            self.saved.lock().unwrap().push(tokens.clone());
            Ok(())
        })
    }
}

#[tokio::test]
async fn client_credentials_gives_a_bot_token_that_the_api_and_the_installation_lookup_accept() {
    let fake = fake().await;
    let app = app(&fake);
    let client = client(&fake, app.bot_token(fake.oauth_installation_id()));
    for _ in 0..3 {
        client.users().me().await.unwrap();
    }
    assert_eq!(grants(&fake), [("client_credentials".into(), 200)]);
    assert_eq!(me_statuses(&fake), [200, 200, 200]);
    assert!(
        fake.request_log()
            .iter()
            .filter(|r| r.path.starts_with("/api/"))
            .all(|r| r.authenticated)
    );

    let bot = app
        .client_credentials(&fake.oauth_installation_id())
        .await
        .unwrap();
    assert!(
        bot.refresh_token.is_none(),
        "bot tokens have no refresh token"
    );
    let installation = app
        .installation(&bot.access_token, &fake.oauth_installation_id())
        .await
        .unwrap();
    assert_eq!(installation.workspace_slug, fake.workspace_slug());
    assert_eq!(installation.status.as_deref(), Some("installed"));

    // An installation the app does not have.
    let err = app.client_credentials("not-installed").await.unwrap_err();
    assert!(
        matches!(&err, Error::GrantRefused { error, .. } if error == "invalid_grant"),
        "{err}"
    );
    assert!(
        err.to_string().contains("check the installation id"),
        "says what to do: {err}"
    );
}

#[tokio::test]
async fn the_authorization_code_grant_with_pkce_gives_a_user_token_pair() {
    let fake = fake().await;
    let tokens = user_tokens(&fake).await;
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.expires_at.is_some());
    assert_eq!(tokens.scope.as_deref(), Some("projects:read profile:read"));
    let client = client(&fake, app(&fake).refreshing_token(tokens));
    client.users().me().await.unwrap();
    assert_eq!(grants(&fake), [("authorization_code".into(), 200)]);
}

#[tokio::test]
async fn a_wrong_or_missing_pkce_verifier_and_a_reused_code_are_refused() {
    let fake = fake().await;
    let app = app(&fake);
    let pkce = Pkce::new();
    for verifier in [Some(Pkce::new()), None] {
        let url = app.authorize_url(REDIRECT, &["projects:read"], "s", Some(&pkce));
        let (code, _) = authorize(&url).await;
        let err = app
            .exchange_code(&code, REDIRECT, verifier.as_ref())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::GrantRefused { grant: "authorization_code", error, .. } if error == "invalid_grant"),
            "{err}"
        );
        assert!(err.to_string().contains("code_verifier"), "{err}");
        assert!(
            err.to_string()
                .contains("run `plane-server oauth authorize-url` again"),
            "says what to do: {err}"
        );
    }
    // The right verifier works once; the same code again is refused.
    let url = app.authorize_url(REDIRECT, &["projects:read"], "s", Some(&pkce));
    let (code, _) = authorize(&url).await;
    app.exchange_code(&code, REDIRECT, Some(&pkce))
        .await
        .unwrap();
    let err = app
        .exchange_code(&code, REDIRECT, Some(&pkce))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::GrantRefused { .. }), "{err}");
}

/// `plane.oauth.pkce = false`: no challenge in the URL, and the code is
/// exchanged without a verifier (for a Plane that does not take PKCE).
#[tokio::test]
async fn without_pkce_the_url_has_no_challenge_and_the_code_exchanges_without_a_verifier() {
    let fake = fake().await;
    let app = app(&fake);
    let url = app.authorize_url(REDIRECT, &["projects:read"], "s", None);
    assert!(!url.contains("code_challenge"), "{url}");
    let with_pkce = app.authorize_url(REDIRECT, &["projects:read"], "s", Some(&Pkce::new()));
    assert!(
        with_pkce.contains("code_challenge_method=S256"),
        "{with_pkce}"
    );
    let (code, _) = authorize(&url).await;
    let tokens = app.exchange_code(&code, REDIRECT, None).await.unwrap();
    assert!(tokens.refresh_token.is_some());
    assert_eq!(grants(&fake), [("authorization_code".into(), 200)]);
}

#[tokio::test]
async fn the_refresh_token_grant_rotates_and_a_spent_or_expired_one_says_authorize_again() {
    let fake = fake().await;
    let app = app(&fake);
    let first = user_tokens(&fake).await;
    let old = first.refresh_token.clone().unwrap();
    let second = app.refresh(&old).await.unwrap();
    let new = second.refresh_token.clone().unwrap();
    assert_ne!(new.expose_secret(), old.expose_secret(), "rotated");

    let spent = app.refresh(&old).await.unwrap_err();
    assert!(
        matches!(spent, Error::AuthorizationExpired { .. }),
        "{spent}"
    );
    assert!(
        spent
            .to_string()
            .contains("plane-server oauth authorize-url"),
        "{spent}"
    );

    fake.expire_refresh_tokens();
    let expired = app.refresh(&new).await.unwrap_err();
    assert!(
        matches!(&expired, Error::AuthorizationExpired { detail, .. } if detail.contains("expired")),
        "{expired}"
    );
    // Through the API client: the same typed error, and no token in it.
    fake.revoke_access_tokens();
    let client = client(&fake, app.refreshing_token(second));
    let err = client.users().me().await.unwrap_err();
    assert!(matches!(err, Error::AuthorizationExpired { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(new.expose_secret()), "{shown}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client_and_never_shown() {
    let fake = fake().await;
    let wrong = format!("fake-wrong-secret-{}", std::process::id());
    let app = OAuthApp::new(&fake.base_url(), CLIENT_ID, wrong.clone()).unwrap();
    let client = client(&fake, app.bot_token(fake.oauth_installation_id()));
    let err = client.users().me().await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient { .. }), "{err}");
    let shown = format!("{err} {err:?} {app:?} {client:?}");
    assert!(!shown.contains(&wrong), "{shown}");
    assert!(shown.contains("PLANE_OAUTH_CLIENT_SECRET"), "{shown}");
    assert_eq!(grants(&fake), [("client_credentials".into(), 401)]);
    assert!(
        me_statuses(&fake).is_empty(),
        "no API request without a token"
    );
}

#[tokio::test]
async fn token_requests_carry_the_api_clients_user_agent() {
    let fake = fake().await;
    let client = client(&fake, app(&fake).bot_token(fake.oauth_installation_id()));
    client.users().me().await.unwrap();
    let agents: Vec<_> = fake
        .request_log()
        .into_iter()
        .map(|r| (r.path, r.user_agent))
        .collect();
    let expected = Some(format!("plane-connector/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        agents,
        [
            ("/auth/o/token/".to_owned(), expected.clone()),
            ("/api/v1/users/me/".to_owned(), expected)
        ]
    );
}

/// Tokens of 1 h: the source renews in the minute before expiry, so Plane never
/// sees an expired token (no 401).
#[tokio::test(start_paused = true)]
async fn tokens_are_renewed_before_they_expire() {
    let fake = fake().await;
    fake.set_access_token_lifetime(Duration::from_secs(3600));
    let app = app(&fake);
    let bot = client(&fake, app.bot_token(fake.oauth_installation_id()));
    let user = client(&fake, app.refreshing_token(user_tokens(&fake).await));
    for client in [&bot, &user] {
        client.users().me().await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(3600 - 61)).await;
    for client in [&bot, &user] {
        client.users().me().await.unwrap();
    }
    assert_eq!(fake.token_requests().len(), 2, "still fresh: no renewal");
    tokio::time::advance(Duration::from_secs(2)).await;
    for client in [&bot, &user] {
        client.users().me().await.unwrap();
    }
    assert_eq!(
        grants(&fake),
        [
            ("authorization_code".into(), 200),
            ("client_credentials".into(), 200),
            ("client_credentials".into(), 200),
            ("refresh_token".into(), 200),
        ]
    );
    assert_eq!(me_statuses(&fake), [200; 6], "no request went out expired");
}

#[tokio::test(start_paused = true)]
async fn a_hundred_requests_at_expiry_cause_one_token_request() {
    let fake = fake().await;
    fake.set_access_token_lifetime(Duration::from_secs(3600));
    let app = app(&fake);
    for (client, grant) in [
        (
            client(&fake, app.bot_token(fake.oauth_installation_id())),
            "client_credentials",
        ),
        (
            client(&fake, app.refreshing_token(user_tokens(&fake).await)),
            "refresh_token",
        ),
    ] {
        client.users().me().await.unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let before = fake.token_requests().len();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.users().me().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let renewals = &grants(&fake)[before..];
        assert_eq!(renewals, [(grant.to_owned(), 200)], "{grant}");
    }
    assert!(me_statuses(&fake).iter().all(|s| *s == 200));
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_and_the_request_retried_once() {
    let fake = fake().await;
    let app = app(&fake);
    let client = client(&fake, app.bot_token(fake.oauth_installation_id()));
    client.users().me().await.unwrap();

    // Revoked: one 401, one renewal, one retry.
    fake.revoke_access_tokens();
    client.users().me().await.unwrap();
    assert_eq!(me_statuses(&fake), [200, 401, 200]);
    assert_eq!(fake.token_requests().len(), 2);

    // Twenty requests refused at once: still one renewal.
    fake.revoke_access_tokens();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.users().me().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(fake.token_requests().len(), 3, "{:?}", grants(&fake));

    // Refused again after the renewal: the error, not a loop.
    fake.clear_request_log();
    fake.inject(Fault::status(401).path_contains("/users/me/").times(5));
    let err = client.users().me().await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert_eq!(me_statuses(&fake), [401, 401], "one try and one retry");
    assert_eq!(fake.token_requests().len(), 4, "one renewal");
}

#[tokio::test]
async fn a_new_token_pair_is_saved_before_use_and_a_restart_renews_with_the_rotated_one() {
    let fake = fake().await;
    let app = app(&fake);
    let sink = Arc::new(MemorySink::default());
    let initial = user_tokens(&fake).await;

    // A store that fails: the renewed access token is not used.
    let source = app.refreshing_token(initial).persist_to(sink.clone());
    let first = client(&fake, source);
    fake.revoke_access_tokens();
    *sink.failing.lock().unwrap() = true;
    let err = first.users().me().await.unwrap_err();
    assert!(
        err.to_string().contains("the test store is failing"),
        "{err}"
    );
    assert_eq!(
        me_statuses(&fake),
        [401],
        "the unsaved token was never sent"
    );

    // The store works again: the pair kept in memory is stored first and used; Plane
    // is not asked again (its access token is still good).
    *sink.failing.lock().unwrap() = false;
    first.users().me().await.unwrap();
    let saved = sink.last();
    assert_eq!(
        grants(&fake),
        [
            ("authorization_code".into(), 200),
            ("refresh_token".into(), 200),
        ]
    );
    assert_eq!(me_statuses(&fake), [401, 200]);
    drop(first);

    // A new process starts from what was saved and renews with it.
    fake.revoke_access_tokens();
    let restarted = client(
        &fake,
        app.refreshing_token(saved.clone()).persist_to(sink.clone()),
    );
    restarted.users().me().await.unwrap();
    assert_eq!(
        grants(&fake).last().unwrap(),
        &("refresh_token".into(), 200)
    );
    assert_ne!(
        sink.last().refresh_token.unwrap().expose_secret(),
        saved.refresh_token.unwrap().expose_secret(),
        "the new rotation was saved too"
    );
}

/// `Debug` of every OAuth value while it holds live tokens (the app, a PKCE pair,
/// a token set, both sources after a renewal, the client using one, and the
/// refusals) shows no token, no client secret and no PKCE verifier.
#[tokio::test]
async fn debug_of_every_oauth_value_shows_no_token_secret_or_verifier() {
    let fake = fake().await;
    let app = app(&fake);
    let pkce = Pkce::new();
    let tokens = user_tokens(&fake).await;
    let bot = Arc::new(app.bot_token(fake.oauth_installation_id()));
    let user = Arc::new(
        app.refreshing_token(tokens.clone())
            .persist_to(Arc::new(MemorySink::default())),
    );
    let first = user.token().await.unwrap();
    user.invalidate(&first).await;
    user.token().await.unwrap(); // rotated: the source holds a new pair
    let client = client(&fake, bot.clone());
    client.users().me().await.unwrap();
    let spent = app
        .refresh(tokens.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    let wrong_verifier = {
        let url = app.authorize_url(REDIRECT, &["projects:read"], "s", Some(&pkce));
        let (code, _) = authorize(&url).await;
        app.exchange_code(&code, REDIRECT, Some(&Pkce::new()))
            .await
            .unwrap_err()
    };
    let shown = format!(
        "{app:?} {app:#?} {pkce:?} {pkce:#?} {tokens:?} {tokens:#?} {bot:?} {bot:#?} {user:?} \
         {user:#?} {client:?} {spent} {spent:?} {wrong_verifier} {wrong_verifier:?}"
    );
    let mut hidden = fake.issued_tokens();
    assert!(hidden.len() >= 5, "{hidden:?}");
    hidden.extend([secret(), pkce.verifier().expose_secret().to_owned()]);
    for value in &hidden {
        assert!(!shown.contains(value.as_str()), "a secret is in: {shown}");
    }
}

/// A token endpoint that does not answer is a connection failure, as for any API
/// request (so `check` says Plane is unreachable), not a token or configuration problem.
#[tokio::test]
async fn an_unreachable_token_endpoint_is_a_transport_error() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let app = OAuthApp::new("http://127.0.0.1:9", CLIENT_ID, secret()).unwrap();
    let err = app.client_credentials("inst-1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Transport { path, .. } if path == "/auth/o/token/"),
        "{err:?}"
    );
    let client = PlaneClient::builder()
        .base_url("http://127.0.0.1:9")
        .workspace_slug("acme")
        .bearer(app.bot_token("inst-1"))
        .retry_policy(plane_core::RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.users().me().await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}
