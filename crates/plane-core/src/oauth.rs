//! OAuth token sources for Plane apps (Plane Cloud; the CE server has no
//! `/auth/o/` routes).
//!
//! * [`BotToken`]: the app's bot token for one installation, by the
//!   `client_credentials` grant with HTTP Basic client authentication, renewed by
//!   repeating the grant before `expires_in` runs out.
//! * [`RefreshingToken`]: a user's access token, renewed with its refresh token
//!   (rotated refresh tokens are kept).
//!
//! Both cache the token and are safe to share: concurrent requests wait for one
//! renewal rather than starting several.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{BaseUrl, BoxFuture, Error, ExposeSecret, SecretString, TokenSource};

/// Renew this long before the token's stated expiry.
const EARLY: Duration = Duration::from_secs(60);

/// An OAuth app registered in a Plane workspace.
#[derive(Clone)]
pub struct OAuthApp {
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    http: reqwest::Client,
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

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

struct Cached {
    token: SecretString,
    renew_at: Option<Instant>,
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InvalidConfig {
                key: "http",
                message: format!("could not build the HTTP client: {e}"),
            })?;
        Ok(Self {
            token_url: format!("{}/auth/o/token/", base.origin()),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            http,
        })
    }

    /// The bot token source of one app installation.
    pub fn bot_token(&self, app_installation_id: impl Into<String>) -> BotToken {
        BotToken {
            app: self.clone(),
            installation: app_installation_id.into(),
            cache: Mutex::new(None),
        }
    }

    /// A user token source from a token pair obtained by the authorization-code flow.
    pub fn refreshing_token(
        &self,
        access_token: impl Into<SecretString>,
        refresh_token: impl Into<SecretString>,
    ) -> RefreshingToken {
        RefreshingToken {
            app: self.clone(),
            state: Mutex::new((
                Some(Cached {
                    token: access_token.into(),
                    renew_at: None,
                }),
                refresh_token.into(),
            )),
        }
    }

    /// POSTs a grant to the token endpoint. Error messages carry Plane's answer
    /// but never the client secret or a token.
    async fn grant(&self, form: &[(&str, &str)], basic: bool) -> Result<TokenResponse, Error> {
        let mut request = self.http.post(&self.token_url).form(form);
        if basic {
            request = request.basic_auth(&self.client_id, Some(self.client_secret.expose_secret()));
        }
        let response = request.send().await.map_err(|e| Error::Token {
            message: format!("POST {} failed: {}", self.token_url, e.without_url()),
        })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::Token {
                message: format!(
                    "POST {} answered {status}: {}",
                    self.token_url,
                    crate::error::excerpt(&body)
                ),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Token {
            message: format!("POST {}: not a token response ({e})", self.token_url),
        })
    }
}

fn renew_at(expires_in: Option<u64>) -> Option<Instant> {
    expires_in.map(|secs| Instant::now() + Duration::from_secs(secs).saturating_sub(EARLY))
}

fn fresh(cached: &Option<Cached>) -> Option<SecretString> {
    let cached = cached.as_ref()?;
    match cached.renew_at {
        Some(at) if Instant::now() >= at => None,
        _ => Some(cached.token.clone()),
    }
}

/// A Plane app's bot token for one installation (`client_credentials`).
pub struct BotToken {
    app: OAuthApp,
    installation: String,
    cache: Mutex<Option<Cached>>,
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotToken")
            .field("app", &self.app)
            .field("installation", &self.installation)
            .finish_non_exhaustive()
    }
}

impl TokenSource for BotToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            if let Some(token) = fresh(&cache) {
                return Ok(token);
            }
            let response = self
                .app
                .grant(
                    &[
                        ("grant_type", "client_credentials"),
                        ("app_installation_id", &self.installation),
                    ],
                    true,
                )
                .await?;
            let token = SecretString::from(response.access_token);
            *cache = Some(Cached {
                token: token.clone(),
                renew_at: renew_at(response.expires_in),
            });
            Ok(token)
        })
    }

    fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.try_lock() {
            *cache = None;
        }
    }
}

/// A user's access token, renewed with the refresh token.
pub struct RefreshingToken {
    app: OAuthApp,
    /// The cached access token (None once it must be renewed) and the refresh token.
    state: Mutex<(Option<Cached>, SecretString)>,
}

impl fmt::Debug for RefreshingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingToken")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl TokenSource for RefreshingToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            if let Some(token) = fresh(&state.0) {
                return Ok(token);
            }
            let refresh = state.1.clone();
            let response = self
                .app
                .grant(
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh.expose_secret()),
                        ("client_id", &self.app.client_id),
                        ("client_secret", self.app.client_secret.expose_secret()),
                    ],
                    false,
                )
                .await?;
            let token = SecretString::from(response.access_token);
            state.0 = Some(Cached {
                token: token.clone(),
                renew_at: renew_at(response.expires_in),
            });
            if let Some(rotated) = response.refresh_token {
                state.1 = SecretString::from(rotated);
            }
            Ok(token)
        })
    }

    fn invalidate(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            state.0 = None;
        }
    }
}
