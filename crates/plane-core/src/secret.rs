//! A string that never shows itself in `Debug`, `Display` or error messages.

use std::fmt;

/// A secret value (API key, bearer token, client secret).
///
/// `Debug` and `Display` print `[redacted]`; the only way to read the value is
/// [`SecretString::expose`], which keeps every use greppable.
///
/// ```
/// use plane_core::SecretString;
/// let key = SecretString::new(format!("plane_api_{}", "0".repeat(32)));
/// assert_eq!(format!("{key:?}"), "SecretString([redacted])");
/// assert_eq!(key.to_string(), "[redacted]");
/// assert!(key.expose().starts_with("plane_api_"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call this only where the value leaves the process
    /// (an HTTP header), never to log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (treated as "not configured").
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}
