//! `plane-server mcp`: the BIR filing calendar and the filing status, for AI agents, as an
//! MCP server on stdio (built on `rmcp`, the official Rust SDK).
//!
//! * stdout carries nothing but protocol: logs go to stderr (`init_logging` in main.rs),
//!   and nothing here prints.
//! * Read-only by default: the database is read for each call (so a `bir sync` or `serve`
//!   running beside it is seen at once), never created or migrated. A SQLite file is opened
//!   read-only each time, and a missing one is reported; PostgreSQL (`--db postgres://...`)
//!   is read through a small pool made at the first call, and tables no sync (or `serve`)
//!   has made yet are reported as such. `sync_plan` asks Plane what `bir sync` would change
//!   (its dry run, through [`crate::bir_plan`], the CLI's own code) and writes nothing.
//! * Writes are opt-in (`--allow-writes`): only then are `sync` (the run `bir sync` makes)
//!   and `mark_filed` listed and callable. `mark_filed` moves the deadline's work item to
//!   the project's first `completed`-group state in Plane and changes nothing here: Plane
//!   stays where a status changes, and its webhook files the deadline as for a person's
//!   close (`serve`). Without the flag, calling either is a tool error that says so.
//!   Calls that talk to Plane run one at a time, so two runs never both create an item;
//!   on PostgreSQL `sync` also takes the project's lock, as `bir sync` does, and is a tool
//!   error naming the holder while another sync runs.
//! * Links: each synced deadline carries its work item's page in Plane's web app, and
//!   `explain_deadline` the form's page on bir.gov.ph where the catalog has one.
//! * Resources: `bir://calendar/{profile}/{year}`, one profile's year as iCalendar and as
//!   JSON (listed for this year and the next, per configured profile).
//! * Every tool has an input schema and an output schema; a result carries the JSON
//!   (`structuredContent`) and a short text summary. Bad arguments, an unknown form or
//!   profile, a bad date: a tool error saying what was wrong, never a crash.
//! * rmcp ignores a line that is not JSON (so that two peers cannot answer each other's
//!   garbage forever); JSON-RPC 2.0 asks for a parse error (-32700, id null), so a small
//!   filter in front of rmcp answers such a line itself, and an over-long line too, and
//!   passes everything else on.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use plane_bir::sync::{external_id, first_state, profile_key};
use plane_bir::{
    Ahead, Catalog, Deadline, DeadlineRecord, DeadlineStatus, DeadlineStore, Holidays, Move,
    Overrides, PgDeadlineStore, Profile, SqliteDeadlineStore,
};
use plane_core::{ListParams, MAX_PER_PAGE, StateGroup, WorkItemFields};
use plane_postgres::Database;
use plane_server::config::{Config, Overrides as ConfigOverrides, PostgresConfig};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::bir_cli::{DEFAULT_OVERRIDES, Failure, HolidayFiles, holidays};
use crate::bir_plan::{self, Scope, SyncSummary, Target};

/// `plane-server mcp`'s flags.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// TOML configuration file: `store.database` and the `[[bir.profiles]]` (never secrets).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database, read-only: a SQLite file, or a postgres:// URL [env:
    /// PLANE_DATABASE_URL] [default: plane.db].
    #[arg(long, value_name = "PATH|URL")]
    db: Option<PathBuf>,
    /// A taxpayer profile (TOML; repeatable). Without it, the config's `[[bir.profiles]]`.
    #[arg(long = "profile", value_name = "FILE")]
    profiles: Vec<PathBuf>,
    #[command(flatten)]
    holidays: HolidayFiles,
    /// The override file for profiles without their own [env: PLANE_BIR_OVERRIDES]
    /// [default: bir-overrides.toml, if it exists].
    #[arg(
        long,
        value_name = "FILE",
        env = "PLANE_BIR_OVERRIDES",
        hide_env = true
    )]
    overrides: Option<PathBuf>,
    /// The day "overdue" and "days left" count from [default: today in Manila].
    #[arg(long, value_name = "DATE")]
    today: Option<NaiveDate>,
    /// The Plane project of `sync_plan` and `sync` [env: PLANE_BIR_PROJECT_ID] [config:
    /// bir.project, or the profile's `project` in `[[bir.profiles]]`].
    #[arg(long, value_name = "UUID")]
    project: Option<Uuid>,
    /// List and allow the tools that write to Plane: `sync` (as `bir sync`) and `mark_filed`
    /// (moves a deadline's work item to a completed state). Off, the server only reads.
    #[arg(long)]
    allow_writes: bool,
}

/// The longest line taken from a client (a request is a few hundred bytes; 4 MiB leaves
/// room and bounds what a hostile or broken client can make the server buffer).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Loads the profiles and serves MCP on stdin/stdout until the client closes stdin.
/// Bad configuration (a profile, holiday or override file that does not validate) exits 2
/// before anything is served.
pub async fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let server = match BirServer::load(&args) {
        Ok(server) => server,
        Err(Failure::BadInput(e)) => {
            eprintln!("plane-server: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(Failure::Other(e)) => {
            eprintln!("plane-server: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing::info!(
        profiles = server.profiles.len(),
        database = %server.describe_database(),
        allow_writes = server.allow_writes,
        "MCP server on stdio"
    );
    let (to_rmcp, from_client) = tokio::io::duplex(64 * 1024);
    let (to_stdout, from_rmcp) = tokio::io::duplex(64 * 1024);
    let (errors, error_lines) = mpsc::channel::<String>(16);
    let filter = tokio::spawn(filter_stdin(tokio::io::stdin(), to_rmcp, errors));
    let writer = tokio::spawn(write_stdout(from_rmcp, error_lines, tokio::io::stdout()));
    let service = server
        .serve((from_client, to_stdout))
        .await
        .map_err(|e| anyhow::anyhow!("MCP initialization failed: {e}"))?;
    let reason = service.waiting().await;
    tracing::info!(?reason, "MCP client went away");
    filter.abort();
    // Whatever rmcp wrote last reaches stdout before the process ends.
    let _ = writer.await;
    Ok(ExitCode::SUCCESS)
}

/// Passes each line of JSON from `input` to rmcp; answers a line that is not JSON, or is
/// longer than [`MAX_LINE`], with a JSON-RPC error (id null) through `errors`.
async fn filter_stdin(
    input: impl tokio::io::AsyncRead + Unpin,
    mut to_rmcp: tokio::io::DuplexStream,
    errors: mpsc::Sender<String>,
) {
    let mut input = tokio::io::BufReader::new(input);
    let mut line: Vec<u8> = Vec::new();
    let mut oversized = false;
    loop {
        let (done, used) = match input.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if !oversized {
                        line.extend_from_slice(&buf[..i]);
                    }
                    (true, i + 1)
                }
                None => {
                    if !oversized {
                        line.extend_from_slice(buf);
                    }
                    (false, buf.len())
                }
            },
        };
        input.consume(used);
        if line.len() > MAX_LINE {
            oversized = true;
            line = Vec::new();
        }
        if !done {
            continue;
        }
        let reply = if oversized {
            Some(protocol_error(
                -32600,
                &format!("Invalid Request: a message longer than {MAX_LINE} bytes was dropped"),
            ))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<serde::de::IgnoredAny>(&line) {
                Ok(_) => {
                    line.push(b'\n');
                    if to_rmcp.write_all(&line).await.is_err() {
                        return;
                    }
                    None
                }
                Err(e) => Some(protocol_error(
                    -32700,
                    &format!("Parse error: the message is not JSON ({e})"),
                )),
            }
        };
        if let Some(reply) = reply
            && errors.send(reply).await.is_err()
        {
            return;
        }
        line.clear();
        oversized = false;
    }
}

fn protocol_error(code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}).to_string()
}

/// The only writer of stdout: rmcp's messages and the filter's errors, a whole line at a
/// time, so they never interleave.
async fn write_stdout(
    from_rmcp: tokio::io::DuplexStream,
    mut errors: mpsc::Receiver<String>,
    mut stdout: impl tokio::io::AsyncWrite + Unpin,
) {
    let mut lines = tokio::io::BufReader::new(from_rmcp).lines();
    let mut errors_open = true;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => line,
                _ => break,
            },
            error = errors.recv(), if errors_open => match error {
                Some(error) => error,
                None => { errors_open = false; continue; }
            },
        };
        let written = async {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await
        };
        if written.await.is_err() {
            break;
        }
    }
}

/// A configured profile.
#[derive(Debug)]
struct Loaded {
    /// The store's key (TIN digits, or a slug of the name): the `profile` of every answer.
    key: String,
    file: PathBuf,
    profile: Profile,
    overrides: Overrides,
    /// Where `sync_plan` and `sync` send it; `None` is an error only when one is called.
    project: Option<Uuid>,
    /// How errors name it (`--profile FILE`, `bir.profiles[1] (FILE)`).
    named: String,
}

/// The server: the profiles, holidays and database named at start.
#[derive(Debug, Clone)]
pub struct BirServer {
    profiles: Arc<Vec<Loaded>>,
    holidays: Arc<Holidays>,
    /// The SQLite file (unused when `postgres` is set).
    database: PathBuf,
    /// PostgreSQL, when the database is a `postgres://` URL.
    postgres: Option<PostgresConfig>,
    /// Its pool, made (creating nothing) at the first call that reads it.
    pool: Arc<tokio::sync::OnceCell<Database>>,
    today: Option<NaiveDate>,
    /// Plane's address, workspace and credentials (for the tools that talk to Plane).
    config: Arc<Config>,
    web: Arc<WebApp>,
    /// `--allow-writes`: `sync` and `mark_filed` are listed and callable.
    allow_writes: bool,
    /// Held while a tool talks to Plane: one run at a time (two syncs planning the same
    /// create would both make it; a report counts the client's requests of its own run).
    plane: Arc<tokio::sync::Mutex<()>>,
}

impl BirServer {
    fn load(args: &McpArgs) -> Result<Self, Failure> {
        let config = Config::from_process(&ConfigOverrides {
            config_file: args.config.clone(),
            listen: None,
            database: args.db.clone(),
        })
        .map_err(|e| Failure::BadInput(e.to_string()))?;
        Self::from_config(
            &config,
            &args.profiles,
            args.project,
            &args.holidays,
            args.overrides.as_deref(),
            args.today,
            args.allow_writes,
        )
    }

    /// The server `serve` puts at `/mcp` (`[mcp] http = true`): the config's
    /// `[[bir.profiles]]` and database, the built-in holidays, and the override file of
    /// `PLANE_BIR_OVERRIDES` (else `bir-overrides.toml` if it exists), as `plane-server
    /// mcp --config` without flags (so read-only: HTTP has no `--allow-writes`). Bad
    /// profile or override files: `Failure::BadInput`.
    pub(crate) fn for_serve(config: &Config) -> Result<Self, Failure> {
        let overrides = std::env::var_os("PLANE_BIR_OVERRIDES")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self::from_config(
            config,
            &[],
            None,
            &HolidayFiles { files: Vec::new() },
            overrides.as_deref(),
            None,
            false,
        )
    }

    fn from_config(
        config: &Config,
        profile_files: &[PathBuf],
        project: Option<Uuid>,
        holiday_files: &HolidayFiles,
        override_file: Option<&Path>,
        today: Option<NaiveDate>,
        allow_writes: bool,
    ) -> Result<Self, Failure> {
        let default_overrides = || -> Result<Overrides, Failure> {
            Ok(match override_file {
                Some(path) => Overrides::load(path)?,
                None => Overrides::load_if_exists(Path::new(DEFAULT_OVERRIDES))?,
            })
        };
        // The same profiles, projects and override files as `bir sync` with these flags.
        let mut profiles = Vec::new();
        for w in bir_plan::wanted(config, profile_files, project)? {
            let profile = Profile::load(&w.file)?;
            let overrides = match w.overrides {
                Some(path) => Overrides::load(&path)?,
                None => default_overrides()?,
            };
            profiles.push(Loaded {
                key: profile_key(&profile),
                file: w.file,
                profile,
                overrides,
                project: w.project,
                named: w.named,
            });
        }
        Ok(BirServer {
            profiles: Arc::new(profiles),
            holidays: Arc::new(holidays(holiday_files)?),
            database: config.database.clone(),
            postgres: config.postgres.clone(),
            pool: Arc::new(tokio::sync::OnceCell::new()),
            today,
            web: Arc::new(WebApp::new(&config.base_url, &config.workspace_slug)),
            config: Arc::new(config.clone()),
            allow_writes,
            plane: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn today(&self) -> NaiveDate {
        // BIR deadlines are Philippine days (UTC+8, no daylight saving).
        self.today
            .unwrap_or_else(|| (Utc::now() + chrono::Duration::hours(8)).date_naive())
    }

    /// The database as answers name it: the file, or the URL (never its password) and
    /// schema.
    fn describe_database(&self) -> String {
        match &self.postgres {
            Some(pg) => pg.describe(),
            None => self.database.display().to_string(),
        }
    }

    /// The PostgreSQL pool, made at the first call (and again after a failed attempt).
    async fn pool(&self, pg: &PostgresConfig) -> Result<Database, String> {
        self.pool
            .get_or_try_init(|| bir_plan::connect_existing(pg))
            .await
            .cloned()
            .map_err(failure)
    }

    /// The stored deadlines; a database no sync has created yet reads as none, and says so.
    /// Read-only on either backend: nothing is created or migrated.
    async fn records(&self) -> Result<(Vec<DeadlineRecord>, String), String> {
        if let Some(pg) = &self.postgres {
            let store = PgDeadlineStore::open_read_only(self.pool(pg).await?)
                .await
                .map_err(|e| e.to_string())?;
            if store.schema_version().await.map_err(|e| e.to_string())? == 0 {
                return Ok((
                    Vec::new(),
                    format!(
                        "{}: no deadline tables yet (`plane-server bir sync` creates them); no \
                         filing status known",
                        pg.describe()
                    ),
                ));
            }
            let records = store.all().await.map_err(|e| e.to_string())?;
            return Ok((records, pg.describe()));
        }
        if !self.database.exists() {
            return Ok((
                Vec::new(),
                format!(
                    "{}: no such file yet (`plane-server bir sync` creates it); no filing status known",
                    self.database.display()
                ),
            ));
        }
        let path = self.database.clone();
        // Opening a file blocks: off the async threads (the reads take themselves there).
        let store = tokio::task::spawn_blocking(move || SqliteDeadlineStore::open_read_only(&path))
            .await
            .map_err(|e| format!("the tool failed unexpectedly: {e}"))?
            .map_err(|e| e.to_string())?;
        let records = store.all().await.map_err(|e| e.to_string())?;
        Ok((records, self.database.display().to_string()))
    }

    /// The profile an argument names (its key, TIN, file name or name), or the only one.
    fn profile(&self, wanted: Option<&str>) -> Result<Option<&Loaded>, String> {
        match wanted {
            Some(w) => self
                .profiles
                .iter()
                .find(|p| names(p, w))
                .map(Some)
                .ok_or_else(|| format!("unknown profile {w:?}: {}", self.profile_list())),
            None => match self.profiles.as_slice() {
                [] => Ok(None),
                [only] => Ok(Some(only)),
                _ => Err(format!(
                    "several profiles are configured; name one with `profile`: {}",
                    self.profile_list()
                )),
            },
        }
    }

    fn profile_list(&self) -> String {
        if self.profiles.is_empty() {
            return "no profile is configured (start the server with --profile FILE, or list \
                    [[bir.profiles]] in the --config file)"
                .into();
        }
        let list: Vec<String> = self
            .profiles
            .iter()
            .map(|p| format!("{} ({}, {})", p.key, p.profile.name, p.file.display()))
            .collect();
        format!("the configured profiles are {}", list.join("; "))
    }
}

/// Plane's web app, for the link to each work item.
#[derive(Debug)]
struct WebApp {
    /// The app's root: the API's origin (a self-hosted Plane serves both), except that Plane
    /// Cloud's API is `api.plane.so` and its app `app.plane.so`.
    root: Option<url::Url>,
    slug: String,
}

impl WebApp {
    fn new(base_url: &str, slug: &str) -> Self {
        let origin = plane_core::BaseUrl::parse(base_url)
            .map(|b| b.origin())
            .unwrap_or_else(|_| base_url.trim_end_matches('/').to_owned());
        let origin = match origin.strip_prefix("https://api.plane.so") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("https://app.plane.so{rest}")
            }
            _ => origin,
        };
        WebApp {
            root: url::Url::parse(&origin).ok(),
            slug: slug.to_owned(),
        }
    }

    /// `{app}/{workspace}/projects/{project}/issues/{work item}`: the address Plane's web app
    /// takes by ids (apps/web `projects/(detail)/[projectId]/issues/(detail)/[issueId]`),
    /// which it redirects to the item's `browse/{IDENTIFIER}-{sequence}` page; the ids are
    /// all the database keeps.
    fn work_item(&self, project: Uuid, item: Uuid) -> Option<String> {
        let mut url = self.root.clone()?;
        url.path_segments_mut().ok()?.pop_if_empty().extend([
            self.slug.as_str(),
            "projects",
            &project.to_string(),
            "issues",
            &item.to_string(),
        ]);
        Some(url.into())
    }
}

fn names(p: &Loaded, wanted: &str) -> bool {
    let digits: String = wanted.chars().filter(char::is_ascii_digit).collect();
    p.key == wanted
        || p.profile.name.eq_ignore_ascii_case(wanted.trim())
        || p.file.file_stem().is_some_and(|s| s == wanted)
        || p.file.file_name().is_some_and(|s| s == wanted)
        || (digits.len() >= 9 && p.profile.tin.as_ref().is_some_and(|t| t.digits() == digits))
}

/// The form a `form` argument names, exactly as the catalog spells it or in any case.
fn form_code(wanted: &str) -> Result<String, String> {
    let catalog = Catalog::builtin();
    catalog
        .forms()
        .iter()
        .find(|f| f.code.eq_ignore_ascii_case(wanted.trim()))
        .map(|f| f.code.clone())
        .ok_or_else(|| {
            format!(
                "unknown form {wanted:?}: the catalog has {} (the `forms` tool lists them with \
                 their rules)",
                catalog
                    .forms()
                    .iter()
                    .map(|f| f.code.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn date(field: &str, value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|e| format!("bad date in `{field}`: {value:?} is not a day as YYYY-MM-DD ({e})"))
}

// ---- arguments ----

/// A deadline's status as shown: the stored one, or `overdue` when still open after its
/// due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Shown {
    Pending,
    InProgress,
    Overdue,
    Filed,
    Void,
}

impl Shown {
    fn of(status: DeadlineStatus, due: NaiveDate, today: NaiveDate) -> Self {
        match status {
            DeadlineStatus::Filed => Shown::Filed,
            DeadlineStatus::Void => Shown::Void,
            _ if due < today => Shown::Overdue,
            DeadlineStatus::Pending => Shown::Pending,
            DeadlineStatus::InProgress => Shown::InProgress,
        }
    }
}

/// Deadlines due in a range, with their filing status.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeadlinesArgs {
    /// First due date, YYYY-MM-DD [default: today, Manila; and every overdue one is added].
    from: Option<String>,
    /// Last due date, YYYY-MM-DD [default: 30 days after `from`].
    to: Option<String>,
    /// Only this profile (its key, TIN, file name or name).
    profile: Option<String>,
    /// Only this form (1601-C, 2550Q, ...).
    form: Option<String>,
    /// Only these statuses.
    status: Option<Vec<Shown>>,
}

/// One form and period explained.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExplainArgs {
    /// The form as the BIR writes it (1702Q).
    form: String,
    /// The period: 2026-07 (month), 2027-Q1 (quarter; fiscal quarters are numbered within
    /// the fiscal year, labelled by the year it ends in), 2026 (taxable year).
    period: String,
    /// The profile (key, TIN, file name or name); optional when one is configured.
    profile: Option<String>,
}

/// A year, or a range of due dates, as `plane-server bir calendar` computes it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CalendarArgs {
    /// The labelled year (months and quarters of it, annual returns due in it).
    year: Option<i32>,
    /// First due date of a range, YYYY-MM-DD (with `to`; instead of `year`).
    from: Option<String>,
    /// Last due date of a range, YYYY-MM-DD (with `from`).
    to: Option<String>,
    /// The profile (key, TIN, file name or name); optional when at most one is configured
    /// (none: every form, calendar year, manual filer).
    profile: Option<String>,
}

/// The form catalog.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FormsArgs {
    /// Only this form.
    form: Option<String>,
}

/// Filing status per profile.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FilingStatusArgs {
    /// Only this profile (its key, TIN, file name or name).
    profile: Option<String>,
}

/// The webhook inbox's health.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InboxHealthArgs {
    /// At most this many waiting and this many dead deliveries are listed [default: 20,
    /// at most 200].
    limit: Option<usize>,
}

/// What `bir sync` would change (`sync_plan`), or does change (`sync`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlanArgs {
    /// Only this profile (its key, TIN, file name or name) [default: every configured one].
    profile: Option<String>,
    /// Sync one labelled year instead of the rolling window (not with `from` or `ahead`).
    year: Option<i32>,
    /// The window's first due date, YYYY-MM-DD [default: the first day of this month,
    /// Manila]. Open deadlines synced before stay in the window whatever their date.
    from: Option<String>,
    /// How far the window reaches: to the end of the month this far ahead, 1m to 36m or 1y
    /// to 3y [default: bir.ahead of the config, else 12m].
    ahead: Option<String>,
}

/// One deadline whose work item is to be moved to a completed state.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MarkFiledArgs {
    /// The form as the BIR writes it (1601-C).
    form: String,
    /// The period: 2026-07 (month), 2027-Q1 (quarter), 2026 (taxable year).
    period: String,
    /// The profile (key, TIN, file name or name); optional when one is configured.
    profile: Option<String>,
}

// ---- outputs ----

/// One day that moved a date forward.
#[derive(Debug, Serialize, JsonSchema)]
struct MoveOut {
    date: NaiveDate,
    weekday: String,
    /// `Saturday`, `Sunday`, or the holiday's name and kind.
    why: String,
    /// A provisional holiday (not proclaimed yet) caused it.
    provisional: bool,
}

fn moves(moved: &[Move]) -> Vec<MoveOut> {
    moved
        .iter()
        .map(|m| MoveOut {
            date: m.date,
            weekday: m.date.format("%A").to_string(),
            why: m.why.clone(),
            provisional: m.provisional,
        })
        .collect()
}

/// An override a person set (a BIR extension), and what it replaced.
#[derive(Debug, Serialize, JsonSchema)]
struct OverrideOut {
    reason: String,
    computed_due_date: NaiveDate,
    computed_payment_date: Option<NaiveDate>,
}

/// A deadline as the calendar computes it.
#[derive(Debug, Serialize, JsonSchema)]
struct Computed {
    form: String,
    form_name: String,
    period: String,
    /// A quarter's months (a fiscal quarter's are not the calendar's).
    months: Vec<String>,
    period_start: NaiveDate,
    period_end: NaiveDate,
    /// The filing deadline (the override's date if there is one).
    due_date: NaiveDate,
    /// The payment deadline where it differs (eFPS).
    payment_date: Option<NaiveDate>,
    rule: String,
    /// The day the rule gives, before weekends and holidays move it.
    rule_date: NaiveDate,
    /// Each day the filing date was moved past, in order.
    moved_by: Vec<MoveOut>,
    payment_rule_date: Option<NaiveDate>,
    payment_moved_by: Vec<MoveOut>,
    #[serde(rename = "override")]
    overridden: Option<OverrideOut>,
    /// The date relies on holidays not proclaimed yet and may still move.
    provisional: bool,
    provisional_reason: Option<String>,
}

impl From<&Deadline> for Computed {
    fn from(d: &Deadline) -> Self {
        Computed {
            form: d.form.clone(),
            form_name: d.form_name.clone(),
            period: d.period.to_string(),
            months: d.months.clone(),
            period_start: d.period_start,
            period_end: d.period_end,
            due_date: d.due_date,
            payment_date: d.payment_date,
            rule: d.rule.clone(),
            rule_date: d.rule_date,
            moved_by: moves(&d.moved_by),
            payment_rule_date: d.payment_rule_date,
            payment_moved_by: d.payment_moved_by.as_deref().map(moves).unwrap_or_default(),
            overridden: d.overridden.as_ref().map(|o| OverrideOut {
                reason: o.reason.clone(),
                computed_due_date: o.computed_due_date,
                computed_payment_date: o.computed_payment_date,
            }),
            provisional: d.provisional,
            provisional_reason: d.provisional_reason.clone(),
        }
    }
}

/// A deadline with its filing status.
#[derive(Debug, Clone, Serialize, JsonSchema)]
struct Row {
    /// The profile's key (TIN digits, or a slug of its name).
    profile: String,
    profile_name: Option<String>,
    form: String,
    period: String,
    due_date: NaiveDate,
    payment_date: Option<NaiveDate>,
    /// As shown: the stored status, or `overdue` when still open after the due date.
    status: Shown,
    /// As stored (pending | in_progress | filed | void); null when never synced.
    filing_status: Option<String>,
    overdue: bool,
    /// Days from today to the due date (negative when past).
    days_left: i64,
    filed_by: Option<String>,
    filed_at: Option<DateTime<Utc>>,
    /// The work item in Plane; null when never synced.
    work_item_id: Option<String>,
    /// The work item's page in Plane's web app; null when never synced.
    work_item_url: Option<String>,
    project_id: Option<String>,
    external_id: String,
    /// Whether `bir sync` has put it in Plane.
    synced: bool,
    provisional: bool,
    provisional_reason: Option<String>,
}

fn row(
    web: &WebApp,
    key: &str,
    name: Option<&str>,
    d: Option<&Deadline>,
    r: Option<&DeadlineRecord>,
    today: NaiveDate,
) -> Option<Row> {
    let (form, period, due, payment) = match (d, r) {
        (Some(d), _) => (
            d.form.clone(),
            d.period.to_string(),
            d.due_date,
            d.payment_date,
        ),
        (None, Some(r)) => (r.form.clone(), r.period.clone(), r.due_date, r.payment_date),
        (None, None) => return None,
    };
    let stored = r.map_or(DeadlineStatus::Pending, |r| r.status);
    let status = Shown::of(stored, due, today);
    let filed = stored == DeadlineStatus::Filed;
    Some(Row {
        profile: key.to_owned(),
        profile_name: name.map(str::to_owned),
        external_id: external_id(key, &form, &period),
        form,
        period,
        due_date: due,
        payment_date: payment,
        status,
        filing_status: r.map(|r| r.status.as_str().to_owned()),
        overdue: status == Shown::Overdue,
        days_left: (due - today).num_days(),
        filed_by: r.filter(|_| filed).and_then(|r| r.status_by.clone()),
        filed_at: r.filter(|_| filed).and_then(|r| r.status_at),
        work_item_id: r.and_then(|r| r.work_item_id).map(|i| i.to_string()),
        work_item_url: r.and_then(|r| web.work_item(r.project_id, r.work_item_id?)),
        project_id: r.map(|r| r.project_id.to_string()),
        synced: r.is_some(),
        provisional: d.is_some_and(|d| d.provisional),
        provisional_reason: d.and_then(|d| d.provisional_reason.clone()),
    })
}

/// `deadlines`' answer.
#[derive(Debug, Serialize, JsonSchema)]
struct DeadlinesOut {
    today: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
    /// Whether every overdue deadline was added (the default range).
    includes_all_overdue: bool,
    /// The database read, or why none was.
    database: String,
    count: usize,
    overdue: usize,
    deadlines: Vec<Row>,
}

/// `explain_deadline`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
struct ExplainOut {
    profile: String,
    profile_name: String,
    /// Whether this profile files this form (the date is computed either way).
    profile_files_form: bool,
    /// The date the rules give after weekends and holidays, before any override.
    computed_due_date: NaiveDate,
    deadline: Computed,
    /// Its filing status, when the database has it.
    status: Option<Row>,
    /// The form's page on the BIR's website, where the catalog has one (null: the reference
    /// names none for this form yet).
    bir_page: Option<String>,
    /// The explanation in one paragraph.
    explanation: String,
}

/// `calendar`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
struct CalendarOut {
    profile: String,
    profile_name: String,
    year: Option<i32>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    count: usize,
    provisional: usize,
    deadlines: Vec<Computed>,
}

/// One form of the catalog.
#[derive(Debug, Serialize, JsonSchema)]
struct FormOut {
    form: String,
    name: String,
    /// in-force, optional, abolished, superseded, ...
    status: String,
    frequency: Option<String>,
    rule: Option<String>,
    december_rule: Option<String>,
    efps: Option<String>,
    basis: Option<String>,
    applies_for: Vec<String>,
    confidence: String,
    note: Option<String>,
    /// Why an abolished, optional or superseded form has no deadline.
    reason: Option<String>,
    /// The form's page on the BIR's website, where the catalog has one.
    bir_page: Option<String>,
}

/// `forms`' answer.
#[derive(Debug, Serialize, JsonSchema)]
struct FormsOut {
    count: usize,
    forms: Vec<FormOut>,
}

/// Deadlines by status.
#[derive(Debug, Default, Serialize, JsonSchema)]
struct Counts {
    pending: usize,
    in_progress: usize,
    overdue: usize,
    filed: usize,
    void: usize,
}

/// One profile's filing status.
#[derive(Debug, Serialize, JsonSchema)]
struct ProfileStatus {
    profile: String,
    profile_name: Option<String>,
    total: usize,
    counts: Counts,
    /// The next open deadline from today on.
    next: Option<Row>,
    overdue: Vec<Row>,
}

/// `filing_status`' answer.
#[derive(Debug, Serialize, JsonSchema)]
struct FilingStatusOut {
    today: NaiveDate,
    database: String,
    profiles: Vec<ProfileStatus>,
}

/// Deliveries by status.
#[derive(Debug, Serialize, JsonSchema)]
struct InboxCounts {
    pending: u64,
    processing: u64,
    failed: u64,
    dead: u64,
    done: u64,
    ignored: u64,
}

/// One delivery, without its body.
#[derive(Debug, Serialize, JsonSchema)]
struct DeliveryOut {
    /// The row id (`plane-server deliveries replay ID`).
    id: i64,
    /// The `X-Plane-Delivery` it arrived with.
    delivery_id: String,
    event: String,
    action: String,
    status: String,
    attempts: u32,
    received_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// The handler's last error.
    last_error: Option<String>,
    note: Option<String>,
}

fn delivery(d: &plane_webhook::DeliveryRecord) -> DeliveryOut {
    DeliveryOut {
        id: d.id,
        delivery_id: d.delivery_id.to_string(),
        event: d.event.clone(),
        action: d.action.clone(),
        status: d.status.as_str().to_owned(),
        attempts: d.attempts,
        received_at: DateTime::from_timestamp_millis(d.received_at),
        next_attempt_at: DateTime::from_timestamp_millis(d.next_attempt_at),
        finished_at: d.finished_at.and_then(DateTime::from_timestamp_millis),
        last_error: d.last_error.clone(),
        note: d.note.clone(),
    }
}

/// `inbox_health`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
struct InboxHealthOut {
    /// The database read, or why none was.
    database: String,
    counts: InboxCounts,
    /// Receive time of the oldest delivery not finished yet.
    oldest_waiting_since: Option<DateTime<Utc>>,
    /// Pending, processing and failed deliveries, oldest first.
    waiting: Vec<DeliveryOut>,
    /// Out of attempts, newest first: they need a person (`plane-server deliveries replay`).
    dead: Vec<DeliveryOut>,
}

/// A workflow state in Plane.
#[derive(Debug, Serialize, JsonSchema)]
struct StateOut {
    id: String,
    name: Option<String>,
    /// backlog, unstarted, started, completed, cancelled (or a newer group).
    group: Option<String>,
}

impl From<&plane_core::State> for StateOut {
    fn from(s: &plane_core::State) -> Self {
        StateOut {
            id: s.id.to_string(),
            name: s.name.clone(),
            group: s.group.as_ref().and_then(as_str),
        }
    }
}

/// `mark_filed`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
struct MarkFiledOut {
    profile: String,
    form: String,
    period: String,
    due_date: NaiveDate,
    external_id: String,
    work_item_id: String,
    /// The work item's page in Plane's web app.
    work_item_url: Option<String>,
    project_id: String,
    /// Whether this call moved the work item (false: it was already in a completed state,
    /// or the deadline was already filed, and nothing was sent).
    moved: bool,
    /// The state it was in; null when Plane was not asked.
    previous_state: Option<StateOut>,
    /// The completed-group state it is in now; null when Plane was not asked.
    state: Option<StateOut>,
    /// The deadline's status in the database as this call ends: it turns `filed` when
    /// `serve` handles Plane's webhook for the move, not here.
    filing_status: String,
    /// What happens next, in a sentence.
    note: String,
}

// ---- the tools ----

fn as_str<T: Serialize>(v: T) -> Option<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// What a tool touches, for its annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The database and the calendar: read-only, nothing outside.
    Local,
    /// Reads Plane too (open world), writes nothing.
    ReadsPlane,
    /// Writes to Plane (and the database): only with `--allow-writes`.
    WritesPlane,
}

fn tool<A: JsonSchema + 'static, O: JsonSchema + 'static>(
    name: &'static str,
    title: &str,
    description: &'static str,
    reach: Reach,
) -> Tool {
    let mut annotations = ToolAnnotations::with_title(title);
    annotations.read_only_hint = Some(reach != Reach::WritesPlane);
    // In MCP's sense (not only additive): `sync` restores what a person changed in the
    // fields it owns, `mark_filed` changes a state. Neither deletes anything.
    annotations.destructive_hint = Some(reach == Reach::WritesPlane);
    // Repeating a call leaves Plane as the first one did.
    annotations.idempotent_hint = Some(true);
    annotations.open_world_hint = Some(reach != Reach::Local);
    Tool::new(name, description, Arc::new(JsonObject::new()))
        .with_title(title)
        .with_input_schema::<A>()
        .with_output_schema::<O>()
        .with_annotations(annotations)
}

/// The tools that write to Plane: listed and callable only with `--allow-writes`.
const WRITE_TOOLS: &[&str] = &["sync", "mark_filed"];
/// The tools that talk to Plane (async, one at a time).
const PLANE_TOOLS: &[&str] = &["sync_plan", "sync", "mark_filed"];

/// The tools, as `tools/list` gives them: the write tools only with `allow_writes`.
fn tools(allow_writes: bool) -> Vec<Tool> {
    let mut tools = read_tools();
    if allow_writes {
        tools.extend(write_tools());
    }
    tools
}

fn write_tools() -> Vec<Tool> {
    vec![
        tool::<PlanArgs, SyncSummary>(
            "sync",
            "Sync BIR deadlines to Plane",
            "Runs `plane-server bir sync`: creates a work item in Plane for each deadline of \
             the window (or `year`) that has none, restores what a person changed in the \
             name, dates or description, updates priorities, and records it all in the \
             database. Same arguments and answer as `sync_plan`, with `dry_run` false.",
            Reach::WritesPlane,
        ),
        tool::<MarkFiledArgs, MarkFiledOut>(
            "mark_filed",
            "Mark a BIR deadline filed in Plane",
            "Moves the work item of one synced deadline (form, period, profile) to the \
             project's first completed-group state in Plane, as a person closing it would. \
             The database is not changed here: Plane's webhook to `plane-server serve` files \
             the deadline, with who and when, as for any close. Does nothing when the \
             deadline is already filed or its work item already completed.",
            Reach::WritesPlane,
        ),
    ]
}

fn read_tools() -> Vec<Tool> {
    vec![
        tool::<DeadlinesArgs, DeadlinesOut>(
            "deadlines",
            "BIR deadlines due",
            "BIR filing deadlines due in a date range (default: the next 30 days, plus every \
             overdue one), with form, period, due and payment dates, status (overdue \
             included), days left, who filed and when, the Plane work item id, and whether \
             the date is provisional. Filter by profile, form and status. Synced ones carry \
             their work item's link in Plane.",
            Reach::Local,
        ),
        tool::<ExplainArgs, ExplainOut>(
            "explain_deadline",
            "Why a BIR deadline falls on its day",
            "For one form and period of a profile: the rule, the date it gives, each weekend \
             day and holiday the date was moved past and why, any override with its reason, \
             whether the date is provisional, the filing status, and the form's BIR page \
             where one is known.",
            Reach::Local,
        ),
        tool::<CalendarArgs, CalendarOut>(
            "calendar",
            "BIR calendar of a profile",
            "Every deadline of a year (give `year`) or due in a range (`from` and `to`) for a \
             profile, as `plane-server bir calendar` computes it.",
            Reach::Local,
        ),
        tool::<FormsArgs, FormsOut>(
            "forms",
            "BIR form catalog",
            "The BIR form catalog: frequency and due rule of each form, and why a form is \
             abolished, superseded or optional.",
            Reach::Local,
        ),
        tool::<FilingStatusArgs, FilingStatusOut>(
            "filing_status",
            "Filing status per profile",
            "Per profile: the synced deadlines counted by status (overdue included), the next \
             open deadline, and the overdue ones.",
            Reach::Local,
        ),
        tool::<InboxHealthArgs, InboxHealthOut>(
            "inbox_health",
            "Webhook inbox health",
            "The webhook inbox (Plane's deliveries to plane-server): deliveries counted by \
             status, the oldest waiting ones, and the dead ones that need a replay. No bodies.",
            Reach::Local,
        ),
        tool::<PlanArgs, SyncSummary>(
            "sync_plan",
            "What a BIR sync would change in Plane",
            "The dry run of `plane-server bir sync`: lists the Plane project's states, labels \
             and work items, and answers what a sync of the rolling window (or `year`) would \
             create, update, restore (drift a person made in Plane) or move (a changed date), \
             per profile, with each planned change. Writes nothing to Plane or the database.",
            Reach::ReadsPlane,
        ),
    ]
}

fn args<A: DeserializeOwned>(tool: &str, arguments: Option<JsonObject>) -> Result<A, String> {
    serde_json::from_value(Value::Object(arguments.unwrap_or_default()))
        .map_err(|e| format!("bad arguments for `{tool}`: {e}"))
}

/// A successful answer: the JSON, and a summary for clients that show text.
fn answer<O: Serialize>(out: &O, summary: String) -> Result<CallToolResult, String> {
    let value = serde_json::to_value(out).map_err(|e| format!("cannot encode the answer: {e}"))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(summary)]);
    result.structured_content = Some(value);
    Ok(result)
}

/// A [`Failure`]'s message (a tool error says what was wrong, whichever kind).
fn failure(f: Failure) -> String {
    match f {
        Failure::BadInput(m) | Failure::Other(m) => m,
    }
}

/// The tool error for a write tool of a server started without `--allow-writes`.
fn writes_refused(name: &str) -> String {
    format!(
        "`{name}` writes to Plane, and this server was started without --allow-writes: it only \
         reads. Restart it as `plane-server mcp --allow-writes` to use `{name}` (`sync_plan` \
         shows what a sync would change without writing)"
    )
}

impl BirServer {
    /// The tools that talk to Plane, one at a time.
    async fn call_plane(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, String> {
        if WRITE_TOOLS.contains(&name) && !self.allow_writes {
            return Err(writes_refused(name));
        }
        let _turn = self.plane.lock().await;
        match name {
            "sync_plan" => self.sync(name, args(name, arguments)?, true).await,
            "sync" => self.sync(name, args(name, arguments)?, false).await,
            "mark_filed" => self.mark_filed(args(name, arguments)?).await,
            _ => Err(format!("unknown tool {name:?}")),
        }
    }

    /// `sync_plan` (`dry_run`) and `sync`: `bir sync` of the chosen profiles, through the
    /// CLI's own code ([`bir_plan`]), on the server's day.
    async fn sync(&self, tool: &str, a: PlanArgs, dry_run: bool) -> Result<CallToolResult, String> {
        if a.year.is_some() && (a.from.is_some() || a.ahead.is_some()) {
            return Err(
                "give `year` (one labelled year), or `from` and `ahead` (the rolling window), \
                 not both"
                    .into(),
            );
        }
        let today = self.today();
        let from = a.from.as_deref().map(|v| date("from", v)).transpose()?;
        let ahead = a
            .ahead
            .as_deref()
            .map(|v| v.parse::<Ahead>().map_err(|e| format!("bad `ahead`: {e}")))
            .transpose()?;
        let scope = Scope::of(&self.config, a.year, from, ahead, today).map_err(failure)?;
        let keys: Vec<String> = match a.profile.as_deref() {
            Some(wanted) => self
                .profile(Some(wanted))?
                .map(|p| p.key.clone())
                .into_iter()
                .collect(),
            None => self.profiles.iter().map(|p| p.key.clone()).collect(),
        };
        if keys.is_empty() {
            return Err(format!("nothing to sync: {}", self.profile_list()));
        }
        // Each profile's project first, so a missing one is said before anything is read.
        for p in self.profiles.iter().filter(|p| keys.contains(&p.key)) {
            if p.project.is_none() {
                return Err(failure(bir_plan::no_project(&p.named)));
            }
        }
        // Credentials before the store: a sync that cannot run creates no database. With
        // OAuth on SQLite this reads the stored token from the file: off the async threads.
        let config = self.config.clone();
        let what = format!("the `{tool}` tool");
        let client = tokio::task::spawn_blocking(move || bir_plan::plane_client(&config, &what))
            .await
            .map_err(|e| format!("the tool failed unexpectedly: {e}"))?
            .map_err(failure)?;
        let opened = bir_plan::open_store(&self.config, dry_run)
            .await
            .map_err(failure)?;
        let store = opened.store.clone();
        // On PostgreSQL a sync holds its projects' locks, as `bir sync` does (a dry run
        // writes nothing and takes none); all of them before anything is read.
        let mut locks = Vec::new();
        if let Some(db) = opened.postgres.as_ref().filter(|_| !dry_run) {
            let mut projects: Vec<Uuid> = self
                .profiles
                .iter()
                .filter(|p| keys.contains(&p.key))
                .filter_map(|p| p.project)
                .collect();
            projects.sort_unstable();
            projects.dedup();
            for project in projects {
                match bir_plan::lock_project(db, project).await.map_err(failure)? {
                    Ok(lock) => locks.push(lock),
                    Err(holder) => {
                        return Err(format!(
                            "project {project} is being synced by another `bir sync`: \
                             {holder}. Nothing was changed; call `sync` again once that sync \
                             has finished"
                        ));
                    }
                }
            }
        }
        let mut targets = Vec::new();
        for p in self.profiles.iter().filter(|p| keys.contains(&p.key)) {
            let project = p
                .project
                .ok_or_else(|| bir_plan::no_project(&p.named))
                .map_err(failure)?;
            targets.push(Target {
                deadlines: bir_plan::deadlines(
                    &p.profile,
                    project,
                    scope,
                    &*store,
                    &self.holidays,
                    &p.overrides,
                )
                .await
                .map_err(failure)?,
                profile: p.profile.clone(),
                file: p.file.clone(),
                project,
                overrides: p.overrides.clone(),
            });
        }
        let mut reports = Vec::new();
        // A lock lost mid-sync (its connection closed) stops the sync: another may start.
        {
            let lost = async {
                if locks.is_empty() {
                    std::future::pending::<()>().await;
                }
                futures::future::select_all(locks.iter().map(|l| Box::pin(l.lost()))).await;
            };
            tokio::pin!(lost);
            for target in &targets {
                let mut progress = |_| {};
                let run = bir_plan::run(
                    &client,
                    store.clone(),
                    target,
                    today,
                    dry_run,
                    &mut progress,
                );
                let report = tokio::select! {
                    report = run => report.map_err(failure)?,
                    () = &mut lost => {
                        return Err(format!(
                            "lost the lock on project {} mid-sync (the database connection \
                             closed: a restart?); stopped. Call `sync` again: it goes on from \
                             what was done",
                            target.project
                        ));
                    }
                };
                reports.push(report);
            }
        }
        for lock in locks {
            lock.release().await;
        }
        let summary = bir_plan::summary(&reports, &targets, scope);
        let text = bir_plan::table(&reports, &targets, scope);
        answer(&summary, text.trim_end().to_owned())
    }

    /// `mark_filed`: the deadline's work item to the project's first completed-group state.
    async fn mark_filed(&self, a: MarkFiledArgs) -> Result<CallToolResult, String> {
        let code = form_code(&a.form)?;
        let p = self
            .profile(a.profile.as_deref())?
            .ok_or_else(|| format!("no deadline to mark filed: {}", self.profile_list()))?;
        let d = self.compute(p, &code, &a.period)?;
        let period = d.period.to_string();
        let ext = external_id(&p.key, &d.form, &period);
        let (records, _) = self.records().await?;
        let not_synced = || {
            format!(
                "{} {period} of {} has no work item in Plane yet: no sync has created it (run \
                 the `sync` tool, or `plane-server bir sync`), so there is nothing to mark filed",
                d.form, p.profile.name
            )
        };
        let r = records
            .into_iter()
            .find(|r| r.external_id == ext)
            .ok_or_else(not_synced)?;
        let item = r.work_item_id.ok_or_else(not_synced)?;
        let project = r.project_id;
        let mut out = MarkFiledOut {
            profile: p.key.clone(),
            form: d.form.clone(),
            period: period.clone(),
            due_date: d.due_date,
            external_id: ext,
            work_item_id: item.to_string(),
            work_item_url: self.web.work_item(project, item),
            project_id: project.to_string(),
            moved: false,
            previous_state: None,
            state: None,
            filing_status: r.status.as_str().to_owned(),
            note: String::new(),
        };
        match r.status {
            DeadlineStatus::Filed => {
                out.note = format!(
                    "already filed{}{}; nothing was sent to Plane",
                    r.status_by
                        .as_deref()
                        .map(|b| format!(" by {b}"))
                        .unwrap_or_default(),
                    r.status_at
                        .map(|t| format!(" on {}", t.date_naive()))
                        .unwrap_or_default()
                );
                let summary = format!("{} {period}: {}", out.form, out.note);
                return answer(&out, summary);
            }
            DeadlineStatus::Void => {
                return Err(format!(
                    "{} {period} is void: its work item was cancelled in Plane{}. Reopen it in \
                     Plane first if it is to be filed after all",
                    d.form,
                    r.status_by
                        .as_deref()
                        .map(|b| format!(" by {b}"))
                        .unwrap_or_default()
                ));
            }
            DeadlineStatus::Pending | DeadlineStatus::InProgress => {}
        }
        let config = self.config.clone();
        let client = tokio::task::spawn_blocking(move || {
            bir_plan::plane_client(&config, "the `mark_filed` tool")
        })
        .await
        .map_err(|e| format!("the tool failed unexpectedly: {e}"))?
        .map_err(failure)?;
        let states: Vec<plane_core::State> = client
            .states(project)
            .stream(ListParams::new().per_page(MAX_PER_PAGE))
            .try_collect()
            .await
            .map_err(|e| format!("list the states of project {project} in Plane: {e}"))?;
        let done = first_state(&states, &StateGroup::Completed).ok_or_else(|| {
            format!(
                "project {project} has no state in the `completed` group in Plane, so nothing \
                 can mark the work item done: add one (project settings, States)"
            )
        })?;
        let current = client
            .work_items(project)
            .get(item)
            .await
            .map_err(|e| format!("read work item {item} in Plane: {e}"))?;
        let before = current
            .state
            .as_ref()
            .map(|s| s.id())
            .and_then(|id| states.iter().find(|s| s.id == id));
        out.previous_state = before.map(StateOut::from);
        if let Some(already) = before.filter(|s| s.group == Some(StateGroup::Completed)) {
            out.state = Some(StateOut::from(already));
            out.note = format!(
                "its work item is already in the completed state {:?} in Plane; nothing was \
                 sent (the deadline is filed when `plane-server serve` handles that change)",
                already.name.as_deref().unwrap_or_default()
            );
        } else {
            client
                .work_items(project)
                .update(item, &WorkItemFields::default().state(done.id))
                .await
                .map_err(|e| format!("move work item {item} to a completed state in Plane: {e}"))?;
            out.moved = true;
            out.state = Some(StateOut::from(done));
            out.note = format!(
                "moved to {:?} in Plane; Plane's webhook to `plane-server serve` files the \
                 deadline (`filing_status` and `deadlines` show it then)",
                done.name.as_deref().unwrap_or_default()
            );
        }
        let summary = format!(
            "{} {period} (due {}): {}{}",
            out.form,
            out.due_date,
            out.note,
            out.work_item_url
                .as_deref()
                .map(|u| format!("\n{u}"))
                .unwrap_or_default()
        );
        answer(&out, summary)
    }

    async fn call(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, String> {
        match name {
            "deadlines" => self.deadlines(args(name, arguments)?).await,
            "explain_deadline" => self.explain(args(name, arguments)?).await,
            "calendar" => self.calendar(args(name, arguments)?),
            "forms" => forms(args(name, arguments)?),
            "filing_status" => self.filing_status(args(name, arguments)?).await,
            "inbox_health" => self.inbox_health(args(name, arguments)?).await,
            _ => Err(format!("unknown tool {name:?}")),
        }
    }

    async fn deadlines(&self, a: DeadlinesArgs) -> Result<CallToolResult, String> {
        let today = self.today();
        let from = a.from.as_deref().map(|v| date("from", v)).transpose()?;
        let to = a.to.as_deref().map(|v| date("to", v)).transpose()?;
        let all_overdue = from.is_none() && to.is_none();
        let from = from.unwrap_or(today);
        let to = to.unwrap_or(from + chrono::Duration::days(30));
        if from > to {
            return Err(format!("bad range: `from` {from} is after `to` {to}"));
        }
        let form = a.form.as_deref().map(form_code).transpose()?;
        let only = a
            .profile
            .as_deref()
            .map(|p| self.profile(Some(p)))
            .transpose()?
            .flatten();
        let (records, database) = self.records().await?;
        let mut by_id: HashMap<&str, &DeadlineRecord> = records
            .iter()
            .map(|r| (r.external_id.as_str(), r))
            .collect();
        let mut rows = Vec::new();
        for p in self.profiles.iter() {
            if only.is_some_and(|o| o.key != p.key) {
                continue;
            }
            let computed =
                plane_bir::deadlines_between(&p.profile, from, to, &self.holidays, &p.overrides)
                    .map_err(|e| format!("profile {}: {e}", p.key))?;
            for d in &computed {
                let id = external_id(&p.key, &d.form, &d.period.to_string());
                let r = by_id.remove(id.as_str());
                rows.extend(row(
                    &self.web,
                    &p.key,
                    Some(&p.profile.name),
                    Some(d),
                    r,
                    today,
                ));
            }
        }
        // Stored deadlines the computation above did not reach: overdue ones (by default),
        // and those of profiles not configured here.
        for r in records
            .iter()
            .filter(|r| by_id.contains_key(r.external_id.as_str()))
        {
            let configured = self.profiles.iter().find(|p| p.key == r.profile);
            if only.is_some_and(|o| o.key != r.profile) {
                continue;
            }
            let in_range = (from..=to).contains(&r.due_date);
            let overdue = Shown::of(r.status, r.due_date, today) == Shown::Overdue;
            if !(in_range && configured.is_none() || all_overdue && overdue) {
                continue;
            }
            let computed = configured.and_then(|p| self.compute(p, &r.form, &r.period).ok());
            rows.extend(row(
                &self.web,
                &r.profile,
                configured.map(|p| p.profile.name.as_str()),
                computed.as_ref(),
                Some(r),
                today,
            ));
        }
        rows.retain(|r| {
            form.as_ref().is_none_or(|f| &r.form == f)
                && a.status.as_ref().is_none_or(|s| s.contains(&r.status))
        });
        rows.sort_by(|x, y| {
            (x.due_date, &x.profile, &x.form).cmp(&(y.due_date, &y.profile, &y.form))
        });
        let overdue = rows.iter().filter(|r| r.overdue).count();
        let mut summary = format!(
            "{} deadlines due {from} to {to}{} ({overdue} overdue on {today})",
            rows.len(),
            if all_overdue {
                ", plus every overdue one"
            } else {
                ""
            }
        );
        for r in rows.iter().take(20) {
            summary += &format!(
                "\n- {} {} due {} {}: {}{}",
                r.form,
                r.period,
                r.due_date.format("%a"),
                r.due_date,
                status_text(r),
                if r.provisional { " (provisional)" } else { "" }
            );
        }
        if rows.len() > 20 {
            summary += &format!(
                "\n... and {} more (see the structured result)",
                rows.len() - 20
            );
        }
        answer(
            &DeadlinesOut {
                today,
                from,
                to,
                includes_all_overdue: all_overdue,
                database,
                count: rows.len(),
                overdue,
                deadlines: rows,
            },
            summary,
        )
    }

    fn compute(&self, p: &Loaded, form: &str, period: &str) -> Result<Deadline, String> {
        let form = Catalog::builtin()
            .get(form)
            .ok_or_else(|| format!("unknown form {form:?}"))?;
        let period = plane_bir::period_of(&p.profile, form, period).map_err(|e| e.to_string())?;
        plane_bir::deadline(&p.profile, form, period, &self.holidays, &p.overrides)
            .map_err(|e| e.to_string())
    }

    async fn explain(&self, a: ExplainArgs) -> Result<CallToolResult, String> {
        let code = form_code(&a.form)?;
        let chosen = self.profile(a.profile.as_deref())?;
        let whole;
        let (key, profile, overrides) = match chosen {
            Some(p) => (p.key.clone(), &p.profile, &p.overrides),
            None => {
                whole = Loaded {
                    key: "whole-catalog".into(),
                    file: PathBuf::new(),
                    profile: Profile::whole_catalog(),
                    overrides: Overrides::none(),
                    project: None,
                    named: "the whole catalog".into(),
                };
                (whole.key.clone(), &whole.profile, &whole.overrides)
            }
        };
        let form = Catalog::builtin()
            .get(&code)
            .ok_or_else(|| format!("unknown form {code:?}"))?;
        if form.schedule.is_none() {
            return Err(format!(
                "{code} has no deadline: it is {}{}",
                form.status.as_str(),
                form.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        let period = plane_bir::period_of(profile, form, &a.period).map_err(|e| e.to_string())?;
        let d = plane_bir::deadline(profile, form, period, &self.holidays, overrides)
            .map_err(|e| e.to_string())?;
        let computed_due = d
            .overridden
            .as_ref()
            .map_or(d.due_date, |o| o.computed_due_date);
        let status = match self.records().await {
            Ok((records, _)) => {
                let id = external_id(&key, &d.form, &d.period.to_string());
                records.iter().find(|r| r.external_id == id).and_then(|r| {
                    row(
                        &self.web,
                        &key,
                        Some(&profile.name),
                        Some(&d),
                        Some(r),
                        self.today(),
                    )
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "explain_deadline: filing status not read");
                None
            }
        };
        let mut explanation = format!(
            "{} {} ({}) for {}: the rule \"{}\" gives {} {}",
            d.form,
            d.period,
            d.form_name,
            profile.name,
            d.rule,
            d.rule_date.format("%a"),
            d.rule_date
        );
        if d.moved_by.is_empty() {
            explanation += ", a business day.";
        } else {
            let why: Vec<String> = d
                .moved_by
                .iter()
                .map(|m| format!("{} ({})", m.date, m.why))
                .collect();
            explanation += &format!(
                "; it moves past {} to {} {} (RMC 65-2016: weekends and holidays roll forward).",
                why.join(", "),
                computed_due.format("%a"),
                computed_due
            );
        }
        if let Some(o) = &d.overridden {
            explanation += &format!(
                " An override sets it to {} {} instead: {}.",
                d.due_date.format("%a"),
                d.due_date,
                o.reason
            );
        }
        if let Some(p) = d.payment_date {
            explanation += &format!(" Payment is due {} {}.", p.format("%a"), p);
        }
        if let Some(why) = &d.provisional_reason {
            explanation += &format!(" Provisional: {why}.");
        }
        let out = ExplainOut {
            profile: key,
            profile_name: profile.name.clone(),
            profile_files_form: profile.forms.iter().any(|f| f.code == d.form),
            computed_due_date: computed_due,
            deadline: Computed::from(&d),
            status,
            bir_page: form.page.clone(),
            explanation: explanation.clone(),
        };
        answer(&out, explanation)
    }

    fn calendar(&self, a: CalendarArgs) -> Result<CallToolResult, String> {
        let chosen = self.profile(a.profile.as_deref())?;
        let whole = Profile::whole_catalog();
        let none = Overrides::none();
        let (key, profile, overrides) = match chosen {
            Some(p) => (p.key.clone(), &p.profile, &p.overrides),
            None => ("whole-catalog".to_owned(), &whole, &none),
        };
        let from = a.from.as_deref().map(|v| date("from", v)).transpose()?;
        let to = a.to.as_deref().map(|v| date("to", v)).transpose()?;
        let (deadlines, title) = match (a.year, from, to) {
            (Some(year), None, None) => (
                plane_bir::calendar(profile, year, &self.holidays, overrides)
                    .map_err(|e| e.to_string())?,
                year.to_string(),
            ),
            (None, Some(from), Some(to)) => (
                plane_bir::deadlines_between(profile, from, to, &self.holidays, overrides)
                    .map_err(|e| e.to_string())?,
                format!("due {from} to {to}"),
            ),
            _ => {
                return Err(
                    "give `year`, or `from` and `to` (YYYY-MM-DD), not both and not one date alone"
                        .into(),
                );
            }
        };
        let rows: Vec<Computed> = deadlines.iter().map(Computed::from).collect();
        let provisional = rows.iter().filter(|d| d.provisional).count();
        let mut summary = format!(
            "{} deadlines {title} for {} ({provisional} provisional)",
            rows.len(),
            profile.name
        );
        for d in &rows {
            summary += &format!(
                "\n- {} {} file by {} {}{}",
                d.form,
                d.period,
                d.due_date.format("%a"),
                d.due_date,
                if d.provisional { " *" } else { "" }
            );
        }
        answer(
            &CalendarOut {
                profile: key,
                profile_name: profile.name.clone(),
                year: a.year,
                from,
                to,
                count: rows.len(),
                provisional,
                deadlines: rows,
            },
            summary,
        )
    }

    async fn filing_status(&self, a: FilingStatusArgs) -> Result<CallToolResult, String> {
        let today = self.today();
        let only = a
            .profile
            .as_deref()
            .map(|p| self.profile(Some(p)))
            .transpose()?
            .flatten();
        let (records, database) = self.records().await?;
        let mut groups: BTreeMap<&str, Vec<&DeadlineRecord>> = BTreeMap::new();
        for p in self.profiles.iter() {
            groups.entry(p.key.as_str()).or_default();
        }
        for r in &records {
            groups.entry(r.profile.as_str()).or_default().push(r);
        }
        let mut profiles = Vec::new();
        let mut summary = format!("filing status on {today}");
        for (key, records) in groups {
            if only.is_some_and(|o| o.key != key) {
                continue;
            }
            let configured = self.profiles.iter().find(|p| p.key == key);
            let name = configured.map(|p| p.profile.name.as_str());
            let mut rows: Vec<Row> = records
                .iter()
                .filter_map(|r| {
                    let computed =
                        configured.and_then(|p| self.compute(p, &r.form, &r.period).ok());
                    row(&self.web, key, name, computed.as_ref(), Some(r), today)
                })
                .collect();
            rows.sort_by_key(|r| r.due_date);
            let mut counts = Counts::default();
            for r in &rows {
                *match r.status {
                    Shown::Pending => &mut counts.pending,
                    Shown::InProgress => &mut counts.in_progress,
                    Shown::Overdue => &mut counts.overdue,
                    Shown::Filed => &mut counts.filed,
                    Shown::Void => &mut counts.void,
                } += 1;
            }
            let next = rows
                .iter()
                .find(|r| matches!(r.status, Shown::Pending | Shown::InProgress))
                .cloned();
            let overdue: Vec<Row> = rows.iter().filter(|r| r.overdue).cloned().collect();
            summary += &format!(
                "\n- {} ({key}): {} synced; pending {}, in progress {}, overdue {}, filed {}, void {}; next: {}",
                name.unwrap_or(key),
                rows.len(),
                counts.pending,
                counts.in_progress,
                counts.overdue,
                counts.filed,
                counts.void,
                next.as_ref().map_or("none".into(), |n| format!(
                    "{} {} due {}",
                    n.form, n.period, n.due_date
                ))
            );
            profiles.push(ProfileStatus {
                profile: key.to_owned(),
                profile_name: name.map(str::to_owned),
                total: rows.len(),
                counts,
                next,
                overdue,
            });
        }
        answer(
            &FilingStatusOut {
                today,
                database,
                profiles,
            },
            summary,
        )
    }
}

impl BirServer {
    async fn inbox_health(&self, a: InboxHealthArgs) -> Result<CallToolResult, String> {
        let limit = a.limit.unwrap_or(20);
        if limit == 0 || limit > 200 {
            return Err(format!("bad `limit` {limit}: give 1 to 200"));
        }
        let (snapshot, database) = if let Some(pg) = &self.postgres {
            let db = self.pool(pg).await?;
            let snapshot = plane_webhook::PgStore::inspect_inbox(&db, limit)
                .await
                .map_err(|e| e.to_string())?;
            let database = match snapshot {
                Some(_) => pg.describe(),
                None => format!(
                    "{}: no webhook inbox in it yet (`plane-server serve` creates it)",
                    pg.describe()
                ),
            };
            (snapshot.unwrap_or_default(), database)
        } else if self.database.exists() {
            let path = self.database.clone();
            // A read-only SQLite snapshot blocks: off the async threads.
            let snapshot = tokio::task::spawn_blocking(move || {
                plane_webhook::SqliteStore::inspect_inbox(&path, limit)
            })
            .await
            .map_err(|e| format!("the tool failed unexpectedly: {e}"))?
            .map_err(|e| e.to_string())?;
            let database = match snapshot {
                Some(_) => self.database.display().to_string(),
                None => format!(
                    "{}: no webhook inbox in it yet (`plane-server serve` creates it)",
                    self.database.display()
                ),
            };
            (snapshot.unwrap_or_default(), database)
        } else {
            (
                plane_webhook::InboxSnapshot::default(),
                format!(
                    "{}: no such file yet (`plane-server serve` creates it); no delivery known",
                    self.database.display()
                ),
            )
        };
        let s = snapshot.stats;
        let out = InboxHealthOut {
            database,
            counts: InboxCounts {
                pending: s.pending,
                processing: s.processing,
                failed: s.failed,
                dead: s.dead,
                done: s.done,
                ignored: s.ignored,
            },
            oldest_waiting_since: s
                .oldest_unfinished
                .and_then(DateTime::from_timestamp_millis),
            waiting: snapshot.waiting.iter().map(delivery).collect(),
            dead: snapshot.dead.iter().map(delivery).collect(),
        };
        let mut summary = format!(
            "inbox: pending {}, processing {}, failed {}, dead {}, done {}, ignored {}",
            s.pending, s.processing, s.failed, s.dead, s.done, s.ignored
        );
        if let Some(t) = out.oldest_waiting_since {
            summary += &format!("; oldest waiting since {t}");
        }
        for d in &out.dead {
            summary += &format!(
                "\n- dead #{} {} {} after {} attempts: {}",
                d.id,
                d.event,
                d.action,
                d.attempts,
                d.last_error.as_deref().unwrap_or("no error kept")
            );
        }
        answer(&out, summary)
    }
}

/// The calendar resources' URI template.
const CALENDAR_TEMPLATE: &str = "bir://calendar/{profile}/{year}";
const CALENDAR_PREFIX: &str = "bir://calendar/";

impl BirServer {
    /// This year's and next year's calendar of each configured profile.
    fn resources(&self) -> Vec<Resource> {
        let year = chrono::Datelike::year(&self.today());
        self.profiles
            .iter()
            .flat_map(|p| {
                [year, year + 1].map(|y| {
                    Resource::new(
                        format!("{CALENDAR_PREFIX}{}/{y}", p.key),
                        format!("BIR calendar {y}, {}", p.profile.name),
                    )
                    .with_description(format!(
                        "Every {y} deadline of {} ({}), as iCalendar and as JSON",
                        p.profile.name,
                        p.file.display()
                    ))
                    .with_mime_type("text/calendar")
                })
            })
            .collect()
    }

    /// `bir://calendar/{profile}/{year}`: the ICS and the JSON of one profile's year.
    fn read_calendar(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let not_found = |why: String| ErrorData::resource_not_found(why, Some(json!({"uri": uri})));
        let rest = uri.strip_prefix(CALENDAR_PREFIX).ok_or_else(|| {
            not_found(format!(
                "unknown resource {uri:?}: the resources are {CALENDAR_TEMPLATE}"
            ))
        })?;
        let (wanted, year) = rest.rsplit_once('/').ok_or_else(|| {
            not_found(format!(
                "unknown resource {uri:?}: give {CALENDAR_TEMPLATE}, e.g. {CALENDAR_PREFIX}PROFILE/2027"
            ))
        })?;
        let year: i32 = year
            .parse()
            .ok()
            .filter(|y| (1900..=2999).contains(y))
            .ok_or_else(|| {
                ErrorData::invalid_params(
                    format!("bad year {year:?} in {uri:?}: a year such as 2027"),
                    None,
                )
            })?;
        let wanted = percent_decode(wanted);
        let p = self
            .profiles
            .iter()
            .find(|p| names(p, &wanted))
            .ok_or_else(|| {
                not_found(format!(
                    "unknown profile {wanted:?} in {uri:?}: {}",
                    self.profile_list()
                ))
            })?;
        let deadlines = plane_bir::calendar(&p.profile, year, &self.holidays, &p.overrides)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let ics = plane_bir::to_ics(&deadlines, &p.profile, Utc::now());
        let json = serde_json::to_string_pretty(&deadlines)
            .map_err(|e| ErrorData::internal_error(format!("cannot encode: {e}"), None))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(ics, uri).with_mime_type("text/calendar"),
            ResourceContents::text(json, uri).with_mime_type("application/json"),
        ]))
    }
}

/// `%20` and the like in a URI's profile part (a name with spaces).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_text(r: &Row) -> String {
    match r.status {
        Shown::Overdue => format!("OVERDUE by {} days", -r.days_left),
        Shown::Filed => format!(
            "filed{}{}",
            r.filed_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default(),
            r.filed_at
                .map(|t| format!(" on {}", t.date_naive()))
                .unwrap_or_default()
        ),
        Shown::Void => "void".into(),
        Shown::Pending | Shown::InProgress => format!(
            "{}, {} days left{}",
            if r.status == Shown::Pending {
                "pending"
            } else {
                "in progress"
            },
            r.days_left,
            if r.synced {
                ""
            } else {
                ", not synced to Plane"
            }
        ),
    }
}

fn forms(a: FormsArgs) -> Result<CallToolResult, String> {
    let only = a.form.as_deref().map(form_code).transpose()?;
    let forms: Vec<FormOut> = Catalog::builtin()
        .forms()
        .iter()
        .filter(|f| only.as_ref().is_none_or(|o| &f.code == o))
        .map(|f| FormOut {
            form: f.code.clone(),
            name: f.name.clone(),
            status: f.status.as_str().to_owned(),
            frequency: f.schedule.as_ref().and_then(|s| as_str(s.frequency)),
            rule: f.schedule.as_ref().map(|s| s.due.describe()),
            december_rule: f
                .schedule
                .as_ref()
                .and_then(|s| s.december.map(|d| d.describe())),
            efps: f.schedule.as_ref().and_then(|s| as_str(s.efps)),
            basis: f.schedule.as_ref().and_then(|s| as_str(s.basis)),
            applies_for: f.applies_for.clone(),
            confidence: f.confidence.clone(),
            note: f.note.clone(),
            reason: f.reason.clone(),
            bir_page: f.page.clone(),
        })
        .collect();
    let mut summary = format!("{} forms", forms.len());
    for f in &forms {
        summary += &format!(
            "\n- {} ({}): {}",
            f.form,
            f.status,
            f.rule.clone().or(f.reason.clone()).unwrap_or_default()
        );
    }
    answer(
        &FormsOut {
            count: forms.len(),
            forms,
        },
        summary,
    )
}

impl ServerHandler for BirServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "plane-server",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(if self.allow_writes {
            "Philippine BIR filing deadlines computed by plane-connector (weekends and \
             holidays roll forward, RMC 65-2016), with the filing status that came back from \
             Plane. Writes allowed: `sync` puts the deadlines in Plane, and `mark_filed` \
             closes one's work item there (Plane's webhook then files it). Dates are \
             YYYY-MM-DD, Manila days."
        } else {
            "Philippine BIR filing deadlines computed by plane-connector (weekends and \
             holidays roll forward, RMC 65-2016), with the filing status that came back from \
             Plane. Read-only (`sync_plan` shows what a sync would change). Dates are \
             YYYY-MM-DD, Manila days."
        })
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(self.allow_writes)))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.resources()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(CALENDAR_TEMPLATE, "BIR calendar of a profile and year")
                .with_description(
                    "Every deadline of the labelled year for a configured profile (its key, \
                     TIN, file name or name), as iCalendar (text/calendar) and as the JSON of \
                     `plane-server bir calendar --format json` (application/json).",
                ),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let server = self.clone();
        let uri = request.uri.clone();
        let result = tokio::task::spawn_blocking(move || server.read_calendar(&uri))
            .await
            .map_err(|e| ErrorData::internal_error(format!("the read failed: {e}"), None))?;
        result.map(Into::into)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools(self.allow_writes)
            .into_iter()
            .find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        // An unknown tool is the client's protocol mistake (-32602); everything after is
        // the tool's own error, which the model sees and can correct. A write tool of a
        // read-only server is known, only not allowed: the model is told why.
        let listed = tools(self.allow_writes);
        if !WRITE_TOOLS.contains(&name.as_str()) && !listed.iter().any(|t| t.name == name) {
            let names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}; the tools are {}", names.join(", ")),
                None,
            ));
        }
        let result = if PLANE_TOOLS.contains(&name.as_str()) {
            self.call_plane(&name, request.arguments).await
        } else {
            // The store's reads go off the async threads by themselves (SQLite) or are
            // async (PostgreSQL); the date arithmetic is quick.
            self.call(&name, request.arguments).await
        };
        Ok(match result {
            Ok(result) => result,
            Err(message) => {
                tracing::info!(tool = %name, %message, "tool error");
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_declares_object_schemas() {
        for t in tools(true) {
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
            let out = t.output_schema.expect("an output schema");
            assert_eq!(out.get("type"), Some(&json!("object")), "{}", t.name);
        }
    }

    #[test]
    fn a_bad_date_says_which_field_and_the_format() {
        let e = date("from", "2026-13-01").expect_err("month 13");
        assert!(e.contains("`from`") && e.contains("YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn a_resource_profile_is_percent_decoded() {
        assert_eq!(percent_decode("Malaya%20Foods%20Inc."), "Malaya Foods Inc.");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn a_work_item_link_is_the_web_apps_page_by_ids() {
        let project: Uuid = "6f1c9a52-5bd5-4c5a-9b1e-3f1d2a7c8e90"
            .parse()
            .expect("a uuid");
        let item: Uuid = "10726b93-2516-4e16-91f4-d6804b6c9979"
            .parse()
            .expect("a uuid");
        let page = |base: &str, slug: &str| WebApp::new(base, slug).work_item(project, item);
        // Self-hosted: the web app is at the API's origin (and under its prefix, if any).
        assert_eq!(
            page("https://plane.example.com", "acme").as_deref(),
            Some(
                "https://plane.example.com/acme/projects/6f1c9a52-5bd5-4c5a-9b1e-3f1d2a7c8e90\
                 /issues/10726b93-2516-4e16-91f4-d6804b6c9979"
            )
        );
        assert!(
            page("http://127.0.0.1:8000/plane/api/v1/", "acme")
                .is_some_and(|u| u.starts_with("http://127.0.0.1:8000/plane/acme/projects/")),
        );
        // Plane Cloud: the API at api.plane.so, the app at app.plane.so.
        assert!(
            page("https://api.plane.so", "insightpulseai")
                .is_some_and(|u| u.starts_with("https://app.plane.so/insightpulseai/projects/")),
        );
        assert!(
            page("https://api.plane.so.example.com", "a")
                .is_some_and(|u| u.starts_with("https://api.plane.so.example.com/a/")),
        );
        // A slug is one path segment, whatever it holds.
        assert!(
            page("https://plane.example.com", "a/b c")
                .is_some_and(|u| u.starts_with("https://plane.example.com/a%2Fb%20c/projects/")),
        );
    }

    #[test]
    fn the_write_tools_are_listed_only_when_allowed() {
        let names =
            |allow| -> Vec<String> { tools(allow).iter().map(|t| t.name.to_string()).collect() };
        for w in WRITE_TOOLS {
            assert!(!names(false).iter().any(|n| n == w), "{w}");
            assert!(names(true).iter().any(|n| n == w), "{w}");
        }
        for t in tools(true) {
            let writes = WRITE_TOOLS.contains(&t.name.as_ref());
            let hints = t.annotations.expect("annotations");
            assert_eq!(hints.read_only_hint, Some(!writes), "{}", t.name);
        }
    }

    #[test]
    fn an_unknown_form_lists_the_catalog() {
        let e = form_code("9999X").expect_err("no such form");
        assert!(e.contains("9999X") && e.contains("1702Q"), "{e}");
        assert_eq!(form_code("1702q"), Ok("1702Q".into()));
    }
}
