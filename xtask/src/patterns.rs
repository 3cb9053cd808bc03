//! What a credential looks like. Hand-written matchers (no regex dependency);
//! the strings that would match are assembled at run time so that this source
//! file does not match itself.

/// A kind of credential the repository-wide scan looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `plane_api_` followed by 20 or more ASCII letters/digits.
    PlaneApiKey,
    /// `plane_wh_` followed by 20 or more ASCII letters/digits.
    PlaneWebhookSecret,
    /// A PEM private key block header.
    PrivateKey,
}

impl Kind {
    /// The name used in the allowlist file.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PlaneApiKey => "plane_api_key",
            Kind::PlaneWebhookSecret => "plane_webhook_secret",
            Kind::PrivateKey => "private_key",
        }
    }

    /// The kind named `name` in the allowlist file.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Kind::PlaneApiKey,
            Kind::PlaneWebhookSecret,
            Kind::PrivateKey,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// A human description for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::PlaneApiKey => "a Plane API key (plane_api_ + 20 or more letters/digits)",
            Kind::PlaneWebhookSecret => {
                "a Plane webhook secret (plane_wh_ + 20 or more letters/digits)"
            }
            Kind::PrivateKey => "a PEM private key block",
        }
    }
}

/// The shortest tail that makes a `plane_api_`/`plane_wh_` string a credential.
pub const MIN_TAIL: usize = 20;

fn api_prefix() -> String {
    ["plane", "api", ""].join("_")
}

fn wh_prefix() -> String {
    ["plane", "wh", ""].join("_")
}

fn pem_begin() -> String {
    ["-----", "BEGIN "].concat()
}

fn pem_private_end() -> String {
    ["PRIVATE", " KEY-----"].concat()
}

/// Every credential in `text`: (byte offset, kind).
pub fn find_credentials(text: &str) -> Vec<(usize, Kind)> {
    let mut out = Vec::new();
    for (prefix, kind) in [
        (api_prefix(), Kind::PlaneApiKey),
        (wh_prefix(), Kind::PlaneWebhookSecret),
    ] {
        for (at, _) in text.match_indices(prefix.as_str()) {
            let tail = text[at + prefix.len()..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            if tail >= MIN_TAIL {
                out.push((at, kind));
            }
        }
    }
    let begin = pem_begin();
    let end = pem_private_end();
    for (at, _) in text.match_indices(begin.as_str()) {
        let rest = &text[at + begin.len()..];
        let header: &str = rest.split('\n').next().unwrap_or("");
        if header.trim_end().ends_with(end.as_str()) {
            out.push((at, Kind::PrivateKey));
        }
    }
    out.sort();
    out
}

/// Why `value` looks like a secret value rather than a name, a path or prose
/// (None when it does not). Stricter than [`find_credentials`]: used on the
/// registry and the MCP config, which must hold names and placeholders only.
pub fn secret_value_reason(value: &str) -> Option<String> {
    if let Some((_, kind)) = find_credentials(value).first() {
        return Some(format!("it contains {}", kind.describe()));
    }
    for (prefix, what) in [
        (api_prefix(), "a Plane API key"),
        (wh_prefix(), "a Plane webhook secret"),
    ] {
        for (at, _) in value.match_indices(prefix.as_str()) {
            let tail = value[at + prefix.len()..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            if tail >= 8 {
                return Some(format!("it contains what looks like {what} ({prefix}...)"));
            }
        }
    }
    if value.contains(pem_begin().as_str()) {
        return Some("it contains a PEM block".to_owned());
    }
    for word in value.split(|c: char| c.is_whitespace() || "\"'`,;:()[]{}<>".contains(c)) {
        if let Some(reason) = token_word(word) {
            return Some(reason);
        }
    }
    None
}

fn token_word(word: &str) -> Option<String> {
    let word = word.trim_matches(|c: char| c == '.' || c == '-');
    if word.starts_with("${") {
        return None;
    }
    if word.starts_with("eyJ") && word.matches('.').count() >= 2 && word.len() >= 30 {
        return Some("it contains what looks like a JWT".to_owned());
    }
    let longest_hex = word
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_hex >= 32 && word.chars().any(|c| c.is_ascii_digit()) {
        return Some(format!(
            "it contains a {longest_hex}-digit hexadecimal string, which looks like a key"
        ));
    }
    let token_chars = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-+/=.".contains(c));
    if token_chars && word.len() >= 24 {
        let digits = word.chars().filter(char::is_ascii_digit).count();
        let upper = word.chars().any(|c| c.is_ascii_uppercase());
        let lower = word.chars().any(|c| c.is_ascii_lowercase());
        if digits >= 2 && upper && lower {
            return Some(format!(
                "it contains {:?}..., a long random-looking string (mixed case and digits) that looks like a token",
                &word[..6]
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plane_credentials() {
        let key = format!("{}{}", api_prefix(), "a".repeat(MIN_TAIL));
        let short = format!("{}{}", api_prefix(), "a".repeat(MIN_TAIL - 1));
        let wh = format!("x {}{}", wh_prefix(), "Z9".repeat(16));
        assert_eq!(find_credentials(&key), vec![(0, Kind::PlaneApiKey)]);
        assert!(find_credentials(&short).is_empty());
        assert_eq!(find_credentials(&wh), vec![(2, Kind::PlaneWebhookSecret)]);
        let redacted = format!("{}REDACTED", api_prefix());
        assert!(find_credentials(&redacted).is_empty());
        let pem = format!("{}RSA {}\nabc", pem_begin(), pem_private_end());
        assert_eq!(find_credentials(&pem), vec![(0, Kind::PrivateKey)]);
        let public = format!("{}PUBLIC KEY-----", pem_begin());
        assert!(find_credentials(&public).is_empty());
    }

    #[test]
    fn secret_values_and_names() {
        for ok in [
            "supabase_vault:plane_api_key",
            "os_keychain:plane-connector/plane_webhook_secret",
            "Annually, or at once on a security incident",
            "https://mcp.plane.so/http/api-key/mcp",
            "Bearer ${PLANE_API_KEY}",
            "crates/plane-core/src/client.rs",
            "ssot.secrets.v1",
        ] {
            assert_eq!(secret_value_reason(ok), None, "{ok}");
        }
        let hex = "0123456789abcdef".repeat(2);
        assert!(secret_value_reason(&format!("value {hex}")).is_some());
        let random = ["sk", "Live4Qw9ErTy7UiOp2AsDfGhJk"].join("_");
        assert!(secret_value_reason(&random).is_some());
        let jwt = format!(
            "eyJ{}.eyJ{}.{}",
            "h".repeat(12),
            "p".repeat(12),
            "s".repeat(12)
        );
        assert!(secret_value_reason(&jwt).is_some());
        let short_key = format!("{}abcdef123", api_prefix());
        assert!(secret_value_reason(&short_key).is_some());
    }
}
