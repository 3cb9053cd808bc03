//! HTTP answers for everything that is not a 200, each with its status and a
//! JSON body (as axum's rejections carry theirs).
//!
//! [`WebhookRejection`] is why [`crate::extract::VerifiedDelivery`] refused a
//! request; [`ApiError`] adds what can go wrong after it (the store) and the
//! routing misses.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::connector::WEBHOOK_SECRET_REF;

/// Why a request to `POST /webhooks/plane` was not taken as a delivery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookRejection {
    /// No webhook secret is configured (it went away at run time: `serve`
    /// does not start without one).
    #[error("no webhook secret is configured (PLANE_WEBHOOK_SECRET, see {WEBHOOK_SECRET_REF})")]
    KeyMissing,
    /// The body is larger than the limit.
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// `server.body_limit_bytes`.
        limit: usize,
    },
    /// The body did not arrive within the deadline.
    #[error("the body did not arrive in time")]
    BodyTimeout,
    /// The body could not be read (the client went away mid-body, ...).
    #[error("could not read the body: {0}")]
    BodyUnreadable(String),
    /// A missing or bad `X-Plane-Signature`.
    #[error("{0}")]
    Signature(plane_webhook::SignatureError),
    /// Signed, but not a Plane delivery: a bad header or envelope.
    #[error("{0}")]
    NotADelivery(plane_webhook::Error),
}

impl WebhookRejection {
    /// The status this answer carries.
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookRejection::KeyMissing => StatusCode::SERVICE_UNAVAILABLE,
            WebhookRejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookRejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            WebhookRejection::Signature(_) => StatusCode::UNAUTHORIZED,
            WebhookRejection::BodyUnreadable(_) | WebhookRejection::NotADelivery(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// The metrics reason label (a fixed word).
    pub fn reason(&self) -> &'static str {
        match self {
            WebhookRejection::KeyMissing => "key_missing",
            WebhookRejection::TooLarge { .. } => "too_large",
            WebhookRejection::BodyTimeout => "body_timeout",
            WebhookRejection::Signature(e) => match e.reason() {
                "missing" => "signature_missing",
                "not_hex" => "signature_not_hex",
                "wrong_length" => "signature_wrong_length",
                _ => "signature_mismatch",
            },
            WebhookRejection::BodyUnreadable(_) | WebhookRejection::NotADelivery(_) => {
                "bad_request"
            }
        }
    }
}

impl From<plane_webhook::Error> for WebhookRejection {
    fn from(error: plane_webhook::Error) -> Self {
        match error {
            plane_webhook::Error::NoSecret(_) => WebhookRejection::KeyMissing,
            plane_webhook::Error::Signature(e) => WebhookRejection::Signature(e),
            other => WebhookRejection::NotADelivery(other),
        }
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let body = match &self {
            WebhookRejection::KeyMissing => {
                json!({"error": "KEY_MISSING", "ssot_ref": WEBHOOK_SECRET_REF})
            }
            WebhookRejection::TooLarge { limit } => {
                json!({"error": "PAYLOAD_TOO_LARGE", "limit_bytes": limit})
            }
            WebhookRejection::BodyTimeout => json!({"error": "REQUEST_TIMEOUT"}),
            WebhookRejection::Signature(e) => {
                json!({"error": "INVALID_SIGNATURE", "reason": e.reason(), "message": e.to_string()})
            }
            WebhookRejection::BodyUnreadable(_) | WebhookRejection::NotADelivery(_) => {
                json!({"error": "BAD_REQUEST", "message": self.to_string()})
            }
        };
        (self.status(), Json(body)).into_response()
    }
}

/// A refused request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request was not taken as a delivery.
    #[error(transparent)]
    Rejected(#[from] WebhookRejection),
    /// A verified delivery could not be stored.
    #[error("could not store the delivery: {0}")]
    Store(plane_webhook::Error),
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// The route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The status this answer carries.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Rejected(rejection) => rejection.status(),
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The metrics reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Rejected(rejection) => rejection.reason(),
            ApiError::Store(_) => "store_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            ApiError::Rejected(rejection) => return rejection.into_response(),
            // The store's message may name a file path; it stays in the logs.
            ApiError::Store(_) => json!({"error": "STORE_UNAVAILABLE"}),
            ApiError::NotFound => json!({"error": "NOT_FOUND"}),
            ApiError::MethodNotAllowed => json!({"error": "METHOD_NOT_ALLOWED"}),
        };
        (status, Json(body)).into_response()
    }
}
