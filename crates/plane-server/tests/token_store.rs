//! The encrypted token store on both backends, SQLite and PostgreSQL, by the same test
//! bodies: round trip, a wrong key, tampered, moved or rolled-back records, pending
//! authorizations, key rotation, the renewal lease and concurrent writers. Then what
//! belongs to one backend: SQLite's migrations table beside the other stores in one
//! file, PostgreSQL's migrations as the `oauth` component, and a record copied between
//! the two, still encrypted.
//!
//! The PostgreSQL tests need `PLANE_TEST_DATABASE_URL` (`bash scripts/with-postgres.sh
//! cargo test -p plane-server --test token_store`); without it they are skipped with
//! plane-postgres's message.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeZone, Utc};
use plane_core::oauth::TokenSet;
use plane_core::{ExposeSecret, SecretString};
use plane_postgres::testing::TestDatabase;
use plane_server::token_store::{
    PendingAuthorization, PgTokenStore, SqliteTokenStore, TokenKey, TokenOwner, TokenStore,
    TokenStoreError,
};

/// A random test key, made at run time.
fn new_key() -> (TokenKey, String) {
    let bytes: [u8; 32] = std::array::from_fn(|_| rand_byte());
    let text = STANDARD.encode(bytes);
    (TokenKey::from_base64("test", &text).unwrap(), text)
}

fn rand_byte() -> u8 {
    (uuid::Uuid::new_v4().as_u128() & 0xff) as u8
}

fn tokens() -> TokenSet {
    TokenSet {
        access_token: SecretString::from(format!("fake-access-{}", uuid::Uuid::new_v4())),
        refresh_token: Some(SecretString::from(format!(
            "fake-refresh-{}",
            uuid::Uuid::new_v4()
        ))),
        expires_at: Some(Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap()),
        scope: Some("projects:read".into()),
    }
}

fn user() -> TokenOwner {
    TokenOwner::User("ops".into())
}

fn pair(t: &TokenSet) -> (String, String) {
    (
        t.access_token.expose_secret().to_owned(),
        t.refresh_token
            .as_ref()
            .map(|r| r.expose_secret().to_owned())
            .unwrap_or_default(),
    )
}

/// One token row, whole, as it sits in either database.
#[derive(Debug, Clone)]
struct RawRow {
    sealed: Vec<u8>,
    version: i64,
    expires_at: Option<String>,
    has_refresh: bool,
    scope: Option<String>,
}

/// Where a test's tokens live: a SQLite file of its own, or a PostgreSQL schema of its own.
/// Each `open` is another connection (SQLite) or another pool (PostgreSQL): another
/// process, or another replica.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(Box<TestDatabase>),
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres(test: &str) -> Option<Self> {
        plane_postgres::testing::database(test)
            .await
            .map(|pg| Self::Postgres(Box::new(pg)))
    }

    fn file(&self) -> PathBuf {
        match self {
            Self::Sqlite(dir) => dir.path().join("plane.db"),
            Self::Postgres(_) => unreachable!("a SQLite test only"),
        }
    }

    async fn pool(pg: &TestDatabase) -> plane_postgres::Database {
        pg.options().clone().pool_size(4).connect().await.unwrap()
    }

    async fn try_open(&self, key: &TokenKey) -> Result<Arc<dyn TokenStore>, TokenStoreError> {
        Ok(match self {
            Self::Sqlite(_) => Arc::new(SqliteTokenStore::open(self.file(), key.clone())?),
            Self::Postgres(pg) => {
                Arc::new(PgTokenStore::open(Self::pool(pg).await, key.clone()).await?)
            }
        })
    }

    async fn open(&self, key: &TokenKey) -> Arc<dyn TokenStore> {
        self.try_open(key).await.unwrap()
    }

    async fn open_existing(&self, key: &TokenKey) -> Option<Arc<dyn TokenStore>> {
        match self {
            Self::Sqlite(_) => SqliteTokenStore::open_existing(self.file(), key.clone())
                .unwrap()
                .map(|s| Arc::new(s) as Arc<dyn TokenStore>),
            Self::Postgres(pg) => PgTokenStore::open_existing(Self::pool(pg).await, key.clone())
                .await
                .unwrap()
                .map(|s| Arc::new(s) as Arc<dyn TokenStore>),
        }
    }

    async fn listing(&self) -> Arc<dyn TokenStore> {
        match self {
            Self::Sqlite(_) => Arc::new(SqliteTokenStore::open_for_listing(self.file()).unwrap()),
            Self::Postgres(pg) => Arc::new(
                PgTokenStore::open_for_listing(Self::pool(pg).await)
                    .await
                    .unwrap(),
            ),
        }
    }

    /// What another store of the database does first (the file, or the schema, exists
    /// before the token tables).
    async fn open_other_stores(&self) {
        if let Self::Sqlite(_) = self {
            plane_webhook::SqliteStore::open(self.file(), plane_webhook::StoreConfig::default())
                .unwrap();
        }
    }

    /// Runs `sql` behind the store's back; `$1` is `blob`. Returns the rows changed.
    async fn execute(&self, sql: &str, blob: Option<&[u8]>) -> u64 {
        match self {
            Self::Sqlite(_) => {
                let connection = rusqlite::Connection::open(self.file()).unwrap();
                let sql = sql.replace("$1", "?1");
                let changed = match blob {
                    Some(blob) => connection.execute(&sql, [blob]),
                    None => connection.execute(&sql, []),
                };
                changed.unwrap() as u64
            }
            Self::Postgres(pg) => {
                let client = pg.db().client().await.unwrap();
                match blob {
                    Some(blob) => client.execute(sql, &[&blob]).await.unwrap(),
                    None => client.execute(sql, &[]).await.unwrap(),
                }
            }
        }
    }

    /// The first column of every row of `sql`, as text.
    async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Self::Sqlite(_) => {
                let connection = rusqlite::Connection::open(self.file()).unwrap();
                let mut statement = connection.prepare(sql).unwrap();
                statement
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            Self::Postgres(pg) => {
                let client = pg.db().client().await.unwrap();
                let rows = client.query(sql, &[]).await.unwrap();
                rows.iter().map(|r| r.get(0)).collect()
            }
        }
    }

    /// How many `oauth…` tables exist.
    async fn token_tables(&self) -> usize {
        match self {
            Self::Sqlite(_) => self
                .strings("SELECT name FROM sqlite_master WHERE name LIKE 'oauth%'")
                .await
                .len(),
            Self::Postgres(_) => self
                .strings(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
                     AND tablename LIKE 'oauth%'",
                )
                .await
                .len(),
        }
    }

    /// The one stored token row.
    async fn row(&self) -> RawRow {
        const SQL: &str =
            "SELECT sealed, version, expires_at, has_refresh, scope FROM oauth_tokens";
        match self {
            Self::Sqlite(_) => {
                let connection = rusqlite::Connection::open(self.file()).unwrap();
                connection
                    .query_row(SQL, [], |r| {
                        Ok(RawRow {
                            sealed: r.get(0)?,
                            version: r.get(1)?,
                            expires_at: r.get(2)?,
                            has_refresh: r.get(3)?,
                            scope: r.get(4)?,
                        })
                    })
                    .unwrap()
            }
            Self::Postgres(pg) => {
                let client = pg.db().client().await.unwrap();
                let r = client.query_one(SQL, &[]).await.unwrap();
                RawRow {
                    sealed: r.get(0),
                    version: r.get(1),
                    expires_at: r.get(2),
                    has_refresh: r.get(3),
                    scope: r.get(4),
                }
            }
        }
    }

    /// Puts `row` back as the one stored token row (its owner stays), as from a backup.
    async fn put_row(&self, row: &RawRow) {
        match self {
            Self::Sqlite(_) => {
                let connection = rusqlite::Connection::open(self.file()).unwrap();
                connection
                    .execute(
                        "UPDATE oauth_tokens SET sealed = ?1, version = ?2, expires_at = ?3, \
                         has_refresh = ?4, scope = ?5",
                        rusqlite::params![
                            row.sealed,
                            row.version,
                            row.expires_at,
                            row.has_refresh,
                            row.scope
                        ],
                    )
                    .unwrap();
            }
            Self::Postgres(pg) => {
                let client = pg.db().client().await.unwrap();
                client
                    .execute(
                        "UPDATE oauth_tokens SET sealed = $1, version = $2, expires_at = $3, \
                         has_refresh = $4, scope = $5",
                        &[
                            &row.sealed,
                            &row.version,
                            &row.expires_at,
                            &row.has_refresh,
                            &row.scope,
                        ],
                    )
                    .await
                    .unwrap();
            }
        }
    }

    /// Every byte the database keeps of the tokens: the SQLite file and its WAL, or every
    /// row of the token tables (as JSON text, and the sealed bytes as they are).
    async fn everything(&self) -> Vec<u8> {
        match self {
            Self::Sqlite(_) => {
                let db = self.file();
                let mut raw = std::fs::read(&db).unwrap();
                if let Ok(more) = std::fs::read(db.with_extension("db-wal")) {
                    raw.extend(more);
                }
                raw
            }
            Self::Postgres(pg) => {
                let client = pg.db().client().await.unwrap();
                let mut raw = Vec::new();
                for table in [
                    "oauth_tokens",
                    "oauth_token_versions",
                    "oauth_renewals",
                    "oauth_pending",
                ] {
                    let sql = format!("SELECT row_to_json(t)::text FROM {table} t");
                    for row in client.query(&sql, &[]).await.unwrap() {
                        raw.extend(row.get::<_, String>(0).into_bytes());
                    }
                }
                for sql in [
                    "SELECT sealed FROM oauth_tokens",
                    "SELECT sealed FROM oauth_pending",
                ] {
                    for row in client.query(sql, &[]).await.unwrap() {
                        raw.extend(row.get::<_, Vec<u8>>(0));
                    }
                }
                raw
            }
        }
    }

    /// `plane-server oauth rekey` on this database: how many records it re-sealed, or
    /// what it said on stderr when it refused (exit 1).
    async fn rekey(&self, new: &str, old: &str) -> Result<usize, String> {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_plane-server"));
        cmd.args(["oauth", "rekey", "--db"])
            .env_clear()
            .env("PLANE_TOKEN_ENCRYPTION_KEY", new)
            .env("PLANE_TOKEN_ENCRYPTION_KEY_OLD", old);
        match self {
            Self::Sqlite(_) => {
                cmd.arg(self.file());
            }
            Self::Postgres(pg) => {
                cmd.arg(pg.url()).env("PLANE_DATABASE_SCHEMA", pg.schema());
                if let Ok(password) = std::env::var("PGPASSWORD") {
                    cmd.env("PGPASSWORD", password);
                }
            }
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            return Err(stderr);
        }
        let count = stdout
            .split("re-encrypted ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok());
        Ok(count.unwrap_or_else(|| panic!("no count in: {stdout}")))
    }
}

/// Runs each named test body once per backend: `sqlite::NAME` and `postgres::NAME`, the
/// latter skipped (with plane-postgres's message) without a test database.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::Backend::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(backend).await;
                }
            )*
        }
    };
}

on_both_backends!(
    tokens_round_trip_encrypted_and_the_database_never_holds_them_in_clear,
    a_wrong_key_and_a_tampered_or_moved_record_are_refused_by_name,
    debug_of_every_store_value_shows_no_token_key_or_verifier,
    a_pending_authorization_is_taken_once_and_its_verifier_is_sealed,
    open_existing_creates_neither_the_file_nor_the_token_tables,
    a_rolled_back_or_relabelled_record_is_refused_by_name,
    an_expired_pending_authorization_is_refused_and_purged,
    rekey_moves_every_record_to_the_new_key_and_a_wrong_old_key_changes_nothing,
    the_lease_is_held_by_one_and_taken_over_when_its_holder_died,
    a_compare_and_save_over_a_changed_record_keeps_the_stored_pair,
    concurrent_writers_never_reuse_a_version,
);

async fn tokens_round_trip_encrypted_and_the_database_never_holds_them_in_clear(b: Backend) {
    let (key, key_text) = new_key();
    let store = b.open(&key).await;
    let saved = tokens();
    store.save(&user(), &saved).await.unwrap();
    let bot = TokenOwner::Installation("inst-1".into());
    store.save(&bot, &tokens()).await.unwrap();
    let loaded = store.load(&user()).await.unwrap().unwrap();
    assert_eq!(
        loaded.access_token.expose_secret(),
        saved.access_token.expose_secret()
    );
    assert_eq!(
        loaded.refresh_token.unwrap().expose_secret(),
        saved.refresh_token.as_ref().unwrap().expose_secret()
    );
    assert_eq!(loaded.expires_at, saved.expires_at);
    assert!(
        store
            .load(&TokenOwner::User("nobody".into()))
            .await
            .unwrap()
            .is_none()
    );

    // A later save replaces the record (a rotation), seen by another process.
    let rotated = tokens();
    store.save(&user(), &rotated).await.unwrap();
    let reopened = b.open(&key).await;
    assert_eq!(
        pair(&reopened.load(&user()).await.unwrap().unwrap()),
        pair(&rotated)
    );

    // Listing needs no key and shows no value.
    let listed = b.listing().await.list().await.unwrap();
    let owners: Vec<_> = listed.iter().map(|i| i.owner.as_str()).collect();
    assert_eq!(owners, ["installation:inst-1", "user:ops"]);
    assert!(listed[1].has_refresh_token);
    assert_eq!(listed[1].expires_at, saved.expires_at);
    assert_eq!(listed[1].scope.as_deref(), Some("projects:read"));

    drop((store, reopened));
    let raw = b.everything().await;
    assert!(raw.len() > 100, "nothing was read");
    for secret in [
        rotated.access_token.expose_secret().as_bytes(),
        rotated
            .refresh_token
            .as_ref()
            .unwrap()
            .expose_secret()
            .as_bytes(),
        key_text.as_bytes(),
        &STANDARD.decode(&key_text).unwrap(),
    ] {
        let found = raw.windows(secret.len()).any(|w| w == secret);
        assert!(!found, "a token or the key is in the database");
    }
}

async fn a_wrong_key_and_a_tampered_or_moved_record_are_refused_by_name(b: Backend) {
    let (key, _) = new_key();
    b.open(&key).await.save(&user(), &tokens()).await.unwrap();

    let (other, _) = new_key();
    let err = b.open(&other).await.load(&user()).await.unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("user:ops") && text.contains("PLANE_TOKEN_ENCRYPTION_KEY"),
        "{text}"
    );

    // One flipped bit in the ciphertext.
    let mut sealed = b.row().await.sealed;
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    b.execute("UPDATE oauth_tokens SET sealed = $1", Some(&sealed))
        .await;
    let store = b.open(&key).await;
    let err = store.load(&user()).await.unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err}"
    );

    // An intact record moved to another owner.
    sealed[last] ^= 1;
    b.execute(
        "UPDATE oauth_tokens SET sealed = $1, owner = 'user:mallory'",
        Some(&sealed),
    )
    .await;
    let err = store
        .load(&TokenOwner::User("mallory".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err}"
    );
    b.execute("UPDATE oauth_tokens SET owner = 'user:ops'", None)
        .await;
    assert!(
        store.load(&user()).await.unwrap().is_some(),
        "restored: opens again"
    );
}

#[test]
fn a_key_of_the_wrong_length_or_not_base64_is_refused_with_how_to_make_one() {
    for (text, problem) in [
        (STANDARD.encode([3u8; 16]), "16 bytes"),
        (STANDARD.encode([3u8; 33]), "33 bytes"),
        ("not base64!".to_owned(), "not base64"),
    ] {
        let env = |name: &str| (name == "PLANE_TOKEN_ENCRYPTION_KEY").then(|| text.clone());
        let err = TokenKey::from_env(&env).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, TokenStoreError::KeyInvalid { .. }), "{shown}");
        assert!(shown.contains(problem), "{shown}");
        assert!(shown.contains("openssl rand -base64 32"), "{shown}");
        assert!(!shown.contains(&text), "the value is not echoed: {shown}");
    }
    // From a file, and not both.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    let (_, text) = new_key();
    std::fs::write(&file, format!("{text}\n")).unwrap();
    let path = file.display().to_string();
    let env = |name: &str| (name == "PLANE_TOKEN_ENCRYPTION_KEY_FILE").then(|| path.clone());
    assert!(TokenKey::from_env(&env).unwrap().is_some());
    let both = |name: &str| match name {
        "PLANE_TOKEN_ENCRYPTION_KEY_FILE" => Some(path.clone()),
        "PLANE_TOKEN_ENCRYPTION_KEY" => Some(text.clone()),
        _ => None,
    };
    assert!(
        TokenKey::from_env(&both)
            .unwrap_err()
            .to_string()
            .contains("set only one")
    );
    assert!(TokenKey::from_env(&|_| None).unwrap().is_none());
}

/// `Debug` of the key, the store, the sink, a pending authorization, a listing
/// and a refusal shows no token, no key (as base64 or bytes) and no verifier.
async fn debug_of_every_store_value_shows_no_token_key_or_verifier(b: Backend) {
    let bytes: [u8; 32] = std::array::from_fn(|_| rand_byte());
    let text = STANDARD.encode(bytes);
    let key = TokenKey::from_base64("test", &text).unwrap();
    let store = b.open(&key).await;
    let saved = tokens();
    store.save(&user(), &saved).await.unwrap();
    let loaded = store.load(&user()).await.unwrap().unwrap();
    let listed = store.list().await.unwrap();
    let sink = plane_server::token_store::StoreSink::new(store.clone(), user());
    let verifier = format!("fake-verifier-{}", uuid::Uuid::new_v4().simple());
    let pending = PendingAuthorization {
        owner: user(),
        verifier: SecretString::from(verifier.clone()),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        created_at: Utc::now(),
    };
    let (other, _) = new_key();
    let refused = b.open(&other).await.load(&user()).await.unwrap_err();
    let shown = format!(
        "{key:?} {key:#?} {store:?} {sink:?} {sink:#?} {pending:?} {pending:#?} {loaded:?} \
         {listed:?} {refused} {refused:?}"
    );
    assert!(shown.contains("TokenStore"), "{shown}");
    for value in [
        text.clone(),
        format!("{bytes:?}"),
        format!("{:?}", bytes.to_vec()),
        verifier,
        saved.access_token.expose_secret().to_owned(),
        saved.refresh_token.unwrap().expose_secret().to_owned(),
    ] {
        assert!(!shown.contains(&value), "{value} is in: {shown}");
    }
}

async fn a_pending_authorization_is_taken_once_and_its_verifier_is_sealed(b: Backend) {
    let (key, _) = new_key();
    let store = b.open(&key).await;
    let verifier = format!("fake-verifier-{}", uuid::Uuid::new_v4().simple());
    store
        .save_pending(
            "state-1",
            &PendingAuthorization {
                owner: user(),
                verifier: SecretString::from(verifier.clone()),
                redirect_uri: "http://127.0.0.1:9/cb".into(),
                created_at: Utc::now(),
            },
        )
        .await
        .unwrap();
    let raw = b.everything().await;
    assert!(
        !raw.windows(verifier.len())
            .any(|w| w == verifier.as_bytes())
    );
    assert!(store.take_pending("other").await.unwrap().is_none());
    // Taken by another process (replica).
    let taken = b
        .open(&key)
        .await
        .take_pending("state-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.verifier.expose_secret(), verifier);
    assert_eq!(taken.owner, user());
    assert_eq!(taken.redirect_uri, "http://127.0.0.1:9/cb");
    assert!(
        store.take_pending("state-1").await.unwrap().is_none(),
        "single use"
    );
}

/// `open_existing` (for `check`) creates nothing: not the file, not the token tables.
async fn open_existing_creates_neither_the_file_nor_the_token_tables(b: Backend) {
    let (key, _) = new_key();
    assert!(b.open_existing(&key).await.is_none());
    if let Backend::Sqlite(_) = b {
        assert!(!b.file().exists(), "the file was created");
    }
    b.open_other_stores().await;
    assert!(b.open_existing(&key).await.is_none());
    assert_eq!(b.token_tables().await, 0, "token tables were created");

    let saved = tokens();
    b.open(&key).await.save(&user(), &saved).await.unwrap();
    let existing = b.open_existing(&key).await.unwrap();
    assert_eq!(
        pair(&existing.load(&user()).await.unwrap().unwrap()),
        pair(&saved)
    );
}

/// An older copy of a record put back into the database is refused by name; so is a
/// record whose clear columns were changed beside it.
async fn a_rolled_back_or_relabelled_record_is_refused_by_name(b: Backend) {
    let (key, _) = new_key();
    let store = b.open(&key).await;
    let (old, new) = (tokens(), tokens());
    store.save(&user(), &old).await.unwrap();
    let copy = b.row().await;
    store.save(&user(), &new).await.unwrap();
    assert_eq!(
        pair(&store.load(&user()).await.unwrap().unwrap()),
        pair(&new)
    );
    // The old row, whole, put back (as from an old backup).
    b.put_row(&copy).await;
    let err = store.load(&user()).await.unwrap_err();
    assert!(
        matches!(
            err,
            TokenStoreError::RolledBack {
                found: 1,
                newest: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(
            "the stored token for user:ops is version 1, older than the newest written (2)"
        ),
        "{err}"
    );
    // A fresh save writes past it.
    store.save(&user(), &new).await.unwrap();
    assert!(store.load(&user()).await.is_ok());
    assert_eq!(b.row().await.version, 3);
    // The clear columns `oauth status` shows are bound to the record.
    b.execute("UPDATE oauth_tokens SET scope = 'admin'", None)
        .await;
    let err = store.load(&user()).await.unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err:?}"
    );
}

/// `oauth authorize-url` waits 15 minutes for its `oauth exchange`: an older pending
/// authorization is refused by name, and a new one purges the expired.
async fn an_expired_pending_authorization_is_refused_and_purged(b: Backend) {
    let (key, _) = new_key();
    let store = b.open(&key).await;
    let pending = |minutes_ago: i64| PendingAuthorization {
        owner: user(),
        verifier: SecretString::from(format!("fake-verifier-{}", uuid::Uuid::new_v4().simple())),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        created_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
    };
    store.save_pending("late", &pending(16)).await.unwrap();
    let err = store.take_pending("late").await.unwrap_err();
    assert!(
        matches!(err, TokenStoreError::PendingExpired { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("expired after 15 minutes; run `plane-server oauth authorize-url` again"),
        "{err}"
    );
    assert!(store.take_pending("late").await.unwrap().is_none(), "gone");
    // Still inside its 15 minutes: taken.
    store.save_pending("in-time", &pending(14)).await.unwrap();
    assert!(store.take_pending("in-time").await.unwrap().is_some());
    // A new one purges the expired.
    store.save_pending("stale", &pending(30)).await.unwrap();
    store.save_pending("new", &pending(0)).await.unwrap();
    let states = b
        .strings("SELECT state FROM oauth_pending ORDER BY state")
        .await;
    assert_eq!(states, ["new"]);
}

/// `plane-server oauth rekey`: every record re-sealed under the new key in one
/// transaction; a wrong old key changes nothing and says so.
async fn rekey_moves_every_record_to_the_new_key_and_a_wrong_old_key_changes_nothing(b: Backend) {
    let (old, old_text) = new_key();
    let (new, new_text) = new_key();
    let (wrong, wrong_text) = new_key();
    let stored = tokens();
    {
        let store = b.open(&old).await;
        store.save(&user(), &stored).await.unwrap();
        store
            .save(&TokenOwner::Installation("inst-1".into()), &tokens())
            .await
            .unwrap();
        store
            .save_pending(
                "state-1",
                &PendingAuthorization {
                    owner: user(),
                    verifier: SecretString::from("fake-verifier-0123456789".to_owned()),
                    redirect_uri: "http://127.0.0.1:9/cb".into(),
                    created_at: Utc::now(),
                },
            )
            .await
            .unwrap();
    }
    let opens_with = async |key: &TokenKey| {
        b.open(key)
            .await
            .load(&user())
            .await
            .map(|t| t.unwrap().access_token.expose_secret().to_owned())
    };

    // The wrong old key: exit 1, the records as they were.
    let stderr = b.rekey(&new_text, &wrong_text).await.unwrap_err();
    assert!(
        stderr.contains("PLANE_TOKEN_ENCRYPTION_KEY_OLD does not open the stored token of")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(!stderr.contains(&wrong_text) && !stderr.contains(&new_text));
    assert_eq!(
        opens_with(&old).await.unwrap(),
        stored.access_token.expose_secret()
    );
    assert!(opens_with(&wrong).await.is_err());

    // The right one: everything moves, the old key opens nothing.
    assert_eq!(b.rekey(&new_text, &old_text).await, Ok(3));
    assert_eq!(
        opens_with(&new).await.unwrap(),
        stored.access_token.expose_secret()
    );
    assert!(matches!(
        opens_with(&old).await.unwrap_err(),
        TokenStoreError::Undecryptable { .. }
    ));
    let store = b.open(&new).await;
    assert!(store.take_pending("state-1").await.unwrap().is_some());
}

/// The renewal lease: one holder at a time, its own again, and a holder that died (its
/// process, its pool gone, the lease never released) keeps the others out only until the
/// lease's end, on the database's clock.
async fn the_lease_is_held_by_one_and_taken_over_when_its_holder_died(b: Backend) {
    let (key, _) = new_key();
    let (dead, alive) = (b.open(&key).await, b.open(&key).await);
    let lasting = Duration::from_secs(2);
    let taken_at = Instant::now();
    assert!(dead.try_lease(&user(), "dead", lasting).await.unwrap());
    assert!(
        dead.try_lease(&user(), "dead", lasting).await.unwrap(),
        "a holder takes its own lease again"
    );
    assert!(
        !alive
            .try_lease(&user(), "alive", Duration::from_secs(60))
            .await
            .unwrap(),
        "a lease is held by one at a time"
    );
    // Another owner's lease is another row.
    assert!(
        alive
            .try_lease(&TokenOwner::User("other".into()), "alive", lasting)
            .await
            .unwrap()
    );
    drop(dead);
    let taken = loop {
        if alive
            .try_lease(&user(), "alive", Duration::from_secs(60))
            .await
            .unwrap()
        {
            break taken_at.elapsed();
        }
        assert!(
            taken_at.elapsed() < Duration::from_secs(15),
            "never taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        taken >= lasting - Duration::from_millis(100),
        "taken over after {taken:?}, before the dead holder's lease ran out"
    );
    // Now the dead one's name takes nothing; a release by another holder changes nothing.
    let late = b.open(&key).await;
    assert!(!late.try_lease(&user(), "dead", lasting).await.unwrap());
    late.release(&user(), "dead").await.unwrap();
    assert!(!late.try_lease(&user(), "third", lasting).await.unwrap());
    alive.release(&user(), "alive").await.unwrap();
    assert!(late.try_lease(&user(), "third", lasting).await.unwrap());
}

/// The compare and swap itself: a renewal whose spent refresh token is no longer the
/// stored one keeps the stored pair, says which, and ends its lease in the same
/// transaction; with the stored refresh token spent, the new pair is stored.
async fn a_compare_and_save_over_a_changed_record_keeps_the_stored_pair(b: Backend) {
    let (key, _) = new_key();
    let (store, other) = (b.open(&key).await, b.open(&key).await);
    let set = |n: u32| TokenSet {
        access_token: SecretString::from(format!("fake-access-{n}")),
        refresh_token: Some(SecretString::from(format!("fake-refresh-{n}"))),
        expires_at: None,
        scope: None,
    };
    // Nothing stored yet: the pair is stored.
    let spent = set(0).refresh_token.unwrap();
    assert!(
        store
            .try_lease(&user(), "me", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let kept = store
        .compare_and_save(&user(), &spent, &set(1), "me")
        .await
        .unwrap();
    assert!(kept.is_none());
    // Another writer (`oauth exchange`) stores {2} meanwhile; the renewal that spent 1
    // keeps it.
    other.save(&user(), &set(2)).await.unwrap();
    assert!(
        store
            .try_lease(&user(), "me", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let spent = set(1).refresh_token.unwrap();
    let kept = store
        .compare_and_save(&user(), &spent, &set(3), "me")
        .await
        .unwrap();
    assert_eq!(pair(&kept.unwrap()), pair(&set(2)));
    assert_eq!(
        pair(&other.load(&user()).await.unwrap().unwrap()),
        pair(&set(2))
    );
    // The lease ended with it.
    assert!(
        other
            .try_lease(&user(), "another", Duration::from_secs(60))
            .await
            .unwrap()
    );
    other.release(&user(), "another").await.unwrap();
    // With the stored refresh token spent, the new pair is stored.
    let spent = set(2).refresh_token.unwrap();
    assert!(
        store
            .compare_and_save(&user(), &spent, &set(3), "me")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        pair(&other.load(&user()).await.unwrap().unwrap()),
        pair(&set(3))
    );
    assert_eq!(b.row().await.version, 3);
}

/// Writers on several connections (replicas) at once: every write gets a version of its
/// own, the newest record is the one stored, and it opens.
async fn concurrent_writers_never_reuse_a_version(b: Backend) {
    const WRITERS: usize = 3;
    const WRITES: usize = 10;
    let (key, _) = new_key();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = b.open(&key).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..WRITES {
                // A busy SQLite file makes a writer try again, as StoreSink does.
                let tokens = tokens();
                let mut tries = 0;
                while let Err(e) = store.save(&user(), &tokens).await {
                    tries += 1;
                    assert!(e.is_transient() && tries < 50, "{e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let row = b.row().await;
    assert_eq!(row.version, (WRITERS * WRITES) as i64);
    let newest = b
        .strings("SELECT CAST(version AS TEXT) FROM oauth_token_versions")
        .await;
    assert_eq!(newest, [(WRITERS * WRITES).to_string()]);
    assert!(b.open(&key).await.load(&user()).await.unwrap().is_some());
}

#[test]
fn the_token_tables_share_the_file_with_the_delivery_and_deadline_stores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, _) = new_key();
    let _deliveries =
        plane_webhook::SqliteStore::open(&db, plane_webhook::StoreConfig::default()).unwrap();
    let _deadlines = plane_bir::SqliteDeadlineStore::open(&db).unwrap();
    let store = SqliteTokenStore::open(&db, key.clone()).unwrap();
    store.save(&user(), &tokens()).unwrap();
    let connection = rusqlite::Connection::open(&db).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%migrations' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        tables.contains(&"oauth_schema_migrations".to_owned()),
        "{tables:?}"
    );
    assert!(
        tables.contains(&"bir_schema_migrations".to_owned()),
        "{tables:?}"
    );
    let version: i64 = connection
        .query_row(
            "SELECT MAX(version) FROM oauth_schema_migrations",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, plane_server::token_store::SCHEMA_VERSION);
    // Reopening migrates nothing twice.
    drop(store);
    let again = SqliteTokenStore::open(&db, key).unwrap();
    assert!(again.load(&user()).unwrap().is_some());
}

/// PostgreSQL: the tables are migrated as the component `oauth` (once, however many
/// replicas open them together), and a schema a newer build migrated is refused by every
/// way of opening it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_are_the_oauth_component_and_a_newer_schema_is_refused() {
    let Some(b) = Backend::postgres("oauth_component").await else {
        return;
    };
    let (key, _) = new_key();
    let opened = futures::future::join_all((0..3).map(|_| b.try_open(&key))).await;
    for store in opened {
        store.unwrap();
    }
    let Backend::Postgres(pg) = &b else {
        unreachable!()
    };
    assert_eq!(
        pg.db().schema_version("oauth").await.unwrap(),
        Some(PgTokenStore::SCHEMA_VERSION)
    );
    b.execute(
        "UPDATE schema_migrations SET version = 99 WHERE component = 'oauth'",
        None,
    )
    .await;
    let refused = [
        b.try_open(&key).await.map(drop).unwrap_err(),
        PgTokenStore::open_existing(Backend::pool(pg).await, key.clone())
            .await
            .map(drop)
            .unwrap_err(),
        PgTokenStore::open_for_listing(Backend::pool(pg).await)
            .await
            .map(drop)
            .unwrap_err(),
    ];
    for err in refused {
        let text = err.to_string();
        assert!(
            text.contains("oauth tables") && text.contains("version 99, newer than this build"),
            "{text}"
        );
        assert!(!err.is_transient(), "{text}");
    }
}

/// The same sealed record opens on either backend: a row copied from SQLite to
/// PostgreSQL (and back), still encrypted, with its version, opens with the same key,
/// and takes its next write at the next version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_copied_between_backends_still_encrypted_opens_with_the_same_key() {
    let Some(pg) = Backend::postgres("copied_record").await else {
        return;
    };
    let sqlite = Backend::sqlite();
    let (key, _) = new_key();
    let saved = tokens();
    let from = sqlite.open(&key).await;
    from.save(&user(), &saved).await.unwrap();
    from.save(&user(), &saved).await.unwrap();
    let row = sqlite.row().await;
    assert_eq!(row.version, 2);

    let to = pg.open(&key).await;
    let Backend::Postgres(db) = &pg else {
        unreachable!()
    };
    let client = db.db().client().await.unwrap();
    client
        .execute(
            "INSERT INTO oauth_tokens (owner, sealed, version, expires_at, has_refresh, scope)
             VALUES ('user:ops', $1, $2, $3, $4, $5)",
            &[
                &row.sealed,
                &row.version,
                &row.expires_at,
                &row.has_refresh,
                &row.scope,
            ],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO oauth_token_versions (owner, version) VALUES ('user:ops', $1)",
            &[&row.version],
        )
        .await
        .unwrap();
    assert_eq!(
        pair(&to.load(&user()).await.unwrap().unwrap()),
        pair(&saved)
    );
    let listed = to.list().await.unwrap();
    assert_eq!(listed[0].expires_at, saved.expires_at);

    // PostgreSQL writes the next version; copied back, SQLite opens it.
    let renewed = tokens();
    to.save(&user(), &renewed).await.unwrap();
    let back = pg.row().await;
    assert_eq!(back.version, 3);
    sqlite.put_row(&back).await;
    sqlite
        .execute("UPDATE oauth_token_versions SET version = 3", None)
        .await;
    assert_eq!(
        pair(
            &sqlite
                .open(&key)
                .await
                .load(&user())
                .await
                .unwrap()
                .unwrap()
        ),
        pair(&renewed)
    );
    // With another key it does not open there either.
    let (other, _) = new_key();
    assert!(matches!(
        pg.open(&other).await.load(&user()).await.unwrap_err(),
        TokenStoreError::Undecryptable { .. }
    ));
}
