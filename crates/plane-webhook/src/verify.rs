//! `X-Plane-Signature`: lowercase hex HMAC-SHA256 of the raw body, keyed with
//! the whole secret string (the `plane_wh_` prefix included).
//!
//! Verification runs over the raw bytes before anything parses them: Plane signs
//! Python's `json.dumps` output, which no re-serialisation reproduces.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The messages never include a secret or the
/// expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Plane-Signature` header.
    #[error("the X-Plane-Signature header is missing")]
    Missing,
    /// The header is not hexadecimal.
    #[error("the X-Plane-Signature header is not hexadecimal")]
    NotHex,
    /// The header decodes to the wrong number of bytes.
    #[error("the X-Plane-Signature header has {got} hex digits; an HMAC-SHA256 has 64")]
    WrongLength {
        /// How many hex digits the header has.
        got: usize,
    },
    /// Well-formed, but no configured secret produces it.
    #[error("the X-Plane-Signature does not match the body under any configured webhook secret")]
    Mismatch,
}

impl SignatureError {
    /// A short machine-readable reason, for metrics labels and JSON error bodies.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::NotHex => "not_hex",
            SignatureError::WrongLength { .. } => "wrong_length",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// Which configured secret verified a delivery (its position in the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// 0 for the first configured secret; a rotation retires the old one once
    /// deliveries stop matching it.
    pub secret_index: usize,
}

/// Verifies deliveries against one or more active secrets (rotation).
///
/// ```
/// use plane_webhook::{SignatureError, Verifier};
/// let old = format!("plane_wh_{}", "0".repeat(32));
/// let new = format!("plane_wh_{}", "1".repeat(32));
/// let verifier = Verifier::new([old.as_str(), new.as_str()]).unwrap();
/// let body = br#"{"event": "issue", "action": "created"}"#;
/// let signature = Verifier::sign(&new, body);
/// assert_eq!(verifier.verify(body, Some(&signature)).unwrap().secret_index, 1);
/// assert_eq!(verifier.verify(b"tampered", Some(&signature)), Err(SignatureError::Mismatch));
/// assert_eq!(verifier.verify(body, None), Err(SignatureError::Missing));
/// ```
#[derive(Clone)]
pub struct Verifier {
    /// Keyed once; cloned per check (cheaper than re-keying).
    keys: Vec<HmacSha256>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &format_args!("{} [redacted]", self.keys.len()))
            .finish()
    }
}

/// A verifier needs at least one non-empty secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no webhook secret configured (set PLANE_WEBHOOK_SECRET, comma-separated during rotation; \
     see ssot/secrets/registry.yaml#plane_webhook_secret)"
)]
pub struct NoSecret;

impl Verifier {
    /// A verifier for these secrets; blank entries are ignored.
    pub fn new<I, S>(secrets: I) -> Result<Self, NoSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<HmacSha256> = secrets
            .into_iter()
            .filter_map(|s| {
                let s = s.as_ref().trim();
                (!s.is_empty()).then(|| {
                    HmacSha256::new_from_slice(s.as_bytes()).expect("HMAC accepts any key length")
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(NoSecret);
        }
        Ok(Self { keys })
    }

    /// A verifier from a comma-separated list, as in `PLANE_WEBHOOK_SECRET`.
    pub fn from_list(list: &str) -> Result<Self, NoSecret> {
        Self::new(list.split(','))
    }

    /// How many secrets are active.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a verifier has at least one secret.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The signature Plane would send for `body` under `secret`.
    pub fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks `signature` (the header value) against the raw `body`.
    ///
    /// Upper-case hex and a `sha256=` prefix are tolerated. Every secret is tried
    /// (constant-time comparison each), so the time taken does not depend on
    /// which one matches.
    pub fn verify(&self, body: &[u8], signature: Option<&str>) -> Result<Verified, SignatureError> {
        let expected = decode_signature(signature.ok_or(SignatureError::Missing)?)?;
        let mut matched = None;
        for (index, key) in self.keys.iter().enumerate() {
            let mut mac = key.clone();
            mac.update(body);
            if mac.verify_slice(&expected).is_ok() && matched.is_none() {
                matched = Some(index);
            }
        }
        matched
            .map(|secret_index| Verified { secret_index })
            .ok_or(SignatureError::Mismatch)
    }
}

fn decode_signature(header: &str) -> Result<[u8; 32], SignatureError> {
    let mut text = header.trim();
    if let Some(rest) = text
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| text.get(7..))
    {
        text = rest;
    }
    if text.is_empty() {
        return Err(SignatureError::Missing);
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::NotHex);
    }
    if text.len() != 64 {
        return Err(SignatureError::WrongLength { got: text.len() });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| SignatureError::NotHex)?;
    Ok(out)
}
