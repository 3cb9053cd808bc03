//! Credentials: an API key (`X-API-Key`) or a bearer token source
//! (`Authorization: Bearer`), never both.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Error, ExposeSecret, SecretString};

/// A boxed future, as returned by [`TokenSource::token`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where bearer tokens come from (an OAuth app's access or bot token).
///
/// Called before every request, so implementations cache and renew the token
/// themselves (for example, shortly before `expires_in` runs out).
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// The current token.
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>>;

    /// Plane refused `refused` (401): if it is still the cached token, forget it,
    /// so the next `token` call renews it. The client awaits this, then retries
    /// once. Comparing with the refused token makes concurrent refusals of the
    /// same token cause one renewal, not one each.
    fn invalidate<'a>(&'a self, refused: &'a SecretString) -> BoxFuture<'a, ()> {
        let _ = refused;
        Box::pin(async {})
    }

    /// Waits, at most `within`, until nothing this source renewed is left unstored (a
    /// save that failed and is being retried); `false` if something still is. A process
    /// about to exit calls it, so a rotated refresh token is not lost with the process.
    fn settle(&self, within: std::time::Duration) -> BoxFuture<'_, bool> {
        let _ = within;
        Box::pin(async { true })
    }
}

/// A shared source: the caller keeps a handle (to read what it holds) while
/// the client uses it.
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>> {
        (**self).token()
    }

    fn invalidate<'a>(&'a self, refused: &'a SecretString) -> BoxFuture<'a, ()> {
        (**self).invalidate(refused)
    }

    fn settle(&self, within: std::time::Duration) -> BoxFuture<'_, bool> {
        (**self).settle(within)
    }
}

/// A fixed bearer token (for example a bot token managed elsewhere).
///
/// ```
/// use plane_core::{ExposeSecret, StaticToken, TokenSource};
/// # tokio_test_block_on(async {
/// let source = StaticToken::new("pln_bot_not_a_real_token");
/// assert_eq!(source.token().await.unwrap().expose_secret(), "pln_bot_not_a_real_token");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StaticToken(SecretString);

impl StaticToken {
    /// Wraps a token.
    pub fn new(token: impl Into<SecretString>) -> Self {
        Self(token.into())
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, Error>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// A personal or service API key, sent as `X-API-Key`. Works on CE and Cloud.
    ApiKey(SecretString),
    /// OAuth (Plane Cloud apps), sent as `Authorization: Bearer`. Plane CE ignores it.
    Bearer(Arc<dyn TokenSource>),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ApiKey(_) => f.write_str("ApiKey([redacted])"),
            Credentials::Bearer(source) => f.debug_tuple("Bearer").field(source).finish(),
        }
    }
}

impl Credentials {
    /// The header this credential is sent in, marked sensitive so that
    /// reqwest and hyper never print it, and the bearer token it carries.
    pub(crate) async fn header(
        &self,
    ) -> Result<(http::HeaderName, http::HeaderValue, Option<SecretString>), Error> {
        let (name, value, token) = match self {
            Credentials::ApiKey(key) => (
                http::HeaderName::from_static("x-api-key"),
                key.expose_secret().to_owned(),
                None,
            ),
            Credentials::Bearer(source) => {
                let token = source.token().await?;
                (
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", token.expose_secret()),
                    Some(token),
                )
            }
        };
        let mut value = http::HeaderValue::from_str(&value).map_err(|_| Error::InvalidConfig {
            key: "credentials",
            message: "the API key or token contains characters that cannot go in an HTTP header"
                .into(),
        })?;
        value.set_sensitive(true);
        Ok((name, value, token))
    }
}
