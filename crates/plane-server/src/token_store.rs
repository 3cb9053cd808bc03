//! OAuth tokens at rest: encrypted, in the server's SQLite file, behind a trait.
//!
//! * [`TokenKey`] is the 32-byte key from `PLANE_TOKEN_ENCRYPTION_KEY` (or a file
//!   named by `PLANE_TOKEN_ENCRYPTION_KEY_FILE`), base64. It is never stored
//!   beside the data. A key of another length is refused with how to make one.
//! * Every token set is sealed with XChaCha20-Poly1305 (the `chacha20poly1305`
//!   crate; a random 24-byte nonce per record, so random nonces never collide in
//!   practice). The record's owner is the associated data: a ciphertext moved to
//!   another row, a changed byte or another key all fail with
//!   [`TokenStoreError::Undecryptable`], never garbage.
//! * [`TokenStore`] is the seam; [`SqliteTokenStore`] keeps the rows in the same
//!   database file as the deliveries and BIR deadlines, with its own migrations
//!   table (`oauth_schema_migrations`), as plane-bir's store does.
//! * [`StoreSink`] adapts a store to plane-core's [`TokenSink`], so a renewed
//!   token pair is stored before it is used.
//!
//! Why here and not in plane-core: plane-core is the HTTP client and stays free
//! of SQLite and of key handling; only the server keeps tokens, and it already
//! owns the database file.
//!
//! # Schema (version 1)
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
//! # Rollback and tampering
//!
//! A record's associated data is its owner, its version and its clear columns
//! (`expires_at`, `has_refresh`, `scope`): a ciphertext moved to another row, put back
//! beside other clear columns, or with a changed byte does not open. A whole older row
//! put back into the file (an old backup's, say, holding a refresh token Plane has spent)
//! opens, but its version is below the highest written, so it is refused by name
//! ([`TokenStoreError::RolledBack`]). Records of the first format (written before version
//! 2) are read as they are and take the new format at their next write.
//!
//! Pending authorizations expire after [`PENDING_LIFETIME`] (15 minutes): `oauth
//! exchange` refuses an older one by name, and each new one purges the expired.
//!
//! The key and every plaintext (the sealed JSON, the decoded key) are zeroed when
//! dropped (`zeroize`; the tokens themselves are `secrecy` strings, zeroed likewise).
//!
//! # Renewal across processes
//!
//! `serve`, `check` and a scheduled `bir sync` share one stored token. Plane rotates
//! refresh tokens and refuses a spent one, so [`StoreSink`] implements plane-core's
//! renewal protocol ([`TokenSink`]):
//!
//! 1. **Lease.** A process about to renew takes the owner's row in `oauth_renewals` (a
//!    short `IMMEDIATE` transaction: free, expired, or its own), and waits while another
//!    holds it. The lease is a row with an end time ([`RENEWAL_LEASE`]), never a SQLite
//!    lock held across the HTTP call; a process that dies holding it delays the others
//!    by the rest of the lease at most.
//! 2. **Re-read.** Under the lease it reads the stored pair: if another process renewed
//!    meanwhile, it uses that pair and spends nothing.
//! 3. **Compare and swap.** It stores the new pair only if the stored refresh token is
//!    still the one it spent, in the transaction that ends the lease; otherwise the
//!    stored pair (a newer `oauth exchange`) is kept and used. A busy database (the file
//!    is shared with the webhook store) is retried before giving up.
//!
//! A process refused with `invalid_grant` reads the store once more before it reports
//! that the user must authorize again. A pair whose save failed is kept in memory and
//! stored first at the next renewal, and a renewal runs in a task of its own, so a caller
//! that gives up cannot cut it between Plane's answer and the save. The lease's end time
//! is SQLite's clock, read when the statement runs.
//!
//! The PostgreSQL store is to keep the same protocol: the same lease row with `until`
//! set from the server's `now()` (not a replica's clock, and not a row lock or an advisory
//! lock held across the HTTP call, which an idle-in-transaction timeout or a transaction
//! pooler can drop mid-call), and the compare and swap as one `UPDATE ... WHERE` the
//! stored refresh token is the spent one.
//!
//! Rollback protection catches a record put back on its own (a row from an old backup).
//! It cannot catch a whole older file restored (a `db backup` taken before a renewal):
//! the highest-version table is in the same file. After restoring one, authorize again
//! if the token is refused.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, SecondsFormat, Utc};
use plane_core::oauth::{TokenSet, TokenSink};
use plane_core::{BoxFuture, ExposeSecret, SecretString};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// Where the key is registered.
pub const KEY_REF: &str = "ssot/secrets/registry.yaml#plane_token_encryption_key";
/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 2;
const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE oauth_tokens (
    owner       TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    expires_at  TEXT,
    has_refresh INTEGER NOT NULL,
    scope       TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE oauth_pending (
    state        TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
",
    "
CREATE TABLE oauth_renewals (
    owner  TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  TEXT NOT NULL
);
ALTER TABLE oauth_tokens ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE TABLE oauth_token_versions (
    owner   TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
",
];
/// How long an authorization started by `oauth authorize-url` waits for its
/// `oauth exchange`; older ones are refused and purged.
pub const PENDING_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How long a renewal lease lasts: far longer than a holder can take under it (the store's
/// retries, about 26 s, then plane-core's 30 s request timeout), so a live holder keeps
/// it; a dead one's runs out.
pub const RENEWAL_LEASE: std::time::Duration = std::time::Duration::from_secs(180);
/// The first byte of every sealed record: the format. 1: the owner alone is the associated
/// data (records written before version 2 of the schema); 2: the owner, the record's
/// version and its clear columns are (see [`record_aad`]).
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
        /// The database file.
        path: String,
        /// `token` or `pending authorization`.
        what: &'static str,
        /// `installation:<id>`, `user:<name>` or `state <value>`.
        owner: String,
    },
    /// An older copy of a record was put back into the file.
    #[error(
        "{path}: the stored token for {owner} is version {found}, older than the newest written \
         ({newest}): an older copy of the record was put back into the file, and its refresh \
         token may be spent. It is refused; authorize again (`plane-server oauth authorize-url` / \
         `plane-server oauth bot`) to replace it"
    )]
    RolledBack {
        /// The database file.
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
        /// The database file.
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

    /// Opens a record sealed with `aad` (in format `format`, [`FORMAT`] unless said).
    fn open(&self, aad: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.open_as(FORMAT, aad, sealed)
    }

    /// Opens a pending authorization of either format (those sealed before records had
    /// versions are format 1, with the same associated data); returns the format with it.
    fn open_pending(&self, aad: &str, sealed: &[u8]) -> Option<(u8, Zeroizing<Vec<u8>>)> {
        [FORMAT, FORMAT_OWNER_ONLY]
            .into_iter()
            .find_map(|format| Some((format, self.open_as(format, aad, sealed)?)))
    }

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

/// Where OAuth tokens are kept. The methods block (SQLite); async callers go
/// through `tokio::task::spawn_blocking` ([`StoreSink`] does).
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Stores `tokens` for `owner`, replacing what was there.
    fn save(&self, owner: &TokenOwner, tokens: &TokenSet) -> Result<(), TokenStoreError>;
    /// The tokens stored for `owner`, if any.
    fn load(&self, owner: &TokenOwner) -> Result<Option<TokenSet>, TokenStoreError>;
    /// Every stored token, without values, by owner.
    fn list(&self) -> Result<Vec<TokenInfo>, TokenStoreError>;
    /// Keeps a started authorization under its `state`.
    fn save_pending(
        &self,
        state: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), TokenStoreError>;
    /// Takes (and deletes) the authorization started with `state`.
    fn take_pending(&self, state: &str) -> Result<Option<PendingAuthorization>, TokenStoreError>;
    /// Takes `owner`'s renewal lease for `holder` for `lasting`, if it is free, expired
    /// or `holder`'s already; `false` while another holds it.
    fn try_lease(
        &self,
        owner: &TokenOwner,
        holder: &str,
        lasting: std::time::Duration,
    ) -> Result<bool, TokenStoreError>;
    /// Ends `holder`'s lease on `owner` (nothing if another holds it).
    fn release(&self, owner: &TokenOwner, holder: &str) -> Result<(), TokenStoreError>;
    /// In one transaction: stores `tokens` if the stored refresh token is `spent` (or
    /// nothing is stored), and ends `holder`'s lease. Returns the stored set when it was
    /// kept instead.
    fn compare_and_save(
        &self,
        owner: &TokenOwner,
        spent: &SecretString,
        tokens: &TokenSet,
        holder: &str,
    ) -> Result<Option<TokenSet>, TokenStoreError>;
}

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

/// The SQLite token store. See the [module docs](self).
///
/// ```
/// use plane_core::{ExposeSecret, SecretString};
/// use plane_core::oauth::TokenSet;
/// use plane_server::token_store::{SqliteTokenStore, TokenKey, TokenOwner, TokenStore};
/// # use base64::Engine as _;
/// let dir = tempfile::tempdir().unwrap();
/// let key_text = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
/// let key = TokenKey::from_base64("example", &key_text)?;
/// let store = SqliteTokenStore::open(dir.path().join("plane.db"), key)?;
/// let owner = TokenOwner::Installation("inst-1".into());
/// let tokens = TokenSet {
///     access_token: SecretString::from(format!("fake-{}", 1)),
///     refresh_token: None,
///     expires_at: None,
///     scope: None,
/// };
/// store.save(&owner, &tokens)?;
/// assert_eq!(store.load(&owner)?.unwrap().access_token.expose_secret(), "fake-1");
/// # Ok::<(), plane_server::token_store::TokenStoreError>(())
/// ```
pub struct SqliteTokenStore {
    path: PathBuf,
    key: Option<TokenKey>,
    connection: Mutex<Connection>,
}

impl fmt::Debug for SqliteTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn store_error<'a>(
    path: &'a Path,
    operation: &'static str,
) -> impl Fn(rusqlite::Error) -> TokenStoreError + 'a {
    move |e| TokenStoreError::Store {
        path: path.display().to_string(),
        operation,
        message: e.to_string(),
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The creation time before which a pending authorization has expired, as stored.
fn pending_cutoff() -> String {
    (Utc::now() - chrono::Duration::from_std(PENDING_LIFETIME).unwrap_or_default())
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl SqliteTokenStore {
    /// Opens (creating and migrating if needed) the token tables in the database at `path`.
    pub fn open(path: impl AsRef<Path>, key: TokenKey) -> Result<Self, TokenStoreError> {
        plane_webhook::prepare_database_file(&path);
        let path = path.as_ref();
        let mut connection =
            Connection::open(path).map_err(store_error(path, "open the database"))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(store_error(path, "configure the database"))?;
        migrate(&mut connection, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            key: Some(key),
            connection: Mutex::new(connection),
        })
    }

    /// Opens the token tables only where they already exist: `None` when the file
    /// or its token tables are missing; nothing is created or migrated (for `check`).
    /// A store it returns can still save, as a renewal rotates the refresh token.
    pub fn open_existing(
        path: impl AsRef<Path>,
        key: TokenKey,
    ) -> Result<Option<Self>, TokenStoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Ok(None);
        }
        let connection = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_error(path, "open the database"))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(store_error(path, "configure the database"))?;
        match schema_version(&connection, path)? {
            0 => Ok(None),
            SCHEMA_VERSION => Ok(Some(Self {
                path: path.to_path_buf(),
                key: Some(key),
                connection: Mutex::new(connection),
            })),
            found if found > SCHEMA_VERSION => Err(TokenStoreError::SchemaTooNew {
                path: path.display().to_string(),
                found,
            }),
            // Older tables: whoever migrates them (serve, the oauth commands) goes first.
            _ => Ok(None),
        }
    }

    /// Opens an existing database read-only and without a key: only
    /// [`list`](TokenStore::list) works (for `oauth status`). A file without token
    /// tables lists nothing.
    pub fn open_for_listing(path: impl AsRef<Path>) -> Result<Self, TokenStoreError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(TokenStoreError::Store {
                path: path.display().to_string(),
                operation: "open the database read-only",
                message: "no such file (`plane-server oauth exchange` or `oauth bot` creates it)"
                    .into(),
            });
        }
        let connection = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store_error(path, "open the database read-only"))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(store_error(path, "configure the database"))?;
        let version = schema_version(&connection, path)?;
        if version > SCHEMA_VERSION {
            return Err(TokenStoreError::SchemaTooNew {
                path: path.display().to_string(),
                found: version,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            key: None,
            connection: Mutex::new(connection),
        })
    }

    /// Re-encrypts every stored token and pending authorization from `old` to this
    /// store's key, in one transaction: when `old` does not open one of them, nothing is
    /// changed ([`TokenStoreError::OldKeyWrong`]). Returns how many records it re-sealed.
    pub fn rekey(&self, old: &TokenKey) -> Result<usize, TokenStoreError> {
        let new = self.key()?;
        let path = self.path.as_path();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        let wrong = |what: &'static str, owner: String| TokenStoreError::OldKeyWrong {
            path: path.display().to_string(),
            what,
            owner,
        };
        type Row = (String, Vec<u8>, i64, Option<String>, bool, Option<String>);
        let tokens: Vec<Row> = tx
            .prepare(
                "SELECT owner, sealed, version, expires_at, has_refresh, scope FROM oauth_tokens",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect()
            })
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        let mut count = 0;
        for (owner, sealed, version, expires_at, has_refresh, scope) in tokens {
            // The same associated data and format as the record had: only the key changes.
            let (format, aad) = if version == 0 {
                (FORMAT_OWNER_ONLY, owner.clone())
            } else {
                let aad = record_aad(
                    &owner,
                    version,
                    expires_at.as_deref(),
                    has_refresh,
                    scope.as_deref(),
                );
                (FORMAT, aad)
            };
            let plain = old
                .open_as(format, &aad, &sealed)
                .ok_or_else(|| wrong("token", owner.clone()))?;
            tx.execute(
                "UPDATE oauth_tokens SET sealed = ?1 WHERE owner = ?2",
                params![new.seal_as(format, &aad, &plain), owner],
            )
            .map_err(store_error(path, "re-encrypt the tokens"))?;
            count += 1;
        }
        // Expired ones can never be exchanged: they go, rather than hold the rotation up.
        tx.execute(
            "DELETE FROM oauth_pending WHERE created_at < ?1",
            [pending_cutoff()],
        )
        .map_err(store_error(
            path,
            "purge the expired pending authorizations",
        ))?;
        let pending: Vec<(String, String, Vec<u8>)> = tx
            .prepare("SELECT state, owner, sealed FROM oauth_pending")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        for (state, owner, sealed) in pending {
            let aad = format!("pending:{state}:{owner}");
            let (format, plain) = old
                .open_pending(&aad, &sealed)
                .ok_or_else(|| wrong("pending authorization", format!("state {state}")))?;
            tx.execute(
                "UPDATE oauth_pending SET sealed = ?1 WHERE state = ?2",
                params![new.seal_as(format, &aad, &plain), state],
            )
            .map_err(store_error(path, "re-encrypt the tokens"))?;
            count += 1;
        }
        tx.commit()
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        Ok(count)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Transactions roll back on drop, so a poisoned lock is still usable.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key(&self) -> Result<&TokenKey, TokenStoreError> {
        self.key.as_ref().ok_or(TokenStoreError::KeyMissing)
    }

    /// Seals and writes `owner`'s row at the next version (inside the caller's
    /// transaction: the version is read, raised and recorded with the row).
    fn write(
        &self,
        connection: &Connection,
        owner: &TokenOwner,
        tokens: &TokenSet,
    ) -> Result<(), TokenStoreError> {
        let path = self.path.as_path();
        let owner_text = owner.to_string();
        let newest: i64 = connection
            .query_row(
                "SELECT MAX(COALESCE((SELECT version FROM oauth_tokens WHERE owner = ?1), 0),
                            COALESCE((SELECT version FROM oauth_token_versions WHERE owner = ?1), 0))",
                [&owner_text],
                |row| row.get(0),
            )
            .map_err(store_error(path, "store the token"))?;
        let version = newest + 1;
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
            &owner_text,
            version,
            expires_at.as_deref(),
            has_refresh,
            tokens.scope.as_deref(),
        );
        let sealed = self.key()?.seal(&aad, &plain);
        connection
            .execute(
                "INSERT INTO oauth_tokens (owner, sealed, expires_at, has_refresh, scope, updated_at, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (owner) DO UPDATE SET sealed = excluded.sealed,
                   expires_at = excluded.expires_at, has_refresh = excluded.has_refresh,
                   scope = excluded.scope, updated_at = excluded.updated_at,
                   version = excluded.version",
                params![
                    owner_text,
                    sealed,
                    expires_at,
                    has_refresh,
                    tokens.scope,
                    now(),
                    version
                ],
            )
            .map_err(store_error(path, "store the token"))?;
        connection
            .execute(
                "INSERT INTO oauth_token_versions (owner, version) VALUES (?1, ?2)
                 ON CONFLICT (owner) DO UPDATE SET version = excluded.version",
                params![owner_text, version],
            )
            .map_err(store_error(path, "store the token"))?;
        Ok(())
    }

    /// Reads and opens `owner`'s row; refuses one older than the newest written.
    fn read(
        &self,
        connection: &Connection,
        owner: &TokenOwner,
    ) -> Result<Option<TokenSet>, TokenStoreError> {
        let path = self.path.as_path();
        let owner_text = owner.to_string();
        type Row = (Vec<u8>, i64, Option<String>, bool, Option<String>, i64);
        let row: Option<Row> = connection
            .query_row(
                "SELECT sealed, version, expires_at, has_refresh, scope,
                        COALESCE((SELECT version FROM oauth_token_versions v WHERE v.owner = t.owner), 0)
                 FROM oauth_tokens t WHERE owner = ?1",
                [&owner_text],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(store_error(path, "read the token"))?;
        let Some((sealed, version, expires_at, has_refresh, scope, newest)) = row else {
            return Ok(None);
        };
        if version < newest {
            return Err(TokenStoreError::RolledBack {
                path: path.display().to_string(),
                owner: owner_text,
                found: version,
                newest,
            });
        }
        let key = self.key()?;
        let plain = if version == 0 {
            // Written before records had versions: the owner alone is bound to it.
            key.open_as(FORMAT_OWNER_ONLY, &owner_text, &sealed)
        } else {
            let aad = record_aad(
                &owner_text,
                version,
                expires_at.as_deref(),
                has_refresh,
                scope.as_deref(),
            );
            key.open(&aad, &sealed)
        }
        .ok_or_else(|| self.undecryptable("token", owner_text.clone()))?;
        let mut record: Sealed = serde_json::from_slice(&plain)
            .map_err(|_| self.undecryptable("token", owner_text.clone()))?;
        Ok(Some(TokenSet {
            access_token: SecretString::from(std::mem::take(&mut record.access_token)),
            refresh_token: record.refresh_token.take().map(SecretString::from),
            expires_at: record.expires_at,
            scope: record.scope.take(),
        }))
    }

    fn undecryptable(&self, what: &'static str, owner: String) -> TokenStoreError {
        TokenStoreError::Undecryptable {
            path: self.path.display().to_string(),
            what,
            owner,
        }
    }
}

impl TokenStore for SqliteTokenStore {
    fn save(&self, owner: &TokenOwner, tokens: &TokenSet) -> Result<(), TokenStoreError> {
        let path = self.path.as_path();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "store the token"))?;
        self.write(&tx, owner, tokens)?;
        tx.commit().map_err(store_error(path, "store the token"))
    }

    fn load(&self, owner: &TokenOwner) -> Result<Option<TokenSet>, TokenStoreError> {
        self.read(&self.lock(), owner)
    }

    fn list(&self) -> Result<Vec<TokenInfo>, TokenStoreError> {
        let connection = self.lock();
        let path = self.path.as_path();
        if schema_version(&connection, path)? == 0 {
            return Ok(Vec::new());
        }
        let mut statement = connection
            .prepare(
                "SELECT owner, expires_at, has_refresh, scope, updated_at FROM oauth_tokens
                 ORDER BY owner",
            )
            .map_err(store_error(path, "list the tokens"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, bool>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .map_err(store_error(path, "list the tokens"))?;
        let mut out = Vec::new();
        for row in rows {
            let (owner, expires_at, has_refresh_token, scope, updated_at) =
                row.map_err(store_error(path, "list the tokens"))?;
            out.push(TokenInfo {
                owner: TokenOwner::parse(&owner).map_or(owner, |o| o.to_string()),
                expires_at: expires_at.as_deref().and_then(parse_time),
                has_refresh_token,
                scope,
                updated_at: parse_time(&updated_at).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    fn save_pending(
        &self,
        state: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), TokenStoreError> {
        let sealed = self.key()?.seal(
            &format!("pending:{state}:{}", pending.owner),
            pending.verifier.expose_secret().as_bytes(),
        );
        let connection = self.lock();
        // Each new authorization clears away those that can no longer be exchanged.
        connection
            .execute(
                "DELETE FROM oauth_pending WHERE created_at < ?1",
                [pending_cutoff()],
            )
            .map_err(store_error(
                &self.path,
                "purge the expired pending authorizations",
            ))?;
        connection
            .execute(
                "INSERT OR REPLACE INTO oauth_pending (state, owner, sealed, redirect_uri, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    state,
                    pending.owner.to_string(),
                    sealed,
                    pending.redirect_uri,
                    pending
                        .created_at
                        .to_rfc3339_opts(SecondsFormat::Millis, true)
                ],
            )
            .map_err(store_error(&self.path, "store the pending authorization"))?;
        Ok(())
    }

    fn take_pending(&self, state: &str) -> Result<Option<PendingAuthorization>, TokenStoreError> {
        let path = self.path.as_path();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "read the pending authorization"))?;
        let row: Option<(String, Vec<u8>, String, String)> = tx
            .query_row(
                "SELECT owner, sealed, redirect_uri, created_at FROM oauth_pending WHERE state = ?1",
                [state],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(store_error(path, "read the pending authorization"))?;
        let Some((owner_text, sealed, redirect_uri, created_at)) = row else {
            return Ok(None);
        };
        tx.execute("DELETE FROM oauth_pending WHERE state = ?1", [state])
            .map_err(store_error(path, "delete the pending authorization"))?;
        let started = parse_time(&created_at).unwrap_or_default();
        if Utc::now() - started > chrono::Duration::from_std(PENDING_LIFETIME).unwrap_or_default() {
            // Deleted all the same: it can never be exchanged.
            tx.commit()
                .map_err(store_error(path, "delete the pending authorization"))?;
            return Err(TokenStoreError::PendingExpired {
                state: state.to_owned(),
                started: created_at,
                minutes: PENDING_LIFETIME.as_secs() / 60,
            });
        }
        let undecryptable =
            || self.undecryptable("pending authorization", format!("state {state}"));
        let owner = TokenOwner::parse(&owner_text).ok_or_else(undecryptable)?;
        let verifier = self
            .key()?
            .open_pending(&format!("pending:{state}:{owner}"), &sealed)
            .and_then(|(_, v)| String::from_utf8(v.to_vec()).ok())
            .ok_or_else(undecryptable)?;
        tx.commit()
            .map_err(store_error(path, "delete the pending authorization"))?;
        Ok(Some(PendingAuthorization {
            owner,
            verifier: SecretString::from(verifier),
            redirect_uri,
            created_at: started,
        }))
    }

    fn try_lease(
        &self,
        owner: &TokenOwner,
        holder: &str,
        lasting: std::time::Duration,
    ) -> Result<bool, TokenStoreError> {
        let path = self.path.as_path();
        // One statement, on SQLite's clock (one clock for every process on the file, read
        // when the statement runs, not before a wait for a busy database): the row is taken
        // when it is free, run out or already ours.
        let taken = self
            .lock()
            .execute(
                "INSERT INTO oauth_renewals (owner, holder, until)
                 VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3))
                 ON CONFLICT (owner) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE oauth_renewals.until < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                    OR oauth_renewals.holder = excluded.holder",
                params![
                    owner.to_string(),
                    holder,
                    format!("+{:.3} seconds", lasting.as_secs_f64())
                ],
            )
            .map_err(store_error(path, "take the renewal lease"))?;
        Ok(taken == 1)
    }

    fn release(&self, owner: &TokenOwner, holder: &str) -> Result<(), TokenStoreError> {
        self.lock()
            .execute(
                "DELETE FROM oauth_renewals WHERE owner = ?1 AND holder = ?2",
                params![owner.to_string(), holder],
            )
            .map_err(store_error(&self.path, "end the renewal lease"))?;
        Ok(())
    }

    fn compare_and_save(
        &self,
        owner: &TokenOwner,
        spent: &SecretString,
        tokens: &TokenSet,
        holder: &str,
    ) -> Result<Option<TokenSet>, TokenStoreError> {
        let path = self.path.as_path();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "store the renewed token"))?;
        let stored = self.read(&tx, owner)?;
        let still_spent = stored.as_ref().is_none_or(|s| {
            s.refresh_token
                .as_ref()
                .is_some_and(|r| r.expose_secret() == spent.expose_secret())
        });
        if still_spent {
            self.write(&tx, owner, tokens)?;
        }
        tx.execute(
            "DELETE FROM oauth_renewals WHERE owner = ?1 AND holder = ?2",
            params![owner.to_string(), holder],
        )
        .map_err(store_error(path, "end the renewal lease"))?;
        tx.commit()
            .map_err(store_error(path, "store the renewed token"))?;
        Ok(if still_spent { None } else { stored })
    }
}

fn schema_version(connection: &Connection, path: &Path) -> Result<i64, TokenStoreError> {
    let exists: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'oauth_schema_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(store_error(path, "read the schema version"))?;
    if !exists {
        return Ok(0);
    }
    connection
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM oauth_schema_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(store_error(path, "read the schema version"))
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), TokenStoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_error(path, "migrate the token tables"))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS oauth_schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL
         );",
    )
    .map_err(store_error(path, "migrate the token tables"))?;
    let version = schema_version(&tx, path)?;
    if version > SCHEMA_VERSION {
        return Err(TokenStoreError::SchemaTooNew {
            path: path.display().to_string(),
            found: version,
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(migration)
            .map_err(store_error(path, "migrate the token tables"))?;
        tx.execute(
            "INSERT INTO oauth_schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![from as i64 + 1, now()],
        )
        .map_err(store_error(path, "migrate the token tables"))?;
    }
    tx.commit()
        .map_err(store_error(path, "migrate the token tables"))
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
}

impl StoreSink {
    /// Saves `owner`'s tokens to `store`.
    pub fn new(store: Arc<dyn TokenStore>, owner: TokenOwner) -> Self {
        let holder = format!("pid {} / {}", std::process::id(), uuid::Uuid::new_v4());
        Self {
            store,
            owner,
            holder,
        }
    }

    /// Runs a store call on the blocking pool, retrying a failed one (a busy database is
    /// normal: the file is shared with the webhook store) before giving up.
    async fn call<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl Fn(&dyn TokenStore, &TokenOwner, &str) -> Result<T, TokenStoreError>
        + Send
        + Sync
        + 'static,
    ) -> Result<T, plane_core::Error> {
        const TRIES: u32 = 5;
        let f = Arc::new(f);
        let mut wait = std::time::Duration::from_millis(50);
        for attempt in 1..=TRIES {
            let (store, owner, holder, f) = (
                self.store.clone(),
                self.owner.clone(),
                self.holder.clone(),
                f.clone(),
            );
            let result =
                tokio::task::spawn_blocking(move || f(store.as_ref(), &owner, &holder)).await;
            let error = match result {
                Ok(Ok(value)) => return Ok(value),
                // Only SQLite's failures can pass; a wrong key or record will not.
                Ok(Err(e @ TokenStoreError::Store { .. })) if attempt < TRIES => e,
                Ok(Err(e)) => {
                    return Err(plane_core::Error::Token {
                        message: format!("could not {doing}: {e}"),
                    });
                }
                Err(e) => {
                    return Err(plane_core::Error::Token {
                        message: format!("could not {doing}: the task failed ({e})"),
                    });
                }
            };
            tracing::warn!(attempt, error = %error, "token store busy: trying again");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        unreachable!("the last attempt returns")
    }
}

impl TokenSink for StoreSink {
    fn save<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), plane_core::Error>> {
        let tokens = tokens.clone();
        Box::pin(
            self.call("store the renewed token", move |store, owner, _| {
                store.save(owner, &tokens)
            }),
        )
    }

    fn begin_renewal(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        Box::pin(async move {
            // A live holder finishes within its lease; a dead one's runs out. Poll until
            // then, with a little more to spare.
            let deadline = tokio::time::Instant::now() + RENEWAL_LEASE * 2;
            let mut wait = std::time::Duration::from_millis(20);
            loop {
                let taken = self
                    .call("take the token renewal lease", |store, owner, holder| {
                        store.try_lease(owner, holder, RENEWAL_LEASE)
                    })
                    .await?;
                if taken {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(plane_core::Error::Token {
                        message: format!(
                            "another process has been renewing the token of {} for over {:?}; \
                             try again",
                            self.owner,
                            RENEWAL_LEASE * 2
                        ),
                    });
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_millis(500));
            }
            match self.load().await {
                Ok(stored) => Ok(stored),
                Err(e) => {
                    // Nothing will follow under this lease: give it back now, not at its end.
                    let _ = self
                        .call("end the token renewal lease", |store, owner, holder| {
                            store.release(owner, holder)
                        })
                        .await;
                    Err(e)
                }
            }
        })
    }

    fn end_renewal<'a>(
        &'a self,
        spent: &'a SecretString,
        renewed: Option<&'a TokenSet>,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, plane_core::Error>> {
        let (spent, renewed) = (spent.clone(), renewed.cloned());
        Box::pin(async move {
            match renewed {
                Some(tokens) => {
                    self.call("store the renewed token", move |store, owner, holder| {
                        store.compare_and_save(owner, &spent, &tokens, holder)
                    })
                    .await
                }
                None => {
                    self.call("end the token renewal lease", |store, owner, holder| {
                        store.release(owner, holder)
                    })
                    .await?;
                    Ok(None)
                }
            }
        })
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<TokenSet>, plane_core::Error>> {
        Box::pin(self.call("read the stored token", |store, owner, _| store.load(owner)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A record written before records had versions (format 1, the owner alone as
    /// associated data, version 0 after the migration) still opens, and takes the new
    /// format at its next write.
    #[test]
    fn a_record_of_the_first_format_is_read_and_rewritten_in_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("plane.db");
        let key = TokenKey::from_base64("test", &STANDARD.encode([3u8; 32])).unwrap();
        let store = SqliteTokenStore::open(&db, key.clone()).unwrap();
        let owner = TokenOwner::User("ops".into());
        let plain = serde_json::to_vec(&serde_json::json!({
            "access_token": "fake-old-access", "refresh_token": "fake-old-refresh",
            "expires_at": null, "scope": null
        }))
        .unwrap();
        let sealed = key.seal_as(FORMAT_OWNER_ONLY, "user:ops", &plain);
        store
            .lock()
            .execute(
                "INSERT INTO oauth_tokens (owner, sealed, expires_at, has_refresh, scope, updated_at, version)
                 VALUES ('user:ops', ?1, NULL, 1, NULL, '2026-01-01T00:00:00Z', 0)",
                [sealed],
            )
            .unwrap();
        let loaded = store.load(&owner).unwrap().unwrap();
        assert_eq!(loaded.access_token.expose_secret(), "fake-old-access");
        store.save(&owner, &loaded).unwrap();
        let (format, version): (Vec<u8>, i64) = store
            .lock()
            .query_row("SELECT sealed, version FROM oauth_tokens", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((format[0], version), (FORMAT, 1));
        assert!(store.load(&owner).is_ok());
        // A format-1 record cannot pose as a versioned one.
        store
            .lock()
            .execute(
                "UPDATE oauth_tokens SET sealed = ?1",
                [key.seal_as(FORMAT_OWNER_ONLY, "user:ops", &plain)],
            )
            .unwrap();
        assert!(matches!(
            store.load(&owner).unwrap_err(),
            TokenStoreError::Undecryptable { .. }
        ));
    }

    /// A pending authorization sealed before the upgrade (format 1) still opens: it can
    /// be exchanged, and it does not stop a key rotation. An expired one is purged by it.
    #[test]
    fn a_pending_authorization_of_the_first_format_opens_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("plane.db");
        let old = TokenKey::from_base64("test", &STANDARD.encode([4u8; 32])).unwrap();
        let new = TokenKey::from_base64("test", &STANDARD.encode([6u8; 32])).unwrap();
        let store = SqliteTokenStore::open(&db, new.clone()).unwrap();
        let insert = |state: &str, created_at: &str| {
            let sealed = old.seal_as(
                FORMAT_OWNER_ONLY,
                &format!("pending:{state}:user:ops"),
                b"fake-verifier-0123456789",
            );
            store
                .lock()
                .execute(
                    "INSERT INTO oauth_pending (state, owner, sealed, redirect_uri, created_at)
                     VALUES (?1, 'user:ops', ?2, 'http://127.0.0.1:9/cb', ?3)",
                    params![state, sealed, created_at],
                )
                .unwrap();
        };
        insert(
            "current",
            &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        insert("abandoned", "2026-01-01T00:00:00.000Z");
        assert_eq!(store.rekey(&old).unwrap(), 1, "the abandoned one is purged");
        let taken = store.take_pending("current").unwrap().unwrap();
        assert_eq!(taken.verifier.expose_secret(), "fake-verifier-0123456789");
        assert!(store.take_pending("abandoned").unwrap().is_none());
    }
}
