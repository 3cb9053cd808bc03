//! MCP over Streamable HTTP at `/mcp` inside `serve` (`[mcp] http = true`): the bearer
//! check on the router itself (`tower::ServiceExt::oneshot`), and the real binary on a
//! socket: 401 without or with a wrong token, `initialize` and `tools/list` with the right
//! one, 404 when it is off, and exit 2 when it is on without a token.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::BodyExt;
use plane_core::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_plane-server");
const TOKEN: &str = "test-mcp-token-0123456789abcdef";
const ACCEPT: &str = "application/json, text/event-stream";

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "mcp-http-test", "version": "0"}
        }
    })
}

/// A handler with nothing but defaults: the bearer check does not depend on it.
#[derive(Clone)]
struct Bare;

impl rmcp::ServerHandler for Bare {}

fn request(authorization: Option<&str>) -> http::Request<axum::body::Body> {
    let mut builder = http::Request::post("/mcp")
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, ACCEPT);
    if let Some(value) = authorization {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    builder
        .body(axum::body::Body::from(initialize().to_string()))
        .unwrap()
}

#[tokio::test]
async fn the_router_refuses_a_missing_or_wrong_token_with_401_and_takes_the_right_one() {
    let router = plane_server::mcp_http::router(Bare, &SecretString::from(TOKEN));
    for authorization in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some("Bearer ".to_owned()),
        Some(TOKEN.to_owned()),
    ] {
        let response = router
            .clone()
            .oneshot(request(authorization.as_deref()))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            http::StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(
            response.headers()[http::header::WWW_AUTHENTICATE],
            "Bearer",
            "{authorization:?}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            !String::from_utf8_lossy(&body).contains(TOKEN),
            "the answer repeats the token"
        );
    }
    // The scheme in any case, as RFC 7235 has it.
    for authorization in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}")] {
        let response = router
            .clone()
            .oneshot(request(Some(&authorization)))
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::OK, "{authorization}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["id"], 1, "{answer}");
        assert!(answer["result"]["protocolVersion"].is_string(), "{answer}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fiscal_june() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plane-bir/profiles/fiscal-june-corporation.toml")
}

/// `plane-server serve` with this config text, on `port`, with these variables only.
fn serve(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Command {
    let file = dir.join("plane-server.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--config",
    ])
    .arg(&file)
    .arg("--db")
    .arg(dir.join("plane.db"))
    .current_dir(dir)
    .env_clear()
    .env("RUST_LOG", "warn")
    .env("PLANE_WEBHOOK_SECRET", "test-webhook-secret");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = serve(dir, config, port, env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        };
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("plane-server did not start listening");
    }

    async fn post(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_on() -> String {
    format!(
        "[mcp]\nhttp = true\n\n[[bir.profiles]]\nfile = {:?}\n",
        fiscal_june().to_str().unwrap()
    )
}

#[tokio::test]
async fn serve_answers_mcp_with_the_right_token_and_401_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config_on(), &[("PLANE_MCP_TOKEN", TOKEN)]);

    for token in [None, Some("wrong-token")] {
        let response = server.post(token, &initialize()).await;
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    let response = server.post(Some(TOKEN), &initialize()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"], 1, "{answer}");
    assert!(
        answer["result"]["capabilities"]["tools"].is_object(),
        "{answer}"
    );

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let response = server.post(Some(TOKEN), &list).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // The same read-only tools as `plane-server mcp` on stdio.
    for tool in [
        "deadlines",
        "explain_deadline",
        "calendar",
        "filing_status",
        "inbox_health",
        "forms",
    ] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }
    assert!(
        !names.contains(&"mark_filed") && !names.contains(&"sync"),
        "read-only over HTTP: {names:?}"
    );

    // A tool answers, from the profile in the config.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "forms", "arguments": {}}});
    let answer: Value = server.post(Some(TOKEN), &call).await.json().await.unwrap();
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    assert!(
        answer["result"]["structuredContent"].is_object(),
        "{answer}"
    );
}

#[tokio::test]
async fn mcp_is_404_when_mcp_http_is_off() {
    let dir = tempfile::tempdir().unwrap();
    // A token alone does not turn it on.
    let server = Server::start(dir.path(), "", &[("PLANE_MCP_TOKEN", TOKEN)]);
    for token in [None, Some(TOKEN)] {
        let response = server.post(token, &initialize()).await;
        assert_eq!(response.status(), 404, "{token:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "[mcp]\nhttp = false\n", &[]);
    assert_eq!(server.post(None, &initialize()).await.status(), 404);
}

#[test]
fn serve_with_mcp_http_on_and_no_token_refuses_to_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path(), &config_on(), free_port(), &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PLANE_MCP_TOKEN ") && stderr.contains("PLANE_MCP_TOKEN_FILE"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("plane.db").exists(),
        "a refused start created the database"
    );
}
