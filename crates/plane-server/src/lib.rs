//! The `plane-server` service, as a library so tests and the demo can run it
//! in-process.
//!
//! * [`config`]: flags > environment > TOML file > defaults; secrets only from
//!   the environment. [`age`] reads ages like `7d`.
//! * [`connector::Connector`]: the value domain crates receive (Plane client,
//!   verification, durable dedupe, the enabled switch); its errors are
//!   [`plane_webhook::Error`]s.
//! * [`app`]: the axum routes: `POST /webhooks/plane`, `/healthz`, `/readyz`, `/metrics`.
//!   [`verified_delivery::VerifiedDelivery`] is the extractor that reads and
//!   verifies a delivery, rejecting with an [`error::WebhookRejection`] that
//!   carries its status; [`in_flight`] bounds how many bodies are read at once.
//! * [`metrics`]: in-memory counters and gauges, encoded by `prometheus-client`.
//! * [`worker`]: drains the inbox into [`plane_webhook::EventHandler`]s (and
//!   holds it while the connector is off).
//! * [`handlers`]: the domain handlers `serve` runs (plane-bir's, which
//!   never writes to Plane).
//! * [`token_store`]: OAuth tokens encrypted at rest (XChaCha20-Poly1305) in the
//!   same database (the SQLite file, or PostgreSQL).
//! * [`Backend`]: the SQLite file or PostgreSQL, chosen by the database URL;
//!   [`shared_budget`]: replicas on PostgreSQL share the key's Plane budget.
//! * [`start`] wires them together on a listener; [`Running::shutdown`] stops
//!   them gracefully. [`serve`] is the accept loop. [`systemd`] tells systemd
//!   (`Type=notify`) when `serve` is ready and when it stops.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use plane_server::config::{Config, Overrides};
//! let config = Config::from_process(&Overrides::default())?;
//! let store = plane_server::open_store(&config, Arc::new(plane_webhook::SystemClock))?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! let handlers = plane_server::handlers(&store)?;
//! let running = plane_server::start(&config, store, handlers, listener, std::future::pending()).await?;
//! running.wait().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod age;
pub mod app;
pub mod config;
pub mod connector;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod in_flight;
pub mod mcp_http;
pub mod metrics;
pub mod serve;
pub mod shared_budget;
pub mod systemd;
pub mod token_store;
pub mod verified_delivery;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plane_bir::BirHandler;
use plane_webhook::{Clock, DeliveryStore, EventHandler, PgStore, SqliteStore, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::config::Config;
use crate::connector::Connector;
use crate::metrics::Metrics;
use crate::worker::{Worker, WorkerConfig};

/// A running service.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What the routes share (metrics, the in-flight limit, the connector).
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, stops the worker (its
    /// current item finishes, unstarted ones are released), and waits for both.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let served = self.server.await.unwrap_or(Ok(()));
        let _ = self.worker.await;
        served
    }

    /// Waits until something else stops the service (see [`start`]'s `shutdown`).
    pub async fn wait(self) -> std::io::Result<()> {
        let served = self.server.await.unwrap_or(Ok(()));
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        served
    }
}

/// Opens the store named in the configuration. The concrete [`SqliteStore`]
/// is kept, so a domain store can share its file and writer
/// ([`SqliteStore::complete_with`]); it coerces to `Arc<dyn DeliveryStore>`
/// wherever one is asked for, as [`start`] does.
pub fn open_store(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Arc<SqliteStore>, plane_webhook::Error> {
    let store = SqliteStore::open(&config.database, store_config(config, clock))?;
    Ok(Arc::new(store))
}

/// The database `serve` runs on: the SQLite file (the default, one machine), or
/// PostgreSQL (`--db postgres://…`: several replicas share it). Everything past opening
/// it is backend-neutral: [`Backend::deliveries`] is a `dyn DeliveryStore`, and the BIR
/// handler applies its change and completes its item in one transaction on either.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// PostgreSQL, in its own schema.
    Postgres(Arc<PgStore>),
}

impl Backend {
    /// Opens (and migrates) the delivery store the configuration names. PostgreSQL that
    /// cannot be reached at start is an error: systemd restarts the unit, and a replica
    /// never runs without its database.
    pub async fn open(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, plane_webhook::Error> {
        let Some(pg) = &config.postgres else {
            return open_store(config, clock).map(Backend::Sqlite);
        };
        let db = pg.options().connect().await.map_err(postgres_error)?;
        let store = PgStore::open(db, store_config(config, clock)).await?;
        Ok(Backend::Postgres(Arc::new(store)))
    }

    /// The delivery store, for the receiver and the worker.
    pub fn deliveries(&self) -> Arc<dyn DeliveryStore> {
        match self {
            Backend::Sqlite(store) => store.clone(),
            Backend::Postgres(store) => store.clone(),
        }
    }

    /// The domain handlers `serve` runs on this backend (see [`handlers`]).
    pub async fn handlers(&self) -> Result<Vec<Arc<dyn EventHandler>>, plane_bir::Error> {
        match self {
            Backend::Sqlite(store) => handlers(store),
            Backend::Postgres(store) => {
                Ok(vec![Arc::new(BirHandler::postgres(store.clone()).await?)])
            }
        }
    }

    /// The PostgreSQL database, when that is the backend.
    pub fn postgres(&self) -> Option<&plane_postgres::Database> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.database()),
        }
    }
}

/// A PostgreSQL connection error as the delivery store reports one.
pub fn postgres_error(e: plane_postgres::Error) -> plane_webhook::Error {
    match e {
        plane_postgres::Error::Unavailable { target, message } => {
            plane_webhook::Error::Unavailable {
                target,
                operation: "connect",
                message,
            }
        }
        other => plane_webhook::Error::Store {
            path: "PostgreSQL".into(),
            operation: "open the database",
            message: other.to_string(),
        },
    }
}

fn store_config(config: &Config, clock: Arc<dyn Clock>) -> StoreConfig {
    StoreConfig {
        max_attempts: config.max_attempts,
        clock,
        ..StoreConfig::default()
    }
}

/// The domain handlers `serve` runs on the inbox: plane-bir's [`BirHandler`]
/// (a work item of ours closed, cancelled or reopened in Plane marks its
/// deadline filed, void or pending). Its deadline tables are created (or
/// migrated) in the store's file first, so they exist before the first event.
///
/// None of them holds a Plane client: handling an event never writes to Plane.
pub fn handlers(store: &Arc<SqliteStore>) -> Result<Vec<Arc<dyn EventHandler>>, plane_bir::Error> {
    Ok(vec![Arc::new(BirHandler::new(store.clone())?)])
}

/// Starts the receiver on `listener` and the worker, with these handlers.
/// `shutdown` (e.g. a signal) stops both gracefully when it completes.
///
/// Refuses to start (a [`config::ConfigError`]) without a webhook secret.
pub async fn start(
    config: &Config,
    store: Arc<dyn DeliveryStore>,
    handlers: Vec<Arc<dyn EventHandler>>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    start_with_routes(
        config,
        store,
        handlers,
        listener,
        shutdown,
        axum::Router::new(),
    )
    .await
}

/// [`start`], with `extra` routes served beside the service's own (`/mcp`, see
/// [`mcp_http::router`]). Also refuses to start without the MCP bearer token when
/// `mcp.http` is on.
pub async fn start_with_routes(
    config: &Config,
    store: Arc<dyn DeliveryStore>,
    handlers: Vec<Arc<dyn EventHandler>>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    extra: axum::Router,
) -> anyhow::Result<Running> {
    // Without a secret every delivery would be answered (and so lost to Plane).
    config.require_webhook_secret()?;
    config.require_mcp_token()?;
    let connector = Connector::new(config, store.clone())?;
    let metrics = Arc::new(Metrics::new(connector.configured_client()));
    // Once, before serving: from here on the gauges follow each change.
    metrics.seed(&store.stats().await?);
    let enabled = connector.enabled();
    let state = AppState::new(connector, metrics.clone(), config);
    let (stop, stopped) = watch::channel(false);
    // Business gauges and the Plane check, refreshed here so a scrape reads memory only.
    let refresh =
        metrics::refresh_deadlines(metrics.clone(), config, store.clock(), stopped.clone());
    tokio::spawn(refresh);
    tokio::spawn(app::check_plane(state.clone(), stopped.clone()));
    let worker = Worker {
        store,
        handlers,
        metrics,
        queued: state.queued.clone(),
        enabled,
        config: WorkerConfig {
            name: format!("plane-server-{}", std::process::id()),
            lease: config.lease,
            // The cap: claims grow to it while items go fast, and shrink while
            // handlers run long (Plane calls), so waiting items keep their lease.
            batch: 512,
            poll: Duration::from_secs(1),
            retention: config.retention,
            purge_interval: config.purge_interval,
        },
    };
    let worker = tokio::spawn(worker.run(stopped.clone()));
    let addr = listener.local_addr()?;
    let app = extra.merge(app::router(state.clone()));
    let server_stop = stopped;
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });
    let server = tokio::spawn(serve::serve(listener, app, server_stop));
    tracing::info!(%addr, "plane-server listening");
    Ok(Running {
        addr,
        state,
        stop,
        server,
        worker,
    })
}
