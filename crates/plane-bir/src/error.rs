//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    ///
    /// ```
    /// use plane_bir::Location;
    /// assert_eq!(Location::of("a = 1\nb = 2\n", 8), Location { line: 2, column: 3 });
    /// ```
    pub fn of(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// `file:line:col`, or just `file` when the place is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file (as given), or a description such as `the command line`.
    pub file: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{}:{at}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// Everything that can go wrong in plane-bir.
///
/// Every variant says what was wrong, where (file, line and field when the input was a
/// file) and what is allowed, so it can be shown to a person as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file is not valid TOML, or a value has the wrong type, or a field is unknown or missing.
    #[error("{place}: {}{message}", field_prefix(field))]
    Syntax {
        /// Where.
        place: Place,
        /// The field, when it could be told (`applies.business_tax`).
        field: Option<String>,
        /// The parser's message, which names the allowed values where it can.
        message: String,
    },
    /// A field's value is not one of the allowed ones.
    #[error("{place}: field `{field}`: {problem}; allowed: {allowed}")]
    Invalid {
        /// Where.
        place: Place,
        /// The field, with its table (`applies.extra_forms[1]`).
        field: String,
        /// What is wrong with the value.
        problem: String,
        /// What would be accepted.
        allowed: String,
    },
    /// A form code that the catalog does not know.
    #[error("unknown form {form:?}; known forms with deadlines: {allowed}")]
    UnknownForm {
        /// The code asked for.
        form: String,
        /// The codes that would be accepted.
        allowed: String,
    },
    /// A form the catalog knows, but which has no deadline of its own (abolished, optional, ...).
    #[error("form {form} has no deadline: {reason}")]
    NoDeadline {
        /// The code asked for.
        form: String,
        /// Why (abolished when and by what, or what replaced it).
        reason: String,
    },
    /// A period label that does not fit the form.
    #[error("period {period:?} does not fit form {form}: expected {expected}")]
    BadPeriod {
        /// The form.
        form: String,
        /// The label given.
        period: String,
        /// The shape the form's frequency needs.
        expected: String,
    },
    /// Holiday data so dense that no business day follows a date within a year.
    #[error("no business day within 366 days after {from}: check the holiday files")]
    NoBusinessDay {
        /// The date the search started from.
        from: chrono::NaiveDate,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written (nothing was changed: writes go through a temporary file).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The SQLite deadline store could not do something.
    #[error("deadline store {path}: cannot {operation}: {message}")]
    Store {
        /// The database file.
        path: String,
        /// What was being done (`open the database`, `record a push`).
        operation: &'static str,
        /// SQLite's message.
        message: String,
    },
    /// The deadline store was written by a newer plane-bir: it is left untouched.
    #[error(
        "deadline store {path}: schema version {found} is newer than this build knows ({supported}); \
         run a plane-server at least as new as the one that wrote it (the file was not changed)"
    )]
    SchemaTooNew {
        /// The database file.
        path: String,
        /// The version found in `bir_schema_migrations`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The PostgreSQL deadline store could not do something, or found its tables migrated
    /// by a newer build ([`plane_postgres::Error::SchemaTooNew`]). The message names the
    /// database (never its password), what was being done, and what to do.
    #[error("deadline store: {0}")]
    Postgres(#[from] plane_postgres::Error),
    /// A Plane request of the sync failed (plane-core's error says which request and why).
    #[error("{during}: {source}")]
    Plane {
        /// What the sync was doing (`list the work items of project ...`).
        during: String,
        /// plane-core's error (boxed: it is large, and the calendar's results stay small).
        source: Box<plane_core::Error>,
    },
    /// The project has no state to put new work items in.
    #[error(
        "project {project} has no state in the `unstarted` group (Plane's default is `Todo`): \
         add one in the project's settings, then sync again"
    )]
    NoUnstartedState {
        /// The project.
        project: uuid::Uuid,
    },
}

fn field_prefix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!("field `{f}`: "))
        .unwrap_or_default()
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns a TOML error into [`Error::Syntax`] with its line, column and (best effort) field.
pub(crate) fn syntax(file: &str, text: &str, error: &toml::de::Error) -> Error {
    let offset = error.span().map(|s| s.start);
    Error::Syntax {
        place: Place {
            file: file.to_string(),
            location: offset.map(|o| Location::of(text, o)),
        },
        // A missing field's span is its whole table: the line there names another key.
        field: offset
            .filter(|_| !error.message().starts_with("missing field"))
            .and_then(|o| field_at(text, o)),
        message: error.message().trim().to_string(),
    }
}

/// The dotted key whose value sits at `offset`: the last `[table]` header above it and
/// the key on its line. Best effort, for error messages only.
pub(crate) fn field_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_start_matches('{').trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"".contains(c))
        })?;
    let table = before
        .get(..line_start)
        .unwrap_or("")
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

impl Place {
    pub(crate) fn at(file: &str, text: &str, span: std::ops::Range<usize>) -> Self {
        Place {
            file: file.to_string(),
            location: Some(Location::of(text, span.start)),
        }
    }
}
