//! The delivery headers Plane sends with every webhook.

use http::HeaderMap;
use uuid::Uuid;

use crate::Error;

/// `X-Plane-Delivery`, `X-Plane-Event` and `X-Plane-Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHeaders {
    /// A new UUID on every attempt, retries included.
    pub delivery_id: Uuid,
    /// `issue`, `project`, `cycle`, `module`, `issue_comment` (v1) or dot-notation (v2).
    pub event: String,
    /// The signature header, as sent (verify it with [`Verifier`](crate::Verifier)).
    pub signature: Option<String>,
}

impl DeliveryHeaders {
    /// Reads the headers; a missing or malformed delivery id is an error.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use plane_webhook::DeliveryHeaders;
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-plane-delivery", "5c48aeec-6d15-4093-9a94-79d43dd5805d".parse().unwrap());
    /// headers.insert("x-plane-event", "issue".parse().unwrap());
    /// let parsed = DeliveryHeaders::from_headers(&headers).unwrap();
    /// assert_eq!(parsed.event, "issue");
    /// assert!(parsed.signature.is_none());
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Error> {
        // Borrowed: only what the result keeps is copied.
        let text = |name: &'static str| -> Result<Option<&str>, Error> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => {
                    value
                        .to_str()
                        .map(|v| Some(v.trim()))
                        .map_err(|_| Error::BadHeader {
                            header: name,
                            message: "is not visible ASCII".into(),
                        })
                }
            }
        };
        let delivery = text("x-plane-delivery")?.ok_or(Error::BadHeader {
            header: "x-plane-delivery",
            message: "is missing".into(),
        })?;
        let delivery_id = delivery.parse().map_err(|_| Error::BadHeader {
            header: "x-plane-delivery",
            message: format!(
                "{:?} is not a UUID",
                crate::excerpt(delivery.as_bytes(), 60)
            ),
        })?;
        let event = text("x-plane-event")?.unwrap_or_default().to_owned();
        Ok(Self {
            delivery_id,
            event,
            signature: text("x-plane-signature")?.map(str::to_owned),
        })
    }
}
