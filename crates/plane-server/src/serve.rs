//! The accept loop: HTTP/1.1 connections served with graceful shutdown, and a
//! way for a handler to close its connection without answering.
//!
//! Plane CE counts *any* HTTP answer as delivered and re-sends only after a
//! transport error. So when a delivery cannot be stored, the honest answer is
//! no answer: the connection is dropped and Plane tries again later.

use std::sync::{Arc, Mutex};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Put in every request's extensions: closes the request's connection at once,
/// with no response.
#[derive(Debug, Clone)]
pub struct AbortConnection(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl AbortConnection {
    /// Closes the connection; the handler's future is dropped with it.
    pub fn abort(&self) {
        if let Some(tx) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = tx.send(());
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the
/// requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tx, aborted) = oneshot::channel();
                let abort = AbortConnection(Arc::new(Mutex::new(Some(tx))));
                let app = app.clone().map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(abort.clone());
                    request
                });
                // A client that trickles its headers is cut off instead of holding
                // a connection open forever.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    tokio::select! {
                        result = connection => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        Ok(()) = aborted => tracing::warn!("closed a connection without answering, so that the sender retries"),
                    }
                });
            }
            changed = stop.changed() => {
                // A closed channel means the service is being torn down: stop too.
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
