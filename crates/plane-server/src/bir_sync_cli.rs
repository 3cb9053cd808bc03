//! `plane-server bir sync` and `plane-server bir status`: the deadlines in Plane, and
//! their filing status here.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use plane_bir::sync::{Action, Progress, profile_key};
use plane_bir::{
    Ahead, Deadline, DeadlineStatus, DeadlineStore, Overrides, Profile, SqliteDeadlineStore,
    SyncReport, SyncRequest, Window,
};
use plane_server::config::{Config, Overrides as ConfigOverrides};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bir_cli::{
    DEFAULT_OVERRIDES, Failure, HolidayFiles, ListFormat, holidays, warn_provisional,
};

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
    /// The SQLite database (shared with the deliveries) [env: PLANE_DATABASE_URL] [default: plane.db].
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Print the plan; write nothing to Plane or the database.
    #[arg(long)]
    dry_run: bool,
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
    /// The SQLite database [env: PLANE_DATABASE_URL] [default: plane.db].
    #[arg(long, value_name = "PATH")]
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

struct Target {
    profile: Profile,
    file: PathBuf,
    project: Uuid,
    deadlines: Vec<plane_bir::Deadline>,
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

const NO_PROJECT: &str = "pass --project UUID, set PLANE_BIR_PROJECT_ID, or set bir.project (or \
                          `project` in the profile's [[bir.profiles]] entry) in the --config file";

/// What a run covers: one labelled year, or a rolling window of due dates.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Year(i32),
    Window(Window),
}

fn targets(
    args: &SyncArgs,
    config: &Config,
    scope: Scope,
    store: &dyn DeadlineStore,
) -> Result<Vec<Target>, Failure> {
    let holidays = holidays(&args.holidays)?;
    let default_overrides = || -> Result<Overrides, Failure> {
        Ok(match &args.overrides {
            Some(path) => Overrides::load(path)?,
            None => Overrides::load_if_exists(Path::new(DEFAULT_OVERRIDES))?,
        })
    };
    let mut wanted: Vec<(PathBuf, Option<Uuid>, Option<PathBuf>, String)> = Vec::new();
    if let Some(file) = &args.profile {
        let entry = config
            .bir
            .profiles
            .iter()
            .find(|p| same_file(&p.file, file));
        let project = args
            .project
            .or(entry.and_then(|e| e.project))
            .or(config.bir.project);
        wanted.push((
            file.clone(),
            project,
            entry.and_then(|e| e.overrides.clone()),
            format!("--profile {}", file.display()),
        ));
    } else {
        if config.bir.profiles.is_empty() {
            return Err(Failure::BadInput(
                "no profile to sync: pass --profile FILE, or list the profiles in the config file \
                 given with --config ([[bir.profiles]] file = \"...\", project = \"...\")"
                    .into(),
            ));
        }
        if args.project.is_some() && config.bir.profiles.len() > 1 {
            return Err(Failure::BadInput(
                "--project names one project, but the config file lists several profiles: give \
                 each its `project` in [[bir.profiles]], or pick one with --profile FILE"
                    .into(),
            ));
        }
        for entry in &config.bir.profiles {
            wanted.push((
                entry.file.clone(),
                args.project.or(entry.project).or(config.bir.project),
                entry.overrides.clone(),
                format!("{} ({})", entry.key, entry.file.display()),
            ));
        }
    }
    let mut out = Vec::new();
    for (file, project, overrides, named) in wanted {
        let Some(project) = project else {
            return Err(Failure::BadInput(format!(
                "no Plane project for {named}: {NO_PROJECT}"
            )));
        };
        let profile = Profile::load(&file)?;
        let overrides = match overrides {
            Some(path) => Overrides::load(&path)?,
            None => default_overrides()?,
        };
        let deadlines = match scope {
            Scope::Year(year) => plane_bir::calendar(&profile, year, &holidays, &overrides)?,
            Scope::Window(window) => {
                let records = store
                    .deadlines_of(&profile_key(&profile))
                    .map_err(|e| Failure::Other(e.to_string()))?;
                plane_bir::horizon::deadlines(
                    &profile, project, window, &records, &holidays, &overrides,
                )?
            }
        };
        out.push(Target {
            profile,
            file,
            project,
            deadlines,
        });
    }
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Runs `bir sync`; the text to print.
pub fn sync(args: SyncArgs) -> Result<String, Failure> {
    let config = config(args.config.clone(), args.db.clone())?;
    let today = args.today.unwrap_or_else(manila_today);
    let scope = match args.year {
        Some(year) => Scope::Year(year),
        None => Scope::Window(Window::rolling(
            today,
            args.ahead.or(config.bir.ahead).unwrap_or_default(),
            args.from,
        )),
    };
    if let Scope::Window(w) = scope
        && w.from > w.to
    {
        return Err(Failure::BadInput(format!(
            "--from {} is after the window's end ({}): pick an earlier --from or a longer --ahead",
            w.from, w.to
        )));
    }
    let store: Arc<dyn DeadlineStore> = Arc::new(open_store(&config.database, args.dry_run)?);
    let targets = targets(&args, &config, scope, &*store)?;
    let all: Vec<Deadline> = targets.iter().flat_map(|t| t.deadlines.clone()).collect();
    warn_provisional(&all);
    let client = plane_server::connector::plane_client(&config)
        .map_err(|e| Failure::BadInput(e.to_string()))?
        .ok_or_else(|| {
            Failure::BadInput(
                "PLANE_API_KEY is not set: bir sync needs Plane credentials. Set PLANE_API_KEY, or \
                 point PLANE_API_KEY_FILE at a file holding it (see \
                 ssot/secrets/registry.yaml#plane_api_key)"
                    .into(),
            )
        })?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
    let mut reports = Vec::new();
    for target in &targets {
        let request = SyncRequest {
            profile: &target.profile,
            deadlines: &target.deadlines,
            project: target.project,
            today,
            dry_run: args.dry_run,
        };
        let report = runtime.block_on(run_one(&client, store.clone(), &request, &target.file))?;
        reports.push(report);
    }
    Ok(match args.format {
        ListFormat::Json => {
            serde_json::to_string_pretty(&summary_json(&reports, &targets, scope))? + "\n"
        }
        ListFormat::Table => summary_table(&reports, &targets, scope),
    })
}

fn open_store(path: &Path, dry_run: bool) -> Result<SqliteDeadlineStore, Failure> {
    let opened = if dry_run && path.exists() {
        SqliteDeadlineStore::open_read_only(path)
    } else if dry_run {
        // Nothing stored yet, and a dry run creates nothing.
        SqliteDeadlineStore::open(":memory:")
    } else {
        SqliteDeadlineStore::open(path)
    };
    opened.map_err(|e| Failure::Other(e.to_string()))
}

async fn run_one(
    client: &plane_core::PlaneClient,
    store: Arc<dyn DeadlineStore>,
    request: &SyncRequest<'_>,
    file: &Path,
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
        bar.set_prefix(request.profile.name.clone());
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
    let on_progress = {
        let bar = bar.clone();
        move |p: Progress| {
            if let Some(bar) = &bar {
                bar.set_length(p.planned as u64);
                bar.set_position(p.done as u64);
            }
        }
    };
    let mut on_progress = on_progress;
    let result = plane_bir::sync(client, store, request, &mut on_progress).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result.map_err(|e| {
        Failure::Other(format!(
            "bir sync of {} to project {}: {e}",
            file.display(),
            request.project
        ))
    })
}

/// How many of a target's deadlines are due before the window: open ones kept from before.
fn kept_open(target: &Target, scope: Scope) -> usize {
    match scope {
        Scope::Window(w) => target
            .deadlines
            .iter()
            .filter(|d| d.due_date < w.from)
            .count(),
        Scope::Year(_) => 0,
    }
}

fn report_json(r: &SyncReport, target: &Target, scope: Scope) -> Value {
    let mut v = json!({
        "profile": target.profile.name,
        "profile_file": target.file.display().to_string(),
        "project": r.project,
        "created": r.created,
        "updated": r.updated,
        "unchanged": r.unchanged,
        "adopted": r.adopted,
        "labels_created": r.labels_created,
        "drift": r.drift.len(),
        "drifted": r.drift.iter().map(|d| json!({
            "form": d.form, "period": d.period, "work_item_id": d.work_item_id,
            "external_id": d.external_id, "fields": d.fields,
        })).collect::<Vec<_>>(),
        "requests": r.requests,
        "writes": r.writes,
        "waited_ms": r.waited.as_millis() as u64,
        "deadlines": target.deadlines.len(),
        "kept_open": kept_open(target, scope),
        "provisional": target.deadlines.iter().filter(|d| d.provisional).count(),
        "rescheduled": r.rescheduled.iter().map(|m| json!({
            "form": m.form, "period": m.period, "external_id": m.external_id,
            "from": m.from, "to": m.to, "provisional": m.provisional,
        })).collect::<Vec<_>>(),
    });
    if r.dry_run {
        v["plan"] = r
            .plan
            .iter()
            .map(|c| {
                json!({
                    "action": c.action.as_str(), "form": c.form, "period": c.period,
                    "due_date": c.due_date, "external_id": c.external_id, "fields": c.fields,
                    "drift": c.drift,
                })
            })
            .collect();
    }
    v
}

fn summary_json(reports: &[SyncReport], targets: &[Target], scope: Scope) -> Value {
    let sum = |f: fn(&SyncReport) -> u64| reports.iter().map(f).sum::<u64>();
    let covers = match scope {
        Scope::Year(year) => json!({ "year": year }),
        Scope::Window(w) => json!({ "from": w.from, "to": w.to }),
    };
    json!({
        "covers": covers,
        "dry_run": reports.first().is_some_and(|r| r.dry_run),
        "created": sum(|r| r.created as u64),
        "updated": sum(|r| r.updated as u64),
        "unchanged": sum(|r| r.unchanged as u64),
        "drift": sum(|r| r.drift.len() as u64),
        "requests": sum(|r| r.requests),
        "writes": sum(|r| r.writes),
        "waited_ms": sum(|r| r.waited.as_millis() as u64),
        "rescheduled": sum(|r| r.rescheduled.len() as u64),
        "profiles": reports.iter().zip(targets).map(|(r, t)| report_json(r, t, scope)).collect::<Vec<_>>(),
    })
}

fn summary_table(reports: &[SyncReport], targets: &[Target], scope: Scope) -> String {
    let mut out = String::new();
    for (r, t) in reports.iter().zip(targets) {
        let covers = match scope {
            Scope::Year(year) => format!("year {year}"),
            Scope::Window(w) => format!("due {w}"),
        };
        let kept = match kept_open(t, scope) {
            0 => String::new(),
            n => format!(", {n} open from before"),
        };
        out += &format!(
            "{}{} -> project {}\n  {} deadlines ({covers}{kept})\n  created {}, updated {}, unchanged {}, drift {} (adopted {}, labels created {})\n  requests {}, writes {}, waited for the rate limit {:.1?}\n",
            if r.dry_run { "[dry run] " } else { "" },
            t.profile.name,
            r.project,
            t.deadlines.len(),
            r.created,
            r.updated,
            r.unchanged,
            r.drift.len(),
            r.adopted,
            r.labels_created,
            r.requests,
            r.writes,
            r.waited,
        );
        for m in &r.rescheduled {
            out += &format!(
                "  {}: {} {} from {} to {}{}\n",
                if r.dry_run { "would move" } else { "moved" },
                m.form,
                m.period,
                m.from,
                m.to,
                if m.provisional {
                    " (still provisional)"
                } else {
                    ""
                }
            );
        }
        for d in &r.drift {
            out += &format!(
                "  drift: {} {} ({}): {} changed in Plane, {}\n",
                d.form,
                d.period,
                d.work_item_id,
                d.fields.join(", "),
                if r.dry_run {
                    "would be restored"
                } else {
                    "restored"
                }
            );
        }
        if r.dry_run {
            for c in &r.plan {
                let what = match c.action {
                    Action::CreateLabel => format!("create label BIR {}", c.form),
                    Action::Create => format!("create {} {}", c.form, c.period),
                    Action::Adopt | Action::Update => format!(
                        "{} {} {}: {}",
                        c.action.as_str(),
                        c.form,
                        c.period,
                        c.fields.join(", ")
                    ),
                };
                out += &format!("  would {what}\n");
            }
        }
    }
    out
}

/// Runs `bir status`; the text to print.
pub fn status(args: StatusArgs) -> Result<String, Failure> {
    let config = config(args.config, args.db)?;
    let today = args.today.unwrap_or_else(manila_today);
    let store = SqliteDeadlineStore::open_read_only(&config.database)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let rows: Vec<_> = store
        .all()
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
