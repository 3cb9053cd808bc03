//! The one error type of plane-core.
//!
//! Every variant that comes from a request names the method and path (never the
//! query values' secrets: credentials travel in headers, which are never shown).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use uuid::Uuid;

/// Everything that can go wrong talking to Plane.
///
/// Match on the variant to decide what to do; `Display` says what failed, on which
/// request, and what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400: Plane rejected the input. `field_errors` holds DRF's per-field messages
    /// (`{"name": ["This field is required."]}`), `message` the first readable one.
    #[error("{method} {path}: Plane rejected the request (400): {message}")]
    BadRequest {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The first readable message of the answer.
        message: String,
        /// DRF's messages per field, such as `name` -> `This field is required.`.
        field_errors: BTreeMap<String, Vec<String>>,
        /// The whole answer, for messages this client does not pick out.
        body: Box<Value>,
    },

    /// 401, or 403 "Given API token is not valid": the credentials are missing,
    /// wrong, expired or inactive.
    #[error(
        "{method} {path}: Plane did not accept the credentials (HTTP {status}: {detail}); \
         check PLANE_API_KEY (or the OAuth token) and that the key is active"
    )]
    Unauthorized {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The HTTP status Plane answered.
        status: u16,
        /// Plane's own explanation (`detail` or `error` of the body), or a short excerpt of the body.
        detail: String,
    },

    /// 403 for a valid key that may not do this (not a project member, a guest
    /// writing, or an unknown workspace slug, which Plane answers with 403 too).
    #[error(
        "{method} {path}: forbidden (403: {detail}); check the workspace slug and that the \
         key's user is a member of the project with a role that may do this"
    )]
    Forbidden {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// Plane's own explanation (`detail` or `error` of the body), or a short excerpt of the body.
        detail: String,
    },

    /// 404: no such object (or route).
    #[error("{method} {path}: not found (404: {detail})")]
    NotFound {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// Plane's own explanation (`detail` or `error` of the body), or a short excerpt of the body.
        detail: String,
    },

    /// 409: a duplicate. For external-id and name clashes Plane returns the id of the
    /// object that already exists.
    #[error("{method} {path}: conflict (409: {detail}){}", existing_id.map(|id| format!("; existing id {id}")).unwrap_or_default())]
    Conflict {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// Plane's own explanation (`detail` or `error` of the body), or a short excerpt of the body.
        detail: String,
        /// The id of the object that already exists, when Plane names it.
        existing_id: Option<Uuid>,
    },

    /// 429 after the retries were spent.
    #[error(
        "{method} {path}: rate limited (429) after {attempts} attempts{}; lower the request rate or raise the budget",
        retry_after.map(|d| format!(", server asked to wait {}s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The last `Retry-After` Plane sent, if any.
        retry_after: Option<Duration>,
        /// How many times the request was sent, retries included.
        attempts: u32,
    },

    /// 5xx after the retries (if the request could be retried) were spent.
    #[error(
        "{method} {path}: Plane server error (HTTP {status}: {detail}) after {attempts} attempts"
    )]
    Server {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The HTTP status Plane answered.
        status: u16,
        /// Plane's own explanation (`detail` or `error` of the body), or a short excerpt of the body.
        detail: String,
        /// How many times the request was sent, retries included.
        attempts: u32,
    },

    /// Any other status Plane should not send for this request (405, 413, a redirect...).
    #[error("{method} {path}: unexpected HTTP {status}: {detail}")]
    UnexpectedStatus {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The HTTP status Plane answered.
        status: u16,
        /// Plane's own explanation (`detail` or `error` of the body), or a short excerpt of the body.
        detail: String,
    },

    /// No response within the configured request timeout.
    #[error("{method} {path}: no response within {timeout:?} (after {attempts} attempts)")]
    Timeout {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The request timeout that ran out.
        timeout: Duration,
        /// How many times the request was sent, retries included.
        attempts: u32,
    },

    /// The connection failed (DNS, refused, reset, TLS).
    #[error("{method} {path}: connection failed after {attempts} attempts: {source}")]
    Transport {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// How many times the request was sent, retries included.
        attempts: u32,
        /// The underlying transport error (it never carries the headers, so no key).
        #[source]
        source: reqwest::Error,
    },

    /// A 2xx whose body is not what this endpoint returns.
    #[error(
        "{method} {path}: could not decode the response ({message}); body starts with {excerpt:?}"
    )]
    Decode {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// What the decoder expected and found.
        message: String,
        /// The first bytes of the body, for seeing what came back instead.
        excerpt: String,
    },

    /// Pagination did not advance: Plane handed back a cursor this walk already used.
    #[error(
        "{method} {path}: pagination repeated cursor {cursor:?}; stopping instead of looping forever"
    )]
    PaginationLoop {
        /// The request's HTTP method.
        method: Method,
        /// The request's path under the base URL (no query string).
        path: String,
        /// The cursor Plane repeated.
        cursor: String,
    },

    /// The bearer token source failed to produce a token.
    #[error("could not obtain a bearer token: {message}")]
    Token {
        /// What the token source reported (never the token).
        message: String,
    },

    /// The token endpoint refused the app's client id or secret (`invalid_client`).
    #[error(
        "POST {url}: Plane refused the OAuth app's client id or secret (invalid_client{}); \
         check plane.oauth.client_id and PLANE_OAUTH_CLIENT_SECRET \
         (ssot/secrets/registry.yaml#plane_oauth_client_secret)",
        colon(detail)
    )]
    InvalidClient {
        /// The token endpoint.
        url: String,
        /// Plane's `error_description`, if any.
        detail: String,
    },

    /// The refresh token was refused (`invalid_grant`): it expired, was revoked
    /// or was already spent. Only a new authorization helps.
    #[error(
        "POST {url}: the stored refresh token was refused (invalid_grant{}): it expired, was \
         revoked or was already used. Authorize again: run `plane-server oauth authorize-url`, \
         open the URL, then run `plane-server oauth exchange --code CODE --state STATE`",
        colon(detail)
    )]
    AuthorizationExpired {
        /// The token endpoint.
        url: String,
        /// Plane's `error_description`, if any.
        detail: String,
    },

    /// The token endpoint refused a grant for another reason (RFC 6749 §5.2:
    /// `invalid_grant` for a wrong code or PKCE verifier, `invalid_request`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`).
    #[error(
        "POST {url}: Plane refused the {grant} grant ({error}{}); {}",
        colon(detail),
        grant_hint(grant)
    )]
    GrantRefused {
        /// The token endpoint.
        url: String,
        /// The grant type asked for.
        grant: &'static str,
        /// The RFC 6749 error code.
        error: String,
        /// Plane's `error_description`, if any.
        detail: String,
    },

    /// A configuration value is missing or wrong; `key` names it.
    #[error("invalid configuration `{key}`: {message}")]
    InvalidConfig {
        /// The setting at fault, such as `base_url` or `workspace_slug`.
        key: &'static str,
        /// What is wrong with it and how to fix it.
        message: String,
    },

    /// An argument to a client method is out of range or malformed.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// Which argument is wrong and why.
        message: String,
    },
}

impl Error {
    /// The HTTP status Plane answered with, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::BadRequest { .. } => Some(400),
            Error::Unauthorized { status, .. }
            | Error::Server { status, .. }
            | Error::UnexpectedStatus { status, .. } => Some(*status),
            Error::Forbidden { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            Error::Conflict { .. } => Some(409),
            Error::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// True when the request may or may not have taken effect on the server
    /// (timeout, dropped connection, 5xx): the case where a create must not be
    /// blindly repeated.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. } | Error::Transport { .. } | Error::Server { .. }
        )
    }

    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            Error::RateLimited { attempts, .. }
            | Error::Server { attempts, .. }
            | Error::Timeout { attempts, .. }
            | Error::Transport { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }

    /// Maps a non-2xx answer to its variant. `body` is the raw response body.
    pub(crate) fn from_response(
        method: Method,
        path: String,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let detail = if json.is_null() {
            excerpt(body)
        } else {
            detail_of(&json)
        };
        match status {
            400 => Error::BadRequest {
                method,
                path,
                message: detail,
                field_errors: field_errors(&json),
                body: Box::new(json),
            },
            401 => Error::Unauthorized {
                method,
                path,
                status,
                detail,
            },
            403 if detail.contains("token is not valid") => Error::Unauthorized {
                method,
                path,
                status,
                detail,
            },
            403 => Error::Forbidden {
                method,
                path,
                detail,
            },
            404 => Error::NotFound {
                method,
                path,
                detail,
            },
            409 => Error::Conflict {
                method,
                path,
                detail,
                // `issue_id` is the key Plane used before Feb 2024 (PR #3568).
                existing_id: ["id", "issue_id", "asset_id"]
                    .iter()
                    .find_map(|k| json.get(k)?.as_str()?.parse().ok()),
            },
            429 => Error::RateLimited {
                method,
                path,
                retry_after,
                attempts: 1,
            },
            500..=599 => Error::Server {
                method,
                path,
                status,
                detail,
                attempts: 1,
            },
            _ => Error::UnexpectedStatus {
                method,
                path,
                status,
                detail,
            },
        }
    }
}

/// Plane has no single error envelope: try `detail`, `error`, `error_message`,
/// `message`, then the first field error (the order the Python SDK uses).
const MESSAGE_KEYS: [&str; 5] = ["detail", "error", "error_message", "message", "error_code"];

fn detail_of(json: &Value) -> String {
    for key in MESSAGE_KEYS {
        match json.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(Value::Array(items)) => {
                if let Some(Value::String(s)) = items.first() {
                    return s.clone();
                }
            }
            _ => {}
        }
    }
    if let Some((field, messages)) = field_errors(json).into_iter().next() {
        return format!("{field}: {}", messages.join(" "));
    }
    excerpt(json.to_string().as_bytes())
}

fn field_errors(json: &Value) -> BTreeMap<String, Vec<String>> {
    let Some(map) = json.as_object() else {
        return BTreeMap::new();
    };
    map.iter()
        .filter(|(k, _)| !MESSAGE_KEYS.contains(&k.as_str()) && k.as_str() != "id")
        .filter_map(|(k, v)| {
            let messages: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => return None,
            };
            (!messages.is_empty()).then(|| (k.clone(), messages))
        })
        .collect()
}

/// What the operator does about a refused grant.
fn grant_hint(grant: &str) -> &'static str {
    match grant {
        "authorization_code" => {
            "the code is wrong, expired or already used, or the PKCE verifier or redirect URI \
             does not match the authorization: run `plane-server oauth authorize-url` again and \
             exchange the new code at once"
        }
        "client_credentials" => {
            "check the installation id (plane.oauth.installation_id or --installation): it must \
             be the app_installation_id Plane sent when the app was installed in the workspace"
        }
        _ => {
            "authorize again: run `plane-server oauth authorize-url`, open the URL, then run \
             `plane-server oauth exchange --code CODE --state STATE`"
        }
    }
}

fn colon(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// A short, printable prefix of a body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX * 4)]);
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}
