//! OAuth for Plane apps (Plane Cloud; the CE server has no `/auth/o/` routes).
//!
//! # A tour
//!
//! * [`OAuthApp`] is the app registered in a Plane workspace (client id and
//!   secret). It speaks to the token endpoint, `POST {base}/auth/o/token/`, with
//!   the three grants: [`exchange_code`](OAuthApp::exchange_code)
//!   (`authorization_code`, with a PKCE verifier), [`client_credentials`](OAuthApp::client_credentials)
//!   (the bot token of one installation, HTTP Basic client authentication) and
//!   [`refresh`](OAuthApp::refresh) (`refresh_token`). It builds the URL a user
//!   opens to authorize the app ([`authorize_url`](OAuthApp::authorize_url)) and
//!   looks installations up ([`installation`](OAuthApp::installation)). Its HTTP
//!   client is built by the same code as [`PlaneClient`](crate::PlaneClient)'s:
//!   same connect and request timeouts, same user agent.
//! * [`Pkce`] is an RFC 7636 verifier and its S256 challenge; [`random_state`]
//!   makes the `state` value that ties a callback to the request that caused it.
//! * Two [`TokenSource`]s keep a token fresh for the API client:
//!   [`BotToken`] repeats the `client_credentials` grant, [`RefreshingToken`]
//!   spends the refresh token (and keeps the rotated one). Both renew
//!   [`EARLY`] before `expires_in` runs out, hold one lock across a renewal (so
//!   a hundred requests at expiry cause one token request), and renew a token
//!   Plane refused (401) exactly once.
//! * A [`TokenSink`] is told every new [`TokenSet`] **before** its access token
//!   is used: a rotated refresh token is stored before anything can depend on
//!   it, so a restart never finds a spent one. A sink shared by several processes
//!   also runs the renewal protocol (lease, re-read, compare and swap) that keeps
//!   them from spending one refresh token twice; see [`TokenSink`].
//! * Token responses are read leniently (`expires_in` as a number or a string,
//!   clamped to [`LIFETIMES`]); a `token_type` other than Bearer is refused, and
//!   [`require_https`] keeps secrets off plain `http://` except on loopback.
//!
//! Refusals by the token endpoint are typed: [`Error::InvalidClient`] (wrong
//! client id or secret), [`Error::AuthorizationExpired`] (the refresh token is
//! expired, revoked or spent: the user must authorize again) and
//! [`Error::GrantRefused`] (anything else RFC 6749 §5.2 names).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::client::{HttpSettings, transport_error};
use crate::{BaseUrl, BoxFuture, Error, ExposeSecret, SecretString, TokenSource};

/// Tokens are renewed this long before their stated expiry.
pub const EARLY: Duration = Duration::from_secs(60);

/// An OAuth app registered in a Plane workspace.
#[derive(Clone)]
pub struct OAuthApp {
    origin: String,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    http: reqwest::Client,
    /// The request timeout of `http`, named when it runs out.
    timeout: Duration,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// An access token with what came with it, as a grant returned it (and as a
/// [`TokenSink`] stores it). `Debug` never shows the tokens.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The bearer token for `/api/v1/`.
    pub access_token: SecretString,
    /// The refresh token (user tokens only; bot tokens have none).
    pub refresh_token: Option<SecretString>,
    /// When the access token expires, if Plane said (`expires_in`).
    pub expires_at: Option<DateTime<Utc>>,
    /// The scopes granted, space-separated, if Plane said.
    pub scope: Option<String>,
}

/// Where new tokens are kept, told before they are used, and how several processes
/// sharing them renew one at a time.
///
/// A [`BotToken`] or [`RefreshingToken`] calls [`save`](Self::save) with every
/// token set it obtains, and uses the access token only once `save` returned
/// `Ok`. An error is returned to the request that needed the token.
///
/// # Renewal across processes
///
/// Plane rotates refresh tokens: once spent, one is refused (`invalid_grant`), and some
/// providers then revoke the whole chain. Several processes (`serve` and a scheduled
/// `bir sync`) may hold the same pair, so a [`RefreshingToken`] renews under a lease the
/// sink keeps where every process sees it:
///
/// 1. [`begin_renewal`](Self::begin_renewal) takes the owner's lease (waiting while
///    another process holds it; never a database lock held across the HTTP call) and
///    returns the pair stored *now*. If another process renewed meanwhile, or a new grant
///    was stored, that pair is used and no refresh token is spent.
/// 2. Otherwise the stored refresh token is spent, and
///    [`end_renewal`](Self::end_renewal) stores the new pair only if the stored refresh
///    token is still the one spent (compare and swap), then ends the lease. When another
///    writer's pair won (a new `oauth exchange`), that one is returned and used.
/// 3. A refresh token refused as spent makes the process [`load`](Self::load) the store
///    once more before it gives up.
///
/// Just before a refresh token is presented, [`spending`](Self::spending) tells the sink
/// which stored refresh token the renewal will replace: a shared store records it, so a
/// process that finds it still stored after this one's lease ran out knows the renewal is
/// in doubt (this process spent it and has the new pair, unstored) and must not present
/// it. A new pair whose save failed is kept and stored again, with backoff, by a task of
/// its own until the save succeeds (or another writer's pair won).
///
/// The default methods keep nothing (a sink of one process, as a test's); a store shared
/// by processes implements them all.
pub trait TokenSink: Send + Sync + fmt::Debug {
    /// Stores `tokens`, replacing what was stored for the same owner.
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), Error>>;

    /// Takes the owner's renewal lease, waiting while another process holds it, and
    /// returns the token set stored now.
    fn begin_renewal(&self) -> BoxFuture<'_, Result<Option<TokenSet>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Ends the lease taken by [`begin_renewal`](Self::begin_renewal). With `renewed`,
    /// stores it first if the stored refresh token is still `spent` (or nothing is
    /// stored); returns the stored set instead when another writer's won.
    fn end_renewal<'a>(
        &'a self,
        spent: &'a SecretString,
        renewed: Option<&'a TokenSet>,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, Error>> {
        let _ = spent;
        Box::pin(async move {
            if let Some(renewed) = renewed {
                self.save(renewed).await?;
            }
            Ok(None)
        })
    }

    /// The token set stored now (read again after a refused refresh token).
    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// Called under the lease taken by [`begin_renewal`](Self::begin_renewal), just before
    /// a refresh token is presented to Plane. `replaces` is the stored refresh token the
    /// renewal's pair will replace (the `spent` that [`end_renewal`](Self::end_renewal)
    /// will be given): usually the one presented, or the one a kept, unstored pair
    /// replaced. An error (the lease is no longer this process's, the store cannot record
    /// it) means nothing is presented.
    fn spending<'a>(&'a self, replaces: &'a SecretString) -> BoxFuture<'a, Result<(), Error>> {
        let _ = replaces;
        Box::pin(async { Ok(()) })
    }
}

/// Refuses a URL that OAuth secrets would cross in clear: `https://` is required, except
/// on loopback (`localhost`, `127.0.0.0/8`, `::1`), where plain `http://` is allowed for
/// tests and local callbacks.
///
/// ```
/// use plane_core::oauth::require_https;
/// assert!(require_https("the OAuth base URL", "https://api.plane.so").is_ok());
/// assert!(require_https("the redirect URI", "http://127.0.0.1:8080/cb").is_ok());
/// let err = require_https("the OAuth base URL", "http://plane.example.com").unwrap_err();
/// assert!(err.to_string().contains("the OAuth base URL http://plane.example.com is not https://"));
/// ```
pub fn require_https(what: &str, url: &str) -> Result<(), Error> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| Error::InvalidArgument {
        message: format!("{what} {url:?} is not a URL ({e})"),
    })?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(Error::InvalidArgument {
            message: format!(
                "{what} {url} is not https://: the client secret, codes and tokens would \
                 travel in clear. Use https:// (plain http:// is allowed on loopback only)"
            ),
        }),
    }
}

/// A PKCE code verifier and its S256 challenge (RFC 7636 §4.1, §4.2).
///
/// ```
/// use plane_core::ExposeSecret;
/// use plane_core::oauth::Pkce;
/// // RFC 7636 appendix B.
/// let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
/// assert_eq!(pkce.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
/// assert_eq!(Pkce::new().verifier().expose_secret().len(), 43);
/// ```
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

impl Pkce {
    /// A new verifier: 32 random bytes, base64url (43 characters), as RFC 7636
    /// §4.1 recommends.
    pub fn new() -> Self {
        let verifier = random_b64(32);
        let challenge = s256(&verifier);
        Self {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }

    /// A verifier kept from earlier (43 to 128 unreserved characters).
    pub fn from_verifier(verifier: &str) -> Result<Self, Error> {
        let ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return Err(Error::InvalidArgument {
                message: "a PKCE verifier is 43 to 128 characters of A-Z a-z 0-9 - . _ ~ \
                          (RFC 7636 §4.1)"
                    .into(),
            });
        }
        Ok(Self {
            challenge: s256(verifier),
            verifier: SecretString::from(verifier.to_owned()),
        })
    }

    /// The verifier, sent only to the token endpoint.
    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    /// `BASE64URL(SHA256(verifier))`, sent in the authorize URL.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A fresh, unguessable `state` value (24 random bytes, base64url) for the
/// authorize URL; the callback must bring it back unchanged.
pub fn random_state() -> String {
    random_b64(24)
}

/// An app installation as `GET /auth/o/app-installation/` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The installation id (`app_installation_id`).
    pub id: String,
    /// The workspace the app is installed in (`workspace_detail.slug`): the slug for API paths.
    pub workspace_slug: String,
    /// The workspace's name, if Plane said.
    pub workspace_name: Option<String>,
    /// `installed`, or another state Plane reports.
    pub status: Option<String>,
    /// The bot user the bot token acts as (`app_bot`).
    pub app_bot: Option<String>,
}

/// The shortest and longest access-token lifetimes believed: a server's `expires_in` is
/// clamped into this range (a zero would renew on every call; `1e13` seconds overflows a
/// date, `u64::MAX` an `Instant`).
pub const LIFETIMES: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(366 * 24 * 3600);

/// A token endpoint's answer, read leniently: `expires_in` may be a number, a float or a
/// string of one (servers differ); `token_type` must be Bearer (RFC 6749 §7.1).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// A grant's answer that could not be used, and the rotated refresh token it carried
/// (Plane has spent the old one by then: it must be kept all the same).
struct GrantError {
    error: Error,
    rotated: Option<SecretString>,
}

impl From<Error> for GrantError {
    fn from(error: Error) -> Self {
        Self {
            error,
            rotated: None,
        }
    }
}

/// `expires_in` as a duration: a non-negative number, or a string of one; clamped to
/// [`LIFETIMES`]. `Err` names what was wrong.
fn lifetime(value: &serde_json::Value) -> Result<Duration, String> {
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .ok_or_else(|| format!("expires_in {value} is not a number of seconds"))?;
    let (low, high) = (
        LIFETIMES.start().as_secs_f64(),
        LIFETIMES.end().as_secs_f64(),
    );
    Ok(Duration::from_secs_f64(seconds.clamp(low, high)))
}

impl TokenResponse {
    fn into_set(self) -> Result<(TokenSet, Option<Duration>), GrantError> {
        let rotated = self.refresh_token.clone().map(SecretString::from);
        let refuse = |problem: String| GrantError {
            error: Error::Token {
                message: format!("the token response cannot be used: {problem}"),
            },
            rotated: rotated.clone(),
        };
        match self.token_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("bearer") => {}
            // Plane always says; a missing type is read as Bearer, as Plane means it.
            None => {}
            Some(other) => {
                return Err(refuse(format!(
                    "token_type {other:?} is not Bearer (RFC 6749 §7.1)"
                )));
            }
        }
        let access = self
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse("it has no access_token".into()))?;
        let lifetime = self
            .expires_in
            .filter(|v| !v.is_null())
            .map(|v| lifetime(&v))
            .transpose()
            .map_err(refuse)?;
        let set = TokenSet {
            access_token: SecretString::from(access),
            refresh_token: rotated,
            expires_at: lifetime
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| Utc::now() + d),
            scope: self.scope,
        };
        Ok((set, lifetime))
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuthApp {
    /// The app `client_id`/`client_secret` on the Plane at `base_url`
    /// (`https://api.plane.so` for Plane Cloud).
    ///
    /// ```
    /// use plane_core::oauth::OAuthApp;
    /// let app = OAuthApp::new("https://api.plane.so", "client-id", "not-a-real-secret").unwrap();
    /// assert!(!format!("{app:?}").contains("not-a-real-secret"));
    /// ```
    pub fn new(
        base_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Result<Self, Error> {
        let base = BaseUrl::parse(base_url)?;
        require_https("the OAuth base URL", base_url)?;
        let origin = base.origin();
        let settings = HttpSettings::default();
        Ok(Self {
            token_url: format!("{origin}/auth/o/token/"),
            origin,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            http: settings.client()?,
            timeout: settings.request_timeout,
        })
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The URL a user opens to authorize the app: `GET {base}/auth/o/authorize-app/`
    /// with `response_type=code`, the redirect URI, the space-separated scopes, the
    /// `state` and, when given, the PKCE challenge (`code_challenge_method=S256`).
    ///
    /// ```
    /// use plane_core::oauth::{OAuthApp, Pkce};
    /// let app = OAuthApp::new("https://api.plane.so", "client-1", "not-a-real-secret").unwrap();
    /// let pkce = Pkce::new();
    /// let url = app.authorize_url("https://example.com/cb", &["projects:read"], "s1", Some(&pkce));
    /// assert!(url.starts_with("https://api.plane.so/auth/o/authorize-app/?client_id=client-1&"));
    /// assert!(url.contains("&code_challenge_method=S256"));
    /// ```
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        scopes: &[&str],
        state: &str,
        pkce: Option<&Pkce>,
    ) -> String {
        let scope = scopes.join(" ");
        let mut pairs = vec![
            ("client_id", self.client_id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("scope", scope.as_str()),
        ];
        if let Some(pkce) = pkce {
            pairs.push(("code_challenge", pkce.challenge()));
            pairs.push(("code_challenge_method", "S256"));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{}/auth/o/authorize-app/?{query}", self.origin)
    }

    /// The `authorization_code` grant: trades the `code` from the callback for a
    /// user token pair. `redirect_uri` must be the one in the authorize URL.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce: Option<&Pkce>,
    ) -> Result<TokenSet, Error> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        if let Some(pkce) = pkce {
            form.push(("code_verifier", pkce.verifier().expose_secret()));
        }
        Ok(self
            .grant("authorization_code", &form, false)
            .await
            .map_err(|e| e.error)?
            .0)
    }

    /// The `client_credentials` grant for one installation: a bot token.
    pub async fn client_credentials(&self, installation: &str) -> Result<TokenSet, Error> {
        Ok(self.bot_grant(installation).await.map_err(|e| e.error)?.0)
    }

    /// The `refresh_token` grant. Plane may rotate the refresh token: the
    /// returned set then carries the new one, and the old one is spent.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenSet, Error> {
        Ok(self
            .refresh_grant(refresh_token)
            .await
            .map_err(|e| e.error)?
            .0)
    }

    async fn bot_grant(
        &self,
        installation: &str,
    ) -> Result<(TokenSet, Option<Duration>), GrantError> {
        self.grant(
            "client_credentials",
            &[
                ("grant_type", "client_credentials"),
                ("app_installation_id", installation),
            ],
            true,
        )
        .await
    }

    async fn refresh_grant(
        &self,
        refresh_token: &SecretString,
    ) -> Result<(TokenSet, Option<Duration>), GrantError> {
        self.grant(
            "refresh_token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose_secret()),
            ],
            false,
        )
        .await
    }

    /// Looks an installation up with its bot token:
    /// `GET {base}/auth/o/app-installation/?id=ID`.
    pub async fn installation(
        &self,
        bot_token: &SecretString,
        id: &str,
    ) -> Result<Installation, Error> {
        let url = format!("{}/auth/o/app-installation/", self.origin);
        let path = "/auth/o/app-installation/".to_owned();
        let response = self
            .http
            .get(&url)
            .query(&[("id", id)])
            .bearer_auth(bot_token.expose_secret())
            .send()
            .await
            // Unreachable is unreachable, as for any API request (not a token problem).
            .map_err(|e| transport_error(http::Method::GET, path.clone(), e, self.timeout))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(Error::from_response(
                http::Method::GET,
                path,
                status,
                None,
                &body,
            ));
        }
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| Error::Decode {
                method: http::Method::GET,
                path: path.clone(),
                message: e.to_string(),
                excerpt: crate::error::excerpt(&body),
            })?;
        let text = |v: &serde_json::Value, key: &str| v.get(key)?.as_str().map(str::to_owned);
        let row = rows
            .iter()
            .find(|r| text(r, "id").as_deref() == Some(id))
            .ok_or_else(|| Error::NotFound {
                method: http::Method::GET,
                path: path.clone(),
                detail: format!("no installation {id} in the answer"),
            })?;
        let detail = row.get("workspace_detail").cloned().unwrap_or_default();
        Ok(Installation {
            id: id.to_owned(),
            workspace_slug: text(&detail, "slug").ok_or_else(|| Error::Decode {
                method: http::Method::GET,
                path,
                message: "the installation has no workspace_detail.slug".into(),
                excerpt: crate::error::excerpt(&body),
            })?,
            workspace_name: text(&detail, "name"),
            status: text(row, "status"),
            app_bot: text(row, "app_bot"),
        })
    }

    /// POSTs a grant to the token endpoint (form data). Errors carry Plane's
    /// answer but never the client secret or a token.
    async fn grant(
        &self,
        grant: &'static str,
        form: &[(&str, &str)],
        basic: bool,
    ) -> Result<(TokenSet, Option<Duration>), GrantError> {
        let url = &self.token_url;
        let mut request = self.http.post(url).form(form);
        if basic {
            request = request.basic_auth(&self.client_id, Some(self.client_secret.expose_secret()));
        }
        tracing::debug!(grant, %url, "OAuth token request");
        let response = request.send().await.map_err(|e| {
            transport_error(http::Method::POST, "/auth/o/token/".into(), e, self.timeout)
        })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let Ok(refusal) = serde_json::from_slice::<ErrorResponse>(&body) else {
                return Err(Error::Token {
                    message: format!(
                        "POST {url} ({grant}) answered {status}: {}",
                        crate::error::excerpt(&body)
                    ),
                }
                .into());
            };
            let detail = refusal.error_description.unwrap_or_default();
            let url = url.clone();
            return Err(match (refusal.error.as_str(), grant) {
                ("invalid_client", _) => Error::InvalidClient { url, detail },
                ("invalid_grant", "refresh_token") => Error::AuthorizationExpired { url, detail },
                _ => Error::GrantRefused {
                    url,
                    grant,
                    error: refusal.error,
                    detail,
                },
            }
            .into());
        }
        let response: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Token {
            // Not the body: a 200 from a token endpoint may hold a token.
            message: format!("POST {url} ({grant}): not a token response ({e})"),
        })?;
        response.into_set().map_err(|mut e| {
            if let Error::Token { message } = &mut e.error {
                *message = format!("POST {url} ({grant}): {message}");
            }
            e
        })
    }

    /// The bot token source of one app installation.
    pub fn bot_token(&self, app_installation_id: impl Into<String>) -> BotToken {
        BotToken {
            app: self.clone(),
            installation: app_installation_id.into(),
            cache: Mutex::new(None),
            sink: None,
            refused: Mutex::new(None),
        }
    }

    /// A user token source from a token pair obtained by the authorization-code
    /// flow (or loaded from a store). A set without a refresh token cannot be
    /// renewed: once it expires, the error says to authorize again.
    pub fn refreshing_token(&self, tokens: TokenSet) -> RefreshingToken {
        RefreshingToken {
            renewer: Renewer {
                app: self.clone(),
                sink: None,
            },
            state: Arc::new(Mutex::new(UserState {
                cached: Some(Cached::loaded(&tokens)),
                last: Some(tokens.access_token.clone()),
                refresh: tokens.refresh_token,
                scope: tokens.scope,
                unsaved: None,
                storing: false,
            })),
        }
    }
}

/// An access token in memory and when to renew it. `renew_at` is on tokio's
/// clock, so tests with paused time decide when tokens run out.
struct Cached {
    token: SecretString,
    renew_at: Option<Instant>,
}

impl Cached {
    /// Renewed [`EARLY`] before the end, or half-way for a lifetime shorter than twice
    /// that (else every call would renew).
    fn granted(token: &SecretString, lifetime: Option<Duration>) -> Self {
        Self {
            token: token.clone(),
            renew_at: lifetime.map(|d| Instant::now() + d.saturating_sub(EARLY.min(d / 2))),
        }
    }

    /// A stored token: its wall-clock expiry becomes a point on tokio's clock.
    fn loaded(tokens: &TokenSet) -> Self {
        let left = tokens
            .expires_at
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        Self::granted(&tokens.access_token, left)
    }

    fn fresh(this: &Option<Cached>) -> Option<SecretString> {
        let cached = this.as_ref()?;
        match cached.renew_at {
            Some(at) if Instant::now() >= at => None,
            _ => Some(cached.token.clone()),
        }
    }

    /// Forgets the token if it is the one Plane refused.
    fn forget_if(this: &mut Option<Cached>, refused: &SecretString) {
        if this
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == refused.expose_secret())
        {
            *this = None;
        }
    }
}

/// A Plane app's bot token for one installation (`client_credentials`).
pub struct BotToken {
    app: OAuthApp,
    installation: String,
    cache: Mutex<Option<Cached>>,
    sink: Option<Arc<dyn TokenSink>>,
    /// The token Plane last refused: never taken back from the store.
    refused: Mutex<Option<SecretString>>,
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotToken")
            .field("app", &self.app)
            .field("installation", &self.installation)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl BotToken {
    /// Every new token is saved to `sink` before it is used.
    pub fn persist_to(mut self, sink: Arc<dyn TokenSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Starts from a stored token (used until it is due for renewal).
    pub fn starting_with(self, tokens: &TokenSet) -> Self {
        Self {
            cache: Mutex::new(Some(Cached::loaded(tokens))),
            ..self
        }
    }
}

impl TokenSource for BotToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>> {
        Box::pin(async move {
            // Held across the grant: callers that arrive meanwhile wait for this
            // renewal instead of starting their own.
            let mut cache = self.cache.lock().await;
            if let Some(token) = Cached::fresh(&cache) {
                return Ok(token);
            }
            let Some(sink) = &self.sink else {
                let (tokens, lifetime) = self.grant().await?;
                *cache = Some(Cached::granted(&tokens.access_token, lifetime));
                return Ok(tokens.access_token);
            };
            // Other processes share the token: one grant among them. Under the sink's
            // lease, a usable token another process stored meanwhile is taken instead
            // (unless it is the one Plane just refused).
            let stored = sink.begin_renewal().await?;
            let refused = self.refused.lock().await.clone();
            if let Some(stored) =
                stored.filter(|t| usable(t) && !same(Some(&t.access_token), refused.as_ref()))
            {
                sink.end_renewal(&SecretString::from(String::new()), None)
                    .await?;
                *cache = Some(Cached::loaded(&stored));
                tracing::debug!(installation = %self.installation, "took the bot token another process stored");
                return Ok(stored.access_token);
            }
            let granted = self.grant().await;
            let saved = match &granted {
                Ok((tokens, _)) => sink.save(tokens).await,
                Err(_) => Ok(()),
            };
            // The lease ends whatever happened (a bot grant spends nothing).
            let ended = sink
                .end_renewal(&SecretString::from(String::new()), None)
                .await;
            let (tokens, lifetime) = granted?;
            saved?;
            ended?;
            *cache = Some(Cached::granted(&tokens.access_token, lifetime));
            Ok(tokens.access_token)
        })
    }

    fn invalidate<'a>(&'a self, refused: &'a SecretString) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            Cached::forget_if(&mut *self.cache.lock().await, refused);
            *self.refused.lock().await = Some(refused.clone());
        })
    }
}

impl BotToken {
    /// A `client_credentials` grant for the installation.
    async fn grant(&self) -> Result<(TokenSet, Option<Duration>), Error> {
        let granted = self
            .app
            .bot_grant(&self.installation)
            .await
            .map_err(|e| e.error)?;
        tracing::info!(installation = %self.installation, "renewed the bot token");
        Ok(granted)
    }
}

struct UserState {
    cached: Option<Cached>,
    /// The access token last handed out (kept after a 401 forgot it): a stored token equal
    /// to it is not news.
    last: Option<SecretString>,
    refresh: Option<SecretString>,
    scope: Option<String>,
    /// A pair Plane issued that could not be stored yet: Plane has spent the refresh token
    /// it replaced, so it is stored before anything else is done.
    unsaved: Option<Unsaved>,
    /// Whether a task is storing `unsaved` again (see [`Renewer::keep_storing`]).
    storing: bool,
}

/// How soon a pair whose save failed is stored again, at first; the wait doubles up to
/// [`KEPT_PAIR_RETRY_MAX`].
const KEPT_PAIR_RETRY_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between two tries to store a pair whose save failed: once the
/// database is back, the pair is stored within this (plus the store's own retries). A
/// process that finds the renewal in doubt waits longer than this before it gives up.
pub const KEPT_PAIR_RETRY_MAX: Duration = Duration::from_secs(5);

/// A renewed pair not stored yet, and the refresh token it replaced (what the store
/// still holds).
struct Unsaved {
    replaces: SecretString,
    pair: TokenSet,
}

fn same(a: Option<&SecretString>, b: Option<&SecretString>) -> bool {
    a.map(ExposeSecret::expose_secret) == b.map(ExposeSecret::expose_secret)
}

/// Whether `tokens` holds an access token with time left.
fn usable(tokens: &TokenSet) -> bool {
    !tokens.access_token.expose_secret().is_empty()
        && tokens
            .expires_at
            .is_none_or(|at| at > Utc::now() + chrono::Duration::seconds(EARLY.as_secs() as i64))
}

impl UserState {
    /// Takes a pair another process (or `oauth exchange`) stored.
    fn adopt(&mut self, stored: &TokenSet) -> SecretString {
        self.cached = Some(Cached::loaded(stored));
        self.last = Some(stored.access_token.clone());
        if stored.refresh_token.is_some() {
            self.refresh = stored.refresh_token.clone();
        }
        if stored.scope.is_some() {
            self.scope = stored.scope.clone();
        }
        stored.access_token.clone()
    }

    /// Whether `stored` holds an access token this process has not had, with time left.
    fn is_news(&self, stored: &TokenSet) -> bool {
        usable(stored) && !same(self.last.as_ref(), Some(&stored.access_token))
    }
}

/// A user's access token, renewed with the refresh token, one process at a time (see
/// [`TokenSink`]).
///
/// A renewal runs in a task of its own: a caller that gives up (a request's timeout)
/// cannot cut it between Plane's answer and the save, where the new refresh token would
/// be lost and the spent one presented again. When the save fails (the database is
/// down), the caller gets the error, and another task stores the kept pair as soon as the
/// database takes it, trying again with backoff (at most [`KEPT_PAIR_RETRY_MAX`] apart).
pub struct RefreshingToken {
    renewer: Renewer,
    state: Arc<Mutex<UserState>>,
}

/// What a renewal needs besides the state: cheap to clone into its task.
#[derive(Clone)]
struct Renewer {
    app: OAuthApp,
    sink: Option<Arc<dyn TokenSink>>,
}

impl fmt::Debug for RefreshingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingToken")
            .field("app", &self.renewer.app)
            .field("sink", &self.renewer.sink)
            .finish_non_exhaustive()
    }
}

impl RefreshingToken {
    /// Every new token pair is saved to `sink` before it is used, and renewals go through
    /// its lease.
    pub fn persist_to(mut self, sink: Arc<dyn TokenSink>) -> Self {
        self.renewer.sink = Some(sink);
        self
    }
}

impl Renewer {
    async fn begin(&self) -> Result<Option<TokenSet>, Error> {
        match &self.sink {
            Some(sink) => sink.begin_renewal().await,
            None => Ok(None),
        }
    }

    async fn end(
        &self,
        expected: &SecretString,
        renewed: Option<&TokenSet>,
    ) -> Result<Option<TokenSet>, Error> {
        match &self.sink {
            Some(sink) => sink.end_renewal(expected, renewed).await,
            None => Ok(None),
        }
    }

    /// One renewal, and after a refused refresh token one more from the store's pair if
    /// another process stored a newer one meanwhile.
    async fn renew(&self, state: &mut UserState) -> Result<SecretString, Error> {
        let stored = self.begin().await?;
        match self.renew_leased(state, stored).await {
            Err(refused @ Error::AuthorizationExpired { .. }) => {
                // Refused as spent or expired: another process may have stored a newer
                // pair without this one seeing it. Read the store once more.
                let stored = match &self.sink {
                    Some(sink) => sink.load().await?,
                    None => None,
                };
                let newer = stored.as_ref().is_some_and(|s| {
                    !same(s.refresh_token.as_ref(), state.refresh.as_ref()) || state.is_news(s)
                });
                if !newer {
                    return Err(refused);
                }
                let stored = self.begin().await?;
                self.renew_leased(state, stored).await
            }
            other => other,
        }
    }

    /// Stores the pair a failed save kept, once: `Ok` when it is stored, or another
    /// writer's pair won (taken instead), or there is none.
    async fn store_kept(&self, state: &mut UserState) -> Result<(), Error> {
        let Some(unsaved) = state.unsaved.take() else {
            return Ok(());
        };
        // No lease needed: the save is a compare and swap on the refresh token it replaces.
        match self.end(&unsaved.replaces, Some(&unsaved.pair)).await {
            Ok(None) => {
                if usable(&unsaved.pair) {
                    state.adopt(&unsaved.pair);
                }
                tracing::info!("stored the user token a failed save had kept");
                Ok(())
            }
            Ok(Some(won)) => {
                // Another writer's pair (a new grant) is stored: this one is not needed.
                let _ = self.take_won(state, &won);
                Ok(())
            }
            Err(e) => {
                state.unsaved = Some(unsaved);
                Err(e)
            }
        }
    }

    /// Stores the pair a failed save kept, trying again with backoff until it is stored:
    /// until then the store holds the refresh token Plane spent, and the other processes
    /// wait for this one (see [`TokenSink::spending`]). Takes the state only for each try,
    /// so callers are not held up meanwhile; a renewal that stores the pair first ends it.
    async fn keep_storing(self, state: Arc<Mutex<UserState>>) {
        let mut wait = KEPT_PAIR_RETRY_FIRST;
        let mut attempt: u32 = 0;
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(KEPT_PAIR_RETRY_MAX);
            attempt += 1;
            let mut state = state.lock().await;
            match self.store_kept(&mut state).await {
                Ok(()) => {
                    state.storing = false;
                    return;
                }
                // A warning at the 1st, 2nd, 4th, 8th... try: the database may be down a while.
                Err(e) if attempt.is_power_of_two() => tracing::warn!(
                    attempt,
                    error = %e,
                    "the renewed user token is still not stored: trying again"
                ),
                Err(_) => {}
            }
        }
    }

    /// When the compare and swap kept another writer's pair: use it if it can be used,
    /// else take its refresh token for the next renewal.
    fn take_won(&self, state: &mut UserState, won: &TokenSet) -> Result<SecretString, Error> {
        if state.is_news(won) {
            tracing::info!("kept the user token another writer stored meanwhile");
            return Ok(state.adopt(won));
        }
        state.cached = None;
        if won.refresh_token.is_some() {
            state.refresh = won.refresh_token.clone();
        }
        Err(Error::Token {
            message: "another process stored a token set meanwhile that has no usable access \
                      token yet; the next request renews from it"
                .into(),
        })
    }

    /// Step 1 to 3 of [`TokenSink`]'s renewal, under the lease `stored` came with.
    async fn renew_leased(
        &self,
        state: &mut UserState,
        stored: Option<TokenSet>,
    ) -> Result<SecretString, Error> {
        let nothing = SecretString::from(String::new());
        // What the store must still hold for this renewal's pair to be stored over it.
        let mut expected: Option<SecretString> = None;
        // A kept pair with no usable access token, whose refresh token is spent below: it
        // is kept again if the spend does not happen or fails short of a refusal.
        let mut carried: Option<Unsaved> = None;
        if let Some(unsaved) = state.unsaved.take() {
            let holds_replaced = stored
                .as_ref()
                .is_none_or(|s| same(s.refresh_token.as_ref(), Some(&unsaved.replaces)));
            if holds_replaced {
                // The store still holds the refresh token Plane spent for this pair: store
                // the pair now, and use it if its access token has time left.
                if usable(&unsaved.pair) {
                    return match self.end(&unsaved.replaces, Some(&unsaved.pair)).await {
                        Ok(None) => {
                            tracing::info!("stored the user token a failed save had kept");
                            Ok(state.adopt(&unsaved.pair))
                        }
                        Ok(Some(won)) => self.take_won(state, &won),
                        Err(e) => {
                            state.unsaved = Some(unsaved);
                            Err(e)
                        }
                    };
                }
                expected = Some(unsaved.replaces.clone());
                state.refresh = unsaved.pair.refresh_token.clone();
                carried = Some(unsaved);
            }
            // Otherwise the store moved on (a new grant was stored): that one wins.
        }
        if expected.is_none()
            && let Some(stored) = &stored
        {
            if state.is_news(stored) {
                // Renewed by another process, or a new grant: no refresh token spent.
                self.end(&nothing, None).await?;
                tracing::info!("took the user token another process stored");
                return Ok(state.adopt(stored));
            }
            if stored.refresh_token.is_some() {
                // The newest refresh token is the stored one, whatever this process holds.
                state.refresh = stored.refresh_token.clone();
            }
        }
        let Some(spend) = state.refresh.clone() else {
            self.end(&nothing, None).await?;
            return Err(Error::AuthorizationExpired {
                url: self.app.token_url.clone(),
                detail: "the access token expired and there is no refresh token".into(),
            });
        };
        let expected = expected.unwrap_or_else(|| spend.clone());
        // Recorded before anything is presented: a process that takes the lease after this
        // one's ran out, and still finds `expected` stored, then knows not to present it.
        if let Some(sink) = &self.sink
            && let Err(e) = sink.spending(&expected).await
        {
            state.unsaved = carried;
            let _ = self.end(&nothing, None).await;
            return Err(e);
        }
        let (mut tokens, lifetime) = match self.app.refresh_grant(&spend).await {
            Ok(granted) => granted,
            Err(GrantError {
                error,
                rotated: Some(rotated),
            }) => {
                // Plane spent `spend` and answered with something unusable but a new
                // refresh token: keep that one, with no usable access token.
                let salvaged = TokenSet {
                    access_token: nothing.clone(),
                    refresh_token: Some(rotated.clone()),
                    expires_at: Some(Utc::now()),
                    scope: state.scope.clone(),
                };
                state.refresh = Some(rotated);
                state.cached = None;
                if let Err(e) = self.end(&expected, Some(&salvaged)).await {
                    state.unsaved = Some(Unsaved {
                        replaces: expected,
                        pair: salvaged,
                    });
                    return Err(e);
                }
                return Err(error);
            }
            Err(GrantError { error, .. }) => {
                if !matches!(error, Error::AuthorizationExpired { .. }) {
                    // Not refused as spent: the kept pair's refresh token may still be good.
                    state.unsaved = carried;
                }
                self.end(&nothing, None).await?;
                return Err(error);
            }
        };
        if tokens.refresh_token.is_none() {
            // Not rotated: the old refresh token stays valid.
            tokens.refresh_token = Some(spend.clone());
        }
        if tokens.scope.is_none() {
            tokens.scope = state.scope.clone();
        }
        // The old refresh token may be spent now: keep the new one in memory even if
        // storing fails, so this process can still renew, and store it first next time.
        state.refresh = tokens.refresh_token.clone();
        state.cached = None;
        match self.end(&expected, Some(&tokens)).await {
            Ok(None) => {}
            Ok(Some(won)) => return self.take_won(state, &won),
            Err(e) => {
                state.unsaved = Some(Unsaved {
                    replaces: expected,
                    pair: tokens,
                });
                return Err(e);
            }
        }
        state.cached = Some(Cached::granted(&tokens.access_token, lifetime));
        state.last = Some(tokens.access_token.clone());
        tracing::info!("renewed the user token with its refresh token");
        Ok(tokens.access_token)
    }
}

impl TokenSource for RefreshingToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>> {
        Box::pin(async move {
            let mut state = self.state.clone().lock_owned().await;
            if let Some(token) = Cached::fresh(&state.cached) {
                return Ok(token);
            }
            // In a task of its own, holding the state: if this caller is dropped, the
            // renewal still ends with the new pair stored (or kept to be stored).
            let renewer = self.renewer.clone();
            tokio::spawn(async move {
                let renewed = renewer.renew(&mut state).await;
                if state.unsaved.is_some() && !state.storing {
                    // The save failed: a task of its own stores the pair as soon as it can,
                    // not at this process's next renewal (which may be long after).
                    state.storing = true;
                    let shared = tokio::sync::OwnedMutexGuard::mutex(&state).clone();
                    tokio::spawn(renewer.keep_storing(shared));
                }
                renewed
            })
            .await
            .map_err(|e| Error::Token {
                message: format!("the token renewal stopped: {e}"),
            })?
        })
    }

    fn invalidate<'a>(&'a self, refused: &'a SecretString) -> BoxFuture<'a, ()> {
        Box::pin(async move { Cached::forget_if(&mut self.state.lock().await.cached, refused) })
    }

    fn settle(&self, within: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let until = Instant::now() + within;
            loop {
                if self.state.lock().await.unsaved.is_none() {
                    return true;
                }
                if Instant::now() >= until {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(body: serde_json::Value) -> Result<(TokenSet, Option<Duration>), GrantError> {
        serde_json::from_value::<TokenResponse>(body)
            .unwrap()
            .into_set()
    }

    #[test]
    fn expires_in_is_read_leniently_and_clamped() {
        let at = |v: serde_json::Value| {
            set(serde_json::json!({"access_token": "fake-a", "token_type": "Bearer", "expires_in": v}))
                .map(|(_, d)| d)
                .map_err(|e| e.error.to_string())
        };
        let secs = |s: u64| Ok(Some(Duration::from_secs(s)));
        assert_eq!(at(3600.into()), secs(3600));
        assert_eq!(at("3600".into()), secs(3600));
        assert_eq!(at(" 90.5 ".into()), Ok(Some(Duration::from_secs_f64(90.5))));
        assert_eq!(at(0.into()), secs(10));
        assert_eq!(at(u64::MAX.into()), secs(366 * 24 * 3600));
        assert_eq!(at(serde_json::Value::Null), Ok(None));
        for bad in [serde_json::json!(-5), "soon".into(), serde_json::json!([1])] {
            let err = at(bad.clone()).unwrap_err();
            assert!(err.contains("is not a number of seconds"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_a_bearer_token_with_an_access_token_is_used_and_a_refusal_keeps_the_refresh_token() {
        assert!(set(serde_json::json!({"access_token": "fake-a", "token_type": "bearer"})).is_ok());
        assert!(set(serde_json::json!({"access_token": "fake-a"})).is_ok());
        let refused = set(serde_json::json!({
            "access_token": "fake-a", "token_type": "mac", "refresh_token": "fake-r2"
        }))
        .err()
        .unwrap();
        assert!(
            refused
                .error
                .to_string()
                .contains("token_type \"mac\" is not Bearer")
        );
        assert_eq!(refused.rotated.unwrap().expose_secret(), "fake-r2");
        let empty = set(serde_json::json!({"refresh_token": "fake-r3"}))
            .err()
            .unwrap();
        assert!(empty.error.to_string().contains("it has no access_token"));
        assert_eq!(empty.rotated.unwrap().expose_secret(), "fake-r3");
        // Neither the access nor the refresh token is in the message.
        assert!(!refused.error.to_string().contains("fake-"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lifetime_renews_half_way_not_on_every_call() {
        let token = SecretString::from("fake-a".to_owned());
        let cached = Some(Cached::granted(&token, Some(Duration::from_secs(30))));
        assert!(Cached::fresh(&cached).is_some());
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(Cached::fresh(&cached).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(Cached::fresh(&cached).is_none());
        // A long one: EARLY before the end.
        let cached = Some(Cached::granted(&token, Some(Duration::from_secs(3600))));
        tokio::time::advance(Duration::from_secs(3600) - EARLY - Duration::from_secs(1)).await;
        assert!(Cached::fresh(&cached).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(Cached::fresh(&cached).is_none());
    }
}
