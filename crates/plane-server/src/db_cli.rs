//! `plane-server db …`: an online backup of the SQLite store, its integrity check, and
//! the move to PostgreSQL.
//!
//! The backup uses SQLite's backup API in one step: it reads the whole file inside one
//! read transaction, so the copy is a consistent snapshot even while `serve` writes (WAL
//! lets the writer go on meanwhile). It is written beside the target under a temporary
//! name, checked, and renamed into place, so a failed backup never leaves a half file
//! under the name asked for.
//!
//! `db migrate` copies the SQLite file into PostgreSQL. Each store crate owns its tables'
//! SQL on both sides and copies its own rows (`PgStore::copy_from_sqlite`,
//! `PgDeadlineStore::copy_from_sqlite`, `PgTokenStore::copy_from_sqlite`); this module
//! checks the versions, runs the migrations, holds the one transaction, and counts the
//! rows of every table on both sides with its own `count(*)`, independently of the copy
//! code it checks.
//!
//! **One transaction for the whole copy**, not one per component: the stores are
//! linked. A BIR status change commits together with the inbox item that caused it, so a
//! copy with the deliveries but not the deadlines (or the reverse) would hold an event
//! marked done whose change is missing, and a replica started on it would never apply
//! it. With one transaction, any failure, the count check included, leaves PostgreSQL as
//! it was; the price is one long transaction, on tables no replica uses yet. (The
//! identities' `setval` is the exception PostgreSQL makes: it is not undone, which only
//! skips ids.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use plane_server::config::{Config, ConfigError, Overrides};
use plane_server::token_store::PgTokenStore;
use plane_webhook::{PgStore, SqliteStore, StoreConfig};

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
    /// Copy the SQLite store into PostgreSQL: deliveries with their inbox state, deadlines
    /// with their status events and sync runs, OAuth tokens still encrypted. Then compare
    /// the rows of every table on both sides and print them (exit 1 on a difference).
    ///
    /// Stop `serve` (and any `bir sync`) on the file first: the copy reads one snapshot of
    /// it, and what they write afterwards is not copied. The file is opened read-only and
    /// never changed. Its stores must be at this build's schema version: run this build's
    /// `serve` on it once if `db check` shows an older one.
    ///
    /// The PostgreSQL tables are created (or migrated) in the schema first, then every row
    /// is copied in one transaction: on any error, a count check that fails included,
    /// nothing is kept. Ids are kept and the identities moved past them. Running it again
    /// is safe: rows already there are left as they are (matched on their natural keys:
    /// event key, external id, profile, owner, state), so a second run copies nothing.
    /// Copy into an empty schema: one a replica has written to is refused or fails the
    /// count check. The token encryption key is not needed and never read. Leases (of
    /// inbox items and of token renewals) belong to the old file's processes and are not
    /// copied: an item leased there is copied as pending.
    Migrate {
        /// TOML configuration file (never holds secrets): `store.schema`, and
        /// `store.database` when --to is left out.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The SQLite file to copy (opened read-only).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL database, postgres://USER@HOST:PORT/DATABASE [env:
        /// PLANE_DATABASE_URL]. The password comes from the URL, PGPASSWORD or
        /// PGPASSWORD_FILE, and is never printed.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// The schema the tables go in [env: PLANE_DATABASE_SCHEMA] [default: plane].
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

/// What `db migrate` did, table by table.
#[derive(Debug, Serialize)]
struct Migration {
    /// The SQLite file.
    from: String,
    /// The PostgreSQL database (never its password) and schema.
    to: String,
    tables: Vec<TableCount>,
    /// Whether the copy was committed (the counts agree).
    committed: bool,
}

/// One table's rows: in the file, inserted by this run, and in PostgreSQL after it.
#[derive(Debug, Serialize)]
struct TableCount {
    table: &'static str,
    source: u64,
    copied: u64,
    target: u64,
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

pub(crate) async fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Migrate {
            config,
            from,
            to,
            schema,
            format,
        } => {
            let target = target(config, to, schema)?;
            let migration = migrate(&from, &target).await?;
            match format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&migration)?),
                OutputFormat::Table => print_migration(&migration),
            }
            let differ: Vec<String> = migration
                .tables
                .iter()
                .filter(|t| t.source != t.target)
                .map(|t| {
                    format!(
                        "{}: {} in the file, {} in PostgreSQL",
                        t.table, t.source, t.target
                    )
                })
                .collect();
            if !differ.is_empty() {
                bail!(
                    "the row counts differ, so nothing was committed: {}. The schema holds rows \
                     the file does not (a replica wrote to it?): copy into an empty schema \
                     (--schema NAME)",
                    differ.join("; ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
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
    Ok(Report {
        database: path.display().to_string(),
        integrity: integrity(&connection)?,
        schemas: schemas(&connection)?,
    })
}

/// The PostgreSQL database to copy into: `--to`, else the configured one, in `--schema`,
/// else the configured schema. The password is read as `serve` reads it.
fn target(
    config: Option<PathBuf>,
    to: Option<String>,
    schema: Option<String>,
) -> anyhow::Result<plane_postgres::Options> {
    let given = to.is_some();
    let config = Config::from_process(&Overrides {
        config_file: config,
        listen: None,
        database: to.map(PathBuf::from),
    })
    .map_err(|e| match e.key.as_str() {
        // The flag `serve` would name; here the URL came from --to.
        "--db" => ConfigError {
            key: "--to".into(),
            message: e.message,
        },
        _ => e,
    })?;
    let Some(pg) = config.postgres else {
        return Err(ConfigError {
            key: "--to".into(),
            message: if given {
                "give a postgres:// URL (postgres://USER@HOST:PORT/DATABASE)".into()
            } else {
                "give the PostgreSQL database to copy into: --to postgres://USER@HOST:PORT/DATABASE \
                 (or PLANE_DATABASE_URL)"
                    .into()
            },
        }
        .into());
    };
    let options = pg.options().clone();
    Ok(match schema {
        Some(schema) => options.schema(&schema).map_err(|e| ConfigError {
            key: "--schema".into(),
            message: e.to_string(),
        })?,
        None => options,
    })
}

/// The versions `db check` prints, read on `connection`.
fn schemas(connection: &Connection) -> anyhow::Result<Vec<Schema>> {
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
    Ok(vec![
        Schema {
            store: "deliveries",
            version: (deliveries > 0).then_some(deliveries),
            supported: SqliteStore::SCHEMA_VERSION,
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
    ])
}

/// Refuses a file any of whose stores is not at this build's version, naming them all.
fn require_current(path: &Path, schemas: &[Schema]) -> anyhow::Result<()> {
    let describe =
        |s: &Schema, v: i64| format!("{} at version {v} (this build: {})", s.store, s.supported);
    let newer: Vec<String> = schemas
        .iter()
        .filter_map(|s| {
            s.version
                .filter(|&v| v > s.supported)
                .map(|v| describe(s, v))
        })
        .collect();
    if !newer.is_empty() {
        bail!(
            "{}: written by a newer plane-server ({}); run `db migrate` with that version \
             (nothing was copied)",
            path.display(),
            newer.join(", ")
        );
    }
    let older: Vec<String> = schemas
        .iter()
        .filter_map(|s| {
            s.version
                .filter(|&v| v < s.supported)
                .map(|v| describe(s, v))
        })
        .collect();
    if !older.is_empty() {
        bail!(
            "{}: older than this build ({}). Run this build's `plane-server serve` on the file \
             once (it migrates every store it uses), stop it, and run `db migrate` again; \
             `plane-server db check` shows each store's version (nothing was copied)",
            path.display(),
            older.join(", ")
        );
    }
    Ok(())
}

/// Copies `from` into `target`; see [`DbCommand::Migrate`] and the module docs.
async fn migrate(from: &Path, target: &plane_postgres::Options) -> anyhow::Result<Migration> {
    let to = format!("{} (schema {})", target.target(), target.schema_name());
    let source = open_read_only(from)?;
    // One read transaction: every table is read (and counted) in one snapshot.
    let snapshot = source
        .unchecked_transaction()
        .with_context(|| format!("{}: cannot start reading", from.display()))?;
    let schemas = schemas(&snapshot)?;
    require_current(from, &schemas)?;

    let db = target
        .clone()
        .pool_size(2)
        .connect()
        .await
        .with_context(|| format!("cannot copy into {to}"))?;
    // Every component's tables, at this build's version, whatever the file holds: the
    // replicas find them all ready.
    PgStore::open(db.clone(), StoreConfig::default())
        .await
        .context("cannot create the delivery tables")?;
    plane_bir::store::postgres::migrate(&db)
        .await
        .context("cannot create the deadline tables")?;
    PgTokenStore::migrate(&db)
        .await
        .context("cannot create the token tables")?;

    let mut client = db.client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(db.query("start the copy"))?;
    // Two copies at once would only wait for each other's rows; one at a time is clearer.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("{}:db-migrate", db.schema())],
    )
    .await
    .map_err(db.query("take the copy's lock"))?;
    let mut copied = Vec::new();
    copied.extend(
        PgStore::copy_from_sqlite(&snapshot, &db, &tx)
            .await
            .context("cannot copy the deliveries")?,
    );
    copied.extend(
        plane_bir::PgDeadlineStore::copy_from_sqlite(&snapshot, &db, &tx)
            .await
            .context("cannot copy the deadlines")?,
    );
    copied.extend(
        PgTokenStore::copy_from_sqlite(&snapshot, &db, &tx)
            .await
            .context("cannot copy the tokens")?,
    );

    let present = |table: &str| -> anyhow::Result<bool> {
        Ok(snapshot.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?)
    };
    let mut tables = Vec::with_capacity(copied.len());
    for (table, copied) in copied {
        let source: i64 = if present(table)? {
            snapshot.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?
        } else {
            0
        };
        let target: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(db.query("count the copied rows"))?
            .get(0);
        tables.push(TableCount {
            table,
            source: u64::try_from(source).unwrap_or(0),
            copied,
            target: u64::try_from(target).unwrap_or(0),
        });
    }
    let committed = tables.iter().all(|t| t.source == t.target);
    if committed {
        tx.commit().await.map_err(db.query("commit the copy"))?;
    } else {
        tx.rollback()
            .await
            .map_err(db.query("roll the copy back"))?;
    }
    Ok(Migration {
        from: from.display().to_string(),
        to,
        tables,
        committed,
    })
}

fn print_migration(m: &Migration) {
    println!("from:  {} (read-only)", m.from);
    println!("to:    {}", m.to);
    println!(
        "{:<22} {:>10} {:>10} {:>14}",
        "table", "in file", "copied", "in PostgreSQL"
    );
    for t in &m.tables {
        let mark = if t.source == t.target {
            ""
        } else {
            "  differs"
        };
        println!(
            "{:<22} {:>10} {:>10} {:>14}{mark}",
            t.table, t.source, t.copied, t.target
        );
    }
    if m.committed {
        println!("counts equal: committed");
    } else {
        println!("counts differ: rolled back, PostgreSQL is as it was");
    }
}
