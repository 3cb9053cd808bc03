//! OAuth tokens at rest: encrypted, in the server's SQLite file or in PostgreSQL, behind
//! one async trait.
//!
//! * [`TokenKey`] is the 32-byte key from `PLANE_TOKEN_ENCRYPTION_KEY` (or a file
//!   named by `PLANE_TOKEN_ENCRYPTION_KEY_FILE`), base64. It is never stored
//!   beside the data. A key of another length is refused with how to make one.
//! * Every token set is sealed with XChaCha20-Poly1305 (the `chacha20poly1305`
//!   crate; a random 24-byte nonce per record, so random nonces never collide in
//!   practice). The record's owner is the associated data: a ciphertext moved to
//!   another row, a changed byte or another key all fail with
//!   [`TokenStoreError::Undecryptable`], never garbage.
//! * [`TokenStore`] is the seam, async (its methods return boxed futures, as
//!   plane-webhook's `DeliveryStore`'s do). Two backends implement it:
//!   - [`SqliteTokenStore`] keeps the rows in the same database file as the deliveries
//!     and BIR deadlines, with its own migrations table (`oauth_schema_migrations`), as
//!     plane-bir's store does. Its work runs on tokio's blocking pool; the same
//!     operations are also inherent methods of the store that block, for callers with no
//!     runtime at hand (start-up, a listing).
//!   - [`PgTokenStore`] keeps them in PostgreSQL, in the schema of a
//!     [`plane_postgres::Database`], migrated as the component `oauth`, for several
//!     replicas sharing one token.
//! * Both seal records with the same code (the `record` module): the same format, the
//!   same associated data, the same versions. A record copied from one backend to the
//!   other (its sealed bytes and its clear columns, still encrypted) opens there with
//!   the same key.
//! * [`StoreSink`] adapts a store to plane-core's [`TokenSink`], so a renewed
//!   token pair is stored before it is used.
//! * [`open_for`], [`open_existing_for`] and [`open_for_listing`] open the store the
//!   configuration names: PostgreSQL when the database is a `postgres://` URL, else the
//!   SQLite file.
//!
//! Why here and not in plane-core: plane-core is the HTTP client and stays free
//! of databases and of key handling; only the server keeps tokens, and it already
//! owns the database.
//!
//! # SQLite schema (version 3)
//!
//! - `oauth_tokens(owner PRIMARY KEY, sealed BLOB, expires_at, has_refresh, scope,
//!   updated_at)`: `owner` is `installation:<id>` or `user:<name>`; the clear
//!   columns are what `oauth status` shows (never a token).
//! - `oauth_pending(state PRIMARY KEY, owner, sealed BLOB, redirect_uri,
//!   created_at)`: an authorization started by `oauth authorize-url`, its PKCE
//!   verifier sealed, waiting for `oauth exchange`.
//!
//! Version 2 adds `oauth_renewals(owner PRIMARY KEY, holder, until)`: the lease a
//! process takes before it spends a refresh token (see "Renewal across processes");
//! `oauth_tokens.version`, a counter each write of a record raises; and
//! `oauth_token_versions(owner, version)`, the highest version written per owner.
//!
//! Version 3 adds `oauth_spending(owner PRIMARY KEY, spender, digest, since)`: which
//! lease holder is about to spend (or spent) a refresh token, and a SHA-256 digest of the
//! stored refresh token its pair will replace (never the token); see "Renewal across
//! processes".
//!
//! # PostgreSQL schema (component `oauth`, version 2)
//!
//! The same five tables (version 1 has all but `oauth_spending`), in the database's
//! schema (default `plane`), recorded in plane-postgres's `schema_migrations`; a replica
//! that finds a newer version refuses to start. `sealed` is `bytea`; `expires_at` stays
//! the text bound into the record (so a record copies byte for byte); `updated_at`,
//! `until`, `since` and `created_at` are `timestamptz`. A lease's `until` and a spend
//! record's `since` are set from the server's `now()`.
//!
//! # Rollback and tampering
//!
//! A record's associated data is its owner, its version and its clear columns
//! (`expires_at`, `has_refresh`, `scope`): a ciphertext moved to another row, put back
//! beside other clear columns, or with a changed byte does not open. A whole older row
//! put back into the database (an old backup's, say, holding a refresh token Plane has
//! spent) opens, but its version is below the highest written, so it is refused by name
//! ([`TokenStoreError::RolledBack`]). Records of the first format (written before version
//! 2 of the SQLite schema) are read as they are and take the new format at their next
//! write, on either backend.
//!
//! Pending authorizations expire after [`PENDING_LIFETIME`] (15 minutes): `oauth
//! exchange` refuses an older one by name, and each new one purges the expired. Their
//! start time is the clock of the process that ran `oauth authorize-url`, judged by the
//! clock of the one that runs `oauth exchange`, on both backends.
//!
//! The key and every plaintext (the sealed JSON, the decoded key) are zeroed when
//! dropped (`zeroize`; the tokens themselves are `secrecy` strings, zeroed likewise).
//!
//! # Renewal across processes
//!
//! `serve`, `check` and a scheduled `bir sync` share one stored token, and on PostgreSQL
//! several `serve` replicas do. Plane rotates refresh tokens and refuses a spent one, so
//! [`StoreSink`] implements plane-core's renewal protocol ([`TokenSink`]):
//!
//! 1. **Lease.** A process about to renew takes the owner's row in `oauth_renewals` (one
//!    statement, `INSERT … ON CONFLICT (owner) DO UPDATE … WHERE` the row is run out or
//!    its own), and waits while another holds it. The lease is a row with an end time
//!    ([`RENEWAL_LEASE`]) on the database's clock (SQLite's when the statement runs;
//!    PostgreSQL's `now()`, never a replica's), not a database lock held across the HTTP
//!    call: a process that dies holding it delays the others by the rest of the lease at
//!    most. On PostgreSQL a row lock or an advisory lock held across the call would be
//!    dropped mid-call by an idle-in-transaction timeout or a transaction pooler, and
//!    would pin a pooled connection for its length.
//! 2. **Re-read.** Under the lease it reads the stored pair: if another process renewed
//!    meanwhile, it uses that pair and spends nothing.
//! 3. **Spend record.** Just before it presents a refresh token, it writes (in one
//!    transaction, and only while the lease is still its own, which it extends) a row
//!    in `oauth_spending`: itself, and a digest of the stored refresh token the new pair
//!    will replace. A holder past its lease whose lease another process took presents
//!    nothing. The row goes when this holder ends the renewal (the save below, or a
//!    release after Plane's answer was no pair), never when another holder does.
//! 4. **Compare and swap.** It stores the new pair only if the stored refresh token is
//!    still the one it spent, in the transaction that ends the lease; otherwise the
//!    stored pair (a newer `oauth exchange`) is kept and used. On SQLite the transaction
//!    is `IMMEDIATE` (the file's one writer); on PostgreSQL the write is an
//!    `UPDATE … WHERE owner = $1 AND version = $2`, the version of the record whose
//!    refresh token was compared, so a writer that came between is never overwritten
//!    (the comparison is made again on what it wrote). A failed store call (a busy file,
//!    a lost connection) is retried before giving up.
//!
//! The save does not check that the lease is still the saver's: once Plane has answered,
//! the new pair holds the only live refresh token, and refusing to store it would log
//! everyone out. Two holders can never both spend one refresh token under the protocol
//! (the lease is checked before the spend, in step 3, and the spend record covers a
//! holder that outlives its lease), and if one ever did, Plane accepts only one of them;
//! the compare in step 4 keeps whichever pair the store holds from being overwritten by a
//! stale one.
//!
//! **A save that fails** (the database restarting, a file busy past the retries) leaves
//! the lease and the spend record behind, and the store holding the refresh token Plane
//! has spent. The process keeps the new pair in memory and a task of its own stores it as
//! soon as the database takes it (plane-core tries again with backoff, at most
//! [`plane_core::oauth::KEPT_PAIR_RETRY_MAX`] apart; no lease is needed, the save is a
//! compare and swap). A process that takes the lease after it ran out and finds the stored
//! refresh token named by another holder's spend record knows that renewal is **in
//! doubt**: it does not present the token (Plane would refuse it, and may revoke the new
//! one with it), gives the lease back and reads the store again for up to
//! [`RENEWAL_IN_DOUBT_WAIT`], then fails naming the holder. If that process died before
//! storing the pair, the pair is lost and the user must authorize again (the error says
//! so); a new grant replaces the stored refresh token, and the record no longer matches.
//!
//! A process refused with `invalid_grant` reads the store once more before it reports
//! that the user must authorize again. A renewal runs in a task of its own, so a caller
//! that gives up cannot cut it between Plane's answer and the save.
//!
//! Rollback protection catches a record put back on its own (a row from an old backup).
//! It cannot catch a whole older database restored (a `db backup` taken before a
//! renewal): the highest-version table is in the same database. After restoring one,
//! authorize again if the token is refused.
//!
//! A key rotation (`oauth rekey`) re-seals every record in one transaction; replicas
//! still running with the old key would seal their next renewal with it. Rotate with the
//! replicas stopped, or restart them with the new key at once.

mod copy;
mod postgres;
mod record;
mod sqlite;

pub use postgres::PgTokenStore;
pub use sqlite::SqliteTokenStore;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use plane_core::oauth::{TokenSet, TokenSink};
use plane_core::{BoxFuture, SecretString};
use serde::Serialize;
use zeroize::{Zeroize, Zeroizing};

use crate::config::Config;

/// Where the key is registered.
pub const KEY_REF: &str = "ssot/secrets/registry.yaml#plane_token_encryption_key";
/// The newest schema version of the SQLite token tables this build knows
/// ([`PgTokenStore::SCHEMA_VERSION`] is PostgreSQL's).
pub const SCHEMA_VERSION: i64 = sqlite::SCHEMA_VERSION;
/// How long an authorization started by `oauth authorize-url` waits for its
/// `oauth exchange`; older ones are refused and purged.
pub const PENDING_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How long a renewal lease lasts: far longer than a holder can take under it (the store's
/// retries, about 26 s, then plane-core's 30 s request timeout), so a live holder keeps
/// it; a dead one's runs out.
pub const RENEWAL_LEASE: Duration = Duration::from_secs(180);
/// How long a process that finds a renewal in doubt (another process spent the stored
/// refresh token and has not stored the new pair: [`TokenStore::renewal_in_doubt`]) keeps
/// reading the store for that pair before it gives up, naming it. The other process tries
/// to store it again at most [`plane_core::oauth::KEPT_PAIR_RETRY_MAX`] (5 s) apart, so a
/// live one whose database is back has stored it well within this.
pub const RENEWAL_IN_DOUBT_WAIT: Duration = Duration::from_secs(20);
/// The first byte of every sealed record: the format. 1: the owner alone is the associated
/// data (records written before version 2 of the SQLite schema); 2: the owner, the
/// record's version and its clear columns are (see the `record` module).
const FORMAT: u8 = 2;
const FORMAT_OWNER_ONLY: u8 = 1;

/// What can go wrong with the key or the token store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenStoreError {
    /// No key is configured.
    #[error(
        "no token encryption key: set PLANE_TOKEN_ENCRYPTION_KEY, or point \
         PLANE_TOKEN_ENCRYPTION_KEY_FILE at a file holding it (32 random bytes in base64; make \
         one with `openssl rand -base64 32`; see {KEY_REF})"
    )]
    KeyMissing,
    /// The key is not 32 bytes of base64.
    #[error(
        "{origin}: the token encryption key must be 32 random bytes in base64, but {problem}; \
         make one with `openssl rand -base64 32` (see {KEY_REF})"
    )]
    KeyInvalid {
        /// `PLANE_TOKEN_ENCRYPTION_KEY` or the key file's path.
        origin: String,
        /// What is wrong (never the value).
        problem: String,
    },
    /// A stored record does not open with this key.
    #[error(
        "{path}: the stored {what} for {owner} cannot be decrypted: it was sealed with another \
         PLANE_TOKEN_ENCRYPTION_KEY, or the record was changed. Use the key it was stored with, \
         or authorize again (`plane-server oauth authorize-url` / `plane-server oauth bot`) to \
         replace it"
    )]
    Undecryptable {
        /// The database file, or the PostgreSQL database and schema.
        path: String,
        /// `token` or `pending authorization`.
        what: &'static str,
        /// `installation:<id>`, `user:<name>` or `state <value>`.
        owner: String,
    },
    /// An older copy of a record was put back into the database.
    #[error(
        "{path}: the stored token for {owner} is version {found}, older than the newest written \
         ({newest}): an older copy of the record was put back into the database, and its \
         refresh token may be spent. It is refused; authorize again (`plane-server oauth \
         authorize-url` / `plane-server oauth bot`) to replace it"
    )]
    RolledBack {
        /// The database file, or the PostgreSQL database and schema.
        path: String,
        /// `installation:<id>` or `user:<name>`.
        owner: String,
        /// The record's version.
        found: i64,
        /// The highest version written for the owner.
        newest: i64,
    },
    /// The old key of a rotation does not open a stored record: nothing was changed.
    #[error(
        "{path}: PLANE_TOKEN_ENCRYPTION_KEY_OLD does not open the stored {what} of {owner}; \
         nothing was changed. Give the key the tokens were stored with as \
         PLANE_TOKEN_ENCRYPTION_KEY_OLD (or _FILE), and the new one as PLANE_TOKEN_ENCRYPTION_KEY"
    )]
    OldKeyWrong {
        /// The database file, or the PostgreSQL database and schema.
        path: String,
        /// `token` or `pending authorization`.
        what: &'static str,
        /// `installation:<id>`, `user:<name>` or `state <value>`.
        owner: String,
    },
    /// A pending authorization older than [`PENDING_LIFETIME`].
    #[error(
        "the authorization started at {started} (state {state}) expired after {minutes} minutes; \
         run `plane-server oauth authorize-url` again"
    )]
    PendingExpired {
        /// Its state value.
        state: String,
        /// When `oauth authorize-url` started it.
        started: String,
        /// The lifetime, in minutes.
        minutes: u64,
    },
    /// SQLite failed.
    #[error("{path}: could not {operation}: {message}")]
    Store {
        /// The database file.
        path: String,
        /// What was being done.
        operation: &'static str,
        /// SQLite's message.
        message: String,
    },
    /// PostgreSQL failed, could not be reached, or holds a newer schema (its message names
    /// the database, never its password, and what was being done).
    #[error(transparent)]
    Postgres(#[from] plane_postgres::Error),
    /// The file was written by a newer build.
    #[error(
        "{path}: the OAuth token tables are at schema version {found}, newer than this build \
         knows ({SCHEMA_VERSION}); run the newer plane-server, or restore a backup"
    )]
    SchemaTooNew {
        /// The database file.
        path: String,
        /// The version found.
        found: i64,
    },
}

impl TokenStoreError {
    /// Whether trying again may help: the database was busy or out of reach (never a wrong
    /// key or record).
    pub fn is_transient(&self) -> bool {
        match self {
            TokenStoreError::Store { .. } => true,
            TokenStoreError::Postgres(e) => !matches!(
                e,
                plane_postgres::Error::SchemaTooNew { .. }
                    | plane_postgres::Error::BadUrl { .. }
                    | plane_postgres::Error::BadSchema(_)
            ),
            _ => false,
        }
    }
}

/// The token encryption key. `Debug` never shows it.
#[derive(Clone)]
pub struct TokenKey(chacha20poly1305::Key);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

impl Drop for TokenKey {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl TokenKey {
    /// Parses 32 bytes of base64; `origin` names where the text came from.
    ///
    /// ```
    /// use plane_server::token_store::TokenKey;
    /// let text = base64_of(&[7u8; 32]);
    /// assert!(TokenKey::from_base64("test", &text).is_ok());
    /// let short = TokenKey::from_base64("test", &base64_of(&[7u8; 16])).unwrap_err();
    /// assert!(short.to_string().contains("openssl rand -base64 32"));
    /// # fn base64_of(bytes: &[u8]) -> String {
    /// #     use base64::Engine as _;
    /// #     base64::engine::general_purpose::STANDARD.encode(bytes)
    /// # }
    /// ```
    pub fn from_base64(origin: &str, text: &str) -> Result<Self, TokenStoreError> {
        let invalid = |problem: String| TokenStoreError::KeyInvalid {
            origin: origin.to_owned(),
            problem,
        };
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| invalid("it is not base64".into()))?,
        );
        if bytes.len() != 32 {
            return Err(invalid(format!("it decodes to {} bytes", bytes.len())));
        }
        Ok(Self(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    /// The key from `PLANE_TOKEN_ENCRYPTION_KEY` or the file named by
    /// `PLANE_TOKEN_ENCRYPTION_KEY_FILE` (one of them, not both); `None` when
    /// neither is set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, TokenStoreError> {
        Self::from_env_var(env, "PLANE_TOKEN_ENCRYPTION_KEY")
    }

    /// As [`from_env`](Self::from_env), from the variable `VAR` or `VAR_FILE` (the old
    /// key of a rotation is `PLANE_TOKEN_ENCRYPTION_KEY_OLD`).
    pub fn from_env_var(
        env: &dyn Fn(&str) -> Option<String>,
        var: &str,
    ) -> Result<Option<Self>, TokenStoreError> {
        let file = format!("{var}_FILE");
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        match (set(var), set(&file)) {
            (Some(_), Some(_)) => Err(TokenStoreError::KeyInvalid {
                origin: var.into(),
                problem: format!("both {var} and {file} are set (set only one)"),
            }),
            (Some(text), None) => Self::from_base64(var, &text).map(Some),
            (None, Some(path)) => {
                let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                    TokenStoreError::KeyInvalid {
                        origin: format!("{file}={path}"),
                        problem: format!("the file cannot be read ({e})"),
                    }
                })?);
                Self::from_base64(&format!("{file}={path}"), &text).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        self.seal_as(FORMAT, aad, plaintext)
    }

    fn seal_as(&self, format: u8, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(&self.0);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            // Only a message beyond XChaCha's 256 GiB limit fails; tokens are tiny.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + nonce.len() + sealed.len());
        out.push(format);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a pending authorization of either format (those sealed before records had
    /// versions are format 1, with the same associated data); returns the format with it.
    fn open_pending(&self, aad: &str, sealed: &[u8]) -> Option<(u8, Zeroizing<Vec<u8>>)> {
        [FORMAT, FORMAT_OWNER_ONLY]
            .into_iter()
            .find_map(|format| Some((format, self.open_as(format, aad, sealed)?)))
    }

    /// Opens a record sealed with `aad` in format `expected`.
    fn open_as(&self, expected: u8, aad: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&format, rest) = sealed.split_first()?;
        if format != expected || rest.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(24);
        XChaCha20Poly1305::new(&self.0)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// Whose token a record is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenOwner {
    /// An app installation's bot token (`client_credentials`).
    Installation(String),
    /// A user's token pair (authorization code + PKCE); the name is the operator's
    /// label for the user (`plane.oauth.user`).
    User(String),
}

impl fmt::Display for TokenOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenOwner::Installation(id) => write!(f, "installation:{id}"),
            TokenOwner::User(name) => write!(f, "user:{name}"),
        }
    }
}

impl TokenOwner {
    fn parse(text: &str) -> Option<Self> {
        match text.split_once(':')? {
            ("installation", id) => Some(TokenOwner::Installation(id.to_owned())),
            ("user", name) => Some(TokenOwner::User(name.to_owned())),
            _ => None,
        }
    }
}

/// A renewal another holder began and has not finished: it recorded spending a refresh
/// token to replace the stored one, and has not stored the pair it got (its database call
/// failed, or it died). See [`TokenStore::renewal_in_doubt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalInDoubt {
    /// The holder that spent it (`pid <n> / <uuid>`).
    pub holder: String,
    /// When it recorded spending it, on the database's clock.
    pub since: DateTime<Utc>,
}

/// The digest of a refresh token kept in a spending record: SHA-256 of the owner and the
/// token, never the token. Refresh tokens are long random strings, so it reveals nothing.
fn spend_digest(owner: &TokenOwner, refresh: &SecretString) -> String {
    use plane_core::ExposeSecret as _;
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(b"plane-connector spent refresh token\n");
    hash.update(owner.to_string().as_bytes());
    hash.update(b"\n");
    hash.update(refresh.expose_secret().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What `oauth status` shows of a stored token: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Whose it is (`installation:<id>` or `user:<name>`).
    pub owner: String,
    /// When the access token expires, if known.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether a refresh token is stored (user tokens).
    pub has_refresh_token: bool,
    /// The granted scopes.
    pub scope: Option<String>,
    /// When the record was last written.
    pub updated_at: DateTime<Utc>,
}

/// An authorization started by `oauth authorize-url`.
#[derive(Debug)]
pub struct PendingAuthorization {
    /// Whose token it will be.
    pub owner: TokenOwner,
    /// The PKCE verifier (sealed at rest).
    pub verifier: SecretString,
    /// The redirect URI in the authorize URL (the exchange must repeat it).
    pub redirect_uri: String,
    /// When `authorize-url` ran.
    pub created_at: DateTime<Utc>,
}

/// Where OAuth tokens are kept: SQLite ([`SqliteTokenStore`]) or PostgreSQL
/// ([`PgTokenStore`]). Every method is async; a SQLite store does its blocking work on
/// tokio's blocking pool, so no caller blocks a runtime thread.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Stores `tokens` for `owner`, replacing what was there.
    fn save<'a>(
        &'a self,
        owner: &'a TokenOwner,
        tokens: &'a TokenSet,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>>;
    /// The tokens stored for `owner`, if any.
    fn load<'a>(
        &'a self,
        owner: &'a TokenOwner,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, TokenStoreError>>;
    /// Every stored token, without values, by owner.
    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TokenStoreError>>;
    /// Keeps a started authorization under its `state`.
    fn save_pending<'a>(
        &'a self,
        state: &'a str,
        pending: &'a PendingAuthorization,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>>;
    /// Takes (and deletes) the authorization started with `state`.
    fn take_pending<'a>(
        &'a self,
        state: &'a str,
    ) -> BoxFuture<'a, Result<Option<PendingAuthorization>, TokenStoreError>>;
    /// Takes `owner`'s renewal lease for `holder` for `lasting`, if it is free, expired
    /// or `holder`'s already; `false` while another holds it. The lease's end is on the
    /// database's clock.
    fn try_lease<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        lasting: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>>;
    /// Records that `holder`, under its lease on `owner`, is about to spend a refresh token
    /// whose pair will replace the stored refresh token `replaces` (a digest of it, never
    /// the token), and extends the lease by `lasting` from now, atomically. `false`
    /// when the lease is no longer `holder`'s: nothing is recorded, and nothing must be
    /// spent. The record goes when `holder` ends the renewal ([`release`](Self::release)
    /// or [`compare_and_save`](Self::compare_and_save)), not when another holder does.
    fn mark_spending<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        replaces: &'a SecretString,
        lasting: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>>;
    /// Whether a holder other than `holder` recorded spending a refresh token to replace
    /// `stored` (the refresh token stored now) and has not stored what replaced it: then
    /// `stored` may be spent, and must not be presented.
    fn renewal_in_doubt<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        stored: &'a SecretString,
    ) -> BoxFuture<'a, Result<Option<RenewalInDoubt>, TokenStoreError>>;
    /// Ends `holder`'s lease on `owner` (nothing if another holds it), and drops what
    /// `holder` recorded spending ([`mark_spending`](Self::mark_spending)).
    fn release<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>>;
    /// In one transaction: stores `tokens` if the stored refresh token is `spent` (or
    /// nothing is stored), ends `holder`'s lease and drops what `holder` recorded spending.
    /// Returns the stored set when it was kept instead.
    ///
    /// It does not require the lease to be `holder`'s still: a pair Plane issued is the only
    /// live one once its refresh token is spent, and the compare alone decides whether it
    /// is stored (a holder past its lease is checked before it spends, by
    /// [`mark_spending`](Self::mark_spending), not after).
    fn compare_and_save<'a>(
        &'a self,
        owner: &'a TokenOwner,
        spent: &'a SecretString,
        tokens: &'a TokenSet,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, TokenStoreError>>;
    /// Re-encrypts every stored token and pending authorization from `old` to this
    /// store's key, in one transaction: when `old` does not open one of them, nothing is
    /// changed ([`TokenStoreError::OldKeyWrong`]). Expired pending authorizations are
    /// purged first. Returns how many records it re-sealed.
    fn rekey<'a>(&'a self, old: &'a TokenKey) -> BoxFuture<'a, Result<usize, TokenStoreError>>;
    /// Where the tokens are, for messages: the database file, or the PostgreSQL database
    /// (never its password) and schema.
    fn location(&self) -> String;
}

/// Opens (creating and migrating if needed) the token store the configuration names:
/// PostgreSQL when the database is a `postgres://` URL, else the SQLite file.
pub async fn open_for(
    config: &Config,
    key: TokenKey,
) -> Result<Arc<dyn TokenStore>, TokenStoreError> {
    Ok(match &config.postgres {
        Some(pg) => Arc::new(PgTokenStore::open(connect(pg).await?, key).await?),
        None => {
            let path = config.database.clone();
            Arc::new(blocking_open(config, move || SqliteTokenStore::open(&path, key)).await?)
        }
    })
}

/// As [`open_for`], but only where the token tables already exist at the current version
/// (nothing is created or migrated; for `check`). `None` without them.
pub async fn open_existing_for(
    config: &Config,
    key: TokenKey,
) -> Result<Option<Arc<dyn TokenStore>>, TokenStoreError> {
    Ok(match &config.postgres {
        Some(pg) => PgTokenStore::open_existing(connect_existing(pg).await?, key)
            .await?
            .map(|s| Arc::new(s) as Arc<dyn TokenStore>),
        None => {
            let path = config.database.clone();
            blocking_open(config, move || SqliteTokenStore::open_existing(&path, key))
                .await?
                .map(|s| Arc::new(s) as Arc<dyn TokenStore>)
        }
    })
}

/// As [`open_for`], without a key and creating nothing: only [`TokenStore::list`] works
/// (for `oauth status` and `check`). A database without token tables lists nothing; a
/// missing SQLite file is an error.
pub async fn open_for_listing(config: &Config) -> Result<Arc<dyn TokenStore>, TokenStoreError> {
    Ok(match &config.postgres {
        Some(pg) => Arc::new(PgTokenStore::open_for_listing(connect_existing(pg).await?).await?),
        None => {
            let path = config.database.clone();
            Arc::new(
                blocking_open(config, move || SqliteTokenStore::open_for_listing(&path)).await?,
            )
        }
    })
}

/// Where the configuration keeps tokens, for messages (never a password).
pub fn location_of(config: &Config) -> String {
    match &config.postgres {
        Some(pg) => pg.describe(),
        None => config.database.display().to_string(),
    }
}

/// A small pool: a token store makes one call at a time per renewal.
async fn connect(
    pg: &crate::config::PostgresConfig,
) -> Result<plane_postgres::Database, TokenStoreError> {
    Ok(pg.options().clone().pool_size(2).connect().await?)
}

/// As [`connect`], creating nothing (not even the schema): for readers.
async fn connect_existing(
    pg: &crate::config::PostgresConfig,
) -> Result<plane_postgres::Database, TokenStoreError> {
    Ok(pg.options().clone().pool_size(2).connect_existing().await?)
}

/// Runs a SQLite open (file work) on the blocking pool.
async fn blocking_open<T: Send + 'static>(
    config: &Config,
    open: impl FnOnce() -> Result<T, TokenStoreError> + Send + 'static,
) -> Result<T, TokenStoreError> {
    tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| TokenStoreError::Store {
            path: location_of(config),
            operation: "open the database",
            message: format!("the task failed ({e})"),
        })?
}

/// Hands every new token set of one owner to a [`TokenStore`], before the token
/// is used, and renews one process at a time (plane-core's [`TokenSink`]; see
/// "Renewal across processes" above).
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Arc<dyn TokenStore>,
    owner: TokenOwner,
    /// Who holds a lease taken through this sink: unique per sink, so two sinks in one
    /// process (or two processes) never take each other's lease for their own.
    holder: String,
    /// How long a lease taken through this sink lasts ([`RENEWAL_LEASE`] unless set).
    lease: Duration,
    /// How long a renewal in doubt is waited for ([`RENEWAL_IN_DOUBT_WAIT`] unless set).
    in_doubt_wait: Duration,
}

impl StoreSink {
    /// Saves `owner`'s tokens to `store`.
    pub fn new(store: Arc<dyn TokenStore>, owner: TokenOwner) -> Self {
        let holder = format!("pid {} / {}", std::process::id(), uuid::Uuid::new_v4());
        Self {
            store,
            owner,
            holder,
            lease: RENEWAL_LEASE,
            in_doubt_wait: RENEWAL_IN_DOUBT_WAIT,
        }
    }

    /// Leases taken through this sink last `lease` instead of [`RENEWAL_LEASE`] (for tests;
    /// a lease must outlast a token request, up to 30 s, and the store calls around it).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// A renewal in doubt is waited for `wait` instead of [`RENEWAL_IN_DOUBT_WAIT`] before
    /// the renewal gives up (for tests).
    pub fn with_in_doubt_wait(mut self, wait: Duration) -> Self {
        self.in_doubt_wait = wait;
        self
    }

    /// Runs a store call, retrying a failed one (a busy SQLite file is normal: it is
    /// shared with the webhook store; a PostgreSQL connection may be lost and remade)
    /// before giving up. A wrong key or record is never retried.
    async fn call<'s, T>(
        &'s self,
        doing: &'static str,
        f: impl Fn(
            &'s dyn TokenStore,
            &'s TokenOwner,
            &'s str,
        ) -> BoxFuture<'s, Result<T, TokenStoreError>>,
    ) -> Result<T, plane_core::Error> {
        const TRIES: u32 = 5;
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=TRIES {
            let error = match f(self.store.as_ref(), &self.owner, &self.holder).await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < TRIES => e,
                Err(e) => {
                    return Err(plane_core::Error::Token {
                        message: format!("could not {doing}: {e}"),
                    });
                }
            };
            tracing::warn!(attempt, error = %error, "token store busy: trying again");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        unreachable!("the last attempt returns")
    }

    async fn release(&self) -> Result<(), plane_core::Error> {
        self.call("end the token renewal lease", |store, owner, holder| {
            store.release(owner, holder)
        })
        .await
    }

    /// Takes the owner's lease, waiting while another process holds it.
    async fn take_lease(&self) -> Result<(), plane_core::Error> {
        // A live holder finishes within its lease; a dead one's runs out. Poll until
        // then, with a little more to spare.
        let deadline = tokio::time::Instant::now() + self.lease * 2;
        let mut wait = Duration::from_millis(20);
        loop {
            let taken = self
                .call("take the token renewal lease", |store, owner, holder| {
                    store.try_lease(owner, holder, self.lease)
                })
                .await?;
            if taken {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(plane_core::Error::Token {
                    message: format!(
                        "another process has been renewing the token of {} for over {:?}; \
                         try again",
                        self.owner,
                        self.lease * 2
                    ),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    /// Under the lease: the stored pair, and the renewal in doubt if another process spent
    /// its refresh token and has not stored what replaced it.
    async fn read_leased(
        &self,
    ) -> Result<(Option<TokenSet>, Option<RenewalInDoubt>), plane_core::Error> {
        let stored = self.load().await?;
        let doubt = match stored.as_ref().and_then(|s| s.refresh_token.as_ref()) {
            Some(refresh) => {
                self.call("read the token renewal records", |store, owner, holder| {
                    store.renewal_in_doubt(owner, holder, refresh)
                })
                .await?
            }
            None => None,
        };
        Ok((stored, doubt))
    }
}

impl TokenSink for StoreSink {
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        Box::pin(
            self.call("store the renewed token", move |store, owner, _| {
                store.save(owner, tokens)
            }),
        )
    }

    fn begin_renewal(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.in_doubt_wait;
            let mut wait = Duration::from_millis(250);
            let mut told = false;
            loop {
                self.take_lease().await?;
                let doubt = match self.read_leased().await {
                    Ok((stored, None)) => return Ok(stored),
                    Ok((_, Some(doubt))) => doubt,
                    Err(e) => {
                        // Nothing will follow under this lease: give it back now, not at its end.
                        let _ = self.release().await;
                        return Err(e);
                    }
                };
                // The stored refresh token may be spent: presenting it would be refused, and
                // could make Plane revoke the new one too. Wait for the process that spent
                // it to store the new pair (it tries until the database takes it), reading
                // the store again, without holding the lease meanwhile.
                self.release().await?;
                if tokio::time::Instant::now() >= deadline {
                    return Err(plane_core::Error::Token {
                        message: format!(
                            "renewal in doubt: another replica ({}, at {}) spent the refresh \
                             token of {} but could not store the new one; it will store it when \
                             the database is back. Waited {:?}; try again. If that process has \
                             stopped, the new token is lost: authorize again (`plane-server \
                             oauth authorize-url`, then `oauth exchange`)",
                            doubt.holder,
                            doubt
                                .since
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            self.owner,
                            self.in_doubt_wait
                        ),
                    });
                }
                if !told {
                    told = true;
                    tracing::warn!(
                        owner = %self.owner,
                        holder = %doubt.holder,
                        "token renewal in doubt: another process spent the stored refresh \
                         token and has not stored the new one yet; waiting for it"
                    );
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        })
    }

    fn spending<'a>(
        &'a self,
        replaces: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        Box::pin(async move {
            let ours = self
                .call("record the token renewal", |store, owner, holder| {
                    store.mark_spending(owner, holder, replaces, self.lease)
                })
                .await?;
            if ours {
                Ok(())
            } else {
                Err(plane_core::Error::Token {
                    message: format!(
                        "the renewal lease on the token of {} ran out and another process took \
                         it before the refresh token was presented; nothing was presented, try \
                         again",
                        self.owner
                    ),
                })
            }
        })
    }

    fn end_renewal<'a>(
        &'a self,
        spent: &'a SecretString,
        renewed: Option<&'a TokenSet>,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, plane_core::Error>> {
        Box::pin(async move {
            match renewed {
                Some(tokens) => {
                    self.call("store the renewed token", move |store, owner, holder| {
                        store.compare_and_save(owner, spent, tokens, holder)
                    })
                    .await
                }
                None => {
                    self.release().await?;
                    Ok(None)
                }
            }
        })
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        Box::pin(self.call("read the stored token", |store, owner, _| store.load(owner)))
    }
}
