//! The deadline store may be the first to create the shared SQLite file: it
//! creates it 0600, and SQLite gives the `-wal` and `-shm` the same mode.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use plane_bir::SqliteDeadlineStore;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_new_database_and_its_wal_and_shm_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plane.db");
    // Opening migrates, a write: the -wal and -shm exist while the store is open.
    let _store = SqliteDeadlineStore::open(&db).unwrap();
    for name in ["plane.db", "plane.db-wal", "plane.db-shm"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
}
