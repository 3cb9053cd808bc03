//! `plane-server`: the Plane webhook receiver and its maintenance commands.

mod bir_cli;
mod bir_plan;
mod bir_sync_cli;
mod db_cli;
mod mcp;
mod oauth_cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use plane_server::config::{Config, ConfigError, Overrides};
use plane_webhook::{DeliveryStore, Status, SystemClock};

#[derive(Debug, Parser)]
#[command(
    name = "plane-server",
    version,
    about = "Receives Plane webhooks durably and keeps Plane in step with the connector's records."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// TOML configuration file (never holds secrets).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The SQLite database of deliveries [env: PLANE_DATABASE_URL] [default: plane.db].
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the webhook receiver (POST /webhooks/plane), the inbox worker, /healthz, /readyz and /metrics
    /// (and MCP at /mcp with `[mcp] http = true`, behind PLANE_MCP_TOKEN).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on [env: PLANE_LISTEN] [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Check the configuration, the delivery store (read-only: never created or migrated) and
    /// Plane connectivity. Exit 0 ok, 2 configuration error, 3 bad credentials, 4 Plane
    /// unreachable, 5 delivery store unusable (missing, unreadable, or written by a newer
    /// version); when several fail, the lowest code.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Inspect and repair stored deliveries.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Run the whole loop on this machine with a fake Plane and no credentials, and print what happened.
    #[cfg(feature = "demo")]
    Demo,
    /// The SQLite store: an online backup (db backup --to FILE), an integrity check (db check),
    /// and the move to PostgreSQL (db migrate --from FILE --to postgres://...).
    Db {
        #[command(subcommand)]
        command: db_cli::DbCommand,
    },
    /// OAuth as a Plane app (Plane Cloud): authorize-url, exchange, bot, rekey, status.
    Oauth {
        #[command(subcommand)]
        command: oauth_cli::OAuthCommand,
    },
    /// BIR filing deadlines: calendar, holidays, overrides, the form catalog, sync to Plane, status (exit 2 on bad input).
    Bir {
        #[command(subcommand)]
        command: bir_cli::BirCommand,
    },
    /// An MCP server on stdio for AI agents: BIR deadlines, their rules and filing status
    /// (read-only unless --allow-writes; logs on stderr, only protocol on stdout).
    Mcp(mcp::McpArgs),
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put a delivery back in the inbox with fresh attempts.
    Replay {
        #[command(flatten)]
        common: Common,
        /// The delivery's row id (the first column of `deliveries list`).
        id: i64,
    },
    /// Delete done and dead deliveries older than the retention window.
    Purge {
        #[command(flatten)]
        common: Common,
        /// Age, like 7d, 12h, 30m or 45s [default: the configured retention, 7d].
        #[arg(long, value_parser = plane_server::age::parse_age)]
        older_than: Option<Duration>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Pending,
    Processing,
    Done,
    Failed,
    Dead,
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

// Bodies of a few KiB are allocated on tokio's threads and freed on the store's
// writer: glibc's allocator took about 10% of the server's CPU at 64 senders,
// and mimalloc cut the CPU per delivery by about 10% (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tokio's threads leave one core to the delivery store's writer, an OS thread
/// of its own that takes most of a core under load: with a worker thread per
/// core they compete with it, and on 2 cores one worker used about 2.5 µs less
/// CPU per delivery at 64 senders and took 5% more deliveries a second
/// (docs/BENCHMARKS.md). `TOKIO_WORKER_THREADS` still decides when it is set.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.enable_all().build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, default_log_level(&cli.command));
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plane-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("plane-server: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("plane-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn overrides(common: &Common, listen: Option<SocketAddr>) -> Overrides {
    Overrides {
        config_file: common.config.clone(),
        listen,
        database: common.db.clone(),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { common, listen } => {
            let config = Config::from_process(&overrides(&common, listen))?;
            // Before the store is opened: a refused start leaves nothing behind.
            config.require_webhook_secret()?;
            config.require_mcp_token()?;
            let mcp = match (&config.mcp_token, config.mcp_http) {
                (Some(token), true) => match mcp::BirServer::for_serve(&config) {
                    Ok(server) => plane_server::mcp_http::router(server, token),
                    Err(bir_cli::Failure::BadInput(e)) => {
                        eprintln!("plane-server: mcp.http: {e}");
                        return Ok(ExitCode::from(2));
                    }
                    Err(bir_cli::Failure::Other(e)) => anyhow::bail!("mcp.http: {e}"),
                },
                _ => axum::Router::new(),
            };
            let backend = plane_server::Backend::open(&config, Arc::new(SystemClock)).await?;
            if let Some(pg) = &config.postgres {
                tracing::info!(database = %pg.describe(), "stores in PostgreSQL");
            }
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
            let handlers = backend.handlers().await?;
            let store = backend.deliveries();
            let shutdown = async {
                shutdown_signal().await;
                // In-flight requests drain from here; systemd waits for the exit.
                if let Err(e) = plane_server::systemd::notify("STOPPING=1") {
                    tracing::warn!(error = %e, "could not tell systemd we are stopping");
                }
            };
            let running =
                plane_server::start_with_routes(&config, store, handlers, listener, shutdown, mcp)
                    .await?;
            if config.mcp_http {
                tracing::info!(
                    path = plane_server::mcp_http::PATH,
                    "MCP over Streamable HTTP (bearer token)"
                );
            }
            // The store is open and the socket listens: deliveries can be taken.
            if let Err(e) = plane_server::systemd::notify("READY=1") {
                tracing::warn!(error = %e, "could not tell systemd we are ready (NOTIFY_SOCKET)");
            }
            running.wait().await?;
            tracing::info!("plane-server stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { common } => check(&Config::from_process(&overrides(&common, None))?).await,
        Command::Deliveries { command } => deliveries(command).await,
        Command::Oauth { command } => oauth_cli::run(command).await,
        Command::Db { command } => db_cli::run(command).await,
        Command::Bir { command } => Ok(bir_cli::run(command).await),
        Command::Mcp(args) => mcp::run(args).await,
        #[cfg(feature = "demo")]
        Command::Demo => {
            let report = plane_server::demo::run().await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long a command about to exit waits for a renewed token to be stored.
const SETTLE_BEFORE_EXIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a command says when it exits with a renewed token unstored.
const UNSTORED_TOKEN: &str = "plane-server: the renewed OAuth token could not be stored (is \
    the database down?); Plane has spent the refresh token it replaced, so the other \
    processes will report the renewal in doubt until one authorizes again \
    (`plane-server oauth authorize-url`)";

/// Exit codes of `check` (documented in its --help and the README).
const CHECK_CONFIG: u8 = 2;
const CHECK_CREDENTIALS: u8 = 3;
const CHECK_UNREACHABLE: u8 = 4;
const CHECK_STORE: u8 = 5;

async fn check(config: &Config) -> anyhow::Result<ExitCode> {
    println!("base URL:        {}", config.base_url);
    println!("workspace:       {}", config.workspace_slug);
    println!(
        "connector:       {}",
        if config.is_enabled() {
            "on"
        } else {
            "off (plane.enabled = false): deliveries are verified and stored, and held until it is on"
        }
    );
    println!(
        "webhook secrets: {} configured",
        config.webhook_secrets.len()
    );
    println!(
        "auth:            {}",
        match (&config.oauth, &config.api_key) {
            (Some(oauth), _) => oauth.describe(),
            (None, Some(_)) => "API key (PLANE_API_KEY)".into(),
            (None, None) => "none".into(),
        }
    );
    let store = match &config.postgres {
        Some(pg) => check_postgres(pg).await,
        None => check_store(config),
    };
    let plane = check_plane(config).await;
    Ok(match [plane, store].into_iter().flatten().min() {
        Some(code) => ExitCode::from(code),
        None => ExitCode::SUCCESS,
    })
}

/// Reads the store's schema version without creating or migrating anything.
fn check_store(config: &Config) -> Option<u8> {
    let path = config.database.display();
    match plane_webhook::SqliteStore::inspect_schema_version(&config.database) {
        Ok(0) => {
            println!("delivery store:  {path}: an empty SQLite file; serve will set it up");
            None
        }
        Ok(version) if version < plane_webhook::SqliteStore::SCHEMA_VERSION => {
            println!(
                "delivery store:  {path}: schema version {version}; serve will migrate it to {}",
                plane_webhook::SqliteStore::SCHEMA_VERSION
            );
            None
        }
        Ok(version) => {
            println!("delivery store:  {path}: schema version {version} (current)");
            None
        }
        Err(e) => {
            eprintln!("plane-server: {e}");
            Some(CHECK_STORE)
        }
    }
}

/// Connects to PostgreSQL and reads the delivery schema's version, creating nothing.
/// The outcome is said in fixed words: `connection lost` (unreachable), `empty`, the
/// version (`current`, or `serve will migrate`), or `newer than this build`.
async fn check_postgres(pg: &plane_server::config::PostgresConfig) -> Option<u8> {
    let target = pg.describe();
    let db = match pg.options().connect_existing().await {
        Ok(db) => db,
        Err(e) => {
            println!("delivery store:  PostgreSQL {target}: connection lost");
            eprintln!("plane-server: {e}");
            return Some(CHECK_STORE);
        }
    };
    let current = plane_webhook::PgStore::SCHEMA_VERSION;
    match plane_webhook::PgStore::inspect_schema_version(&db).await {
        Ok(0) => println!("delivery store:  PostgreSQL {target}: empty; serve will set it up"),
        Ok(version) if version < current => println!(
            "delivery store:  PostgreSQL {target}: schema version {version}; serve will migrate it to {current}"
        ),
        Ok(version) => {
            println!("delivery store:  PostgreSQL {target}: schema version {version} (current)");
        }
        Err(e) => {
            let words = if e.is_unavailable() {
                "connection lost"
            } else {
                "unusable"
            };
            println!("delivery store:  PostgreSQL {target}: {words}");
            eprintln!("plane-server: {e}");
            return Some(CHECK_STORE);
        }
    }
    None
}

async fn check_plane(config: &Config) -> Option<u8> {
    let client = match plane_server::connector::plane_client_for_check(config) {
        Ok(Some(client)) => client,
        Ok(None) => {
            eprintln!(
                "plane-server: PLANE_API_KEY is not set and OAuth is not configured (see {})",
                plane_server::connector::API_KEY_REF
            );
            return Some(CHECK_CONFIG);
        }
        Err(e) => {
            eprintln!("plane-server: {e}");
            return Some(CHECK_CONFIG);
        }
    };
    let answer = client.users().me().await;
    // A token renewed on the way whose save failed is stored before `check` exits: the
    // rotated refresh token would be lost with the process.
    if !client.settle(SETTLE_BEFORE_EXIT).await {
        eprintln!("{UNSTORED_TOKEN}");
    }
    match answer {
        Ok(me) => {
            println!(
                "authenticated:   {} <{}>",
                me.display_name,
                me.email.unwrap_or_default()
            );
            match client
                .projects()
                .list(&plane_core::ListParams::new().per_page(1))
                .await
            {
                Ok(page) => println!(
                    "projects:        {}",
                    page.total_count.unwrap_or(page.count)
                ),
                Err(e) => println!("projects:        not listed ({e})"),
            }
            if let Some(oauth) = &config.oauth {
                let owner = oauth.owner.to_string();
                // The configured store, SQLite or PostgreSQL; listing needs no key.
                let listed = match plane_server::token_store::open_for_listing(config).await {
                    Ok(store) => store.list().await,
                    Err(e) => Err(e),
                };
                let expiry = listed.map(|list| list.into_iter().find(|t| t.owner == owner));
                match expiry {
                    Ok(Some(t)) => println!(
                        "token expires:   {}",
                        t.expires_at.map_or("unknown".into(), |e| e.to_rfc3339())
                    ),
                    Ok(None) => println!("token expires:   unknown (no token stored for {owner})"),
                    Err(e) => println!("token expires:   unknown ({e})"),
                }
            }
            let limit = client.rate_limit();
            println!(
                "rate limit:      {} requests left in this window (budget {} per minute)",
                limit.remaining.map_or("unknown".into(), |r| r.to_string()),
                config.rate_limit_per_minute
            );
            None
        }
        Err(
            e @ (plane_core::Error::Unauthorized { .. }
            | plane_core::Error::Forbidden { .. }
            | plane_core::Error::InvalidClient { .. }
            | plane_core::Error::AuthorizationExpired { .. }),
        ) => {
            eprintln!("plane-server: {e}");
            Some(CHECK_CREDENTIALS)
        }
        Err(e @ (plane_core::Error::InvalidConfig { .. } | plane_core::Error::Token { .. })) => {
            eprintln!("plane-server: {e}");
            Some(CHECK_CONFIG)
        }
        Err(e) => {
            eprintln!("plane-server: Plane is not reachable: {e}");
            Some(CHECK_UNREACHABLE)
        }
    }
}

async fn deliveries(command: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeliveriesCommand::List {
            common,
            status,
            format,
            limit,
        } => {
            let config = Config::from_process(&overrides(&common, None))?;
            let store = plane_server::open_store(&config, Arc::new(SystemClock))?;
            let status = status.map(|s| match s {
                StatusArg::Pending => Status::Pending,
                StatusArg::Processing => Status::Processing,
                StatusArg::Done => Status::Done,
                StatusArg::Failed => Status::Failed,
                StatusArg::Dead => Status::Dead,
                StatusArg::Ignored => Status::Ignored,
            });
            let rows = store.list(status, limit).await?;
            if format == OutputFormat::Json {
                let json: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id, "delivery_id": r.delivery_id, "event": r.event, "action": r.action,
                            "status": r.status.as_str(), "attempts": r.attempts, "received_at_ms": r.received_at,
                            "next_attempt_at_ms": r.next_attempt_at, "finished_at_ms": r.finished_at,
                            "last_error": r.last_error, "note": r.note,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else {
                println!(
                    "{:>6}  {:<36}  {:<14}  {:<8}  {:<10}  {:>8}  note or last error",
                    "id", "delivery", "event", "action", "status", "attempts"
                );
                for r in &rows {
                    println!(
                        "{:>6}  {:<36}  {:<14}  {:<8}  {:<10}  {:>8}  {}",
                        r.id,
                        r.delivery_id,
                        r.event,
                        r.action,
                        r.status,
                        r.attempts,
                        r.note.as_deref().or(r.last_error.as_deref()).unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeliveriesCommand::Replay { common, id } => {
            let config = Config::from_process(&overrides(&common, None))?;
            let store = plane_server::open_store(&config, Arc::new(SystemClock))?;
            store.replay(id).await?;
            println!("delivery {id} is back in the inbox");
            Ok(ExitCode::SUCCESS)
        }
        DeliveriesCommand::Purge { common, older_than } => {
            let config = Config::from_process(&overrides(&common, None))?;
            let store = plane_server::open_store(&config, Arc::new(SystemClock))?;
            let purged = store.purge(older_than.unwrap_or(config.retention)).await?;
            println!("purged {purged} finished deliveries");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
    tracing::info!("shutdown requested: finishing in-flight work");
}

/// The level when `RUST_LOG` is not set: the demo prints its story on stdout, so its
/// logs stay at `warn` (each step's INFO lines would bury it); every other command `info`.
fn default_log_level(command: &Command) -> &'static str {
    match command {
        #[cfg(feature = "demo")]
        Command::Demo => "warn",
        _ => "info",
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
