//! The PostgreSQL token store, for several replicas sharing one token. See the
//! [module docs](super).

use std::fmt;

use chrono::{DateTime, Utc};
use plane_core::oauth::TokenSet;
use plane_core::{BoxFuture, SecretString};
use plane_postgres::Database;

use super::record::{self, Record};
use super::{
    PendingAuthorization, RenewalInDoubt, TokenInfo, TokenKey, TokenOwner, TokenStore,
    TokenStoreError,
};

/// The component name of the token tables in plane-postgres's `schema_migrations`.
const COMPONENT: &str = "oauth";

/// Append-only: never edit a shipped step, add the next.
const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE oauth_tokens (
    owner       text PRIMARY KEY,
    sealed      bytea NOT NULL,
    expires_at  text,
    has_refresh boolean NOT NULL,
    scope       text,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE oauth_token_versions (
    owner   text PRIMARY KEY,
    version bigint NOT NULL
);
CREATE TABLE oauth_renewals (
    owner  text PRIMARY KEY,
    holder text NOT NULL,
    until  timestamptz NOT NULL
);
CREATE TABLE oauth_pending (
    state        text PRIMARY KEY,
    owner        text NOT NULL,
    sealed       bytea NOT NULL,
    redirect_uri text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX oauth_pending_created_at ON oauth_pending (created_at);
",
    // Version 2: what a renewal is about to spend (see `mark_spending`).
    "
CREATE TABLE oauth_spending (
    owner   text PRIMARY KEY,
    spender text NOT NULL,
    digest  text NOT NULL,
    since   timestamptz NOT NULL DEFAULT now()
);
",
];

/// Ends `$2`'s lease on `$1` and drops what it recorded spending, in one statement (a
/// record another holder left stays: its renewal is still in doubt).
const END_RENEWAL: &str = "
WITH spending AS (DELETE FROM oauth_spending WHERE owner = $1 AND spender = $2)
DELETE FROM oauth_renewals WHERE owner = $1 AND holder = $2";

/// How many times a write whose record another writer replaced meanwhile is compared and
/// tried again before giving up (each try follows a commit of someone else's).
const WRITE_TRIES: usize = 20;

/// The PostgreSQL token store: the same records as [`SqliteTokenStore`](super::SqliteTokenStore)
/// (sealed by the same code), in the schema of a [`Database`], migrated as the component
/// `oauth`. Cheap to clone.
///
/// ```no_run
/// # async fn demo(key: plane_server::token_store::TokenKey) -> Result<(), Box<dyn std::error::Error>> {
/// use plane_server::token_store::{PgTokenStore, TokenOwner, TokenStore};
/// let db = plane_postgres::Options::from_url("postgres://plane@127.0.0.1/plane", None)?
///     .connect()
///     .await?;
/// let store = PgTokenStore::open(db, key).await?;
/// let stored = store.load(&TokenOwner::User("ops".into())).await?;
/// # let _ = stored; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgTokenStore {
    db: Database,
    key: Option<TokenKey>,
}

impl fmt::Debug for PgTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The database's Debug shows its target and schema, never a password.
        f.debug_struct("PgTokenStore")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// A token row as read for a write or a load: the record (when there is one) and the
/// highest version written for the owner.
struct Current {
    record: Option<Record>,
    newest: i64,
}

impl PgTokenStore {
    /// The newest version of the `oauth` component's tables this build knows.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens the token tables in `db`'s schema, creating or migrating them first (one
    /// replica at a time; a newer schema is refused).
    pub async fn open(db: Database, key: TokenKey) -> Result<Self, TokenStoreError> {
        db.migrate(COMPONENT, &MIGRATIONS).await?;
        Ok(Self { db, key: Some(key) })
    }

    /// Creates or migrates the token tables in `db`'s schema without a key (for `db
    /// migrate`, which copies sealed records and never opens them); the version.
    pub async fn migrate(db: &Database) -> Result<i64, TokenStoreError> {
        Ok(db.migrate(COMPONENT, &MIGRATIONS).await?)
    }

    /// Opens the token tables only where they exist at this build's version: `None`
    /// without them (or at an older version); nothing is created or migrated (for
    /// `check`). A store it returns can still save, as a renewal rotates the refresh token.
    pub async fn open_existing(
        db: Database,
        key: TokenKey,
    ) -> Result<Option<Self>, TokenStoreError> {
        match db.schema_version(COMPONENT).await? {
            Some(Self::SCHEMA_VERSION) => Ok(Some(Self { db, key: Some(key) })),
            Some(found) if found > Self::SCHEMA_VERSION => Err(too_new(&db, found).into()),
            // Missing or older: whoever migrates them (serve, the oauth commands) goes first.
            _ => Ok(None),
        }
    }

    /// Opens the token tables without a key: only [`list`](TokenStore::list) works (for
    /// `oauth status`). A schema without token tables lists nothing; nothing is created.
    pub async fn open_for_listing(db: Database) -> Result<Self, TokenStoreError> {
        if let Some(found) = db.schema_version(COMPONENT).await?
            && found > Self::SCHEMA_VERSION
        {
            return Err(too_new(&db, found).into());
        }
        Ok(Self { db, key: None })
    }

    /// The database and schema the tables are in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn key(&self) -> Result<&TokenKey, TokenStoreError> {
        self.key.as_ref().ok_or(TokenStoreError::KeyMissing)
    }

    fn where_(&self) -> String {
        format!("{} (schema {})", self.db.target(), self.db.schema())
    }

    /// The owner's record and the highest version written for it, read now.
    async fn current(
        &self,
        client: &impl plane_postgres::deadpool_postgres::GenericClient,
        owner: &str,
        operation: &'static str,
    ) -> Result<Current, TokenStoreError> {
        let row = client
            .query_one(
                "SELECT t.sealed, t.version, t.expires_at, t.has_refresh, t.scope,
                        COALESCE((SELECT v.version FROM oauth_token_versions v WHERE v.owner = $1), 0)
                 FROM (SELECT 1) AS one LEFT JOIN oauth_tokens t ON t.owner = $1",
                &[&owner],
            )
            .await
            .map_err(self.db.query(operation))?;
        let record = match (
            row.get::<_, Option<Vec<u8>>>(0),
            row.get::<_, Option<i64>>(1),
        ) {
            (Some(sealed), Some(version)) => Some(Record {
                sealed,
                version,
                expires_at: row.get(2),
                has_refresh: row.get::<_, Option<bool>>(3).unwrap_or_default(),
                scope: row.get(4),
            }),
            _ => None,
        };
        Ok(Current {
            record,
            newest: row.get(5),
        })
    }

    /// The record opened, refused when it is older than the newest written.
    fn open_record(
        &self,
        owner: &str,
        record: &Record,
        newest: i64,
    ) -> Result<TokenSet, TokenStoreError> {
        record.open(self.key()?, owner, newest, &self.where_())
    }

    /// Writes `tokens` as `owner`'s record at the next version, inside `tx`, if the
    /// record is still the one `current` read: an `UPDATE … WHERE version` (or an insert
    /// that does nothing when another writer's row came first). `false` when another
    /// writer's record came between; nothing was written.
    async fn put(
        &self,
        tx: &plane_postgres::deadpool_postgres::Transaction<'_>,
        owner: &TokenOwner,
        tokens: &TokenSet,
        current: &Current,
        operation: &'static str,
    ) -> Result<bool, TokenStoreError> {
        let owner_text = owner.to_string();
        let read = current.record.as_ref().map(|r| r.version);
        let version = read.unwrap_or(0).max(current.newest) + 1;
        let record = Record::seal(self.key()?, owner, version, tokens);
        let written = match read {
            Some(read) => tx
                .execute(
                    "UPDATE oauth_tokens SET sealed = $2, expires_at = $3, has_refresh = $4,
                       scope = $5, version = $6, updated_at = now()
                     WHERE owner = $1 AND version = $7",
                    &[
                        &owner_text,
                        &record.sealed,
                        &record.expires_at,
                        &record.has_refresh,
                        &record.scope,
                        &version,
                        &read,
                    ],
                )
                .await
                .map_err(self.db.query(operation))?,
            None => tx
                .execute(
                    "INSERT INTO oauth_tokens (owner, sealed, expires_at, has_refresh, scope, version)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner) DO NOTHING",
                    &[
                        &owner_text,
                        &record.sealed,
                        &record.expires_at,
                        &record.has_refresh,
                        &record.scope,
                        &version,
                    ],
                )
                .await
                .map_err(self.db.query(operation))?,
        };
        if written == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO oauth_token_versions (owner, version) VALUES ($1, $2)
             ON CONFLICT (owner) DO UPDATE
             SET version = GREATEST(oauth_token_versions.version, excluded.version)",
            &[&owner_text, &version],
        )
        .await
        .map_err(self.db.query(operation))?;
        Ok(true)
    }

    /// Stores `tokens` for `owner` in one transaction, and ends `lease`'s holder's lease in
    /// it. With `spent`, only while the stored refresh token is `spent` (or nothing is
    /// stored): the stored set is returned instead when it is not.
    async fn write(
        &self,
        owner: &TokenOwner,
        tokens: &TokenSet,
        spent: Option<&SecretString>,
        lease: Option<&str>,
        operation: &'static str,
    ) -> Result<Option<TokenSet>, TokenStoreError> {
        let owner_text = owner.to_string();
        let mut client = self.db.client().await?;
        // Read committed whatever the server's default: each read in the loop below sees
        // the writes committed before it, so a writer that came between is compared again.
        let tx = client
            .build_transaction()
            .isolation_level(plane_postgres::tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(self.db.query(operation))?;
        let mut kept = None;
        let mut tries = 0;
        loop {
            let current = self.current(&tx, &owner_text, operation).await?;
            if let (Some(spent), Some(record)) = (spent, &current.record) {
                let stored = self.open_record(&owner_text, record, current.newest)?;
                if !record::holds_refresh(&stored, spent) {
                    kept = Some(stored);
                    break;
                }
            }
            if self.put(&tx, owner, tokens, &current, operation).await? {
                break;
            }
            tries += 1;
            if tries >= WRITE_TRIES {
                return Err(plane_postgres::Error::Query {
                    target: self.db.target().to_owned(),
                    operation,
                    message: format!(
                        "the record of {owner} was replaced by other writers {tries} times in a \
                         row; try again"
                    ),
                }
                .into());
            }
        }
        if let Some(holder) = lease {
            tx.execute(END_RENEWAL, &[&owner_text, &holder])
                .await
                .map_err(self.db.query("end the renewal lease"))?;
        }
        tx.commit().await.map_err(self.db.query(operation))?;
        Ok(kept)
    }

    async fn load_now(&self, owner: &TokenOwner) -> Result<Option<TokenSet>, TokenStoreError> {
        let owner_text = owner.to_string();
        let client = self.db.client().await?;
        let current = self.current(&client, &owner_text, "read the token").await?;
        current
            .record
            .map(|record| self.open_record(&owner_text, &record, current.newest))
            .transpose()
    }

    async fn list_now(&self) -> Result<Vec<TokenInfo>, TokenStoreError> {
        if self.db.schema_version(COMPONENT).await?.is_none() {
            return Ok(Vec::new());
        }
        let client = self.db.client().await?;
        // Byte order, as SQLite sorts.
        let rows = client
            .query(
                "SELECT owner, expires_at, has_refresh, scope, updated_at FROM oauth_tokens
                 ORDER BY owner COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(self.db.query("list the tokens"))?;
        Ok(rows
            .iter()
            .map(|row| {
                let owner: String = row.get(0);
                TokenInfo {
                    owner: TokenOwner::parse(&owner).map_or(owner, |o| o.to_string()),
                    expires_at: row
                        .get::<_, Option<String>>(1)
                        .as_deref()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    has_refresh_token: row.get(2),
                    scope: row.get(3),
                    updated_at: row.get(4),
                }
            })
            .collect())
    }

    async fn save_pending_now(
        &self,
        state: &str,
        pending: &PendingAuthorization,
    ) -> Result<(), TokenStoreError> {
        let sealed = record::seal_pending(self.key()?, state, &pending.owner, &pending.verifier);
        let client = self.db.client().await?;
        // Each new authorization clears away those that can no longer be exchanged.
        client
            .execute(
                "DELETE FROM oauth_pending WHERE created_at < $1",
                &[&record::pending_cutoff()],
            )
            .await
            .map_err(self.db.query("purge the expired pending authorizations"))?;
        client
            .execute(
                "INSERT INTO oauth_pending (state, owner, sealed, redirect_uri, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (state) DO UPDATE SET owner = excluded.owner,
                   sealed = excluded.sealed, redirect_uri = excluded.redirect_uri,
                   created_at = excluded.created_at",
                &[
                    &state,
                    &pending.owner.to_string(),
                    &sealed,
                    &pending.redirect_uri,
                    &pending.created_at,
                ],
            )
            .await
            .map_err(self.db.query("store the pending authorization"))?;
        Ok(())
    }

    async fn take_pending_now(
        &self,
        state: &str,
    ) -> Result<Option<PendingAuthorization>, TokenStoreError> {
        let mut client = self.db.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.db.query("read the pending authorization"))?;
        // Taken by one replica only: the delete is the read.
        let Some(row) = tx
            .query_opt(
                "DELETE FROM oauth_pending WHERE state = $1
                 RETURNING owner, sealed, redirect_uri, created_at",
                &[&state],
            )
            .await
            .map_err(self.db.query("read the pending authorization"))?
        else {
            return Ok(None);
        };
        let (owner_text, sealed, redirect_uri, created_at): (
            String,
            Vec<u8>,
            String,
            DateTime<Utc>,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if let Err(expired) = record::check_pending_age(state, created_at) {
            // Deleted all the same: it can never be exchanged.
            tx.commit()
                .await
                .map_err(self.db.query("delete the pending authorization"))?;
            return Err(expired);
        }
        // One that does not open stays (the transaction rolls back), as on SQLite.
        let (owner, verifier) =
            record::open_pending(self.key()?, state, &owner_text, &sealed, &self.where_())?;
        tx.commit()
            .await
            .map_err(self.db.query("delete the pending authorization"))?;
        Ok(Some(PendingAuthorization {
            owner,
            verifier,
            redirect_uri,
            created_at,
        }))
    }

    async fn try_lease_now(
        &self,
        owner: &TokenOwner,
        holder: &str,
        lasting: std::time::Duration,
    ) -> Result<bool, TokenStoreError> {
        let client = self.db.client().await?;
        // One statement, on the server's clock (one clock for every replica): the row is
        // taken when it is free, run out or already ours. A row, not a lock: nothing is
        // held across the HTTP call, and a holder that dies leaves a row that runs out.
        let taken = client
            .execute(
                "INSERT INTO oauth_renewals (owner, holder, until)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (owner) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE oauth_renewals.until < now() OR oauth_renewals.holder = excluded.holder",
                &[&owner.to_string(), &holder, &lasting.as_secs_f64()],
            )
            .await
            .map_err(self.db.query("take the renewal lease"))?;
        Ok(taken == 1)
    }

    async fn mark_spending_now(
        &self,
        owner: &TokenOwner,
        holder: &str,
        replaces: &SecretString,
        lasting: std::time::Duration,
    ) -> Result<bool, TokenStoreError> {
        let client = self.db.client().await?;
        // One statement: the lease is extended and the record written only while the
        // lease is `holder`'s (expired or not: nobody else took it, so nobody else spent).
        let marked = client
            .execute(
                "WITH lease AS (
                     UPDATE oauth_renewals SET until = now() + make_interval(secs => $3)
                     WHERE owner = $1 AND holder = $2
                     RETURNING owner
                 )
                 INSERT INTO oauth_spending (owner, spender, digest, since)
                 SELECT owner, $2, $4, now() FROM lease
                 ON CONFLICT (owner) DO UPDATE SET spender = excluded.spender,
                   digest = excluded.digest, since = excluded.since",
                &[
                    &owner.to_string(),
                    &holder,
                    &lasting.as_secs_f64(),
                    &super::spend_digest(owner, replaces),
                ],
            )
            .await
            .map_err(self.db.query("record the token renewal"))?;
        Ok(marked == 1)
    }

    async fn renewal_in_doubt_now(
        &self,
        owner: &TokenOwner,
        holder: &str,
        stored: &SecretString,
    ) -> Result<Option<RenewalInDoubt>, TokenStoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT spender, since FROM oauth_spending
                 WHERE owner = $1 AND spender <> $2 AND digest = $3",
                &[
                    &owner.to_string(),
                    &holder,
                    &super::spend_digest(owner, stored),
                ],
            )
            .await
            .map_err(self.db.query("read the token renewal records"))?;
        Ok(row.map(|row| RenewalInDoubt {
            holder: row.get(0),
            since: row.get(1),
        }))
    }

    async fn release_now(&self, owner: &TokenOwner, holder: &str) -> Result<(), TokenStoreError> {
        let client = self.db.client().await?;
        client
            .execute(END_RENEWAL, &[&owner.to_string(), &holder])
            .await
            .map_err(self.db.query("end the renewal lease"))?;
        Ok(())
    }

    async fn rekey_now(&self, old: &TokenKey) -> Result<usize, TokenStoreError> {
        const DOING: &str = "re-encrypt the tokens";
        let new = self.key()?;
        let location = self.where_();
        let wrong = |what: &'static str, owner: String| TokenStoreError::OldKeyWrong {
            path: location.clone(),
            what,
            owner,
        };
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(self.db.query(DOING))?;
        let rows = tx
            .query(
                "SELECT owner, sealed, version, expires_at, has_refresh, scope FROM oauth_tokens
                 ORDER BY owner FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.db.query(DOING))?;
        let mut count = 0;
        for row in rows {
            let owner: String = row.get(0);
            let record = Record {
                sealed: row.get(1),
                version: row.get(2),
                expires_at: row.get(3),
                has_refresh: row.get(4),
                scope: row.get(5),
            };
            let sealed = record
                .reseal(&owner, old, new)
                .ok_or_else(|| wrong("token", owner.clone()))?;
            tx.execute(
                "UPDATE oauth_tokens SET sealed = $2 WHERE owner = $1",
                &[&owner, &sealed],
            )
            .await
            .map_err(self.db.query(DOING))?;
            count += 1;
        }
        // Expired ones can never be exchanged: they go, rather than hold the rotation up.
        tx.execute(
            "DELETE FROM oauth_pending WHERE created_at < $1",
            &[&record::pending_cutoff()],
        )
        .await
        .map_err(self.db.query("purge the expired pending authorizations"))?;
        let rows = tx
            .query(
                "SELECT state, owner, sealed FROM oauth_pending ORDER BY state FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.db.query(DOING))?;
        for row in rows {
            let (state, owner, sealed): (String, String, Vec<u8>) =
                (row.get(0), row.get(1), row.get(2));
            let resealed = record::reseal_pending(old, new, &state, &owner, &sealed)
                .ok_or_else(|| wrong("pending authorization", format!("state {state}")))?;
            tx.execute(
                "UPDATE oauth_pending SET sealed = $2 WHERE state = $1",
                &[&state, &resealed],
            )
            .await
            .map_err(self.db.query(DOING))?;
            count += 1;
        }
        tx.commit().await.map_err(self.db.query(DOING))?;
        Ok(count)
    }
}

fn too_new(db: &Database, found: i64) -> plane_postgres::Error {
    plane_postgres::Error::SchemaTooNew {
        target: db.target().to_owned(),
        schema: db.schema().to_owned(),
        component: COMPONENT.to_owned(),
        found,
        supported: PgTokenStore::SCHEMA_VERSION,
    }
}

impl TokenStore for PgTokenStore {
    fn save<'a>(
        &'a self,
        owner: &'a TokenOwner,
        tokens: &'a TokenSet,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(async move {
            self.write(owner, tokens, None, None, "store the token")
                .await
                .map(drop)
        })
    }

    fn load<'a>(
        &'a self,
        owner: &'a TokenOwner,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, TokenStoreError>> {
        Box::pin(self.load_now(owner))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TokenStoreError>> {
        Box::pin(self.list_now())
    }

    fn save_pending<'a>(
        &'a self,
        state: &'a str,
        pending: &'a PendingAuthorization,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(self.save_pending_now(state, pending))
    }

    fn take_pending<'a>(
        &'a self,
        state: &'a str,
    ) -> BoxFuture<'a, Result<Option<PendingAuthorization>, TokenStoreError>> {
        Box::pin(self.take_pending_now(state))
    }

    fn try_lease<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        lasting: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(self.try_lease_now(owner, holder, lasting))
    }

    fn mark_spending<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        replaces: &'a SecretString,
        lasting: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        Box::pin(self.mark_spending_now(owner, holder, replaces, lasting))
    }

    fn renewal_in_doubt<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
        stored: &'a SecretString,
    ) -> BoxFuture<'a, Result<Option<RenewalInDoubt>, TokenStoreError>> {
        Box::pin(self.renewal_in_doubt_now(owner, holder, stored))
    }

    fn release<'a>(
        &'a self,
        owner: &'a TokenOwner,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(self.release_now(owner, holder))
    }

    fn compare_and_save<'a>(
        &'a self,
        owner: &'a TokenOwner,
        spent: &'a SecretString,
        tokens: &'a TokenSet,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenSet>, TokenStoreError>> {
        Box::pin(self.write(
            owner,
            tokens,
            Some(spent),
            Some(holder),
            "store the renewed token",
        ))
    }

    fn rekey<'a>(&'a self, old: &'a TokenKey) -> BoxFuture<'a, Result<usize, TokenStoreError>> {
        Box::pin(self.rekey_now(old))
    }

    fn location(&self) -> String {
        self.where_()
    }
}
