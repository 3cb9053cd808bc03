//! `SqliteStore::inspect_schema_version`: reads, never creates or migrates.
#![allow(clippy::unwrap_used)]

use plane_webhook::{Error, SqliteStore, StoreConfig};

#[test]
fn a_missing_file_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = SqliteStore::inspect_schema_version(&path).unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    assert!(err.to_string().contains("no such file"), "{err}");
    assert!(!path.exists(), "inspecting created the file");
}

#[test]
fn an_empty_file_is_version_0_and_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert_eq!(SqliteStore::inspect_schema_version(&path).unwrap(), 0);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "inspecting migrated the file"
    );
}

#[test]
fn a_store_reports_the_version_this_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, StoreConfig::default()).unwrap());
    let before = std::fs::read(&path).unwrap();
    assert_eq!(
        SqliteStore::inspect_schema_version(&path).unwrap(),
        SqliteStore::SCHEMA_VERSION
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
}

#[test]
fn a_file_that_is_not_a_database_or_is_too_new_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::inspect_schema_version(&junk).unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");

    let newer = dir.path().join("newer.db");
    let connection = rusqlite::Connection::open(&newer).unwrap();
    connection
        .pragma_update(None, "user_version", SqliteStore::SCHEMA_VERSION + 1)
        .unwrap();
    drop(connection);
    let err = SqliteStore::inspect_schema_version(&newer).unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
}
