//! OAuth "Plane apps" (Plane Cloud only; CE has no `/auth/o/` routes), switched on
//! with [`crate::FakePlaneBuilder::oauth_app`].
//!
//! What follows the reference (`plane-api.md` §9, from Plane's docs and SDKs):
//! the paths `GET /auth/o/authorize-app/`, `POST /auth/o/token/` and
//! `GET /auth/o/app-installation/?id=`; the three grants and their fields
//! (`client_credentials` with `app_installation_id`; `refresh_token`; and
//! `authorization_code` with `code` and `redirect_uri`); the callback's `code`,
//! `state` and `app_installation_id`; the token response
//! `{access_token, token_type: "Bearer", expires_in, refresh_token?, scope}` with
//! `pln_`, `pln_refresh_` and `pln_bot_` prefixes; bot tokens without a refresh
//! token; Bearer tokens accepted on `/api/v1/`.
//!
//! Where the reference is silent, the fake follows the RFCs:
//!
//! - **Client authentication** (RFC 6749 §2.3.1): HTTP Basic or `client_id` +
//!   `client_secret` in the form, on every grant. A wrong one is
//!   `401 {"error": "invalid_client"}` with `WWW-Authenticate: Basic` (§5.2).
//! - **Errors** (§5.2): `400 {"error", "error_description"}` with `invalid_grant`
//!   (unknown, expired, used or mismatched code or refresh token, wrong PKCE
//!   verifier, unknown installation), `invalid_request`, `unsupported_grant_type`.
//!   Success and failure both carry `Cache-Control: no-store` (§5.1).
//! - **Authorize** (§4.1.1, §4.1.2.1): a wrong `client_id` or `redirect_uri` is a
//!   400 page, never a redirect; other problems redirect with `error` and
//!   `state`. Consent is given at once, as the fake's default user. Codes are
//!   single use and live 10 minutes (§4.1.2).
//! - **PKCE** (RFC 7636): `code_challenge` with `code_challenge_method=S256`
//!   (`plain` is refused, §4.4.1 lets a server do so); when a code was issued
//!   with a challenge, the token request must bring the matching
//!   `code_verifier`, else `invalid_grant` (§4.6). Without a challenge no
//!   verifier is needed (§4.5, for older clients).
//! - **Refresh rotation** (RFC 6749 §6, §10.4; OAuth 2.0 Security BCP §4.14):
//!   every refresh returns a new refresh token and spends the old one; a spent
//!   one is `invalid_grant`.
//! - **Bearer on the API** (RFC 6750 §3.1): an unknown, revoked or expired token
//!   is `401` with `WWW-Authenticate: Bearer error="invalid_token"`.
//!
//! Token lifetimes are under test control ([`crate::RunningFake::set_access_token_lifetime`],
//! [`crate::RunningFake::set_refresh_token_lifetime`]) and measured on tokio's
//! clock, so a test with paused time moves tokens to their expiry.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use uuid::Uuid;

use crate::resp::Resp;

/// How long an authorization code may be exchanged (RFC 6749 §4.1.2: at most 10 minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// The OAuth app a fake accepts (see [`crate::FakePlaneBuilder::oauth_app`]).
#[derive(Clone)]
pub(crate) struct OAuthAppConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for OAuthAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthAppConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// One token request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `grant_type` as sent (empty when missing).
    pub grant_type: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    User,
    Bot,
}

#[derive(Debug)]
struct Code {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    expires: Instant,
}

#[derive(Debug)]
struct Refresh {
    scope: String,
    expires: Instant,
    spent: bool,
}

#[derive(Debug)]
struct Access {
    owner: Owner,
    expires: Instant,
}

/// The app and everything it issued.
pub(crate) struct OAuthState {
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    workspace_slug: String,
    workspace_id: Uuid,
    pub installation_id: Uuid,
    pub access_lifetime: Duration,
    /// Fields that replace those of every token response from now on (a test's odd
    /// server: `expires_in` as a string, `token_type = "mac"`, ...).
    pub response_overrides: serde_json::Map<String, serde_json::Value>,
    pub refresh_lifetime: Duration,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    pub token_requests: Vec<TokenRequest>,
    /// Every access and refresh token ever issued, for tests that scan output for them.
    pub issued: Vec<String>,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("installation_id", &self.installation_id)
            .field("tokens_issued", &self.access.len())
            .finish_non_exhaustive()
    }
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

fn pairs(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: u16, error: &str, description: &str) -> Resp {
    let mut r = Resp::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
    .header("Cache-Control", "no-store");
    if status == 401 {
        r = r.header("WWW-Authenticate", "Basic realm=\"plane\"");
    }
    r
}

impl OAuthState {
    pub(crate) fn new(app: OAuthAppConfig, workspace_slug: String, workspace_id: Uuid) -> Self {
        Self {
            client_id: app.client_id,
            client_secret: app.client_secret,
            redirect_uri: app.redirect_uri,
            workspace_slug,
            workspace_id,
            installation_id: Uuid::new_v4(),
            // Plane's documented example lifetime (24 h); refresh tokens a month.
            access_lifetime: Duration::from_secs(86_400),
            response_overrides: serde_json::Map::new(),
            refresh_lifetime: Duration::from_secs(30 * 86_400),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            token_requests: Vec::new(),
            issued: Vec::new(),
        }
    }

    /// Whether `token` is a live access token (for `/api/v1/`).
    pub(crate) fn bearer_is_valid(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|a| Instant::now() < a.expires)
    }

    /// Every access token issued so far stops working (refresh tokens do not).
    pub(crate) fn revoke_access_tokens(&mut self) {
        self.access.clear();
    }

    /// Every refresh token stops working, as if they had all expired.
    pub(crate) fn expire_refresh_tokens(&mut self) {
        let now = Instant::now();
        for r in self.refresh.values_mut() {
            r.expires = now;
        }
    }

    /// Answers a request under `/auth/o/`.
    pub(crate) fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Resp {
        match (method, path) {
            ("GET", "/auth/o/authorize-app/") => self.authorize(&pairs(query.unwrap_or(""))),
            ("POST", "/auth/o/token/") => {
                let form = pairs(&String::from_utf8_lossy(body));
                let resp = self.token(headers, &form);
                self.token_requests.push(TokenRequest {
                    grant_type: form.get("grant_type").cloned().unwrap_or_default(),
                    status: resp.status,
                });
                resp
            }
            ("GET", "/auth/o/app-installation/") => {
                self.installation(headers, &pairs(query.unwrap_or("")))
            }
            (_, "/auth/o/authorize-app/" | "/auth/o/token/" | "/auth/o/app-installation/") => {
                Resp::detail(405, &format!("Method \"{method}\" not allowed."))
            }
            _ => Resp::page_not_found(),
        }
    }

    fn authorize(&mut self, q: &HashMap<String, String>) -> Resp {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        // RFC 6749 §4.1.2.1: never redirect to an unverified URI.
        if get("client_id") != self.client_id {
            return oauth_error(400, "invalid_client", "unknown client_id");
        }
        if get("redirect_uri") != self.redirect_uri {
            return oauth_error(
                400,
                "invalid_request",
                "redirect_uri does not match the app's registered Redirect URI",
            );
        }
        let mut callback = url::Url::parse(&self.redirect_uri)
            .unwrap_or_else(|_| url::Url::parse("http://invalid.invalid/").expect("static url"));
        let error = if get("response_type") != "code" {
            Some("unsupported_response_type")
        } else if q.contains_key("code_challenge") && get("code_challenge_method") != "S256" {
            Some("invalid_request")
        } else {
            None
        };
        {
            let mut query = callback.query_pairs_mut();
            match error {
                Some(error) => {
                    query.append_pair("error", error);
                }
                None => {
                    let code = random_token("");
                    self.codes.insert(
                        code.clone(),
                        Code {
                            redirect_uri: self.redirect_uri.clone(),
                            challenge: q.get("code_challenge").cloned(),
                            scope: get("scope").to_owned(),
                            expires: Instant::now() + CODE_LIFETIME,
                        },
                    );
                    query.append_pair("code", &code);
                    query.append_pair("app_installation_id", &self.installation_id.to_string());
                }
            }
            if let Some(state) = q.get("state") {
                query.append_pair("state", state);
            }
        }
        Resp::empty(302).header("Location", callback.to_string())
    }

    /// RFC 6749 §2.3.1: HTTP Basic, or the two fields in the body.
    fn client_authenticated(
        &self,
        headers: &http::HeaderMap,
        form: &HashMap<String, String>,
    ) -> bool {
        let basic = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        let (id, secret) = match &basic {
            Some(pair) => match pair.split_once(':') {
                Some((id, secret)) => (id.to_owned(), secret.to_owned()),
                None => return false,
            },
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        id == self.client_id && secret == self.client_secret
    }

    fn token(&mut self, headers: &http::HeaderMap, form: &HashMap<String, String>) -> Resp {
        if !self.client_authenticated(headers, form) {
            return oauth_error(401, "invalid_client", "client authentication failed");
        }
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let now = Instant::now();
        match get("grant_type") {
            "authorization_code" => {
                // Single use: taken out whatever happens next (RFC 6749 §4.1.2).
                let Some(code) = self.codes.remove(get("code")) else {
                    return oauth_error(400, "invalid_grant", "unknown or already used code");
                };
                if now >= code.expires {
                    return oauth_error(400, "invalid_grant", "the code expired");
                }
                if get("redirect_uri") != code.redirect_uri {
                    return oauth_error(400, "invalid_grant", "redirect_uri does not match");
                }
                if let Some(challenge) = &code.challenge {
                    let verifier = get("code_verifier");
                    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                    if verifier.is_empty() || &computed != challenge {
                        return oauth_error(
                            400,
                            "invalid_grant",
                            "code_verifier does not match the code_challenge",
                        );
                    }
                }
                self.issue(Owner::User, &code.scope)
            }
            "refresh_token" => {
                let Some(refresh) = self.refresh.get_mut(get("refresh_token")) else {
                    return oauth_error(400, "invalid_grant", "unknown refresh token");
                };
                if refresh.spent {
                    return oauth_error(400, "invalid_grant", "the refresh token was already used");
                }
                if now >= refresh.expires {
                    return oauth_error(400, "invalid_grant", "the refresh token expired");
                }
                refresh.spent = true;
                let scope = refresh.scope.clone();
                self.issue(Owner::User, &scope)
            }
            "client_credentials" => {
                if get("app_installation_id") != self.installation_id.to_string() {
                    return oauth_error(400, "invalid_grant", "unknown app_installation_id");
                }
                let scope = form
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| "read write".into());
                self.issue(Owner::Bot, &scope)
            }
            "" => oauth_error(400, "invalid_request", "grant_type is missing"),
            _ => oauth_error(400, "unsupported_grant_type", "unsupported grant_type"),
        }
    }

    fn issue(&mut self, owner: Owner, scope: &str) -> Resp {
        let now = Instant::now();
        let access = random_token(if owner == Owner::Bot {
            "pln_bot_"
        } else {
            "pln_"
        });
        self.issued.push(access.clone());
        self.access.insert(
            access.clone(),
            Access {
                owner,
                expires: now + self.access_lifetime,
            },
        );
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime.as_secs(),
            "scope": scope,
        });
        if owner == Owner::User {
            let refresh = random_token("pln_refresh_");
            self.issued.push(refresh.clone());
            self.refresh.insert(
                refresh.clone(),
                Refresh {
                    scope: scope.to_owned(),
                    expires: now + self.refresh_lifetime,
                    spent: false,
                },
            );
            body["refresh_token"] = json!(refresh);
        }
        for (key, value) in &self.response_overrides {
            body[key] = value.clone();
        }
        Resp::json(200, &body).header("Cache-Control", "no-store")
    }

    fn installation(&self, headers: &http::HeaderMap, q: &HashMap<String, String>) -> Resp {
        let bot = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| self.access.get(t).filter(|a| Instant::now() < a.expires));
        match bot {
            Some(a) if a.owner == Owner::Bot => {}
            _ => return invalid_token(),
        }
        let id = self.installation_id.to_string();
        if q.get("id") != Some(&id) {
            return Resp::json(200, &json!([]));
        }
        Resp::json(
            200,
            &json!([{
                "id": id,
                "workspace": self.workspace_id,
                "workspace_detail": {"name": self.workspace_slug, "slug": self.workspace_slug, "id": self.workspace_id, "logo_url": null},
                "app_bot": Uuid::nil(),
                "status": "installed",
                "application": Uuid::nil(),
                "installed_by": Uuid::nil(),
                "webhook": null,
            }]),
        )
    }
}

/// RFC 6750 §3.1: a refused Bearer token.
pub(crate) fn invalid_token() -> Resp {
    Resp::detail(401, "Invalid or expired token.").header(
        "WWW-Authenticate",
        "Bearer error=\"invalid_token\", error_description=\"The access token is invalid or expired\"",
    )
}
