//! The HTTP API: audit trail and search over OpenSearch (503 in spool-only
//! mode), flagged flows, health and readiness. `/metrics` is merged in by
//! [`crate::Monitor::start`] (or served on `METRICS_ADDR`). The router and
//! the OpenAPI document (`/openapi.json`, committed as
//! docs/s3-openapi.json) come from one list of handlers ([`routes`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use polystream_common::health::{Check, evaluate};
use polystream_common::instrument::{Store, store_op};
use polystream_common::problem::{InvalidParam, Problem};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::State;
use crate::indexer::SearchError;

/// Every route S3 serves but `/metrics`, `/openapi.json` and `/docs`.
pub fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(search))
        .routes(routes!(trail))
        .routes(routes!(unanswered))
        // A server span (continuing a caller's trace) and the request
        // duration per route template; probes (added after) stay out of both.
        .layer(axum::middleware::from_fn(
            polystream_common::instrument::http_server,
        ))
        .routes(routes!(health))
        .routes(routes!(ready))
}

pub fn router(state: Arc<State>) -> Router {
    let (api, mut doc) = routes().split_for_parts();
    document_errors(&mut doc);
    api.merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", doc))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Polystream monitor (S3)",
        description = "The audit trail of every event on the platform's topics, searchable;                        commands that got no outcome in time. Errors are RFC 9457 problem+json."
    ),
    components(schemas(Problem, InvalidParam))
)]
struct ApiDoc;

/// S3 has no rate limiting: its readers are operators and the console.
fn document_errors(doc: &mut utoipa::openapi::OpenApi) {
    polystream_common::openapi::document_errors(doc, polystream_common::openapi::Layers::default());
}

/// The document as committed: pretty JSON with a trailing newline.
/// Regenerate docs/s3-openapi.json with
/// `cargo run -p polystream-s3-monitor -- --print-openapi > docs/s3-openapi.json`.
pub fn document() -> String {
    let mut doc = routes().into_openapi();
    document_errors(&mut doc);
    // The crate version would make every release rewrite the committed file.
    doc.info.version = "1".into();
    polystream_common::generated::canonical_json(serde_json::to_value(&doc).unwrap_or_default())
}

/// Filters of `GET /v1/audit` (read by [`parse_query`], which names each bad one).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SearchParams {
    /// A CloudEvents type, e.g. `polystream.title.rated.v1`.
    #[param(min_length = 1, max_length = 200)]
    r#type: Option<String>,
    #[param(min_length = 1, max_length = 200)]
    user_id: Option<String>,
    #[param(min_length = 1, max_length = 200)]
    title_id: Option<String>,
    /// Where the record was read: `command` (user_events), `outcome`
    /// (response_events) or `dead_letter`.
    #[param(pattern = "^(command|outcome|dead_letter)$")]
    role: Option<String>,
    /// RFC 3339; events at or after it.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// RFC 3339; events at or before it.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One audit document: the event's envelope fields, where it was read
/// (topic, partition, offset) and its redacted data.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct AuditEvent {
    /// The document id (topic, partition and offset).
    id: String,
    index: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct AuditTrail {
    correlation_id: String,
    /// Oldest first.
    events: Vec<AuditEvent>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct AuditSearch {
    /// Matching events in the index (at least `events.len()`).
    total: u64,
    /// Newest first, at most `limit`.
    events: Vec<AuditEvent>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct Unanswered {
    timeout_seconds: u64,
    /// Commands waiting for their outcome now.
    pending: u64,
    #[schema(value_type = Object)]
    stats: Value,
    /// Commands that got no outcome within the timeout.
    #[schema(value_type = Vec<Object>)]
    unanswered: Vec<Value>,
}

/// Most documents one answer returns.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

/// A validated search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditQuery {
    pub event_type: Option<String>,
    pub user_id: Option<String>,
    pub title_id: Option<String>,
    /// `command`, `outcome` or `dead_letter`.
    pub role: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// Parses the query string, naming every bad or unknown parameter.
pub fn parse_query(params: &HashMap<String, String>) -> Result<AuditQuery, Vec<InvalidParam>> {
    let mut bad = Vec::new();
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    for name in names {
        let value = params[name].trim();
        let mut fail = |reason: &str| {
            bad.push(InvalidParam {
                name: format!("query.{name}"),
                reason: reason.into(),
            });
        };
        let text = |fail: &mut dyn FnMut(&str)| {
            if value.is_empty() || value.len() > 200 {
                fail("must be 1 to 200 characters");
                None
            } else {
                Some(value.to_owned())
            }
        };
        let time = |fail: &mut dyn FnMut(&str)| match DateTime::parse_from_rfc3339(value) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                fail("must be an RFC 3339 time such as 2026-11-22T10:00:00Z");
                None
            }
        };
        match name.as_str() {
            "type" => q.event_type = text(&mut fail),
            "user_id" => q.user_id = text(&mut fail),
            "title_id" => q.title_id = text(&mut fail),
            "role" => match value {
                "command" | "outcome" | "dead_letter" => q.role = Some(value.to_owned()),
                _ => fail("must be command, outcome or dead_letter"),
            },
            "from" => q.from = time(&mut fail),
            "to" => q.to = time(&mut fail),
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                _ => fail("must be an integer from 1 to 1000"),
            },
            _ => {
                fail("unknown parameter; expected type, user_id, title_id, role, from, to or limit")
            }
        }
    }
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from > to
    {
        bad.push(InvalidParam {
            name: "query.from".into(),
            reason: "must not be after `to`".into(),
        });
    }
    if bad.is_empty() { Ok(q) } else { Err(bad) }
}

/// The OpenSearch query for a validated search, newest first.
pub fn search_body(q: &AuditQuery) -> Value {
    let mut filter = Vec::new();
    if let Some(t) = &q.event_type {
        filter.push(json!({"term": {"type": t}}));
    }
    if let Some(u) = &q.user_id {
        filter.push(json!({"term": {"user_id": u}}));
    }
    if let Some(t) = &q.title_id {
        filter.push(json!({"term": {"title_id": t}}));
    }
    if let Some(r) = &q.role {
        filter.push(json!({"term": {"role": r}}));
    }
    if q.from.is_some() || q.to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(f) = q.from {
            range.insert("gte".into(), json!(f.to_rfc3339()));
        }
        if let Some(t) = q.to {
            range.insert("lte".into(), json!(t.to_rfc3339()));
        }
        filter.push(json!({"range": {"time": range}}));
    }
    json!({
        "query": {"bool": {"filter": filter}},
        "sort": [{"time": "desc"}, {"offset": "desc"}],
        "size": q.limit,
    })
}

/// Every event of one flow, oldest first (by time, then offset).
pub fn trail_body(correlation_id: &str) -> Value {
    json!({
        "query": {"bool": {"filter": [{"term": {"correlation_id": correlation_id}}]}},
        "sort": [{"time": "asc"}, {"offset": "asc"}],
        "size": MAX_LIMIT,
    })
}

/// Search hits as `{id, index, ...document}`.
fn hits(reply: &Value) -> Vec<Value> {
    reply["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    let mut doc = h["_source"].clone();
                    if let Some(map) = doc.as_object_mut() {
                        map.insert("id".into(), h["_id"].clone());
                        map.insert("index".into(), h["_index"].clone());
                    }
                    doc
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A search as an OpenSearch store call (a span under the request's, and
/// `polystream_store_operation_duration_seconds`); in spool-only mode there
/// is no call to measure.
async fn search_index(state: &State, body: Value) -> Result<Value, SearchError> {
    if !state.indexer.is_configured() {
        return Err(SearchError::NotConfigured);
    }
    store_op(Store::Opensearch, "search", state.indexer.search(body)).await
}

fn search_problem(e: SearchError) -> Problem {
    match e {
        SearchError::Unavailable(reason) => {
            tracing::warn!(%reason, "audit search failed");
            Problem::unavailable("the audit index is unreachable; retry later")
        }
        SearchError::Refused(reason) => {
            tracing::error!(%reason, "audit search refused");
            Problem::internal()
        }
        SearchError::NotConfigured => not_configured(),
    }
}

/// 503 in spool-only mode: nothing is wrong that a retry would fix, so the
/// problem type says why (an operator has to set OPENSEARCH_URL).
pub fn not_configured() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "opensearch-not-configured",
        "OpenSearch is not configured",
    )
    .detail(
        "OPENSEARCH_URL is empty, so this monitor runs spool-only: events are kept in its spool \
         and the audit index cannot be queried until OPENSEARCH_URL is set",
    )
}

/// The whole trail of one command: every event with its correlation id.
#[utoipa::path(get, path = "/v1/audit/{correlation_id}", tag = "audit",
    params(("correlation_id" = String, Path, description = "1 to 200 characters")),
    responses(
        (status = 200, body = AuditTrail),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 500, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "OpenSearch unreachable or not configured", body = Problem, content_type = "application/problem+json"),
    ))]
async fn trail(
    AxState(state): AxState<Arc<State>>,
    Path(correlation_id): Path<String>,
) -> Response {
    if correlation_id.trim().is_empty() || correlation_id.len() > 200 {
        return Problem::invalid(vec![InvalidParam {
            name: "path.correlation_id".into(),
            reason: "must be 1 to 200 characters".into(),
        }])
        .into_response();
    }
    match search_index(&state, trail_body(&correlation_id)).await {
        Ok(reply) => {
            let events = hits(&reply);
            if events.is_empty() {
                return Problem::not_found(&format!(
                    "an audit trail for correlation id {correlation_id}"
                ))
                .into_response();
            }
            Json(json!({"correlation_id": correlation_id, "events": events})).into_response()
        }
        Err(e) => search_problem(e).into_response(),
    }
}

/// Audit events matching every filter given, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(SearchParams),
    responses(
        (status = 200, body = AuditSearch),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 500, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "OpenSearch unreachable or not configured", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search(
    AxState(state): AxState<Arc<State>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match parse_query(&params) {
        Ok(q) => q,
        Err(bad) => return Problem::invalid(bad).into_response(),
    };
    match search_index(&state, search_body(&q)).await {
        Ok(reply) => Json(json!({
            "total": reply["hits"]["total"]["value"],
            "events": hits(&reply),
        }))
        .into_response(),
        Err(e) => search_problem(e).into_response(),
    }
}

/// Commands still waiting for an outcome, and those that waited too long.
#[utoipa::path(get, path = "/v1/flows/unanswered", tag = "flows",
    responses((status = 200, body = Unanswered)))]
async fn unanswered(AxState(state): AxState<Arc<State>>) -> Response {
    let Ok(flows) = state.flows.lock() else {
        return Problem::internal().into_response();
    };
    Json(json!({
        "timeout_seconds": state.config.flow_timeout.as_secs(),
        "pending": flows.pending_count(),
        "stats": flows.stats(),
        "unanswered": flows.unanswered(),
    }))
    .into_response()
}

/// Liveness: the process serves.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Object)))]
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness, with each check's result and the spool's state.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Object), (status = 503, body = Object)))]
/// Ready when Kafka answers and the spool is writable and not full. OpenSearch
/// is reported but not required: while it is down S3 still does its job
/// (spooling), and taking it out of service would only stop consumption. A
/// full spool does stop consumption, so it is not ready then, and says why.
async fn ready(AxState(state): AxState<Arc<State>>) -> Response {
    let consumer = state.consumer.clone();
    let spool = state.spool.clone();
    let checks = vec![
        Check::new("kafka", move || {
            let consumer = consumer.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    use rdkafka::consumer::Consumer;
                    consumer
                        .fetch_metadata(None, Duration::from_millis(1500))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
        }),
        Check::new("spool", move || {
            let spool = spool.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    spool_full_reason(spool.is_full(), spool.usage()).map_or(Ok(()), Err)?;
                    spool.check_writable().map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
        }),
        state.progress.check(),
    ];
    let r = evaluate(&checks, Duration::from_secs(2)).await;
    let segments = state.spool.segments().map(|s| s.len()).unwrap_or_default();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::to_value(&r).unwrap_or_default();
    body["opensearch"] = json!({
        "configured": state.indexer.is_configured(),
        "available": state.indexer.is_available(),
        "spooled_segments": segments,
    });
    let (bytes, max_bytes) = state.spool.usage();
    body["spool"] = json!({
        "bytes": bytes,
        "max_bytes": max_bytes,
        "full": state.spool.is_full(),
    });
    (code, Json(body)).into_response()
}

/// The readiness reason while a batch waits for spool room, else `None`.
pub fn spool_full_reason(full: bool, (bytes, max_bytes): (u64, u64)) -> Option<String> {
    full.then(|| {
        format!(
            "the spool is full ({bytes} of SPOOL_MAX_BYTES={max_bytes} bytes): consuming and \
             committing are paused until OpenSearch takes the spooled events"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<AuditQuery, Vec<InvalidParam>> {
        parse_query(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[test]
    fn a_full_spool_names_its_size_and_bound() {
        assert_eq!(spool_full_reason(false, (10, 10)), None);
        let r = spool_full_reason(true, (900, 1000)).unwrap();
        assert!(r.contains("900 of SPOOL_MAX_BYTES=1000 bytes"), "{r}");
    }

    #[test]
    fn valid_queries_parse() {
        let got = q(&[
            ("type", "polystream.title.rated.v1"),
            ("user_id", "7"),
            ("from", "2026-11-22T10:00:00Z"),
            ("to", "2026-11-22T12:00:00+02:00"),
            ("limit", "5"),
        ])
        .unwrap();
        assert_eq!(got.limit, 5);
        assert_eq!(got.to.unwrap().to_rfc3339(), "2026-11-22T10:00:00+00:00");
        let body = search_body(&got);
        assert_eq!(body["size"], 5);
        assert_eq!(body["query"]["bool"]["filter"].as_array().unwrap().len(), 3);
        assert_eq!(q(&[]).unwrap().limit, 100);
        let dead = search_body(&q(&[("role", "dead_letter")]).unwrap());
        assert_eq!(
            dead["query"]["bool"]["filter"][0],
            json!({"term": {"role": "dead_letter"}})
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let names = |r: Result<AuditQuery, Vec<InvalidParam>>| {
            r.unwrap_err()
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(q(&[("from", "yesterday")])), ["query.from"]);
        assert_eq!(names(q(&[("limit", "0")])), ["query.limit"]);
        assert_eq!(names(q(&[("limit", "1001")])), ["query.limit"]);
        assert_eq!(
            names(q(&[("limit", "x"), ("to", "2026-13-01T00:00:00Z")])),
            ["query.limit", "query.to"]
        );
        assert_eq!(names(q(&[("colour", "red")])), ["query.colour"]);
        assert_eq!(
            names(q(&[
                ("from", "2026-11-23T00:00:00Z"),
                ("to", "2026-11-22T00:00:00Z")
            ])),
            ["query.from"]
        );
        assert_eq!(names(q(&[("user_id", "")])), ["query.user_id"]);
        assert_eq!(names(q(&[("role", "admin")])), ["query.role"]);
    }
}
