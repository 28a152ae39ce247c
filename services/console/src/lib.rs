//! The platform console: one page (assets embedded in the binary, nothing
//! fetched from elsewhere) and the JSON it polls, gathered from the
//! components' own endpoints: `/ready` of S1, S2, S3 and the operator, S3's
//! audit search, trail and unanswered commands, Jaeger's query API, store
//! counts, and Prometheus, queried with the Grafana dashboard's own PromQL.
//!
//! It binds to loopback by default: it shows audit data (redacted by S3) and
//! has no login of its own. Exposing it takes `CONSOLE_ALLOW_REMOTE=true`,
//! behind a proxy that authenticates.

pub mod dashboard;
pub mod sources;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use polystream_common::config::{ConfigErrors, ProcessEnv, Reader, Source};
use serde_json::json;

/// The console's settings (`--help` lists them).
#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub s1_url: String,
    pub s2_url: String,
    pub s3_url: String,
    /// Blank: no operator runs here.
    pub operator_url: String,
    pub prometheus_url: String,
    pub jaeger_url: String,
    /// The dashboards' `$namespace` (a regex, as in Grafana).
    pub namespace: String,
    pub database_url: String,
    pub mongodb_uri: String,
    pub redis_url: String,
    /// Blank: no OpenSearch (S3 runs on its spool).
    pub opensearch_url: String,
    pub audit_index_prefix: String,
    /// `host:port` list; the console only checks that a broker listens.
    pub kafka_bootstrap_servers: String,
    pub limits: polystream_common::server::ServerLimits,
}

impl Config {
    pub fn read<S: Source>(r: &mut Reader<S>) -> Self {
        let http_addr = r.parse("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8003)));
        let allow_remote = r.parse("CONSOLE_ALLOW_REMOTE", false);
        if !http_addr.ip().is_loopback() && !allow_remote {
            r.invalid(
                "HTTP_ADDR",
                &http_addr.to_string(),
                "is not a loopback address; the console has no login, so set \
                 CONSOLE_ALLOW_REMOTE=true only behind an authenticating proxy",
            );
        }
        let http = ["http", "https"];
        type Local = polystream_common::config::StoreEndpoints;
        Self {
            http_addr,
            s1_url: r.url("S1_URL", "http://127.0.0.1:8000", &http),
            s2_url: r.url("S2_URL", "http://127.0.0.1:8001", &http),
            s3_url: r.url("S3_URL", "http://127.0.0.1:8002", &http),
            operator_url: if r.is_blank("OPERATOR_URL") {
                String::new()
            } else {
                r.url("OPERATOR_URL", "http://127.0.0.1:8080", &http)
            },
            prometheus_url: r.url("PROMETHEUS_URL", "http://127.0.0.1:9090", &http),
            jaeger_url: r.url("JAEGER_QUERY_URL", "http://127.0.0.1:16686", &http),
            namespace: r.string("CONSOLE_NAMESPACE", ".*"),
            // Only counted here; the same defaults as the services'.
            database_url: r.url(
                "DATABASE_URL",
                Local::LOCAL_DATABASE_URL,
                &["postgres", "postgresql"],
            ),
            mongodb_uri: r.url(
                "MONGODB_URI",
                Local::LOCAL_MONGODB_URI,
                &["mongodb", "mongodb+srv"],
            ),
            redis_url: r.url("REDIS_URL", Local::LOCAL_REDIS_URL, &["redis", "rediss"]),
            opensearch_url: if r.is_blank("OPENSEARCH_URL") {
                String::new()
            } else {
                r.url("OPENSEARCH_URL", Local::LOCAL_OPENSEARCH_URL, &http)
            },
            audit_index_prefix: r.string("AUDIT_INDEX_PREFIX", "polystream-audit"),
            kafka_bootstrap_servers: r.host_ports("KAFKA_BOOTSTRAP_SERVERS", Local::LOCAL_KAFKA),
            limits: polystream_common::server::ServerLimits::read(r),
        }
    }

    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let c = Self::read(&mut r);
        r.finish().map(|()| c)
    }
}

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/console.js");
const STYLE: &str = include_str!("../assets/console.css");

pub fn router(sources: Arc<sources::Sources>) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route("/console.js", get(|| asset("text/javascript", SCRIPT)))
        .route("/console.css", get(|| asset("text/css", STYLE)))
        .route("/health", get(|| async { "ok" }))
        .route("/api/components", get(components))
        .route("/api/flows", get(flows))
        .route("/api/counts", get(counts))
        .route("/api/charts", get(charts))
        .route("/api/trail/{correlation_id}", get(trail))
        .with_state(sources)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Everything is served from here; nothing else may run or load.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn components(State(s): State<Arc<sources::Sources>>) -> Response {
    axum::Json(json!({"components": s.components().await})).into_response()
}

async fn flows(State(s): State<Arc<sources::Sources>>) -> Response {
    axum::Json(s.flows().await).into_response()
}

async fn counts(State(s): State<Arc<sources::Sources>>) -> Response {
    axum::Json(json!({"counts": s.counts().await})).into_response()
}

async fn charts(State(s): State<Arc<sources::Sources>>) -> Response {
    axum::Json(json!({"charts": s.charts().await})).into_response()
}

async fn trail(
    State(s): State<Arc<sources::Sources>>,
    Path(correlation_id): Path<String>,
) -> Response {
    let valid = !correlation_id.is_empty()
        && correlation_id.len() <= 64
        && correlation_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return polystream_common::problem::Problem::invalid(vec![
            polystream_common::problem::InvalidParam {
                name: "path.correlation_id".into(),
                reason: "must be a correlation id (a UUID)".into(),
            },
        ])
        .into_response();
    }
    axum::Json(s.trail(&correlation_id).await).into_response()
}

/// Serves the console until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http_addr))?;
    serve(config, listener, shutdown).await
}

/// Like [`run`], on a listener the caller bound (tests bind port 0).
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = config.limits;
    let sources = Arc::new(sources::Sources::new(config));
    tracing::info!(addr = %listener.local_addr()?, "console listening");
    polystream_common::server::serve(listener, router(sources), limits, shutdown).await?;
    Ok(())
}
