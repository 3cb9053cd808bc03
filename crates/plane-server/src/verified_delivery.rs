//! [`VerifiedDelivery`]: an axum extractor that reads a webhook body within its
//! limits and verifies it before the handler sees anything.
//!
//! In order: wait for an in-flight permit ([`crate::in_flight`]); read the body,
//! at most `body_limit` bytes within `body_timeout`; check `X-Plane-Signature`
//! over the raw bytes; then read the delivery headers and the envelope's head
//! (event, action, event id: what the delivery is stored by).
//! Any failure is a [`WebhookRejection`], which carries its HTTP status.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use plane_webhook::{DeliveryHeaders, EventHead};

use crate::app::AppState;
use crate::error::WebhookRejection;
use crate::in_flight::InFlightPermit;

/// A signed Plane delivery, parsed. Holds its in-flight permit until dropped.
#[derive(Debug)]
pub struct VerifiedDelivery {
    /// `X-Plane-Delivery` and `X-Plane-Event`.
    pub headers: DeliveryHeaders,
    /// The event, its action and its stable id, read from the body.
    pub head: EventHead,
    /// The raw body, exactly as signed.
    pub body: Bytes,
    _permit: InFlightPermit,
}

impl FromRequest<Arc<AppState>> for VerifiedDelivery {
    type Rejection = WebhookRejection;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        // Before any byte of the body is read: past the limit, the body waits in
        // the socket instead of in memory.
        let permit = state.in_flight.acquire().await;
        // Bounded in size and in time: a client that trickles its body is cut off.
        let body = match tokio::time::timeout(
            state.body_timeout,
            axum::body::to_bytes(body, state.body_limit),
        )
        .await
        {
            Err(_) => return Err(WebhookRejection::BodyTimeout),
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                let e = e.into_inner();
                return Err(if e.is::<http_body_util::LengthLimitError>() {
                    WebhookRejection::TooLarge {
                        limit: state.body_limit,
                    }
                } else {
                    WebhookRejection::BodyUnreadable(e.to_string())
                });
            }
        };
        let (headers, head) = state.connector.verify(&parts.headers, &body)?;
        Ok(Self {
            headers,
            head,
            body,
            _permit: permit,
        })
    }
}
