//! The SQLite file is private: a new one is created 0600, SQLite gives its
//! `-wal` and `-shm` the database file's mode, and an existing file that group
//! or others may read is reported with the fix.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plane_webhook::{EventHead, NewDelivery, RecordOutcome, SqliteStore, StoreConfig};
use uuid::Uuid;

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The mode a file asked for as 0666 gets under this process's umask (read
/// without libc).
fn umasked_0666(dir: &Path) -> u32 {
    let probe = dir.join("umask-probe");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&probe)
        .unwrap();
    let mode = mode(&probe);
    fs::remove_file(probe).unwrap();
    mode
}

async fn record_one(store: &SqliteStore) {
    use plane_webhook::DeliveryStore as _;
    let body = br#"{"event": "issue", "action": "created", "webhook_id": null, "workspace_id": null, "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "x"}}"#.to_vec();
    let delivery = NewDelivery::new(Uuid::new_v4(), &EventHead::parse(&body).unwrap(), body);
    assert!(matches!(
        store.record(delivery).await.unwrap(),
        RecordOutcome::New { .. }
    ));
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

#[tokio::test]
async fn a_new_database_and_its_wal_and_shm_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let umasked = umasked_0666(dir.path());
    // What SQLite does on its own under this umask: the case this guards against.
    let control = dir.path().join("control.db");
    let connection = rusqlite::Connection::open(&control).unwrap();
    connection
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let sqlite_default = umasked & 0o644;
    assert_eq!(mode(&control), sqlite_default);
    assert_eq!(mode(&with_suffix(&control, "-wal")), sqlite_default);
    if sqlite_default & 0o044 == 0 {
        eprintln!("note: the umask already hides the file from others; this run proves less");
    }

    let db = dir.path().join("plane.db");
    let (store, logs) = logged(|| SqliteStore::open(&db, StoreConfig::default()).unwrap());
    record_one(&store).await;
    assert_eq!(logs, "", "a file it created itself is not reported");
    for path in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// SQLite's unix VFS creates `-wal` and `-shm` with the database file's
/// permissions, whatever the umask: this is what makes a 0600 database enough.
#[tokio::test]
async fn sqlite_gives_the_wal_and_shm_the_database_files_mode() {
    let dir = tempfile::tempdir().unwrap();
    for chosen in [0o640, 0o666] {
        let db = dir.path().join(format!("chosen-{chosen:o}.db"));
        fs::write(&db, b"").unwrap();
        fs::set_permissions(&db, Permissions::from_mode(chosen)).unwrap();
        let (store, _) = logged(|| SqliteStore::open(&db, StoreConfig::default()).unwrap());
        record_one(&store).await;
        assert_eq!(mode(&db), chosen);
        assert_eq!(mode(&with_suffix(&db, "-wal")), chosen, "{chosen:o}");
        assert_eq!(mode(&with_suffix(&db, "-shm")), chosen, "{chosen:o}");
    }
}

#[test]
fn an_existing_database_group_or_others_may_read_is_reported_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    drop(SqliteStore::open(&db, StoreConfig::default()).unwrap());
    fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();

    let (store, logs) = logged(|| SqliteStore::open(&db, StoreConfig::default()).unwrap());
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains(&db.display().to_string()), "{logs}");
    assert!(logs.contains("mode 0644"), "{logs}");
    assert!(
        logs.contains(&format!("chmod 600 {}", db.display())),
        "{logs}"
    );
    drop(store);
    assert_eq!(mode(&db), 0o644, "the mode is reported, not changed");

    // Made private: nothing to report.
    fs::set_permissions(&db, Permissions::from_mode(0o600)).unwrap();
    let (_store, logs) = logged(|| SqliteStore::open(&db, StoreConfig::default()).unwrap());
    assert_eq!(logs, "");
}

/// A crash leaves `-wal` and `-shm` behind, and SQLite keeps the mode of a file
/// it finds with content: a shared leftover is reported too.
#[test]
fn a_leftover_wal_group_or_others_may_read_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    drop(SqliteStore::open(&db, StoreConfig::default()).unwrap());
    let wal = with_suffix(&db, "-wal");
    fs::write(&wal, b"").unwrap();
    fs::set_permissions(&wal, Permissions::from_mode(0o604)).unwrap();
    let (_store, logs) = logged(|| plane_webhook::prepare_database_file(&db));
    assert!(
        logs.contains(&format!("chmod 600 {}", wal.display())),
        "{logs}"
    );
    assert!(logs.contains("mode 0604"), "{logs}");
    assert!(
        !logs.contains("mode 0600"),
        "the database itself is private: {logs}"
    );
}
