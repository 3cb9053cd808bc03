//! The SQLite file is private to its owner: it holds webhook bodies, the BIR
//! deadlines and the OAuth store's owners, scopes and pending authorizations.
//! Left to itself, SQLite creates a new file 0644 (less the umask), readable by
//! every local user.

use std::path::Path;

/// Makes the SQLite database at `path` private, before SQLite opens it.
///
/// A file that does not exist yet is created empty with mode 0600 (SQLite takes
/// an empty file for a new database). SQLite creates the `-wal` and `-shm` files
/// with the database file's mode, so they are 0600 as well. An existing
/// database, `-wal` or `-shm` file that group or others may read or write is
/// reported with a `tracing::warn!` naming the path, its mode and the fix
/// (`chmod 600 PATH`); its mode is left alone, as the operator may have chosen it.
///
/// Every store that may create the shared file (the delivery store, the BIR
/// deadline store, the OAuth token store) calls this first, since whichever
/// opens first creates it. Nothing fails here: a file that cannot be created or
/// inspected is left to SQLite, whose open reports the error. `:memory:`, `""`
/// (a temporary database), `file:` URIs and non-unix targets are skipped.
pub fn prepare_database_file(path: impl AsRef<Path>) {
    #[cfg(unix)]
    for shared in unix::prepare(path.as_ref()) {
        tracing::warn!(
            path = %shared.path.display(),
            mode = format_args!("{:04o}", shared.mode),
            "{shared}"
        );
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(unix)]
mod unix {
    use std::ffi::OsString;
    use std::fmt;
    use std::fs::OpenOptions;
    use std::io::ErrorKind;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    /// Group and others' read and write bits.
    const SHARED_BITS: u32 = 0o066;

    /// A file of the database that group or others may read or write.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Shared {
        pub(super) path: PathBuf,
        pub(super) mode: u32,
    }

    impl fmt::Display for Shared {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "the database file {} has mode {:04o}: group or others may read or write it; \
                 make it private with `chmod 600 {}`",
                self.path.display(),
                self.mode,
                self.path.display()
            )
        }
    }

    /// Names SQLite reads as something other than a file on disk.
    fn is_not_a_file(path: &Path) -> bool {
        let bytes = path.as_os_str().as_encoded_bytes();
        bytes.is_empty() || bytes == b":memory:" || bytes.starts_with(b"file:")
    }

    /// Creates the file 0600 if it is missing; returns the database's files
    /// that are shared.
    pub(super) fn prepare(path: &Path) -> Vec<Shared> {
        if is_not_a_file(path) {
            return Vec::new();
        }
        // create_new: if another process creates it first, its file is kept
        // (and checked below). Any other error is SQLite's to report.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(_) => return Vec::new(),
        }
        // A crash leaves -wal and -shm behind, and SQLite only sets the mode
        // of a file it finds empty: check them as well.
        [None, Some("-wal"), Some("-shm")]
            .into_iter()
            .filter_map(|suffix| {
                let mut name = OsString::from(path.as_os_str());
                if let Some(suffix) = suffix {
                    name.push(suffix);
                }
                let path = PathBuf::from(name);
                let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
                (mode & SHARED_BITS != 0).then_some(Shared { path, mode })
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]

        use std::fs::{self, Permissions};

        use super::*;

        fn mode(path: &Path) -> u32 {
            fs::metadata(path).unwrap().permissions().mode() & 0o777
        }

        #[test]
        fn a_missing_file_is_created_empty_and_private() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("plane.db");
            assert!(prepare(&path).is_empty());
            assert_eq!(mode(&path), 0o600);
            assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        }

        #[test]
        fn shared_files_are_named_with_their_mode_and_the_fix() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("plane.db");
            fs::write(&path, b"").unwrap();
            fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
            let wal = dir.path().join("plane.db-wal");
            fs::write(&wal, b"").unwrap();
            fs::set_permissions(&wal, Permissions::from_mode(0o620)).unwrap();
            let shm = dir.path().join("plane.db-shm");
            fs::write(&shm, b"").unwrap();
            fs::set_permissions(&shm, Permissions::from_mode(0o600)).unwrap();

            let shared = prepare(&path);
            assert_eq!(
                shared,
                [
                    Shared {
                        path: path.clone(),
                        mode: 0o644
                    },
                    Shared {
                        path: wal.clone(),
                        mode: 0o620
                    },
                ]
            );
            let text = shared[0].to_string();
            assert!(text.contains("mode 0644"), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert_eq!(mode(&path), 0o644, "the operator's mode is left alone");
        }

        #[test]
        fn a_private_file_and_one_only_its_owner_can_use_are_not_reported() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("plane.db");
            fs::write(&path, b"").unwrap();
            for private in [0o600, 0o400, 0o700] {
                fs::set_permissions(&path, Permissions::from_mode(private)).unwrap();
                assert!(prepare(&path).is_empty(), "{private:o}");
            }
            // Execute bits alone give no access to the data.
            fs::set_permissions(&path, Permissions::from_mode(0o611)).unwrap();
            assert!(prepare(&path).is_empty());
        }

        #[test]
        fn memory_temporary_and_uri_databases_are_skipped() {
            for name in [":memory:", "", "file:plane.db?mode=memory"] {
                assert!(is_not_a_file(Path::new(name)), "{name}");
                assert!(prepare(Path::new(name)).is_empty());
                // Had it taken the name for a path, it would be in the working directory.
                assert!(name.is_empty() || !Path::new(name).exists(), "{name}");
            }
            assert!(!is_not_a_file(Path::new("plane.db")));
            assert!(!is_not_a_file(Path::new("./file:x.db")));
        }
    }
}
