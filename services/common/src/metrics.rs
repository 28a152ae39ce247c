//! Prometheus metrics: one registry per process, served as OpenMetrics text on
//! `/metrics` (OpenMetrics, not the classic format, because only it carries
//! exemplars — the trace ids on latency histograms).
//!
//! The families every service shares (HTTP server, Kafka producer and
//! consumer, store calls) live in one process-wide [`shared`] set, so the
//! common helpers ([`crate::kafka::publish`], [`crate::instrument`]) record
//! into them without plumbing; a service's [`Metrics`] registers the ones it
//! uses, then adds its own. Names and labels follow the OpenTelemetry semantic
//! conventions (dots become underscores); docs/observability.md lists them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use crate::config::{Reader, Source};

/// The content type Prometheus negotiates for OpenMetrics.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exemplar attached to a latency observation: the trace it belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

/// Seconds; the OpenTelemetry HTTP buckets plus 30 s and 60 s for long polls
/// and slow consumers.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

fn latency() -> HistogramWithExemplars<TraceExemplar> {
    HistogramWithExemplars::new(DURATION_BUCKETS.into_iter())
}

/// A latency histogram family whose observations carry trace-id exemplars.
pub type LatencyFamily<L> =
    Family<L, HistogramWithExemplars<TraceExemplar>, fn() -> HistogramWithExemplars<TraceExemplar>>;

/// An empty latency family (buckets [`DURATION_BUCKETS`]) for a service's own histograms.
pub fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(latency as fn() -> _)
}

/// Records `elapsed` under `labels`, with the trace id of `trace_id` (when the
/// trace is sampled) as the exemplar.
pub fn observe<L>(
    family: &LatencyFamily<L>,
    labels: &L,
    elapsed: Duration,
    trace_id: Option<String>,
) where
    L: Clone + std::hash::Hash + Eq,
{
    family.get_or_create(labels).observe(
        elapsed.as_secs_f64(),
        trace_id.map(|trace_id| TraceExemplar { trace_id }),
        None,
    );
}

/// `http_server_request_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub http_request_method: String,
    /// The route template (`/v1/users/{id}`) or `unmatched`.
    pub http_route: String,
    pub http_response_status_code: u16,
}

/// `messaging_client_operation_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProducerLabels {
    pub messaging_system: String,
    pub messaging_operation_name: String,
    pub messaging_destination_name: String,
    /// Empty when the send succeeded.
    pub error_type: String,
}

/// `messaging_client_sent_messages_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SentLabels {
    pub messaging_system: String,
    pub messaging_destination_name: String,
    /// Empty when the send succeeded.
    pub error_type: String,
}

/// `messaging_client_consumed_messages_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    pub messaging_system: String,
    pub messaging_destination_name: String,
    pub messaging_consumer_group_name: String,
}

/// `messaging_process_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessLabels {
    pub messaging_destination_name: String,
    /// A known CloudEvents type, or `unknown` (never raw input).
    pub event_type: String,
    /// completed | failed | dead_lettered | indexed | spooled.
    pub outcome: String,
}

/// `polystream_kafka_consumer_lag` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub messaging_destination_name: String,
    pub messaging_destination_partition_id: String,
    pub messaging_consumer_group_name: String,
}

/// `polystream_store_operation_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// postgres | mongodb | redis | opensearch.
    pub store: String,
    /// From a fixed set per service, e.g. `select_user`.
    pub operation: String,
    /// ok | error.
    pub outcome: String,
}

/// `polystream_kafka_producer_replaced_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplacedLabels {
    pub messaging_system: String,
}

/// `polystream_http_connections_cut_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutLabels {
    /// header_timeout | idle | request_timeout.
    pub reason: String,
}

/// The families the common helpers record into, one set per process.
pub struct Shared {
    pub http_server_duration: LatencyFamily<HttpLabels>,
    pub producer_duration: LatencyFamily<ProducerLabels>,
    pub sent_messages: Family<SentLabels, Counter>,
    pub consumed_messages: Family<ConsumedLabels, Counter>,
    pub process_duration: LatencyFamily<ProcessLabels>,
    pub consumer_lag: Family<LagLabels, Gauge>,
    /// 1 while a partition is stalled (see [`crate::progress`]).
    pub partition_stalled: Family<LagLabels, Gauge>,
    pub store_duration: LatencyFamily<StoreLabels>,
    /// Producers replaced by [`crate::kafka::Publisher`].
    pub producer_replaced: Family<ReplacedLabels, Counter>,
    /// Connections open now (see [`crate::server`]).
    pub http_connections_open: Gauge,
    /// Connections closed and requests answered by the server's limits.
    pub http_connections_cut: Family<CutLabels, Counter>,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    http_server_duration: latency_family(),
    producer_duration: latency_family(),
    sent_messages: Family::default(),
    consumed_messages: Family::default(),
    process_duration: latency_family(),
    consumer_lag: Family::default(),
    partition_stalled: Family::default(),
    store_duration: latency_family(),
    producer_replaced: Family::default(),
    http_connections_open: Gauge::default(),
    http_connections_cut: Family::default(),
});

/// The process-wide shared families.
pub fn shared() -> &'static Shared {
    &SHARED
}

/// Shows a producer's topic on dashboards before its first send
/// (`messaging_client_sent_messages_total{error_type=""} 0`).
pub fn preregister_producer(topic: &str) {
    let _ = shared().producer_replaced.get_or_create(&ReplacedLabels {
        messaging_system: "kafka".into(),
    });
    let _ = shared().sent_messages.get_or_create(&SentLabels {
        messaging_system: "kafka".into(),
        messaging_destination_name: topic.into(),
        error_type: String::new(),
    });
}

/// Shows a consumer's topic on dashboards before its first message.
pub fn preregister_consumer(topic: &str, group: &str) {
    let _ = shared()
        .consumed_messages
        .get_or_create(&consumed_labels(topic, group));
}

fn consumed_labels(topic: &str, group: &str) -> ConsumedLabels {
    ConsumedLabels {
        messaging_system: "kafka".into(),
        messaging_destination_name: topic.into(),
        messaging_consumer_group_name: group.into(),
    }
}

/// Counts one message received from `topic` by `group`.
pub fn record_consumed(topic: &str, group: &str) {
    shared()
        .consumed_messages
        .get_or_create(&consumed_labels(topic, group))
        .inc();
}

/// Records how long processing one message took and how it ended; the
/// exemplar is the trace of `span` (pass the message's process span).
pub fn record_process(
    topic: &str,
    event_type: &str,
    outcome: &str,
    elapsed: Duration,
    span: &tracing::Span,
) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    observe(
        &shared().process_duration,
        &ProcessLabels {
            messaging_destination_name: topic.into(),
            event_type: event_type.into(),
            outcome: outcome.into(),
        },
        elapsed,
        crate::telemetry::sampled_trace_id(&span.context()),
    );
}

/// A service's registry: the shared families it uses, then its own.
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the store-call family (every service calls stores).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register_with_unit(
            "polystream_store_operation_duration",
            "Duration of one call to a store (PostgreSQL, MongoDB, Redis, OpenSearch)",
            Unit::Seconds,
            shared().store_duration.clone(),
        );
        Self { registry }
    }

    /// Adds `http_server_request_duration_seconds` (recorded by
    /// [`crate::instrument::http_server`]).
    pub fn with_http(mut self) -> Self {
        self.registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests, by method, route template and status",
            Unit::Seconds,
            shared().http_server_duration.clone(),
        );
        self.registry.register(
            "polystream_http_connections_open",
            "HTTP connections open now (at most HTTP_MAX_CONNECTIONS)",
            shared().http_connections_open.clone(),
        );
        self.registry.register(
            "polystream_http_connections_cut",
            "HTTP connections closed by the server's limits (header_timeout, idle) and requests answered 503 by request_timeout",
            shared().http_connections_cut.clone(),
        );
        self
    }

    /// Adds the Kafka producer families (recorded by [`crate::kafka::publish`]).
    pub fn with_producer(mut self) -> Self {
        self.registry.register_with_unit(
            "messaging_client_operation_duration",
            "Duration of Kafka sends until the broker acknowledged or refused them",
            Unit::Seconds,
            shared().producer_duration.clone(),
        );
        self.registry.register(
            "messaging_client_sent_messages",
            "Messages sent to Kafka (error_type empty = acknowledged)",
            shared().sent_messages.clone(),
        );
        self.registry.register(
            "polystream_kafka_producer_replaced",
            "Kafka producers replaced after a window without any acknowledgement (a wedged client)",
            shared().producer_replaced.clone(),
        );
        self
    }

    /// Adds the Kafka consumer families ([`record_consumed`],
    /// [`record_process`], and the lag and stalls from [`crate::progress`]).
    pub fn with_consumer(mut self) -> Self {
        self.registry.register(
            "messaging_client_consumed_messages",
            "Messages received from Kafka",
            shared().consumed_messages.clone(),
        );
        self.registry.register_with_unit(
            "messaging_process_duration",
            "Duration of processing one received message, by topic, event type and outcome",
            Unit::Seconds,
            shared().process_duration.clone(),
        );
        self.registry.register(
            "polystream_kafka_consumer_lag",
            "Records between the group's committed offset and the partition's end, per partition",
            shared().consumer_lag.clone(),
        );
        self.registry.register(
            "polystream_kafka_partition_stalled",
            "1 while a partition has lag and its committed offset has not moved for the stall window",
            shared().partition_stalled.clone(),
        );
        self
    }

    /// Where the service registers its own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The finished registry, for [`router`] or [`serve`].
    pub fn finish(self) -> Arc<Registry> {
        Arc::new(self.registry)
    }
}

/// The registry's current state as OpenMetrics text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

/// The classic Prometheus text format's content type.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics` for `registry`; merge it into a service's router.
/// OpenMetrics (with exemplars) for scrapers that ask for it, as Prometheus
/// does; the classic text format otherwise, which every tool reads
/// (`curl … | promtool check metrics`).
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(registry)
}

async fn serve_metrics(
    State(registry): State<Arc<Registry>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    match encode(&registry) {
        Ok(body) if openmetrics => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Ok(body) => (
            [(header::CONTENT_TYPE, CLASSIC_CONTENT_TYPE)],
            to_classic(&body),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Where a sample line's label set ends (0 without labels), skipping quoted
/// label values.
fn labels_end(line: &str) -> usize {
    let Some(open) = line.find('{') else {
        return 0;
    };
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return open + i,
            _ => {}
        }
    }
    0
}

/// OpenMetrics text → classic text format (0.0.4): no `# EOF`, `# UNIT` or
/// exemplars, and counter metadata named like the `_total` samples.
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
            && kind == "counter"
            && !name.ends_with("_total")
        {
            counters.insert(name.to_owned());
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = match tail {
                "unknown" if prefix == "# TYPE " => "untyped",
                t => t,
            };
            out.push_str(prefix);
            out.push_str(name);
            if counters.contains(name) {
                out.push_str("_total");
            }
            out.push(' ');
            out.push_str(tail);
        } else if line.starts_with('#') {
            out.push_str(line);
        } else {
            // An exemplar follows the value after " # "; a label value that
            // contains " # " is inside quotes, so search after the labels.
            let labels_end = labels_end(line);
            let sample = match line[labels_end..].find(" # ") {
                Some(i) => &line[..labels_end + i],
                None => line,
            };
            out.push_str(sample);
        }
        out.push('\n');
    }
    out
}

/// `METRICS_ADDR`: when set, `/metrics` is served there and not on the API
/// listener (so the API port can stay private or public independently).
pub fn read_addr<S: Source>(r: &mut Reader<S>) -> Option<SocketAddr> {
    let raw = r.string("METRICS_ADDR", "");
    if raw.is_empty() {
        return None;
    }
    match raw.parse() {
        Ok(a) => Some(a),
        Err(e) => {
            r.invalid(
                "METRICS_ADDR",
                &raw,
                format!("{e} (expected e.g. 0.0.0.0:9090)"),
            );
            None
        }
    }
}

/// Binds `METRICS_ADDR`, with an error naming the variable.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on METRICS_ADDR={addr}: {e}"))
}

/// Serves `/metrics` alone on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(
        listener,
        router(registry),
        crate::server::ServerLimits::default(),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn encodes_openmetrics_with_eof() {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        registry.register("demo_events", "Events seen", counter.clone());
        counter.inc();
        let body = encode(&registry).unwrap();
        assert!(body.contains("demo_events_total 1"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn latency_histograms_carry_trace_id_exemplars() {
        let m = Metrics::new().with_http();
        let labels = HttpLabels {
            http_request_method: "GET".into(),
            http_route: "/v1/test-exemplar/{id}".into(),
            http_response_status_code: 200,
        };
        observe(
            &shared().http_server_duration,
            &labels,
            Duration::from_millis(3),
            Some("0af7651916cd43dd8448eb211c80319c".into()),
        );
        let body = encode(&m.finish()).unwrap();
        assert!(
            body.contains("# UNIT http_server_request_duration_seconds seconds"),
            "{body}"
        );
        let line = body
            .lines()
            .find(|l| l.contains("/v1/test-exemplar/{id}") && l.contains("le=\"0.005\""))
            .unwrap();
        assert!(
            line.contains("# {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.003"),
            "{line}"
        );
    }

    #[test]
    fn classic_format_drops_what_only_openmetrics_has() {
        let om = "# HELP demo_events Events seen.\n# TYPE demo_events counter\ndemo_events_total 1\n\
# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n# UNIT lat_seconds seconds\n\
lat_seconds_bucket{le=\"0.005\",r=\"/a # b\"} 1 # {trace_id=\"0af7\"} 0.003\n# EOF\n";
        assert_eq!(
            to_classic(om),
            "# HELP demo_events_total Events seen.\n# TYPE demo_events_total counter\ndemo_events_total 1\n\
# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
lat_seconds_bucket{le=\"0.005\",r=\"/a # b\"} 1\n"
        );
    }

    #[test]
    fn metrics_addr_is_optional_and_named_when_bad() {
        let mut r = Reader::new([("UNRELATED", "x")]);
        assert_eq!(read_addr(&mut r), None);
        let mut r = Reader::new([("METRICS_ADDR", "0.0.0.0:9090")]);
        assert_eq!(read_addr(&mut r), Some("0.0.0.0:9090".parse().unwrap()));
        let mut r = Reader::new([("METRICS_ADDR", "9090")]);
        assert_eq!(read_addr(&mut r), None);
        assert!(r.finish().unwrap_err().to_string().contains("METRICS_ADDR"));
    }
}
