//! The fake's response value, independent of hyper.

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(status: u16, v: &Value) -> Resp {
        // DRF's JSONRenderer writes compact JSON; serde_json's default matches.
        let body = serde_json::to_vec(v).unwrap_or_default();
        Resp {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body,
        }
    }

    pub(crate) fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn detail(status: u16, msg: &str) -> Resp {
        Resp::json(status, &json!({ "detail": msg }))
    }

    pub(crate) fn error(status: u16, msg: &str) -> Resp {
        Resp::json(status, &json!({ "error": msg }))
    }

    pub(crate) fn not_found() -> Resp {
        Resp::error(404, "The requested resource does not exist.")
    }

    pub(crate) fn page_not_found() -> Resp {
        Resp::error(404, "Page not found.")
    }

    pub(crate) fn server_error() -> Resp {
        Resp::error(500, "Something went wrong please try again later")
    }

    pub(crate) fn throttled(retry_after: Option<u64>) -> Resp {
        let mut r = Resp::json(
            429,
            &json!({"error_code": 5900, "error_message": "RATE_LIMIT_EXCEEDED"}),
        );
        if let Some(s) = retry_after {
            r.headers.push(("Retry-After", s.to_string()));
        }
        r
    }

    pub(crate) fn non_field_error(msg: &str) -> Resp {
        Resp::json(400, &json!({ "non_field_errors": [msg] }))
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Resp {
        self.headers.push((name, value.into()));
        self
    }

    /// A body for [`crate::Fault::status`].
    pub(crate) fn for_fault_status(status: u16) -> Resp {
        match status {
            s if !(100..=999).contains(&s) => Resp::server_error(),
            500 => Resp::server_error(),
            429 => Resp::throttled(None),
            401 => Resp::detail(401, "Authentication credentials were not provided."),
            403 => Resp::detail(403, "You do not have permission to perform this action."),
            404 => Resp::not_found(),
            502..=504 => {
                let reason = match status {
                    502 => "502 Bad Gateway",
                    503 => "503 Service Temporarily Unavailable",
                    _ => "504 Gateway Time-out",
                };
                let body = format!(
                    "<html>\r\n<head><title>{reason}</title></head>\r\n<body>\r\n<center><h1>{reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                );
                Resp {
                    status,
                    headers: vec![("Content-Type", "text/html".to_owned())],
                    body: body.into_bytes(),
                }
            }
            s if s >= 500 => Resp::error(s, "Something went wrong please try again later"),
            s => {
                let reason = http::StatusCode::from_u16(s)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("Error");
                Resp::detail(s, reason)
            }
        }
    }
}
