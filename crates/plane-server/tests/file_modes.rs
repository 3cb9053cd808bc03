//! The token store may be the first to create the shared SQLite file, and the
//! secrets may come from files: the database is created 0600 (and so are its
//! `-wal` and `-shm`), and a database or secret file that group or others may
//! read is reported with the fix, never with a secret's content.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::fs::{self, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use plane_server::config::{Config, Overrides};
use plane_server::token_store::{SqliteTokenStore, TokenKey};

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn key_text() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

fn key() -> TokenKey {
    TokenKey::from_base64("test", &key_text()).unwrap()
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with this thread's log lines (warn and up) captured.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn the_token_store_creates_the_database_and_its_wal_and_shm_0600() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    // Opening migrates, a write: the -wal and -shm exist while the store is open.
    let (_store, logs) = logged(|| SqliteTokenStore::open(&db, key()).unwrap());
    assert_eq!(logs, "");
    for name in ["plane.db", "plane.db-wal", "plane.db-shm"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
}

#[test]
fn the_token_store_reports_an_existing_database_others_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    drop(SqliteTokenStore::open(&db, key()).unwrap());
    fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
    let (_store, logs) = logged(|| SqliteTokenStore::open(&db, key()).unwrap());
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("mode 0644"), "{logs}");
    assert!(
        logs.contains(&format!("chmod 600 {}", db.display())),
        "{logs}"
    );
}

#[test]
fn a_secret_file_others_may_read_is_reported_by_variable_and_path_never_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let api_key = dir.path().join("api-key");
    fs::write(&api_key, "plane_api_fake_file_content\n").unwrap();
    let env = env_of(vec![("PLANE_API_KEY_FILE", api_key.display().to_string())]);

    fs::set_permissions(&api_key, Permissions::from_mode(0o644)).unwrap();
    let (config, logs) = logged(|| Config::load(&Overrides::default(), &env));
    config.unwrap();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("PLANE_API_KEY_FILE"), "{logs}");
    assert!(logs.contains("mode 0644"), "{logs}");
    assert!(
        logs.contains(&format!("chmod 600 {}", api_key.display())),
        "{logs}"
    );
    assert!(!logs.contains("plane_api_fake_file_content"), "{logs}");

    fs::set_permissions(&api_key, Permissions::from_mode(0o600)).unwrap();
    let (config, logs) = logged(|| Config::load(&Overrides::default(), &env));
    config.unwrap();
    assert_eq!(logs, "", "a private file is not reported");
}

#[test]
fn the_encryption_key_file_and_the_client_secret_file_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("token-key");
    fs::write(&key_file, key_text()).unwrap();
    let secret_file = dir.path().join("client-secret");
    fs::write(&secret_file, "fake-client-secret-content").unwrap();
    let env = env_of(vec![
        ("PLANE_OAUTH_CLIENT_ID", "c1".into()),
        ("PLANE_OAUTH_INSTALLATION_ID", "inst-1".into()),
        (
            "PLANE_OAUTH_CLIENT_SECRET_FILE",
            secret_file.display().to_string(),
        ),
        (
            "PLANE_TOKEN_ENCRYPTION_KEY_FILE",
            key_file.display().to_string(),
        ),
    ]);

    fs::set_permissions(&key_file, Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(&secret_file, Permissions::from_mode(0o604)).unwrap();
    let (config, logs) = logged(|| Config::load(&Overrides::default(), &env));
    assert!(config.unwrap().oauth.is_some());
    for (var, path, mode) in [
        ("PLANE_TOKEN_ENCRYPTION_KEY_FILE", &key_file, "0640"),
        ("PLANE_OAUTH_CLIENT_SECRET_FILE", &secret_file, "0604"),
    ] {
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("{var}=")))
            .unwrap_or_else(|| panic!("no warning for {var}: {logs}"));
        assert!(line.contains(&format!("mode {mode}")), "{line}");
        assert!(
            line.contains(&format!("chmod 600 {}", path.display())),
            "{line}"
        );
    }
    assert!(!logs.contains(&key_text()), "{logs}");
    assert!(!logs.contains("fake-client-secret-content"), "{logs}");

    fs::set_permissions(&key_file, Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&secret_file, Permissions::from_mode(0o400)).unwrap();
    let (config, logs) = logged(|| Config::load(&Overrides::default(), &env));
    config.unwrap();
    assert_eq!(logs, "");
}
