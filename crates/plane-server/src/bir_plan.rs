//! What a `bir sync` run covers and does, shared by the CLI (`plane-server bir sync`) and the
//! MCP tools `sync_plan` (its dry run) and `sync`, so that both compute the same window, send
//! the same profiles to the same projects and report in the same shape.
//!
//! * [`Scope`]: one labelled year, or the rolling window of due dates (`--from`, `--ahead`,
//!   `bir.ahead`).
//! * [`wanted`]: which profiles go to which project (flag, `PLANE_BIR_PROJECT_ID`, the
//!   profile's `[[bir.profiles]]` entry, `bir.project`).
//! * [`deadlines`] / [`targets`]: each profile's deadlines for the scope, with the open ones
//!   synced before.
//! * [`open_store`] / [`open_read_only`]: the deadline store the configuration names (the
//!   SQLite file, or PostgreSQL), and [`lock_project`]: on PostgreSQL, one sync per project
//!   at a time (the advisory lock `bir-sync:<project id>`).
//! * [`run`]: one profile's sync (or dry run) against Plane.
//! * [`summary`] / [`table`]: the report, as the JSON of `bir sync --format json` (typed, so
//!   that the MCP tools declare its schema) and as the CLI's table.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use plane_bir::sync::{Action, Progress, profile_key};
use plane_bir::{
    Ahead, Deadline, DeadlineStore, Holidays, Overrides, PgDeadlineStore, Profile,
    SqliteDeadlineStore, SyncReport, SyncRequest, Window,
};
use plane_core::PlaneClient;
use plane_postgres::{AdvisoryLock, Database, Holder};
use plane_server::config::{Config, PostgresConfig};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

use crate::bir_cli::{DEFAULT_OVERRIDES, Failure};

/// Where a run's project can come from, for the error when none is given.
pub(crate) const NO_PROJECT: &str = "pass --project UUID, set PLANE_BIR_PROJECT_ID, or set \
                                     bir.project (or `project` in the profile's [[bir.profiles]] \
                                     entry) in the --config file";

/// What a run covers: one labelled year, or a rolling window of due dates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    Year(i32),
    Window(Window),
}

impl Scope {
    /// `year`, else the window from the first of today's month (or `from`) to the end of
    /// the month `ahead` (else `bir.ahead`, else 12 months) after today's.
    pub(crate) fn of(
        config: &Config,
        year: Option<i32>,
        from: Option<NaiveDate>,
        ahead: Option<Ahead>,
        today: NaiveDate,
    ) -> Result<Scope, Failure> {
        let scope = match year {
            Some(year) => Scope::Year(year),
            None => Scope::Window(Window::rolling(
                today,
                ahead.or(config.bir.ahead).unwrap_or_default(),
                from,
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
        Ok(scope)
    }
}

/// A profile file to sync, and where to.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub file: PathBuf,
    /// `None`: no flag, variable or key names one (an error only when it is synced).
    pub project: Option<Uuid>,
    /// Its own override file (`[[bir.profiles]] overrides`), if any.
    pub overrides: Option<PathBuf>,
    /// How errors name it: `--profile FILE`, or `bir.profiles[1] (FILE)`.
    pub named: String,
}

/// The profiles a run syncs: each of `files` (with its `[[bir.profiles]]` entry's project and
/// overrides when the config lists the same file), else every `[[bir.profiles]]` entry, in
/// file order. Empty when there are none (the caller says what that means). The project is
/// `project` (the `--project` flag), then the entry's, then `bir.project` (which
/// `PLANE_BIR_PROJECT_ID` overrides); one `--project` for several profiles is refused.
pub(crate) fn wanted(
    config: &Config,
    files: &[PathBuf],
    project: Option<Uuid>,
) -> Result<Vec<Wanted>, Failure> {
    if files.is_empty() {
        if project.is_some() && config.bir.profiles.len() > 1 {
            return Err(Failure::BadInput(
                "--project names one project, but the config file lists several profiles: give \
                 each its `project` in [[bir.profiles]], or pick one with --profile FILE"
                    .into(),
            ));
        }
        return Ok(config
            .bir
            .profiles
            .iter()
            .map(|entry| Wanted {
                file: entry.file.clone(),
                project: project.or(entry.project).or(config.bir.project),
                overrides: entry.overrides.clone(),
                named: format!("{} ({})", entry.key, entry.file.display()),
            })
            .collect());
    }
    if project.is_some() && files.len() > 1 {
        return Err(Failure::BadInput(
            "--project names one project, but several --profile files are given: give each its \
             `project` in [[bir.profiles]] of the --config file"
                .into(),
        ));
    }
    Ok(files
        .iter()
        .map(|file| {
            let entry = config
                .bir
                .profiles
                .iter()
                .find(|p| same_file(&p.file, file));
            Wanted {
                file: file.clone(),
                project: project
                    .or(entry.and_then(|e| e.project))
                    .or(config.bir.project),
                overrides: entry.and_then(|e| e.overrides.clone()),
                named: format!("--profile {}", file.display()),
            }
        })
        .collect())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The error for a profile that no flag, variable or key sends to a project.
pub(crate) fn no_project(named: &str) -> Failure {
    Failure::BadInput(format!("no Plane project for {named}: {NO_PROJECT}"))
}

/// One profile's run: its deadlines for the scope, and its project.
#[derive(Debug)]
pub(crate) struct Target {
    pub profile: Profile,
    pub file: PathBuf,
    pub project: Uuid,
    pub deadlines: Vec<Deadline>,
    /// Its override file's overrides, to compute the deadlines again ([`Target::refresh`]).
    pub overrides: Overrides,
}

impl Target {
    /// Computes the deadlines again from the store as it is now: what a sync does once it
    /// holds its project's lock, since the sync it waited for may have recorded deadlines.
    pub(crate) async fn refresh(
        &mut self,
        scope: Scope,
        store: &dyn DeadlineStore,
        holidays: &Holidays,
    ) -> Result<(), Failure> {
        self.deadlines = deadlines(
            &self.profile,
            self.project,
            scope,
            store,
            holidays,
            &self.overrides,
        )
        .await?;
        Ok(())
    }
}

/// A profile's deadlines for `scope`: the labelled year; or every one due in the window,
/// with the open ones the store holds for `project` wherever their date lies.
pub(crate) async fn deadlines(
    profile: &Profile,
    project: Uuid,
    scope: Scope,
    store: &dyn DeadlineStore,
    holidays: &Holidays,
    overrides: &Overrides,
) -> Result<Vec<Deadline>, Failure> {
    Ok(match scope {
        Scope::Year(year) => plane_bir::calendar(profile, year, holidays, overrides)?,
        Scope::Window(window) => {
            let records = store
                .deadlines_of(&profile_key(profile))
                .await
                .map_err(|e| Failure::Other(e.to_string()))?;
            plane_bir::horizon::deadlines(profile, project, window, &records, holidays, overrides)?
        }
    })
}

/// The targets of `wanted`, each profile and override file loaded from disk; a profile
/// without its own override file takes `default_overrides` (else `bir-overrides.toml` if it
/// exists), loaded once it is needed.
pub(crate) async fn targets(
    wanted: Vec<Wanted>,
    scope: Scope,
    store: &dyn DeadlineStore,
    holidays: &Holidays,
    default_overrides: Option<&Path>,
) -> Result<Vec<Target>, Failure> {
    let default_overrides = || -> Result<Overrides, Failure> {
        Ok(match default_overrides {
            Some(path) => Overrides::load(path)?,
            None => Overrides::load_if_exists(Path::new(DEFAULT_OVERRIDES))?,
        })
    };
    let mut out = Vec::new();
    for w in wanted {
        let project = w.project.ok_or_else(|| no_project(&w.named))?;
        let profile = Profile::load(&w.file)?;
        let overrides = match w.overrides {
            Some(path) => Overrides::load(&path)?,
            None => default_overrides()?,
        };
        let deadlines = deadlines(&profile, project, scope, store, holidays, &overrides).await?;
        out.push(Target {
            profile,
            file: w.file,
            project,
            deadlines,
            overrides,
        });
    }
    Ok(out)
}

/// The deadline store a run works on, as the configuration names it.
#[derive(Clone)]
pub(crate) struct OpenedStore {
    pub store: Arc<dyn DeadlineStore>,
    /// The PostgreSQL database, when that is the backend (for the project locks).
    pub postgres: Option<Database>,
}

/// Connections a command line (or the MCP server) keeps to PostgreSQL: a sync makes one
/// call at a time; a lock takes a connection of its own, outside the pool.
const POOL: usize = 4;

/// Connects to PostgreSQL without creating anything (not even the schema).
pub(crate) async fn connect_existing(pg: &PostgresConfig) -> Result<Database, Failure> {
    pg.options()
        .clone()
        .pool_size(POOL)
        .connect_existing()
        .await
        .map_err(|e| Failure::Other(e.to_string()))
}

/// The deadline store for a run. A dry run writes nothing, so it opens the store read-only:
/// on SQLite an in-memory one when no file exists yet (a dry run creates nothing), on
/// PostgreSQL without creating or migrating anything. Otherwise it is opened for writing,
/// its tables created or migrated.
pub(crate) async fn open_store(config: &Config, dry_run: bool) -> Result<OpenedStore, Failure> {
    let fail = |e: plane_bir::Error| Failure::Other(e.to_string());
    if let Some(pg) = &config.postgres {
        let (store, db) = if dry_run {
            let db = connect_existing(pg).await?;
            (PgDeadlineStore::open_read_only(db.clone()).await, db)
        } else {
            let db = pg
                .options()
                .clone()
                .pool_size(POOL)
                .connect()
                .await
                .map_err(|e| Failure::Other(e.to_string()))?;
            (PgDeadlineStore::open(db.clone()).await, db)
        };
        return Ok(OpenedStore {
            store: Arc::new(store.map_err(fail)?),
            postgres: Some(db),
        });
    }
    let path = config.database.clone();
    // Opening a file (and migrating it) blocks: off the async threads.
    let store = tokio::task::spawn_blocking(move || {
        if dry_run && path.exists() {
            SqliteDeadlineStore::open_read_only(&path)
        } else if dry_run {
            SqliteDeadlineStore::open(":memory:")
        } else {
            SqliteDeadlineStore::open(&path)
        }
    })
    .await
    .map_err(|e| Failure::Other(format!("opening the deadline store failed: {e}")))?
    .map_err(fail)?;
    Ok(OpenedStore {
        store: Arc::new(store),
        postgres: None,
    })
}

/// The deadline store, read-only (`bir status`): the SQLite file, which must exist; or
/// PostgreSQL, where nothing is created or migrated and tables no sync has made yet read
/// as empty.
pub(crate) async fn open_read_only(config: &Config) -> Result<Arc<dyn DeadlineStore>, Failure> {
    let fail = |e: plane_bir::Error| Failure::Other(e.to_string());
    if let Some(pg) = &config.postgres {
        let db = connect_existing(pg).await?;
        return Ok(Arc::new(
            PgDeadlineStore::open_read_only(db).await.map_err(fail)?,
        ));
    }
    let path = config.database.clone();
    let store = tokio::task::spawn_blocking(move || SqliteDeadlineStore::open_read_only(&path))
        .await
        .map_err(|e| Failure::Other(format!("opening the deadline store failed: {e}")))?
        .map_err(fail)?;
    Ok(Arc::new(store))
}

/// The advisory lock a sync of `project` holds on PostgreSQL (scoped to the schema).
pub(crate) fn lock_name(project: Uuid) -> String {
    format!("bir-sync:{project}")
}

/// Takes the lock of `project`'s sync if it is free; else who holds it. A holder that let
/// go between the two looks is asked about again, a few times.
pub(crate) async fn lock_project(
    db: &Database,
    project: Uuid,
) -> Result<Result<AdvisoryLock, Holder>, Failure> {
    let name = lock_name(project);
    let mut tries = 0;
    loop {
        tries += 1;
        match db.try_lock(&name).await {
            Ok(Err(holder)) if holder.backend_pid == 0 && tries < 3 => continue,
            Ok(outcome) => return Ok(outcome),
            Err(e) => {
                return Err(Failure::Other(format!(
                    "cannot take the lock of project {project}'s sync: {e}"
                )));
            }
        }
    }
}

/// Waits for the lock of `project`'s sync.
pub(crate) async fn wait_for_project(
    db: &Database,
    project: Uuid,
) -> Result<AdvisoryLock, Failure> {
    db.lock(&lock_name(project)).await.map_err(|e| {
        Failure::Other(format!(
            "cannot wait for the lock of project {project}'s sync: {e}"
        ))
    })
}

/// The Plane client of the configuration; without credentials an error naming what `what`
/// (`bir sync`, a tool) needs.
pub(crate) fn plane_client(config: &Config, what: &str) -> Result<PlaneClient, Failure> {
    plane_server::connector::plane_client(config)
        .map_err(|e| Failure::BadInput(e.to_string()))?
        .ok_or_else(|| {
            Failure::BadInput(format!(
                "PLANE_API_KEY is not set: {what} needs Plane credentials. Set PLANE_API_KEY, or \
                 point PLANE_API_KEY_FILE at a file holding it (see \
                 ssot/secrets/registry.yaml#plane_api_key)"
            ))
        })
}

/// One target's sync (or dry run); `progress` is called after the listings and each write.
pub(crate) async fn run(
    client: &PlaneClient,
    store: Arc<dyn DeadlineStore>,
    target: &Target,
    today: NaiveDate,
    dry_run: bool,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<SyncReport, Failure> {
    let request = SyncRequest {
        profile: &target.profile,
        deadlines: &target.deadlines,
        project: target.project,
        today,
        dry_run,
    };
    plane_bir::sync(client, store, &request, progress)
        .await
        .map_err(|e| {
            Failure::Other(format!(
                "bir sync of {} to project {}: {e}",
                target.file.display(),
                target.project
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

/// A run's report: the JSON of `bir sync --format json`, and the structured result of the
/// MCP tools `sync_plan` and `sync`.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct SyncSummary {
    /// The labelled year, or the window of due dates.
    pub covers: Covers,
    /// Plan only: nothing was written to Plane or the database.
    pub dry_run: bool,
    /// Work items created (would be, in a dry run), over every profile.
    pub created: u64,
    /// Work items changed (would be).
    pub updated: u64,
    /// Work items left as they are.
    pub unchanged: u64,
    /// Work items whose name, dates or description a person changed in Plane.
    pub drift: u64,
    /// HTTP requests sent to Plane.
    pub requests: u64,
    /// Of those, writes (POST, PATCH).
    pub writes: u64,
    /// Time spent waiting for Plane's rate limit.
    pub waited_ms: u64,
    /// Deadlines whose date changed since the last sync.
    pub rescheduled: u64,
    /// Each profile's figures, in order.
    pub profiles: Vec<ProfileReport>,
}

/// What a run covers.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum Covers {
    /// `--year`: the deadlines of one labelled year.
    Year { year: i32 },
    /// The rolling window: every deadline due from `from` to `to`, and the open ones from before.
    Window { from: NaiveDate, to: NaiveDate },
}

/// One profile's run.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ProfileReport {
    /// The profile's name.
    pub profile: String,
    pub profile_file: String,
    /// The Plane project.
    pub project: String,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Work items found in Plane by external id that the database did not know.
    pub adopted: usize,
    pub labels_created: usize,
    pub drift: usize,
    pub drifted: Vec<DriftOut>,
    pub requests: u64,
    pub writes: u64,
    pub waited_ms: u64,
    /// Deadlines covered.
    pub deadlines: usize,
    /// Of those, open deadlines due before the window, kept from earlier syncs.
    pub kept_open: usize,
    /// Of those, dates that rely on holidays not proclaimed yet.
    pub provisional: usize,
    pub rescheduled: Vec<MovedOut>,
    /// A dry run's plan: each change it would make, in order (absent when not a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<ChangeOut>>,
}

/// A work item a person changed in Plane.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct DriftOut {
    pub form: String,
    pub period: String,
    pub work_item_id: String,
    pub external_id: String,
    /// The fields that differ: `name`, `description_html`, `target_date`.
    pub fields: Vec<String>,
}

/// A deadline whose date changed since the last sync.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct MovedOut {
    pub form: String,
    pub period: String,
    pub external_id: String,
    /// The filing date last pushed.
    pub from: NaiveDate,
    /// The filing date now.
    pub to: NaiveDate,
    pub provisional: bool,
}

/// One change of a dry run's plan.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ChangeOut {
    /// `create_label`, `create`, `adopt` or `update`.
    pub action: String,
    pub form: String,
    /// Empty for a label.
    pub period: String,
    /// Null for a label.
    pub due_date: Option<NaiveDate>,
    /// Empty for a label.
    pub external_id: String,
    /// The fields it sends: `name`, `description_html`, `target_date`, `priority`.
    pub fields: Vec<String>,
    /// Whether it restores a person's change in Plane.
    pub drift: bool,
}

fn strings(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| (*f).to_owned()).collect()
}

fn profile_report(r: &SyncReport, target: &Target, scope: Scope) -> ProfileReport {
    ProfileReport {
        profile: target.profile.name.clone(),
        profile_file: target.file.display().to_string(),
        project: r.project.to_string(),
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        adopted: r.adopted,
        labels_created: r.labels_created,
        drift: r.drift.len(),
        drifted: r
            .drift
            .iter()
            .map(|d| DriftOut {
                form: d.form.clone(),
                period: d.period.clone(),
                work_item_id: d.work_item_id.to_string(),
                external_id: d.external_id.clone(),
                fields: strings(&d.fields),
            })
            .collect(),
        requests: r.requests,
        writes: r.writes,
        waited_ms: r.waited.as_millis() as u64,
        deadlines: target.deadlines.len(),
        kept_open: kept_open(target, scope),
        provisional: target.deadlines.iter().filter(|d| d.provisional).count(),
        rescheduled: r
            .rescheduled
            .iter()
            .map(|m| MovedOut {
                form: m.form.clone(),
                period: m.period.clone(),
                external_id: m.external_id.clone(),
                from: m.from,
                to: m.to,
                provisional: m.provisional,
            })
            .collect(),
        plan: r.dry_run.then(|| {
            r.plan
                .iter()
                .map(|c| ChangeOut {
                    action: c.action.as_str().to_owned(),
                    form: c.form.clone(),
                    period: c.period.clone(),
                    due_date: c.due_date,
                    external_id: c.external_id.clone(),
                    fields: strings(&c.fields),
                    drift: c.drift,
                })
                .collect()
        }),
    }
}

/// The reports of a run's targets (in the same order) as one summary.
pub(crate) fn summary(reports: &[SyncReport], targets: &[Target], scope: Scope) -> SyncSummary {
    let sum = |f: fn(&SyncReport) -> u64| reports.iter().map(f).sum::<u64>();
    SyncSummary {
        covers: match scope {
            Scope::Year(year) => Covers::Year { year },
            Scope::Window(w) => Covers::Window {
                from: w.from,
                to: w.to,
            },
        },
        dry_run: reports.first().is_some_and(|r| r.dry_run),
        created: sum(|r| r.created as u64),
        updated: sum(|r| r.updated as u64),
        unchanged: sum(|r| r.unchanged as u64),
        drift: sum(|r| r.drift.len() as u64),
        requests: sum(|r| r.requests),
        writes: sum(|r| r.writes),
        waited_ms: sum(|r| r.waited.as_millis() as u64),
        rescheduled: sum(|r| r.rescheduled.len() as u64),
        profiles: reports
            .iter()
            .zip(targets)
            .map(|(r, t)| profile_report(r, t, scope))
            .collect(),
    }
}

/// The reports as the CLI's table (and the MCP tools' text summary).
pub(crate) fn table(reports: &[SyncReport], targets: &[Target], scope: Scope) -> String {
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
