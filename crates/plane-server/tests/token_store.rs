//! The encrypted token store: round trip, a wrong key, tampered or moved
//! records, key parsing, pending authorizations, and its own migrations table
//! beside the other stores in one SQLite file.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeZone, Utc};
use plane_core::oauth::TokenSet;
use plane_core::{ExposeSecret, SecretString};
use plane_server::token_store::{
    PendingAuthorization, SqliteTokenStore, TokenKey, TokenOwner, TokenStore, TokenStoreError,
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

#[test]
fn tokens_round_trip_encrypted_and_the_file_never_holds_them_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, key_text) = new_key();
    let store = SqliteTokenStore::open(&db, key.clone()).unwrap();
    let saved = tokens();
    store.save(&user(), &saved).unwrap();
    let bot = TokenOwner::Installation("inst-1".into());
    store.save(&bot, &tokens()).unwrap();
    let loaded = store.load(&user()).unwrap().unwrap();
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
            .unwrap()
            .is_none()
    );

    // A later save replaces the record (a rotation).
    let rotated = tokens();
    store.save(&user(), &rotated).unwrap();
    let reopened = SqliteTokenStore::open(&db, key).unwrap();
    assert_eq!(
        reopened
            .load(&user())
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        rotated.access_token.expose_secret()
    );

    // Listing needs no key and shows no value.
    let listed = SqliteTokenStore::open_for_listing(&db)
        .unwrap()
        .list()
        .unwrap();
    let owners: Vec<_> = listed.iter().map(|i| i.owner.as_str()).collect();
    assert_eq!(owners, ["installation:inst-1", "user:ops"]);
    assert!(listed[1].has_refresh_token);
    assert_eq!(listed[1].expires_at, saved.expires_at);

    drop((store, reopened));
    let mut raw = std::fs::read(&db).unwrap();
    for suffix in ["-wal"] {
        if let Ok(more) = std::fs::read(db.with_extension(format!("db{suffix}"))) {
            raw.extend(more);
        }
    }
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
        assert!(!found, "a token or the key is in the database file");
    }
}

#[test]
fn a_wrong_key_and_a_tampered_or_moved_record_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, _) = new_key();
    SqliteTokenStore::open(&db, key.clone())
        .unwrap()
        .save(&user(), &tokens())
        .unwrap();

    let (other, _) = new_key();
    let err = SqliteTokenStore::open(&db, other)
        .unwrap()
        .load(&user())
        .unwrap_err();
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
    let connection = rusqlite::Connection::open(&db).unwrap();
    let mut sealed: Vec<u8> = connection
        .query_row("SELECT sealed FROM oauth_tokens", [], |r| r.get(0))
        .unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    connection
        .execute("UPDATE oauth_tokens SET sealed = ?1", [&sealed])
        .unwrap();
    let store = SqliteTokenStore::open(&db, key.clone()).unwrap();
    let err = store.load(&user()).unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err}"
    );

    // An intact record moved to another owner.
    sealed[last] ^= 1;
    connection
        .execute(
            "UPDATE oauth_tokens SET sealed = ?1, owner = 'user:mallory'",
            [&sealed],
        )
        .unwrap();
    let err = store.load(&TokenOwner::User("mallory".into())).unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err}"
    );
    connection
        .execute("UPDATE oauth_tokens SET owner = 'user:ops'", [])
        .unwrap();
    assert!(
        store.load(&user()).unwrap().is_some(),
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
#[test]
fn debug_of_every_store_value_shows_no_token_key_or_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let bytes: [u8; 32] = std::array::from_fn(|_| rand_byte());
    let text = STANDARD.encode(bytes);
    let key = TokenKey::from_base64("test", &text).unwrap();
    let store = std::sync::Arc::new(SqliteTokenStore::open(&db, key.clone()).unwrap());
    let saved = tokens();
    store.save(&user(), &saved).unwrap();
    let loaded = store.load(&user()).unwrap().unwrap();
    let listed = store.list().unwrap();
    let sink = plane_server::token_store::StoreSink::new(store.clone(), user());
    let verifier = format!("fake-verifier-{}", uuid::Uuid::new_v4().simple());
    let pending = PendingAuthorization {
        owner: user(),
        verifier: SecretString::from(verifier.clone()),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        created_at: Utc::now(),
    };
    let (other, _) = new_key();
    let refused = SqliteTokenStore::open(&db, other)
        .unwrap()
        .load(&user())
        .unwrap_err();
    let shown = format!(
        "{key:?} {key:#?} {store:?} {sink:?} {sink:#?} {pending:?} {pending:#?} {loaded:?}          {listed:?} {refused} {refused:?}"
    );
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

#[test]
fn a_pending_authorization_is_taken_once_and_its_verifier_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, _) = new_key();
    let store = SqliteTokenStore::open(&db, key).unwrap();
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
        .unwrap();
    assert!(store.take_pending("other").unwrap().is_none());
    let taken = store.take_pending("state-1").unwrap().unwrap();
    assert_eq!(taken.verifier.expose_secret(), verifier);
    assert_eq!(taken.owner, user());
    assert!(
        store.take_pending("state-1").unwrap().is_none(),
        "single use"
    );
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

/// `open_existing` (for `check`) creates nothing: not the file, not the token tables.
#[test]
fn open_existing_creates_neither_the_file_nor_the_token_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, _) = new_key();
    assert!(
        SqliteTokenStore::open_existing(&db, key.clone())
            .unwrap()
            .is_none()
    );
    assert!(!db.exists(), "the file was created");

    let _deliveries =
        plane_webhook::SqliteStore::open(&db, plane_webhook::StoreConfig::default()).unwrap();
    assert!(
        SqliteTokenStore::open_existing(&db, key.clone())
            .unwrap()
            .is_none()
    );
    let connection = rusqlite::Connection::open(&db).unwrap();
    let oauth_tables: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'oauth%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(oauth_tables, 0, "token tables were created");

    let saved = tokens();
    SqliteTokenStore::open(&db, key.clone())
        .unwrap()
        .save(&user(), &saved)
        .unwrap();
    let existing = SqliteTokenStore::open_existing(&db, key).unwrap().unwrap();
    assert_eq!(
        existing
            .load(&user())
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        saved.access_token.expose_secret()
    );
}

/// An older copy of a record put back into the file is refused by name; so is a record
/// whose clear columns were changed beside it.
#[test]
fn a_rolled_back_or_relabelled_record_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, _) = new_key();
    let store = SqliteTokenStore::open(&db, key).unwrap();
    let (old, new) = (tokens(), tokens());
    store.save(&user(), &old).unwrap();
    let raw = rusqlite::Connection::open(&db).unwrap();
    let copy: (Vec<u8>, i64, Option<String>, bool, Option<String>) = raw
        .query_row(
            "SELECT sealed, version, expires_at, has_refresh, scope FROM oauth_tokens",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    store.save(&user(), &new).unwrap();
    assert_eq!(
        store
            .load(&user())
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        new.access_token.expose_secret()
    );
    // The old row, whole, put back (as from an old backup).
    raw.execute(
        "UPDATE oauth_tokens SET sealed = ?1, version = ?2, expires_at = ?3, has_refresh = ?4, scope = ?5",
        rusqlite::params![copy.0, copy.1, copy.2, copy.3, copy.4],
    )
    .unwrap();
    let err = store.load(&user()).unwrap_err();
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
    store.save(&user(), &new).unwrap();
    assert!(store.load(&user()).is_ok());
    // The clear columns `oauth status` shows are bound to the record.
    raw.execute("UPDATE oauth_tokens SET scope = 'admin'", [])
        .unwrap();
    let err = store.load(&user()).unwrap_err();
    assert!(
        matches!(err, TokenStoreError::Undecryptable { .. }),
        "{err:?}"
    );
}

/// `oauth authorize-url` waits 15 minutes for its `oauth exchange`: an older pending
/// authorization is refused by name, and a new one purges the expired.
#[test]
fn an_expired_pending_authorization_is_refused_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (key, _) = new_key();
    let store = SqliteTokenStore::open(&db, key).unwrap();
    let pending = |minutes_ago: i64| PendingAuthorization {
        owner: user(),
        verifier: SecretString::from(format!("fake-verifier-{}", uuid::Uuid::new_v4().simple())),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        created_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
    };
    store.save_pending("late", &pending(16)).unwrap();
    let err = store.take_pending("late").unwrap_err();
    assert!(
        matches!(err, TokenStoreError::PendingExpired { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("expired after 15 minutes; run `plane-server oauth authorize-url` again"),
        "{err}"
    );
    assert!(store.take_pending("late").unwrap().is_none(), "gone");
    // Still inside its 15 minutes: taken.
    store.save_pending("in-time", &pending(14)).unwrap();
    assert!(store.take_pending("in-time").unwrap().is_some());
    // A new one purges the expired.
    store.save_pending("stale", &pending(30)).unwrap();
    store.save_pending("new", &pending(0)).unwrap();
    let raw = rusqlite::Connection::open(&db).unwrap();
    let states: Vec<String> = raw
        .prepare("SELECT state FROM oauth_pending ORDER BY state")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(states, ["new"]);
}

/// `plane-server oauth rekey`: every record re-sealed under the new key in one
/// transaction; a wrong old key changes nothing and says so.
#[test]
fn rekey_moves_every_record_to_the_new_key_and_a_wrong_old_key_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    let (old, old_text) = new_key();
    let (new, new_text) = new_key();
    let (wrong, wrong_text) = new_key();
    let stored = tokens();
    {
        let store = SqliteTokenStore::open(&db, old.clone()).unwrap();
        store.save(&user(), &stored).unwrap();
        store
            .save(&TokenOwner::Installation("inst-1".into()), &tokens())
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
            .unwrap();
    }
    let rekey = |old: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_plane-server"))
            .args(["oauth", "rekey", "--db", db.to_str().unwrap()])
            .env_clear()
            .env("PLANE_TOKEN_ENCRYPTION_KEY", &new_text)
            .env("PLANE_TOKEN_ENCRYPTION_KEY_OLD", old)
            .output()
            .unwrap()
    };
    let opens_with = |key: &TokenKey| {
        SqliteTokenStore::open(&db, key.clone())
            .unwrap()
            .load(&user())
            .map(|t| t.unwrap().access_token.expose_secret().to_owned())
    };

    // The wrong old key: exit 1, the records as they were.
    let out = rekey(&wrong_text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("PLANE_TOKEN_ENCRYPTION_KEY_OLD does not open the stored token of")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(!stderr.contains(&wrong_text) && !stderr.contains(&new_text));
    assert_eq!(
        opens_with(&old).unwrap(),
        stored.access_token.expose_secret()
    );
    assert!(opens_with(&wrong).is_err());

    // The right one: everything moves, the old key opens nothing.
    let out = rekey(&old_text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("re-encrypted 3 records under the new key")
    );
    assert_eq!(
        opens_with(&new).unwrap(),
        stored.access_token.expose_secret()
    );
    assert!(matches!(
        opens_with(&old).unwrap_err(),
        TokenStoreError::Undecryptable { .. }
    ));
    let store = SqliteTokenStore::open(&db, new).unwrap();
    assert!(store.take_pending("state-1").unwrap().is_some());
}
