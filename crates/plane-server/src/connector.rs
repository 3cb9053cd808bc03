//! The connector value domain crates receive: the Plane client, webhook
//! verification, the durable is-this-a-duplicate check, and the enabled switch
//! (what the seed's `ipai.plane.connector` mixin offered).
//!
//! Its errors are plane-webhook's ([`plane_webhook::Error`]); what they mean in
//! HTTP is decided by the receiver ([`crate::extract`]), not here.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use plane_core::oauth::{OAuthApp, TokenSet};
use plane_core::{BoxFuture, Budget, ExposeSecret, PlaneClient, SecretString, TokenSource};
use plane_webhook::{
    DeliveryHeaders, DeliveryStore, EventHead, NewDelivery, NoSecret, RecordOutcome,
    SignatureError, Verifier,
};

use crate::config::{Config, OAuthConfig};
use crate::shared_budget::PgBudget;
use crate::token_store::{
    self, SqliteTokenStore, StoreSink, TokenOwner, TokenStore, TokenStoreError,
};

/// Where the webhook secret is registered; named in KEY_MISSING answers and logs.
pub const WEBHOOK_SECRET_REF: &str = "ssot/secrets/registry.yaml#plane_webhook_secret";
/// Where the API key is registered.
pub const API_KEY_REF: &str = "ssot/secrets/registry.yaml#plane_api_key";

/// One value carrying everything a domain crate needs to talk to Plane.
#[derive(Clone)]
pub struct Connector {
    client: Option<PlaneClient>,
    verifier: Option<Verifier>,
    store: Arc<dyn DeliveryStore>,
    enabled: bool,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("enabled", &self.enabled)
            .field("client", &self.client)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// Why the connector cannot do something right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// `plane.enabled = false`.
    #[error("the Plane connector is disabled (plane.enabled = false); nothing was done")]
    Disabled,
    /// No API key (or OAuth) is configured.
    #[error("PLANE_API_KEY is not set, and OAuth is not configured (see {API_KEY_REF})")]
    NoApiKey,
}

/// The Plane client the configuration describes: with the API key, or with the
/// OAuth token from the token store (`[plane.oauth]`); `None` without either.
///
/// `serve`, `check` and `bir sync` all get their client here. No request is made:
/// an OAuth token is fetched or renewed on first use, and every renewed token is
/// stored (encrypted) before it is used. With SQLite the stored token is read now; with
/// PostgreSQL (a `postgres://` database) the store is connected and the token read at
/// the first use, and again at the next one if that failed (the database may be down).
pub fn plane_client(config: &Config) -> Result<Option<PlaneClient>, plane_core::Error> {
    client_with(config, Opening::Migrate)
}

/// [`plane_client`] for `check`: the token store is used only if its tables
/// already exist (nothing is created or migrated). Without them a bot token is
/// fetched and kept in memory; a user token is a configuration error (none stored).
pub fn plane_client_for_check(config: &Config) -> Result<Option<PlaneClient>, plane_core::Error> {
    client_with(config, Opening::ExistingOnly)
}

/// How a command opens the token store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Created and migrated if needed (`serve`, `bir sync`).
    Migrate,
    /// Only where its tables exist at the current version (`check`).
    ExistingOnly,
}

fn client_with(
    config: &Config,
    opening: Opening,
) -> Result<Option<PlaneClient>, plane_core::Error> {
    let mut builder = PlaneClient::builder()
        .base_url(&config.base_url)
        .workspace_slug(&config.workspace_slug)
        .budget(Budget::per_minute(config.rate_limit_per_minute));
    if let Some(pg) = config
        .postgres
        .as_ref()
        .filter(|_| opening == Opening::Migrate)
    {
        // Replicas spend one key: they share its budget. Not `check`: one request, and it
        // creates nothing in the database.
        let name = format!("{} {}", config.base_url, config.workspace_slug);
        builder = builder.shared_budget(PgBudget::new(pg.options().clone(), name).shared());
    }
    if let Some(oauth) = &config.oauth {
        let source = match &config.postgres {
            Some(_) => Arc::new(Deferred {
                config: config.clone(),
                opening,
                source: tokio::sync::OnceCell::new(),
            }),
            None => {
                let store = match opening {
                    Opening::Migrate => {
                        SqliteTokenStore::open(&config.database, oauth.key.clone()).map(Some)
                    }
                    Opening::ExistingOnly => {
                        SqliteTokenStore::open_existing(&config.database, oauth.key.clone())
                    }
                }
                .map_err(store_error)?;
                // Blocking, once, at start-up (the store's inherent load).
                let stored = match &store {
                    Some(store) => store.load(&oauth.owner).map_err(store_error)?,
                    None => None,
                };
                let store = store.map(|s| Arc::new(s) as Arc<dyn TokenStore>);
                oauth_source(config, oauth, store, stored)?
            }
        };
        return builder.bearer(source).build().map(Some);
    }
    config
        .api_key
        .as_ref()
        .map(|key| builder.api_key(key.clone()).build())
        .transpose()
}

fn store_error(e: TokenStoreError) -> plane_core::Error {
    plane_core::Error::InvalidConfig {
        key: "plane.oauth",
        message: e.to_string(),
    }
}

/// The OAuth token source of a PostgreSQL configuration: the store is connected (and
/// migrated, or only opened for `check`) and the stored token read at the first use,
/// since `plane_client` is not async. A failed first use is tried again at the next.
struct Deferred {
    config: Config,
    opening: Opening,
    source: tokio::sync::OnceCell<Arc<dyn TokenSource>>,
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("store", &token_store::location_of(&self.config))
            .field("opening", &self.opening)
            .field("source", &self.source.get())
            .finish()
    }
}

impl Deferred {
    async fn source(&self) -> Result<&Arc<dyn TokenSource>, plane_core::Error> {
        self.source
            .get_or_try_init(|| async {
                let config = &self.config;
                let Some(oauth) = &config.oauth else {
                    return Err(plane_core::Error::InvalidConfig {
                        key: "plane.oauth",
                        message: "OAuth is not configured".into(),
                    });
                };
                let store = match self.opening {
                    Opening::Migrate => token_store::open_for(config, oauth.key.clone())
                        .await
                        .map(Some),
                    Opening::ExistingOnly => {
                        token_store::open_existing_for(config, oauth.key.clone()).await
                    }
                }
                .map_err(store_error)?;
                let stored = match &store {
                    Some(store) => store.load(&oauth.owner).await.map_err(store_error)?,
                    None => None,
                };
                oauth_source(config, oauth, store, stored)
            })
            .await
    }
}

impl TokenSource for Deferred {
    fn token(&self) -> BoxFuture<'_, Result<SecretString, plane_core::Error>> {
        Box::pin(async move { self.source().await?.token().await })
    }

    fn invalidate<'a>(&'a self, refused: &'a SecretString) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(source) = self.source.get() {
                source.invalidate(refused).await;
            }
        })
    }
}

/// The token source of `[plane.oauth]`, from the token `stored` in `store`.
fn oauth_source(
    config: &Config,
    oauth: &OAuthConfig,
    store: Option<Arc<dyn TokenStore>>,
    stored: Option<TokenSet>,
) -> Result<Arc<dyn TokenSource>, plane_core::Error> {
    let app = oauth_app(config, oauth)?;
    let sink = store.map(|store| Arc::new(StoreSink::new(store, oauth.owner.clone())));
    Ok(match (&oauth.owner, stored, sink) {
        (TokenOwner::Installation(id), stored, sink) => {
            let mut source = app.bot_token(id.clone());
            if let Some(sink) = sink {
                source = source.persist_to(sink);
            }
            Arc::new(match stored {
                Some(tokens) => source.starting_with(&tokens),
                None => source,
            })
        }
        (TokenOwner::User(_), Some(tokens), Some(sink)) => {
            Arc::new(app.refreshing_token(tokens).persist_to(sink))
        }
        (owner @ TokenOwner::User(_), _, _) => {
            return Err(plane_core::Error::InvalidConfig {
                key: "plane.oauth.user",
                message: format!(
                    "no token is stored for {owner} in {}: run `plane-server oauth authorize-url`, \
                     open the URL, then `plane-server oauth exchange --code CODE --state STATE`",
                    token_store::location_of(config)
                ),
            });
        }
    })
}

/// The OAuth app `[plane.oauth]` describes, on the configured Plane.
pub fn oauth_app(config: &Config, oauth: &OAuthConfig) -> Result<OAuthApp, plane_core::Error> {
    OAuthApp::new(
        &config.base_url,
        oauth.client_id.clone(),
        oauth.client_secret.clone(),
    )
}

impl Connector {
    /// Builds the connector from the configuration; the client exists only when
    /// an API key is configured.
    pub fn new(config: &Config, store: Arc<dyn DeliveryStore>) -> Result<Self, plane_core::Error> {
        let client = plane_client(config)?;
        let verifier = Verifier::new(config.webhook_secrets.iter().map(|s| s.expose_secret())).ok();
        Ok(Self {
            client,
            verifier,
            store,
            enabled: config.is_enabled(),
        })
    }

    /// `plane.enabled`. Off, deliveries are still verified and stored; the
    /// worker holds them until the connector is on again.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The Plane client, when the connector is enabled and has credentials.
    pub fn client(&self) -> Result<&PlaneClient, Unavailable> {
        if !self.enabled {
            return Err(Unavailable::Disabled);
        }
        self.client.as_ref().ok_or(Unavailable::NoApiKey)
    }

    /// The client even when disabled (for `check` and metrics).
    pub fn configured_client(&self) -> Option<&PlaneClient> {
        self.client.as_ref()
    }

    /// The delivery store.
    pub fn store(&self) -> &Arc<dyn DeliveryStore> {
        &self.store
    }

    /// Verifies a delivery and parses it: the signature first, over the raw
    /// body, before anything reads it. Whether the connector is on does not
    /// matter here: a switched-off connector still takes deliveries in.
    ///
    /// [`plane_webhook::Error::NoSecret`] without a secret,
    /// [`plane_webhook::Error::Signature`] for a bad signature,
    /// [`plane_webhook::Error::BadHeader`] / [`plane_webhook::Error::BadEnvelope`]
    /// for a signed request that is not a Plane delivery.
    pub fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(DeliveryHeaders, EventHead), plane_webhook::Error> {
        let verifier = self.verifier.as_ref().ok_or(NoSecret)?;
        let signature = headers
            .get("x-plane-signature")
            .map(|v| v.to_str().map_err(|_| SignatureError::NotHex))
            .transpose()?;
        verifier.verify(body, signature)?;
        let delivery = DeliveryHeaders::from_headers(headers)?;
        // The head only: `data` is typed once, by the worker, from the stored body.
        let head = EventHead::parse(body)?;
        Ok((delivery, head))
    }

    /// Records a verified delivery durably: `New` or `Duplicate`.
    pub async fn record(
        &self,
        headers: &DeliveryHeaders,
        head: &EventHead,
        body: Bytes,
    ) -> Result<RecordOutcome, plane_webhook::Error> {
        self.store
            .record(NewDelivery::new(headers.delivery_id, head, body))
            .await
    }
}
