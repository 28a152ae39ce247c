//! The operator's HTTP endpoints: `/health`, `/ready` and `/metrics`.
//!
//! - `/health` answers 200 while the process runs (the liveness probe): a
//!   stuck controller is caught by the leader election instead (a leader that
//!   cannot renew exits), so liveness needs nothing more.
//! - `/ready` answers 200 once the `readiness` flag is true, else 503. The
//!   process sets it when it can do its job in its current role: a standby
//!   once it has read the leader Lease (the API server answers), the leader
//!   once the controller's caches are synced. Standbys are therefore Ready,
//!   so a Deployment of two replicas rolls out and either can take over.
//! - `/metrics`: the operator's registry as OpenMetrics text.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// The router, for serving elsewhere or testing without a socket.
pub fn router(registry: Arc<Registry>, readiness: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/ready", get(ready).with_state(readiness))
        .merge(polystream_common::metrics::router(registry))
}

async fn ready(State(readiness): State<watch::Receiver<bool>>) -> (StatusCode, &'static str) {
    if *readiness.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` and serves until `shutdown` completes. The error names the
/// address when it cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    readiness: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (OPERATOR_HTTP_ADDR): {e}"),
        )
    })?;
    serve_on(listener, registry, readiness, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 and read the address).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    readiness: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The services' server, with its default limits: only kubelet probes
    // and Prometheus come here.
    polystream_common::server::serve(
        listener,
        router(registry, readiness),
        polystream_common::server::ServerLimits::default(),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::metrics::OperatorMetrics;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.split(' ').nth(1).unwrap().parse().unwrap();
        (status, out)
    }

    #[tokio::test]
    async fn health_ready_and_metrics() {
        let metrics = OperatorMetrics::new();
        let (ready_tx, ready_rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, metrics.registry(), ready_rx, async {
            let _ = stop_rx.await;
        }));

        assert_eq!(get(addr, "/health").await.0, 200);
        assert_eq!(get(addr, "/ready").await.0, 503);
        ready_tx.send_replace(true);
        assert_eq!(get(addr, "/ready").await.0, 200);
        metrics.set_leader(true);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("polystream_operator_leader 1"), "{body}");

        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_address_in_use_is_named() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let (_tx, rx) = watch::channel(false);
        let err = serve(addr, OperatorMetrics::new().registry(), rx, async {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
