//! HTTP answers for everything that is not a 200, each with its status and a
//! JSON body (as axum's rejections carry theirs).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::connector::WEBHOOK_SECRET_REF;

/// A refused request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the Plane connector is disabled")]
    Disabled,
    #[error("no webhook secret is configured (PLANE_WEBHOOK_SECRET, see {WEBHOOK_SECRET_REF})")]
    KeyMissing,
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("{0}")]
    Signature(plane_webhook::SignatureError),
    #[error("{0}")]
    BadRequest(String),
    #[error("could not store the delivery: {0}")]
    Store(plane_webhook::Error),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The status this answer carries.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Disabled | ApiError::KeyMissing | ApiError::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Signature(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The metrics reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Disabled => "disabled",
            ApiError::KeyMissing => "key_missing",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::Signature(e) => match e.reason() {
                "missing" => "signature_missing",
                "not_hex" => "signature_not_hex",
                "wrong_length" => "signature_wrong_length",
                _ => "signature_mismatch",
            },
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Store(_) => "store_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::Disabled => json!({"error": "DISABLED"}),
            ApiError::KeyMissing => json!({"error": "KEY_MISSING", "ssot_ref": WEBHOOK_SECRET_REF}),
            ApiError::TooLarge { limit } => {
                json!({"error": "PAYLOAD_TOO_LARGE", "limit_bytes": limit})
            }
            ApiError::BodyTimeout => json!({"error": "REQUEST_TIMEOUT"}),
            ApiError::Signature(e) => {
                json!({"error": "INVALID_SIGNATURE", "reason": e.reason(), "message": e.to_string()})
            }
            ApiError::BadRequest(message) => json!({"error": "BAD_REQUEST", "message": message}),
            // The store's message may name a file path; it stays in the logs.
            ApiError::Store(_) => json!({"error": "STORE_UNAVAILABLE"}),
            ApiError::NotFound => json!({"error": "NOT_FOUND"}),
            ApiError::MethodNotAllowed => json!({"error": "METHOD_NOT_ALLOWED"}),
        };
        (self.status(), Json(body)).into_response()
    }
}
