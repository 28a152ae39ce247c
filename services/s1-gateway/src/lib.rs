//! S1 gateway: the REST API of Polystream.
//!
//! Writes are validated, published as CloudEvents on Kafka and answered
//! `202 {correlation_id, status_url}` once Kafka acknowledged them; reads go
//! straight to the store that owns the data (PostgreSQL, MongoDB, Redis).
//! [`legacy`] keeps seed 002's endpoints working on top of the same handlers.

pub mod auth;
pub mod command;
pub mod config;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod legacy;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use polystream_common::health::{self, Check};
use polystream_common::instrument;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::Config;
use routes::{accounts, catalog, status};
use state::{AppState, State};

/// Serves on `HTTP_ADDR` until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on HTTP_ADDR={}: {e}", config.http_addr))?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0); `/metrics` on
/// `METRICS_ADDR` when that is set.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use futures::FutureExt;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(polystream_common::metrics::bind(addr).await?),
        None => None,
    };
    let state: AppState = Arc::new(State::connect(config).await?);
    {
        let state = state.clone();
        tokio::spawn(async move { accounts::bootstrap_admin(&state).await });
    }
    let sessions = tokio::spawn(metrics::track_sessions(
        state.redis.clone(),
        state.metrics.sessions_active.clone(),
    ));
    let shutdown = shutdown.boxed().shared();
    let metrics_server = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(%addr, "serving /metrics");
        }
        tokio::spawn(polystream_common::metrics::serve(
            l,
            state.registry.clone(),
            shutdown.clone(),
        ))
    });
    let limits = state.config.server;
    let app = router(state);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // The server hands each request its peer address (ConnectInfo), which
    // keys the per-address rate limits.
    let served = polystream_common::server::serve(listener, app, limits, shutdown).await;
    sessions.abort();
    if let Some(m) = metrics_server {
        // Its shutdown signal has fired too; a failure there is not the API's.
        if let Ok(Err(e)) = m.await {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
    }
    served?;
    Ok(())
}

/// Every API route, each from its handler's `#[utoipa::path]`: the router
/// and the OpenAPI document ([`openapi::document`]) are built from this one
/// list, so neither can have a route the other lacks (the authorization
/// matrix test walks it). `legacy` adds seed 002's endpoints.
pub fn api_routes(legacy: bool) -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::new()
        .routes(routes!(status::get_status))
        .merge(accounts::routes())
        .merge(catalog::routes());
    if legacy {
        routes = routes.merge(legacy::routes());
    }
    routes
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let (app, _) = api_routes(state.config.legacy_api).split_for_parts();
    let app = app
        // API routes only: docs, health and metrics are never limited. The
        // rate limit runs first, so a refused request claims no key.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::by_address,
        ))
        .route("/", get(root))
        .merge(openapi::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::map_response(error::method_not_allowed))
        .layer(DefaultBodyLimit::max(max_body))
        // The SERVER span and the latency metric; runs after routing, so it
        // labels by route template. Bodies (passwords) are never recorded.
        .layer(axum::middleware::from_fn(instrument::http_server));
    let mut app = app
        .with_state(state.clone())
        .merge(health::router(checks(&state)));
    if state.config.metrics_addr.is_none() {
        app = app.merge(polystream_common::metrics::router(state.registry.clone()));
    }
    app
}

fn checks(state: &AppState) -> Vec<Check> {
    vec![
        Check::kafka(state.producer.clone()),
        Check::redis(state.redis.clone()),
    ]
}

/// `GET /`: what this is and where to look (seed 002 served this too).
async fn root(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "service": "polystream-s1-gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "docs": "/docs",
        "openapi": "/openapi.json",
        "health": "/health",
        "console": state.config.console_url,
        "legacy_api": state.config.legacy_api,
        "legacy_api_access": state.config.legacy_access.to_string(),
    }))
}
