//! The sealed records both backends keep, byte for byte the same: how a token set and a
//! pending authorization are sealed, opened, and re-sealed under a new key. A record
//! copied from one backend to the other (its sealed bytes and its clear columns) opens
//! there with the same key.

use chrono::{DateTime, SecondsFormat, Utc};
use plane_core::oauth::TokenSet;
use plane_core::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{FORMAT, FORMAT_OWNER_ONLY, PENDING_LIFETIME, TokenKey, TokenOwner, TokenStoreError};

/// The plaintext of a token record (zeroed when dropped).
#[derive(Serialize, Deserialize)]
struct Sealed {
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    scope: Option<String>,
}

impl Drop for Sealed {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

/// A format-2 record's associated data: the owner, the version and the clear columns, so
/// none of them can be changed or swapped without the record failing to open.
fn record_aad(
    owner: &str,
    version: i64,
    expires_at: Option<&str>,
    has_refresh: bool,
    scope: Option<&str>,
) -> String {
    format!(
        "{owner}\nversion {version}\nexpires_at {}\nhas_refresh {has_refresh}\nscope {}",
        expires_at.unwrap_or("-"),
        scope.unwrap_or("-")
    )
}

/// One stored token record as both backends keep it: the sealed bytes and the clear
/// columns bound to them (what `oauth status` shows).
#[derive(Debug)]
pub(super) struct Record {
    pub(super) sealed: Vec<u8>,
    /// Raised by each write; 0 for a record of the first format.
    pub(super) version: i64,
    /// The expiry as bound into the associated data (RFC 3339, whole seconds): kept as
    /// this text by both backends, so the record opens wherever it is copied.
    pub(super) expires_at: Option<String>,
    pub(super) has_refresh: bool,
    pub(super) scope: Option<String>,
}

impl Record {
    /// Seals `tokens` of `owner` as the record's `version`.
    pub(super) fn seal(
        key: &TokenKey,
        owner: &TokenOwner,
        version: i64,
        tokens: &TokenSet,
    ) -> Self {
        let expires_at = tokens
            .expires_at
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
        let has_refresh = tokens.refresh_token.is_some();
        let plain = Zeroizing::new(
            serde_json::to_vec(&Sealed {
                access_token: tokens.access_token.expose_secret().to_owned(),
                refresh_token: tokens
                    .refresh_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                expires_at: tokens.expires_at,
                scope: tokens.scope.clone(),
            })
            .unwrap_or_default(),
        );
        let aad = record_aad(
            &owner.to_string(),
            version,
            expires_at.as_deref(),
            has_refresh,
            tokens.scope.as_deref(),
        );
        Self {
            sealed: key.seal(&aad, &plain),
            version,
            expires_at,
            has_refresh,
            scope: tokens.scope.clone(),
        }
    }

    /// The format and associated data the record was sealed with.
    fn aad(&self, owner: &str) -> (u8, String) {
        if self.version == 0 {
            // Written before records had versions: the owner alone is bound to it.
            (FORMAT_OWNER_ONLY, owner.to_owned())
        } else {
            let aad = record_aad(
                owner,
                self.version,
                self.expires_at.as_deref(),
                self.has_refresh,
                self.scope.as_deref(),
            );
            (FORMAT, aad)
        }
    }

    /// Opens the record of `owner`; `newest` is the highest version written for the
    /// owner (an older record is refused as rolled back), `location` names the database
    /// in errors.
    pub(super) fn open(
        &self,
        key: &TokenKey,
        owner: &str,
        newest: i64,
        location: &str,
    ) -> Result<TokenSet, TokenStoreError> {
        if self.version < newest {
            return Err(TokenStoreError::RolledBack {
                path: location.to_owned(),
                owner: owner.to_owned(),
                found: self.version,
                newest,
            });
        }
        let undecryptable = || TokenStoreError::Undecryptable {
            path: location.to_owned(),
            what: "token",
            owner: owner.to_owned(),
        };
        let (format, aad) = self.aad(owner);
        let plain = key
            .open_as(format, &aad, &self.sealed)
            .ok_or_else(undecryptable)?;
        let mut record: Sealed = serde_json::from_slice(&plain).map_err(|_| undecryptable())?;
        Ok(TokenSet {
            access_token: SecretString::from(std::mem::take(&mut record.access_token)),
            refresh_token: record.refresh_token.take().map(SecretString::from),
            expires_at: record.expires_at,
            scope: record.scope.take(),
        })
    }

    /// The record sealed under `new` instead of `old`, with the same format and associated
    /// data (only the key changes); `None` when `old` does not open it.
    pub(super) fn reseal(&self, owner: &str, old: &TokenKey, new: &TokenKey) -> Option<Vec<u8>> {
        let (format, aad) = self.aad(owner);
        let plain = old.open_as(format, &aad, &self.sealed)?;
        Some(new.seal_as(format, &aad, &plain))
    }
}

/// A pending authorization's associated data: its state and owner.
fn pending_aad(state: &str, owner: &str) -> String {
    format!("pending:{state}:{owner}")
}

/// Seals the PKCE verifier of the authorization started with `state`.
pub(super) fn seal_pending(
    key: &TokenKey,
    state: &str,
    owner: &TokenOwner,
    verifier: &SecretString,
) -> Vec<u8> {
    key.seal(
        &pending_aad(state, &owner.to_string()),
        verifier.expose_secret().as_bytes(),
    )
}

/// Opens a pending authorization (either format): its owner and verifier.
pub(super) fn open_pending(
    key: &TokenKey,
    state: &str,
    owner_text: &str,
    sealed: &[u8],
    location: &str,
) -> Result<(TokenOwner, SecretString), TokenStoreError> {
    let undecryptable = || TokenStoreError::Undecryptable {
        path: location.to_owned(),
        what: "pending authorization",
        owner: format!("state {state}"),
    };
    let owner = TokenOwner::parse(owner_text).ok_or_else(undecryptable)?;
    let verifier = key
        .open_pending(&pending_aad(state, &owner.to_string()), sealed)
        .and_then(|(_, v)| String::from_utf8(v.to_vec()).ok())
        .ok_or_else(undecryptable)?;
    Ok((owner, SecretString::from(verifier)))
}

/// A pending authorization re-sealed under `new` (in the format it had); `None` when `old`
/// does not open it.
pub(super) fn reseal_pending(
    old: &TokenKey,
    new: &TokenKey,
    state: &str,
    owner_text: &str,
    sealed: &[u8],
) -> Option<Vec<u8>> {
    let aad = pending_aad(state, owner_text);
    let (format, plain) = old.open_pending(&aad, sealed)?;
    Some(new.seal_as(format, &aad, &plain))
}

/// The creation time before which a pending authorization has expired. Pending
/// authorizations carry the clock of the process that started them, and are judged by
/// the clock of the one that takes them, on either backend.
pub(super) fn pending_cutoff() -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(PENDING_LIFETIME).unwrap_or_default()
}

/// [`TokenStoreError::PendingExpired`] when the authorization started at `created_at`
/// is older than [`PENDING_LIFETIME`].
pub(super) fn check_pending_age(
    state: &str,
    created_at: DateTime<Utc>,
) -> Result<(), TokenStoreError> {
    if created_at < pending_cutoff() {
        return Err(TokenStoreError::PendingExpired {
            state: state.to_owned(),
            started: created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            minutes: PENDING_LIFETIME.as_secs() / 60,
        });
    }
    Ok(())
}

/// Whether `tokens` holds `spent` as its refresh token (the compare of compare and save).
pub(super) fn holds_refresh(tokens: &TokenSet, spent: &SecretString) -> bool {
    tokens
        .refresh_token
        .as_ref()
        .is_some_and(|r| r.expose_secret() == spent.expose_secret())
}
