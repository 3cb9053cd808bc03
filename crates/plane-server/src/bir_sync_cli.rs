//! `plane-server bir sync` and `plane-server bir status`: the deadlines in Plane, and
//! their filing status here.
//!
//! Both work on the store the configuration names: the SQLite file, or PostgreSQL
//! (`--db postgres://...`). On PostgreSQL one sync at a time touches a project: `bir
//! sync` takes the advisory lock `bir-sync:<project id>` before it reads or writes
//! anything of that project, and holds it until the project is done. A second sync of the
//! same project says who holds it and exits [`BUSY`], or waits for it with `--wait`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use plane_bir::sync::Progress;
use plane_bir::{Ahead, Deadline, DeadlineStatus, DeadlineStore, SyncReport};
use plane_postgres::AdvisoryLock;
use plane_server::config::{Config, Overrides as ConfigOverrides};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bir_cli::{Failure, HolidayFiles, ListFormat, holidays, warn_provisional};
use crate::bir_plan::{self, Scope, Target};

/// `bir sync`'s flags.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// A taxpayer profile (TOML). Without it, every `[[bir.profiles]]` of the config file.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// The Plane project [env: PLANE_BIR_PROJECT_ID] [config: bir.project, or the
    /// profile's `project` in `[[bir.profiles]]`].
    #[arg(long, value_name = "UUID")]
    project: Option<Uuid>,
    /// Sync one labelled year (months, quarters and taxable years of that year, annual
    /// returns due in it) instead of the rolling window.
    #[arg(long, conflicts_with_all = ["from", "ahead"])]
    year: Option<i32>,
    /// The first due date of the window [default: the first day of this month in Manila].
    /// Open deadlines synced before stay in the window whatever their date.
    #[arg(long, value_name = "DATE")]
    from: Option<NaiveDate>,
    /// How far the window reaches: to the end of the month this far ahead (1m-36m, 1y-3y)
    /// [config: bir.ahead] [default: 12m].
    #[arg(long, value_name = "MONTHS")]
    ahead: Option<Ahead>,
    /// The day priorities count from [default: today in Manila].
    #[arg(long, value_name = "DATE")]
    today: Option<NaiveDate>,
    /// TOML configuration file (never holds secrets).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database (shared with the deliveries): a SQLite file, or a postgres:// URL
    /// [env: PLANE_DATABASE_URL] [default: plane.db].
    #[arg(long, value_name = "PATH|URL")]
    db: Option<PathBuf>,
    /// Print the plan; write nothing to Plane or the database (and take no lock).
    #[arg(long)]
    dry_run: bool,
    /// On PostgreSQL, when another `bir sync` is syncing a project, wait for it to finish
    /// instead of exiting 75. (SQLite: no effect.)
    #[arg(long)]
    wait: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    #[command(flatten)]
    holidays: HolidayFiles,
    /// The override file [env: PLANE_BIR_OVERRIDES] [default: bir-overrides.toml, if it exists].
    #[arg(
        long,
        value_name = "FILE",
        env = "PLANE_BIR_OVERRIDES",
        hide_env = true
    )]
    overrides: Option<PathBuf>,
}

/// `bir status`'s flags.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// TOML configuration file (for `store.database`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database, read-only: a SQLite file, or a postgres:// URL [env:
    /// PLANE_DATABASE_URL] [default: plane.db].
    #[arg(long, value_name = "PATH|URL")]
    db: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Only these statuses (repeatable). `overdue` is a pending or in-progress deadline
    /// past its due date; `pending` and `in_progress` then mean not yet overdue.
    #[arg(long, value_enum, value_name = "STATUS")]
    status: Vec<ShownStatus>,
    /// Only deadlines due before this day (not on it), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    due_before: Option<NaiveDate>,
    /// The day overdue is counted from [default: today in Manila].
    #[arg(long, value_name = "DATE")]
    today: Option<NaiveDate>,
}

/// A deadline's status as `bir status` shows it: the stored one, or `overdue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum ShownStatus {
    Pending,
    InProgress,
    Overdue,
    Filed,
    Void,
}

impl ShownStatus {
    /// Overdue when still open after its due date (the same rule as `/metrics`).
    fn of(status: DeadlineStatus, due: NaiveDate, today: NaiveDate) -> Self {
        match status {
            DeadlineStatus::Filed => ShownStatus::Filed,
            DeadlineStatus::Void => ShownStatus::Void,
            _ if status.is_overdue(due, today) => ShownStatus::Overdue,
            DeadlineStatus::Pending => ShownStatus::Pending,
            DeadlineStatus::InProgress => ShownStatus::InProgress,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ShownStatus::Pending => "pending",
            ShownStatus::InProgress => "in_progress",
            ShownStatus::Overdue => "overdue",
            ShownStatus::Filed => "filed",
            ShownStatus::Void => "void",
        }
    }
}

fn config(config: Option<PathBuf>, db: Option<PathBuf>) -> Result<Config, Failure> {
    Config::from_process(&ConfigOverrides {
        config_file: config,
        listen: None,
        database: db,
    })
    .map_err(|e| Failure::BadInput(e.to_string()))
}

/// Today in Manila (UTC+8, no daylight saving): BIR deadlines are Philippine days.
fn manila_today() -> NaiveDate {
    plane_bir::store::manila_date(Utc::now())
}

/// The exit code of a `bir sync` that found a project it was to sync being synced by
/// another one (on PostgreSQL, without `--wait`): 75, `EX_TEMPFAIL` ("try again later").
pub const BUSY: u8 = 75;

/// Why `bir sync` stopped.
pub(crate) enum SyncError {
    /// Bad input (exit 2) or a failure (exit 1).
    Failed(Failure),
    /// Another sync holds a project's lock (exit [`BUSY`]); the message names it.
    Busy(String),
}

impl From<Failure> for SyncError {
    fn from(e: Failure) -> Self {
        SyncError::Failed(e)
    }
}

impl From<plane_bir::Error> for SyncError {
    fn from(e: plane_bir::Error) -> Self {
        SyncError::Failed(e.into())
    }
}

impl From<serde_json::Error> for SyncError {
    fn from(e: serde_json::Error) -> Self {
        SyncError::Failed(e.into())
    }
}

/// Runs `bir sync`; the text to print.
pub(crate) async fn sync(args: SyncArgs) -> Result<String, SyncError> {
    let config = config(args.config.clone(), args.db.clone())?;
    let today = args.today.unwrap_or_else(manila_today);
    let scope = Scope::of(&config, args.year, args.from, args.ahead, today)?;
    let opened = bir_plan::open_store(&config, args.dry_run).await?;
    let store = opened.store.clone();
    let holidays = holidays(&args.holidays)?;
    let wanted = bir_plan::wanted(&config, args.profile.as_slice(), args.project)?;
    if wanted.is_empty() {
        return Err(Failure::BadInput(
            "no profile to sync: pass --profile FILE, or list the profiles in the config file \
             given with --config ([[bir.profiles]] file = \"...\", project = \"...\")"
                .into(),
        )
        .into());
    }
    let mut targets =
        bir_plan::targets(wanted, scope, &*store, &holidays, args.overrides.as_deref()).await?;
    let all: Vec<Deadline> = targets.iter().flat_map(|t| t.deadlines.clone()).collect();
    warn_provisional(&all);
    // With OAuth on SQLite this reads the stored token from the file: off the async threads.
    let client = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || bir_plan::plane_client(&config, "bir sync"))
            .await
            .map_err(|e| Failure::Other(format!("making the Plane client failed: {e}")))??
    };
    // A dry run writes nothing: it takes no lock, and a sync running meanwhile is fine.
    let locks = opened.postgres.as_ref().filter(|_| !args.dry_run);
    let mut held: Option<(Uuid, AdvisoryLock)> = None;
    let total = targets.len();
    let mut reports = Vec::new();
    for (i, target) in targets.iter_mut().enumerate() {
        if let Some(db) = locks
            && held.as_ref().map(|(p, _)| *p) != Some(target.project)
        {
            if let Some((_, lock)) = held.take() {
                lock.release().await;
            }
            let lock = match bir_plan::lock_project(db, target.project).await? {
                Ok(lock) => lock,
                Err(holder) if args.wait => {
                    eprintln!(
                        "plane-server: project {} is being synced by {holder}; waiting for that \
                         sync to finish (--wait)",
                        target.project
                    );
                    let lock = bir_plan::wait_for_project(db, target.project).await?;
                    eprintln!(
                        "plane-server: project {} is free; syncing {}",
                        target.project, target.profile.name
                    );
                    lock
                }
                Err(holder) => {
                    let done = match i {
                        0 => String::new(),
                        n => format!(" ({n} of {total} profiles were synced before it)"),
                    };
                    return Err(SyncError::Busy(format!(
                        "project {} is being synced by another `bir sync`: {holder}. Nothing \
                         of it was touched{done}; run again once that sync has finished, or \
                         pass --wait to wait for it",
                        target.project
                    )));
                }
            };
            held = Some((target.project, lock));
            // What the sync before us recorded counts: the window's open deadlines are
            // read again under the lock.
            target.refresh(scope, &*store, &holidays).await?;
        }
        let run = run_one(&client, store.clone(), target, today, args.dry_run);
        let report = match &held {
            // Without its lock the sync stops: another could start on the project. What
            // was done is kept; a rerun picks up from there (a sync is idempotent).
            Some((project, lock)) => tokio::select! {
                report = run => report?,
                () = lock.lost() => return Err(Failure::Other(format!(
                    "lost the lock on project {project} mid-sync (the database connection \
                     closed: a restart?); stopped. Run `bir sync` again: it goes on from \
                     what was done"
                )).into()),
            },
            None => run.await?,
        };
        reports.push(report);
    }
    if let Some((_, lock)) = held.take() {
        lock.release().await;
    }
    // A token renewed on the way whose save failed is stored before the sync exits: the
    // rotated refresh token would be lost with the process.
    if !client.settle(Duration::from_secs(30)).await {
        return Err(Failure::Other(
            "the renewed OAuth token could not be stored (is the database down?); Plane has \
             spent the refresh token it replaced: authorize again with `plane-server oauth \
             authorize-url` if the other processes report the renewal in doubt"
                .into(),
        )
        .into());
    }
    Ok(match args.format {
        ListFormat::Json => {
            // Through a `Value`, as before the summary was typed: the same text either way.
            let json = serde_json::to_value(bir_plan::summary(&reports, &targets, scope))?;
            serde_json::to_string_pretty(&json)? + "\n"
        }
        ListFormat::Table => bir_plan::table(&reports, &targets, scope),
    })
}

/// [`bir_plan::run`] with, on a terminal, a progress bar on stderr: writes done against
/// writes planned, and the time spent waiting for the rate limit.
async fn run_one(
    client: &plane_core::PlaneClient,
    store: Arc<dyn DeadlineStore>,
    target: &Target,
    today: NaiveDate,
    dry_run: bool,
) -> Result<SyncReport, Failure> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} writes, {elapsed} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(target.profile.name.clone());
        bar.set_message("listing");
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    // The wait for the rate limit, live: plane-core counts it while it runs.
    let ticker = bar.clone().map(|bar| {
        let client = client.clone();
        let start_waited = client.rate_limit().waited;
        tokio::spawn(async move {
            loop {
                let limit = client.rate_limit();
                let waited = limit.waited.saturating_sub(start_waited);
                let now = limit
                    .waiting_since
                    .map(|since| format!(", waiting now {:.0?}", since.elapsed()))
                    .unwrap_or_default();
                bar.set_message(format!("rate-limit wait {:.1?}{now}", waited));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let mut on_progress = {
        let bar = bar.clone();
        move |p: Progress| {
            if let Some(bar) = &bar {
                bar.set_length(p.planned as u64);
                bar.set_position(p.done as u64);
            }
        }
    };
    let result = bir_plan::run(client, store, target, today, dry_run, &mut on_progress).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

pub(crate) async fn status(args: StatusArgs) -> Result<String, Failure> {
    let config = config(args.config, args.db)?;
    let today = args.today.unwrap_or_else(manila_today);
    let store = bir_plan::open_read_only(&config).await?;
    let rows: Vec<_> = store
        .all()
        .await
        .map_err(|e| Failure::Other(e.to_string()))?
        .into_iter()
        .map(|r| (ShownStatus::of(r.status, r.due_date, today), r))
        .filter(|(shown, r)| {
            (args.status.is_empty() || args.status.contains(shown))
                && args.due_before.is_none_or(|before| r.due_date < before)
        })
        .collect();
    Ok(match args.format {
        ListFormat::Json => {
            let list: Vec<Value> = rows
                .iter()
                .map(|(shown, r)| {
                    let filed = r.status == DeadlineStatus::Filed;
                    json!({
                        "form": r.form,
                        "period": r.period,
                        "due_date": r.due_date,
                        "status": shown.as_str(),
                        "filing_status": r.status,
                        "overdue": *shown == ShownStatus::Overdue,
                        "days_overdue": (*shown == ShownStatus::Overdue)
                            .then(|| (today - r.due_date).num_days()),
                        "work_item_id": r.work_item_id,
                        "filed_by": if filed { r.status_by.clone() } else { None },
                        "filed_at": if filed { r.status_at } else { None },
                        "external_id": r.external_id,
                        "project_id": r.project_id,
                    })
                })
                .collect();
            serde_json::to_string_pretty(&list)? + "\n"
        }
        ListFormat::Table => {
            let mut out = format!(
                "{:<9}{:<9}{:<12}{:<13}{:<38}{}\n",
                "FORM", "PERIOD", "DUE", "STATUS", "WORK ITEM", "BY, AT"
            );
            for (shown, r) in &rows {
                out += &format!(
                    "{:<9}{:<9}{:<12}{:<13}{:<38}{}\n",
                    r.form,
                    r.period,
                    r.due_date.to_string(),
                    shown.as_str(),
                    r.work_item_id.map(|i| i.to_string()).unwrap_or_default(),
                    match (&r.status_by, r.status_at) {
                        (Some(by), Some(at)) => format!("{by}, {}", at.format("%Y-%m-%d %H:%M")),
                        (None, Some(at)) => at.format("%Y-%m-%d %H:%M").to_string(),
                        _ => String::new(),
                    }
                );
            }
            let overdue = rows
                .iter()
                .filter(|(s, _)| *s == ShownStatus::Overdue)
                .count();
            if overdue > 0 {
                out += &format!(
                    "{overdue} overdue on {today}: still open after the due date (file them, \
                     then close their work items in Plane)\n"
                );
            }
            out
        }
    })
}
