//! The connector value domain crates receive: the Plane client, webhook
//! verification, the durable is-this-a-duplicate check, and the enabled switch
//! (what the seed's `ipai.plane.connector` mixin offered).

use std::fmt;
use std::sync::Arc;

use plane_core::{Budget, ExposeSecret, PlaneClient};
use plane_webhook::{
    DeliveryHeaders, DeliveryStore, Envelope, NewDelivery, RecordOutcome, Verifier,
};

use crate::config::Config;
use crate::error::ApiError;

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
    /// `plane.enabled = false` was set on purpose (vs. defaulted off).
    disabled_on_purpose: bool,
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
    #[error("the Plane connector is disabled (plane.enabled = false); nothing was done")]
    Disabled,
    #[error("PLANE_API_KEY is not set (see {API_KEY_REF})")]
    NoApiKey,
}

impl Connector {
    /// Builds the connector from the configuration; the client exists only when
    /// an API key is configured.
    pub fn new(config: &Config, store: Arc<dyn DeliveryStore>) -> Result<Self, plane_core::Error> {
        let client = match &config.api_key {
            Some(key) => Some(
                PlaneClient::builder()
                    .base_url(&config.base_url)
                    .workspace_slug(&config.workspace_slug)
                    .api_key(key.clone())
                    .budget(Budget::per_minute(config.rate_limit_per_minute))
                    .build()?,
            ),
            None => None,
        };
        let verifier = Verifier::new(config.webhook_secrets.iter().map(|s| s.expose_secret())).ok();
        Ok(Self {
            client,
            verifier,
            store,
            enabled: config.is_enabled(),
            disabled_on_purpose: config.enabled == Some(false),
        })
    }

    /// `plane.enabled`.
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

    /// Verifies a delivery and parses it: the signature first, over the raw body,
    /// before anything reads it.
    pub fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(DeliveryHeaders, Envelope), ApiError> {
        // A missing secret is named before a defaulted-off switch: it is the
        // thing to fix.
        if self.disabled_on_purpose {
            return Err(ApiError::Disabled);
        }
        let verifier = self.verifier.as_ref().ok_or(ApiError::KeyMissing)?;
        if !self.enabled {
            return Err(ApiError::Disabled);
        }
        let signature = headers
            .get("x-plane-signature")
            .map(|v| {
                v.to_str()
                    .map_err(|_| plane_webhook::SignatureError::NotHex)
            })
            .transpose()
            .map_err(ApiError::Signature)?;
        verifier
            .verify(body, signature)
            .map_err(ApiError::Signature)?;
        let delivery = DeliveryHeaders::from_headers(headers)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let envelope = Envelope::parse(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok((delivery, envelope))
    }

    /// Records a verified delivery durably: `New` or `Duplicate`.
    pub async fn record(
        &self,
        headers: &DeliveryHeaders,
        envelope: &Envelope,
        body: Vec<u8>,
    ) -> Result<RecordOutcome, ApiError> {
        self.store
            .record(NewDelivery::new(headers.delivery_id, envelope, body))
            .await
            .map_err(ApiError::Store)
    }
}
