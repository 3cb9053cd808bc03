//! The SQLite token store: the tables beside the deliveries and BIR deadlines in the
//! server's database file. See the [module docs](super).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use plane_core::oauth::TokenSet;
use plane_core::{BoxFuture, SecretString};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::record::{self, Record};
use super::{
    PendingAuthorization, RenewalInDoubt, TokenInfo, TokenKey, TokenOwner, TokenStore,
    TokenStoreError,
};

/// The newest schema version of the SQLite token tables this build knows.
pub(super) const SCHEMA_VERSION: i64 = 3;
const MIGRATIONS: [&str; 3] = [
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
    "
CREATE TABLE oauth_spending (
    owner   TEXT PRIMARY KEY,
    spender TEXT NOT NULL,
    digest  TEXT NOT NULL,
    since   TEXT NOT NULL
);
",
];

/// The SQLite token store. See the [module docs](super).
///
/// Through [`TokenStore`] every call is async and runs on tokio's blocking pool. The same
/// operations are inherent methods of the store that block (`save`, `load`, `list`...),
/// for callers with no runtime at hand; method syntax on a `SqliteTokenStore` finds
/// those, on a `dyn TokenStore` the async ones. Cheap to clone (one connection, shared).
///
/// ```
/// use plane_core::{ExposeSecret, SecretString};
/// use plane_core::oauth::TokenSet;
/// use plane_server::token_store::{SqliteTokenStore, TokenKey, TokenOwner, TokenStore};
/// # use base64::Engine as _;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), plane_server::token_store::TokenStoreError> {
/// let dir = tempfile::tempdir().unwrap();
/// let key_text = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
/// let key = TokenKey::from_base64("example", &key_text)?;
/// let store: std::sync::Arc<dyn TokenStore> =
///     std::sync::Arc::new(SqliteTokenStore::open(dir.path().join("plane.db"), key)?);
/// let owner = TokenOwner::Installation("inst-1".into());
/// let tokens = TokenSet {
///     access_token: SecretString::from(format!("fake-{}", 1)),
///     refresh_token: None,
///     expires_at: None,
///     scope: None,
/// };
/// store.save(&owner, &tokens).await?;
/// assert_eq!(store.load(&owner).await?.unwrap().access_token.expose_secret(), "fake-1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteTokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    key: Option<TokenKey>,
    connection: Mutex<Connection>,
}

impl fmt::Debug for SqliteTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTokenStore")
            .field("path", &self.inner.path)
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

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl SqliteTokenStore {
    fn new(path: &Path, key: Option<TokenKey>, connection: Connection) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                key,
                connection: Mutex::new(connection),
            }),
        }
    }

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
        Ok(Self::new(path, Some(key), connection))
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
            SCHEMA_VERSION => Ok(Some(Self::new(path, Some(key), connection))),
            found if found > SCHEMA_VERSION => Err(TokenStoreError::SchemaTooNew {
                path: path.display().to_string(),
                found,
            }),
            // Older tables: whoever migrates them (serve, the oauth commands) goes first.
            _ => Ok(None),
        }
    }

    /// Opens an existing database read-only and without a key: only `list` works (for
    /// `oauth status`). A file without token tables lists nothing.
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
        Ok(Self::new(path, None, connection))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// [`TokenStore::save`], blocking.
    pub fn save(&self, owner: &TokenOwner, tokens: &TokenSet) -> Result<(), TokenStoreError> {
        let path = self.path();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "store the token"))?;
        self.write(&tx, owner, tokens)?;
        tx.commit().map_err(store_error(path, "store the token"))
    }

    /// [`TokenStore::load`], blocking.
    pub fn load(&self, owner: &TokenOwner) -> Result<Option<TokenSet>, TokenStoreError> {
        self.read(&self.lock(), owner)
    }

    /// [`TokenStore::list`], blocking.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenStoreError> {
        let connection = self.lock();
        let path = self.path();
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

    /// [`TokenStore::save_pending`], blocking.
    pub fn save_pending(
        &self,
        state: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), TokenStoreError> {
        let sealed = record::seal_pending(self.key()?, state, &pending.owner, &pending.verifier);
        let connection = self.lock();
        let path = self.path();
        // Each new authorization clears away those that can no longer be exchanged.
        connection
            .execute(
                "DELETE FROM oauth_pending WHERE created_at < ?1",
                [stored_time(record::pending_cutoff())],
            )
            .map_err(store_error(
                path,
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
                    stored_time(pending.created_at)
                ],
            )
            .map_err(store_error(path, "store the pending authorization"))?;
        Ok(())
    }

    /// [`TokenStore::take_pending`], blocking.
    pub fn take_pending(
        &self,
        state: &str,
    ) -> Result<Option<PendingAuthorization>, TokenStoreError> {
        let path = self.path();
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
        if let Err(expired) = record::check_pending_age(state, started) {
            // Deleted all the same: it can never be exchanged.
            tx.commit()
                .map_err(store_error(path, "delete the pending authorization"))?;
            return Err(expired);
        }
        let (owner, verifier) =
            record::open_pending(self.key()?, state, &owner_text, &sealed, &self.location())?;
        tx.commit()
            .map_err(store_error(path, "delete the pending authorization"))?;
        Ok(Some(PendingAuthorization {
            owner,
            verifier,
            redirect_uri,
            created_at: started,
        }))
    }

    /// [`TokenStore::try_lease`], blocking.
    pub fn try_lease(
        &self,
        owner: &TokenOwner,
        holder: &str,
        lasting: std::time::Duration,
    ) -> Result<bool, TokenStoreError> {
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
            .map_err(store_error(self.path(), "take the renewal lease"))?;
        Ok(taken == 1)
    }

    /// [`TokenStore::mark_spending`], blocking.
    pub fn mark_spending(
        &self,
        owner: &TokenOwner,
        holder: &str,
        replaces: &SecretString,
        lasting: std::time::Duration,
    ) -> Result<bool, TokenStoreError> {
        let path = self.path();
        let fail = || store_error(path, "record the token renewal");
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail())?;
        // The lease is extended and the record written only while the lease is `holder`'s
        // (expired or not: nobody else took it, so nobody else spent).
        let extended = tx
            .execute(
                "UPDATE oauth_renewals SET until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3)
                 WHERE owner = ?1 AND holder = ?2",
                params![
                    owner.to_string(),
                    holder,
                    format!("+{:.3} seconds", lasting.as_secs_f64())
                ],
            )
            .map_err(fail())?;
        if extended == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO oauth_spending (owner, spender, digest, since)
             VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT (owner) DO UPDATE SET spender = excluded.spender,
               digest = excluded.digest, since = excluded.since",
            params![
                owner.to_string(),
                holder,
                super::spend_digest(owner, replaces)
            ],
        )
        .map_err(fail())?;
        tx.commit().map_err(fail())?;
        Ok(true)
    }

    /// [`TokenStore::renewal_in_doubt`], blocking.
    pub fn renewal_in_doubt(
        &self,
        owner: &TokenOwner,
        holder: &str,
        stored: &SecretString,
    ) -> Result<Option<RenewalInDoubt>, TokenStoreError> {
        let row: Option<(String, String)> = self
            .lock()
            .query_row(
                "SELECT spender, since FROM oauth_spending
                 WHERE owner = ?1 AND spender <> ?2 AND digest = ?3",
                params![
                    owner.to_string(),
                    holder,
                    super::spend_digest(owner, stored)
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(store_error(self.path(), "read the token renewal records"))?;
        Ok(row.map(|(holder, since)| RenewalInDoubt {
            holder,
            since: parse_time(&since).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        }))
    }

    /// [`TokenStore::release`], blocking.
    pub fn release(&self, owner: &TokenOwner, holder: &str) -> Result<(), TokenStoreError> {
        let path = self.path();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "end the renewal lease"))?;
        end_renewal(&tx, path, owner, holder)?;
        tx.commit()
            .map_err(store_error(path, "end the renewal lease"))
    }

    /// [`TokenStore::compare_and_save`], blocking.
    pub fn compare_and_save(
        &self,
        owner: &TokenOwner,
        spent: &SecretString,
        tokens: &TokenSet,
        holder: &str,
    ) -> Result<Option<TokenSet>, TokenStoreError> {
        let path = self.path();
        let mut connection = self.lock();
        // IMMEDIATE: the file's one writer from the read on, so the compare holds.
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "store the renewed token"))?;
        let stored = self.read(&tx, owner)?;
        let still_spent = stored
            .as_ref()
            .is_none_or(|s| record::holds_refresh(s, spent));
        if still_spent {
            self.write(&tx, owner, tokens)?;
        }
        end_renewal(&tx, path, owner, holder)?;
        tx.commit()
            .map_err(store_error(path, "store the renewed token"))?;
        Ok(if still_spent { None } else { stored })
    }

    /// [`TokenStore::rekey`], blocking.
    pub fn rekey(&self, old: &TokenKey) -> Result<usize, TokenStoreError> {
        let new = self.key()?;
        let path = self.path();
        let location = self.location();
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        let wrong = |what: &'static str, owner: String| TokenStoreError::OldKeyWrong {
            path: location.clone(),
            what,
            owner,
        };
        let tokens: Vec<(String, Record)> = tx
            .prepare(
                "SELECT owner, sealed, version, expires_at, has_refresh, scope FROM oauth_tokens",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        Record {
                            sealed: r.get(1)?,
                            version: r.get(2)?,
                            expires_at: r.get(3)?,
                            has_refresh: r.get(4)?,
                            scope: r.get(5)?,
                        },
                    ))
                })?
                .collect()
            })
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        let mut count = 0;
        for (owner, record) in tokens {
            let sealed = record
                .reseal(&owner, old, new)
                .ok_or_else(|| wrong("token", owner.clone()))?;
            tx.execute(
                "UPDATE oauth_tokens SET sealed = ?1 WHERE owner = ?2",
                params![sealed, owner],
            )
            .map_err(store_error(path, "re-encrypt the tokens"))?;
            count += 1;
        }
        // Expired ones can never be exchanged: they go, rather than hold the rotation up.
        tx.execute(
            "DELETE FROM oauth_pending WHERE created_at < ?1",
            [stored_time(record::pending_cutoff())],
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
            let resealed = record::reseal_pending(old, new, &state, &owner, &sealed)
                .ok_or_else(|| wrong("pending authorization", format!("state {state}")))?;
            tx.execute(
                "UPDATE oauth_pending SET sealed = ?1 WHERE state = ?2",
                params![resealed, state],
            )
            .map_err(store_error(path, "re-encrypt the tokens"))?;
            count += 1;
        }
        tx.commit()
            .map_err(store_error(path, "re-encrypt the tokens"))?;
        Ok(count)
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Transactions roll back on drop, so a poisoned lock is still usable.
        self.inner
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key(&self) -> Result<&TokenKey, TokenStoreError> {
        self.inner.key.as_ref().ok_or(TokenStoreError::KeyMissing)
    }

    /// Seals and writes `owner`'s row at the next version (inside the caller's
    /// transaction: the version is read, raised and recorded with the row).
    fn write(
        &self,
        connection: &Connection,
        owner: &TokenOwner,
        tokens: &TokenSet,
    ) -> Result<(), TokenStoreError> {
        let path = self.path();
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
        let record = Record::seal(self.key()?, owner, version, tokens);
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
                    record.sealed,
                    record.expires_at,
                    record.has_refresh,
                    record.scope,
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
        let owner_text = owner.to_string();
        let row: Option<(Record, i64)> = connection
            .query_row(
                "SELECT sealed, version, expires_at, has_refresh, scope,
                        COALESCE((SELECT version FROM oauth_token_versions v WHERE v.owner = t.owner), 0)
                 FROM oauth_tokens t WHERE owner = ?1",
                [&owner_text],
                |row| {
                    Ok((
                        Record {
                            sealed: row.get(0)?,
                            version: row.get(1)?,
                            expires_at: row.get(2)?,
                            has_refresh: row.get(3)?,
                            scope: row.get(4)?,
                        },
                        row.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(store_error(self.path(), "read the token"))?;
        let Some((record, newest)) = row else {
            return Ok(None);
        };
        record
            .open(self.key()?, &owner_text, newest, &self.location())
            .map(Some)
    }

    /// Runs `f` on a clone of the store on tokio's blocking pool.
    fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&SqliteTokenStore) -> Result<T, TokenStoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, TokenStoreError>> {
        let store = self.clone();
        Box::pin(async move {
            let path = store.location();
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .unwrap_or_else(|e| {
                    Err(TokenStoreError::Store {
                        path,
                        operation,
                        message: format!("the task failed ({e})"),
                    })
                })
        })
    }
}

/// Ends `holder`'s lease on `owner` and drops what it recorded spending, inside the
/// caller's transaction (a record another holder left stays: its renewal is in doubt).
fn end_renewal(
    connection: &Connection,
    path: &Path,
    owner: &TokenOwner,
    holder: &str,
) -> Result<(), TokenStoreError> {
    for sql in [
        "DELETE FROM oauth_spending WHERE owner = ?1 AND spender = ?2",
        "DELETE FROM oauth_renewals WHERE owner = ?1 AND holder = ?2",
    ] {
        connection
            .execute(sql, params![owner.to_string(), holder])
            .map_err(store_error(path, "end the renewal lease"))?;
    }
    Ok(())
}

/// A time as the SQLite tables keep it: RFC 3339, milliseconds, UTC.
fn stored_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl TokenStore for SqliteTokenStore {
    fn save<'a>(
        &'a self,
        owner: &'a TokenOwner,
        tokens: &'a TokenSet,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let (owner, tokens) = (owner.clone(), tokens.clone());
        self.blocking("store the token", move |s| s.save(&owner, &tokens))
    }

    fn load<'a>(
        &'a self,
        owner: &'a TokenOwner,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, TokenStoreError>> {
        let owner = owner.clone();
        self.blocking("read the token", move |s| s.load(&owner))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TokenStoreError>> {
        self.blocking("list the tokens", SqliteTokenStore::list)
    }

    fn save_pending<'a>(
        &'a self,
        state: &'a str,
        pending: &'a PendingAuthorization,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let state = state.to_owned();
        let pending = PendingAuthorization {
            owner: pending.owner.clone(),
            verifier: pending.verifier.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            created_at: pending.created_at,
        };
        self.blocking("store the pending authorization", move |s| {
            s.save_pending(&state, &pending)
        })
    }

    fn take_pending<'a>(
        &'a self,
        state: &'a str,
    ) -> BoxFuture<'a, Result<Option<PendingAuthorization>, TokenStoreError>> {
        let state = state.to_owned();
        self.blocking("read the pending authorization", move |s| {
            s.take_pending(&state)
        })
    }

    fn try_lease<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        lasting: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        let (owner, holder) = (owner.clone(), holder.to_owned());
        self.blocking("take the renewal lease", move |s| {
            s.try_lease(&owner, &holder, lasting)
        })
    }

    fn mark_spending<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        replaces: &'a SecretString,
        lasting: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        let (owner, holder, replaces) = (owner.clone(), holder.to_owned(), replaces.clone());
        self.blocking("record the token renewal", move |s| {
            s.mark_spending(&owner, &holder, &replaces, lasting)
        })
    }

    fn renewal_in_doubt<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        stored: &'a SecretString,
    ) -> BoxFuture<'a, Result<Option<RenewalInDoubt>, TokenStoreError>> {
        let (owner, holder, stored) = (owner.clone(), holder.to_owned(), stored.clone());
        self.blocking("read the token renewal records", move |s| {
            s.renewal_in_doubt(&owner, &holder, &stored)
        })
    }

    fn release<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let (owner, holder) = (owner.clone(), holder.to_owned());
        self.blocking("end the renewal lease", move |s| s.release(&owner, &holder))
    }

    fn compare_and_save<'a>(
        &'a self,
        owner: &'a TokenOwner,
        spent: &'a SecretString,
        tokens: &'a TokenSet,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, TokenStoreError>> {
        let (owner, spent, tokens, holder) = (
            owner.clone(),
            spent.clone(),
            tokens.clone(),
            holder.to_owned(),
        );
        self.blocking("store the renewed token", move |s| {
            s.compare_and_save(&owner, &spent, &tokens, &holder)
        })
    }

    fn rekey<'a>(&'a self, old: &'a TokenKey) -> BoxFuture<'a, Result<usize, TokenStoreError>> {
        let old = old.clone();
        self.blocking("re-encrypt the tokens", move |s| s.rekey(&old))
    }

    fn location(&self) -> String {
        SqliteTokenStore::location(self)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{FORMAT, FORMAT_OWNER_ONLY};
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use plane_core::ExposeSecret;

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
