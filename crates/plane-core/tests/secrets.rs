//! A key never appears in `Debug` output, `Display` output or error strings.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use plane_core::{PlaneClient, RetryPolicy, StaticToken};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn key() -> String {
    format!("plane_api_{}", "5ec4e75ec4e75ec4e75ec4e75ec4e7ab")
}

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(&key()), "{what} leaks the key: {text}");
    assert!(
        !text.contains("5ec4e75ec4e7"),
        "{what} leaks part of the key: {text}"
    );
}

#[tokio::test]
async fn the_key_is_never_printed() {
    let builder = PlaneClient::builder().api_key(key());
    assert_hidden("builder Debug", &format!("{builder:?}"));
    let client = builder
        .base_url("http://127.0.0.1:9")
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    assert_hidden("client Debug", &format!("{client:?}"));
    assert_hidden("client pretty Debug", &format!("{client:#?}"));

    // A refused connection: the error chain must not carry the headers.
    let err = client.users().me().await.unwrap_err();
    assert_hidden("transport error", &format!("{err} {err:?}"));
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        assert_hidden("error source", &format!("{cause} {cause:?}"));
        source = cause.source();
    }

    // Every status the server may answer with.
    let server = MockServer::start().await;
    for status in [400, 401, 403, 404, 409, 429, 500, 301] {
        server.reset().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(status).set_body_string("{\"detail\":\"nope\"}"))
            .mount(&server)
            .await;
        let client = PlaneClient::builder()
            .base_url(server.uri())
            .api_key(key())
            .retry_policy(RetryPolicy {
                max_retry_after: Duration::ZERO,
                base_delay: Duration::ZERO,
                ..RetryPolicy::default()
            })
            .build()
            .unwrap();
        let err = client.users().me().await.unwrap_err();
        assert_hidden(&format!("HTTP {status} error"), &format!("{err} {err:?}"));
    }
}

#[tokio::test]
async fn a_bearer_token_is_never_printed() {
    let token = "pln_5ec4e75ec4e7_token";
    let client = PlaneClient::builder()
        .bearer(StaticToken::new(token))
        .base_url("http://127.0.0.1:9")
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.users().me().await.unwrap_err();
    for text in [format!("{client:?}"), format!("{err} {err:?}")] {
        assert!(!text.contains("5ec4e75ec4e7"), "{text}");
    }
}

/// `SecretString` is `secrecy`'s: zeroised on drop (checked at compile time),
/// redacted in `Debug`, readable only through `expose_secret`.
#[test]
fn a_secret_string_is_zeroised_on_drop_and_redacted() {
    fn zeroised_on_drop<T: secrecy::zeroize::ZeroizeOnDrop + ?Sized>() {}
    zeroised_on_drop::<plane_core::SecretString>();

    let secret = plane_core::SecretString::from(key());
    assert_hidden("SecretString Debug", &format!("{secret:?}"));
    assert_hidden("SecretString pretty Debug", &format!("{secret:#?}"));
    assert_eq!(plane_core::ExposeSecret::expose_secret(&secret), key());
}

/// Every log line of a failing and a succeeding request, at TRACE level and
/// including reqwest's and hyper's, leaves the key out.
#[tokio::test]
async fn the_key_never_reaches_a_log_line() {
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_string("{\"detail\":\"nope\"}"))
        .mount(&server)
        .await;
    let client = PlaneClient::builder()
        .base_url(server.uri())
        .api_key(key())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    tracing::debug!(?client, "built");
    let err = client.users().me().await.unwrap_err();
    tracing::error!(error = %err, debug = ?err, "request failed");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("request failed"),
        "the subscriber captured nothing: {logs}"
    );
    assert_hidden("log output", &logs);
}
