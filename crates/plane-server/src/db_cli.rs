//! `plane-server db …`: an online backup of the SQLite store, and its integrity check.
//!
//! The backup uses SQLite's backup API in one step: it reads the whole file inside one
//! read transaction, so the copy is a consistent snapshot even while `serve` writes (WAL
//! lets the writer go on meanwhile). It is written beside the target under a temporary
//! name, checked, and renamed into place, so a failed backup never leaves a half file
//! under the name asked for.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::{Common, OutputFormat};

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Copy the database (deliveries, inbox, deadlines, tokens still encrypted) to FILE,
    /// consistently, while `serve` runs. FILE must not exist.
    Backup {
        #[command(flatten)]
        common: Common,
        /// Where the copy goes (a new file, mode 0600).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Run SQLite's integrity check and print each store's schema version. Exit 1 when
    /// the check finds a problem.
    Check {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

/// What `db check` found.
#[derive(Debug, Serialize)]
struct Report {
    database: String,
    /// `ok`, or SQLite's list of problems.
    integrity: Vec<String>,
    schemas: Vec<Schema>,
}

/// One store's schema version, and the newest this build knows.
#[derive(Debug, Serialize)]
struct Schema {
    store: &'static str,
    /// `None`: the store's tables are not in the file.
    version: Option<i64>,
    supported: i64,
}

fn database(common: &Common) -> anyhow::Result<PathBuf> {
    Ok(match &common.db {
        Some(db) => db.clone(),
        None => {
            plane_server::config::Config::from_process(&plane_server::config::Overrides {
                config_file: common.config.clone(),
                listen: None,
                database: None,
            })?
            .database
        }
    })
}

fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
    if !path.exists() {
        bail!("{}: no such database", path.display());
    }
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("{}: cannot open the database", path.display()))?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

pub(crate) fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Backup { common, to } => {
            let from = database(&common)?;
            let pages = backup(&from, &to)?;
            println!(
                "{} -> {}: {pages} pages copied, integrity ok",
                from.display(),
                to.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Check { common, format } => {
            let path = database(&common)?;
            let report = check(&path)?;
            match format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                OutputFormat::Table => {
                    println!("database:   {}", report.database);
                    println!("integrity:  {}", report.integrity.join("; "));
                    for s in &report.schemas {
                        println!(
                            "{:<11} {} (this build knows {})",
                            format!("{}:", s.store),
                            s.version
                                .map_or("not in this file".to_owned(), |v| format!("version {v}")),
                            s.supported
                        );
                    }
                }
            }
            Ok(if report.integrity == ["ok"] {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Copies `from` to the new file `to`; returns the pages copied.
fn backup(from: &Path, to: &Path) -> anyhow::Result<i32> {
    if to.exists() {
        bail!(
            "{}: the file exists; back up to a new file (nothing was written)",
            to.display()
        );
    }
    let source = open_read_only(from)?;
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    plane_webhook::prepare_database_file(&partial);
    let copied = (|| -> anyhow::Result<i32> {
        let mut target = Connection::open(&partial)
            .with_context(|| format!("{}: cannot create the backup", partial.display()))?;
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
            // All pages in one step: one read transaction, so one consistent snapshot.
            backup.step(-1)?;
            let progress = backup.progress();
            if progress.remaining != 0 {
                bail!("the backup stopped with {} pages left", progress.remaining);
            }
        }
        let integrity = integrity(&target)?;
        if integrity != ["ok"] {
            bail!(
                "the copy fails its integrity check: {}",
                integrity.join("; ")
            );
        }
        let pages: i32 = target.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        Ok(pages)
    })();
    match copied {
        Ok(pages) => {
            std::fs::rename(&partial, to).with_context(|| {
                format!("cannot move {} to {}", partial.display(), to.display())
            })?;
            Ok(pages)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.context(format!(
                "backup of {} to {} failed (nothing was left behind)",
                from.display(),
                to.display()
            )))
        }
    }
}

fn integrity(connection: &Connection) -> anyhow::Result<Vec<String>> {
    let mut statement = connection.prepare("PRAGMA integrity_check")?;
    let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn check(path: &Path) -> anyhow::Result<Report> {
    let connection = open_read_only(path)?;
    let table_version = |table: &str| -> anyhow::Result<Option<i64>> {
        let exists: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(None);
        }
        Ok(connection
            .query_row(&format!("SELECT MAX(version) FROM {table}"), [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten())
    };
    let deliveries: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(Report {
        database: path.display().to_string(),
        integrity: integrity(&connection)?,
        schemas: vec![
            Schema {
                store: "deliveries",
                version: (deliveries > 0).then_some(deliveries),
                supported: plane_webhook::SqliteStore::SCHEMA_VERSION,
            },
            Schema {
                store: "deadlines",
                version: table_version("bir_schema_migrations")?,
                supported: plane_bir::store::SCHEMA_VERSION,
            },
            Schema {
                store: "tokens",
                version: table_version("oauth_schema_migrations")?,
                supported: plane_server::token_store::SCHEMA_VERSION,
            },
        ],
    })
}
