//! The `plane-server` service, as a library so tests and the demo can run it
//! in-process.
//!
//! * [`config`]: flags > environment > TOML file > defaults; secrets only from
//!   the environment.
//! * [`connector::Connector`]: the value domain crates receive (Plane client,
//!   verification, durable dedupe, the enabled switch).
//! * [`app`]: the axum routes: `POST /webhooks/plane`, `/healthz`, `/readyz`, `/metrics`.
//! * [`worker`]: drains the inbox into [`plane_webhook::EventHandler`]s.
//! * [`start`] wires them together on a listener; [`Running::shutdown`] stops
//!   them gracefully.

pub mod app;
pub mod config;
pub mod connector;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod serve;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plane_webhook::{Clock, DeliveryStore, EventHandler, SqliteStore, StoreConfig, SystemClock};
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
    pub addr: SocketAddr,
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

/// Opens the store named in the configuration.
pub fn open_store(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn DeliveryStore>, plane_webhook::Error> {
    let store = SqliteStore::open(
        &config.database,
        StoreConfig {
            max_attempts: config.max_attempts,
            clock,
            ..StoreConfig::default()
        },
    )?;
    Ok(Arc::new(store))
}

/// Starts the receiver on `listener` and the worker, with these handlers.
/// `shutdown` (e.g. a signal) stops both gracefully when it completes.
pub async fn start(
    config: &Config,
    store: Arc<dyn DeliveryStore>,
    handlers: Vec<Arc<dyn EventHandler>>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let connector = Connector::new(config, store.clone())?;
    if !connector.enabled() {
        tracing::warn!(
            "plane.enabled is false: webhooks are answered 503 DISABLED and sync does nothing"
        );
    }
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(
        connector,
        metrics.clone(),
        Arc::new(SystemClock),
        config.body_limit,
    );
    let (stop, stopped) = watch::channel(false);
    let worker = Worker {
        store,
        handlers,
        metrics,
        queued: state.queued.clone(),
        config: WorkerConfig {
            name: format!("plane-server-{}", std::process::id()),
            lease: config.lease,
            // Few at a time: items wait under their lease while earlier ones run.
            batch: 4,
            poll: Duration::from_secs(1),
            retention: config.retention,
            purge_interval: config.purge_interval,
        },
    };
    let worker = tokio::spawn(worker.run(stopped.clone()));
    let addr = listener.local_addr()?;
    let app = app::router(state.clone());
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
