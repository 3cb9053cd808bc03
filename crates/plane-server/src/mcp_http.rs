//! MCP over Streamable HTTP at `/mcp`, inside `serve` (`[mcp] http = true`).
//!
//! The same server as `plane-server mcp` on stdio (the binary hands its `ServerHandler`
//! in), behind a bearer token (`PLANE_MCP_TOKEN` or `PLANE_MCP_TOKEN_FILE`): a missing or
//! wrong `Authorization: Bearer` header is answered 401 with `WWW-Authenticate: Bearer`
//! before rmcp sees the request. The token is compared in constant time (the SHA-256
//! digests of both, byte by byte without an early exit), so its length and content do
//! not leak through timing.
//!
//! Stateless: each POST is answered on its own (JSON, no session to keep), which suits
//! read-only tools. The `Host` header is not checked against a loopback list (rmcp's
//! default, against DNS rebinding): `serve` usually sits behind a proxy under its own
//! name, and a browser page cannot send the bearer token anyway.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use plane_core::{ExposeSecret, SecretString};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};

/// Where the MCP endpoint is served.
pub const PATH: &str = "/mcp";

/// The SHA-256 digest of the configured token.
#[derive(Clone)]
struct Expected(Arc<[u8; 32]>);

/// `/mcp`: `server` (cloned for each request) over Streamable HTTP, behind `token`.
pub fn router<S>(server: S, token: &SecretString) -> Router
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let expected = Expected(Arc::new(digest(token.expose_secret().as_bytes())));
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            expected,
            require_bearer,
        ))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal digests, looking at every byte whatever the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)?
        .as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
        .filter(|t| !t.is_empty())
}

async fn require_bearer(
    State(expected): State<Expected>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(&request) {
        Some(token) if same(&digest(token), &expected.0) => next.run(request).await,
        given => {
            tracing::warn!(
                token_given = given.is_some(),
                "MCP request refused: missing or wrong bearer token"
            );
            (
                StatusCode::UNAUTHORIZED,
                [
                    (http::header::WWW_AUTHENTICATE, "Bearer"),
                    (http::header::CONTENT_TYPE, "application/json"),
                ],
                r#"{"error":"unauthorized","message":"send Authorization: Bearer <PLANE_MCP_TOKEN>"}"#,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_equal_only_when_the_tokens_are() {
        let a = digest(b"right-token");
        assert!(same(&a, &digest(b"right-token")));
        assert!(!same(&a, &digest(b"right-tokem")));
        assert!(!same(&a, &digest(b"")));
    }
}
