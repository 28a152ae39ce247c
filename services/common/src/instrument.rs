//! Instrumentation points shared by the services: the HTTP server span and
//! latency metric, and a span plus latency metric around every store call.

use std::fmt::Display;
use std::future::IntoFuture;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{HttpLabels, StoreLabels, observe, shared};
use crate::telemetry::{current_correlation_id, sampled_trace_id};

/// The label for requests no route matched: raw paths would make the
/// metric's cardinality unbounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `http.route` of a request: its route template, never the raw path.
pub fn route_label(matched: Option<&MatchedPath>) -> &str {
    matched.map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
}

/// The `http.request.method`: the standard methods, anything else `_OTHER`
/// (the OpenTelemetry convention, bounding the label).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Middleware: the HTTP server span (continuing an incoming `traceparent`)
/// and `http_server_request_duration_seconds` with a trace-id exemplar.
/// Add it with `Router::layer(axum::middleware::from_fn(http_server))` so it
/// runs after routing and sees the route template.
pub async fn http_server(req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = route_label(req.extensions().get::<MatchedPath>()).to_owned();
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        url.path = %req.uri().path(),
        http.response.status_code = Empty,
        polystream.correlation_id = Empty,
    );
    // Fails only without the OpenTelemetry layer (then there is no trace).
    let _ = span.set_parent(parent);
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    // As i64: the OpenTelemetry layer would record a u64 as text.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::debug!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    observe(
        &shared().http_server_duration,
        &HttpLabels {
            http_request_method: method.to_owned(),
            http_route: route,
            http_response_status_code: status,
        },
        elapsed,
        sampled_trace_id(&span.context()),
    );
    response
}

/// The stores a service calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Mongodb,
    Redis,
    Opensearch,
}

impl Store {
    /// The `store` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mongodb => "mongodb",
            Self::Redis => "redis",
            Self::Opensearch => "opensearch",
        }
    }

    /// The `db.system.name` span attribute (OpenTelemetry's well-known values).
    pub fn db_system(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::Mongodb => "mongodb",
            Self::Redis => "redis",
            Self::Opensearch => "opensearch",
        }
    }
}

/// Runs one store call inside a CLIENT span (`db.system.name`,
/// `db.operation.name`, the correlation id in scope) and records
/// `polystream_store_operation_duration_seconds{store,operation,outcome}`
/// with the trace id as exemplar. `operation` must come from a small fixed
/// set (it is a metric label), e.g. `select_user`.
pub async fn store_op<T, E, F>(store: Store, operation: &'static str, call: F) -> Result<T, E>
where
    F: IntoFuture<Output = Result<T, E>>,
    E: Display,
{
    let span = crate::telemetry::child_span(|| {
        tracing::info_span!(
            "store_call",
            otel.name = %format_args!("{operation} {}", store.label()),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = store.db_system(),
            db.operation.name = operation,
            error.type = Empty,
            polystream.correlation_id = Empty,
        )
    });
    if let Some(c) = current_correlation_id() {
        span.record("polystream.correlation_id", c.as_str());
    }
    let start = Instant::now();
    let result = call.into_future().instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", short_type_name::<E>());
            span.in_scope(|| tracing::debug!(error = %e, "store call failed"));
            "error"
        }
    };
    observe(
        &shared().store_duration,
        &StoreLabels {
            store: store.label().into(),
            operation: operation.into(),
            outcome: outcome.into(),
        },
        elapsed,
        sampled_trace_id(&span.context()),
    );
    result
}

/// `sqlx_core::error::Error` → `Error` would lose the store; keep the crate
/// and the type (`sqlx_core::Error`), a bounded value.
fn short_type_name<E>() -> String {
    let full = std::any::type_name::<E>();
    // Generic arguments would make the value long; drop them.
    let full = full.split('<').next().unwrap_or(full);
    match (full.split_once("::"), full.rsplit_once("::")) {
        (Some((first, _)), Some((_, last))) => format!("{first}::{last}"),
        _ => full.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/v1/users/{id}", get(|| async { "ok" }))
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no") })
            .layer(axum::middleware::from_fn(http_server))
    }

    fn count(route: &str, status: u16) -> u64 {
        let body =
            crate::metrics::encode(&crate::metrics::Metrics::new().with_http().finish()).unwrap();
        let needle = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"{route}\",http_response_status_code=\"{status}\"}} "
        );
        body.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn route_labels_are_templates_or_unmatched() {
        let before_users = count("/v1/users/{id}", 200);
        let before_unmatched = count(UNMATCHED_ROUTE, 404);
        for path in ["/v1/users/1", "/v1/users/2", "/nowhere/3", "/nowhere/4"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            app().oneshot(req).await.unwrap();
        }
        assert_eq!(count("/v1/users/{id}", 200), before_users + 2);
        assert_eq!(count(UNMATCHED_ROUTE, 404), before_unmatched + 2);
        let body =
            crate::metrics::encode(&crate::metrics::Metrics::new().with_http().finish()).unwrap();
        assert!(!body.contains("/v1/users/1\""), "{body}");
        assert!(!body.contains("/nowhere"), "{body}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_server_span_continues_an_incoming_traceparent() {
        let _default = tracing::subscriber::set_default(crate::telemetry::test_subscriber());
        let app = Router::new()
            .route(
                "/trace",
                get(|| async { crate::telemetry::current_trace_id().unwrap_or_default() }),
            )
            .layer(axum::middleware::from_fn(http_server));
        let req = Request::builder()
            .uri("/trace")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(Body::empty())
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }

    #[tokio::test]
    async fn store_calls_are_timed_by_outcome() {
        let ok: Result<u8, String> = store_op(Store::Redis, "test_op", async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let err: Result<u8, String> =
            store_op(Store::Redis, "test_op", async { Err("down".to_owned()) }).await;
        assert!(err.is_err());
        let body = crate::metrics::encode(&crate::metrics::Metrics::new().finish()).unwrap();
        for outcome in ["ok", "error"] {
            let needle = format!(
                "polystream_store_operation_duration_seconds_count{{store=\"redis\",operation=\"test_op\",outcome=\"{outcome}\"}} 1"
            );
            assert!(body.contains(&needle), "{needle} missing from {body}");
        }
        assert_eq!(short_type_name::<String>(), "alloc::String");
    }
}
