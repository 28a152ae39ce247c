//! Telemetry start-up: JSON logs on stdout and OpenTelemetry traces exported
//! over OTLP, configured by the standard `OTEL_*` variables.
//!
//! Every log line carries the `trace_id` and `span_id` of the span it was
//! written in and, when a span in scope knows it, the request's
//! `correlation_id`, so a line found in the logs leads to its trace and back.
//!
//! Spans are exported by a batch processor on its own thread with a bounded
//! queue: a slow or unreachable collector loses spans, never request time.

use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigErrors, ProcessEnv, Reader, Source};

/// The span field that carries a request's correlation id. Every span the
/// common helpers create declares it; the log formatter shows it as
/// `correlation_id`.
pub const CORRELATION_FIELD: &str = "polystream.correlation_id";

/// The OTLP wire protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// Which traces are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// Telemetry settings, read from the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `OTEL_SERVICE_NAME` (default: the service's own name).
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` = spans are not exported.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (default) or `http/protobuf`.
    pub protocol: OtlpProtocol,
    /// `OTEL_TRACES_SAMPLER` (+ `OTEL_TRACES_SAMPLER_ARG`), default `parentbased_always_on`.
    pub sampler: SamplerConfig,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,key=value`.
    pub resource_attributes: Vec<(String, String)>,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds; default 5000).
    pub export_timeout: Duration,
    /// Write logs through the test harness's output capture instead of stdout.
    pub test_writer: bool,
}

impl TelemetryConfig {
    /// Reads the `OTEL_*` variables; `default_service` is used when
    /// `OTEL_SERVICE_NAME` is unset (e.g. `polystream-s1-gateway`).
    pub fn read<S: Source>(r: &mut Reader<S>, default_service: &str) -> Self {
        let service_name = r.string("OTEL_SERVICE_NAME", default_service);
        let endpoint = {
            let v = r.string("OTEL_EXPORTER_OTLP_ENDPOINT", "");
            if v.is_empty() {
                None
            } else {
                Some(r.url("OTEL_EXPORTER_OTLP_ENDPOINT", "", &["http", "https"]))
            }
        };
        let protocol = match r.string("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").as_str() {
            "grpc" => OtlpProtocol::Grpc,
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            other => {
                r.invalid(
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    other,
                    "expected grpc or http/protobuf",
                );
                OtlpProtocol::Grpc
            }
        };
        let sampler_name = r.string("OTEL_TRACES_SAMPLER", "parentbased_always_on");
        let mut ratio = || {
            let v: f64 = r.parse("OTEL_TRACES_SAMPLER_ARG", 1.0);
            if !(0.0..=1.0).contains(&v) {
                r.invalid(
                    "OTEL_TRACES_SAMPLER_ARG",
                    &v.to_string(),
                    "a sampling ratio between 0 and 1",
                );
                return 1.0;
            }
            v
        };
        let sampler = match sampler_name.as_str() {
            "always_on" => SamplerConfig::AlwaysOn,
            "always_off" => SamplerConfig::AlwaysOff,
            "traceidratio" => SamplerConfig::TraceIdRatio(ratio()),
            "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()),
            other => {
                r.invalid(
                    "OTEL_TRACES_SAMPLER",
                    other,
                    "expected always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                );
                SamplerConfig::ParentBasedAlwaysOn
            }
        };
        let raw_attributes = r.string("OTEL_RESOURCE_ATTRIBUTES", "");
        let resource_attributes = match parse_resource_attributes(&raw_attributes) {
            Ok(a) => a,
            Err(problem) => {
                r.invalid("OTEL_RESOURCE_ATTRIBUTES", &raw_attributes, problem);
                Vec::new()
            }
        };
        let timeout_ms: u64 = r.parse("OTEL_EXPORTER_OTLP_TIMEOUT", 5000);
        Self {
            service_name,
            endpoint,
            protocol,
            sampler,
            resource_attributes,
            export_timeout: Duration::from_millis(timeout_ms.max(1)),
            test_writer: false,
        }
    }

    pub fn from_env(default_service: &str) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(ProcessEnv);
        let c = Self::read(&mut r, default_service);
        r.finish().map(|()| c)
    }

    /// No export: logs with trace ids only.
    pub fn local(service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            sampler: SamplerConfig::ParentBasedAlwaysOn,
            resource_attributes: Vec::new(),
            export_timeout: Duration::from_secs(5),
            test_writer: false,
        }
    }
}

/// `key=value,key=value` with percent-encoded values (W3C Baggage octets).
pub fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{item:?} is not key=value"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        let v = percent_decode(v.trim()).ok_or_else(|| format!("{item:?} has a bad %-escape"))?;
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] (or drop)
/// flushes the spans still queued.
pub struct TelemetryGuard {
    provider: Mutex<Option<SdkTracerProvider>>,
}

impl TelemetryGuard {
    /// Flushes and stops span export. Runs off the async threads because the
    /// SDK blocks while the exporter (which may need this runtime) drains.
    pub async fn shutdown(self) {
        let provider = self.provider.lock().ok().and_then(|mut p| p.take());
        if let Some(provider) = provider {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("telemetry: flushing spans at shutdown failed: {e}"),
                Err(e) => eprintln!("telemetry: flushing spans at shutdown failed: {e}"),
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let provider = self.provider.lock().ok().and_then(|mut p| p.take());
        if let Some(provider) = provider {
            // Bounded: a dead collector must not hang the process on exit.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(provider.shutdown());
            });
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// Installs logging and tracing from the `OTEL_*` variables. Call once, first
/// thing in `main` (inside the Tokio runtime: the gRPC exporter needs it),
/// with the service's default name, e.g. `polystream-s1-gateway`; keep the
/// guard until exit and `guard.shutdown().await` it last.
pub fn init(default_service: &str) -> anyhow::Result<TelemetryGuard> {
    let config = TelemetryConfig::from_env(default_service)?;
    init_with(config)
}

/// [`init`] with explicit settings (tests).
pub fn init_with(config: TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let provider = tracer_provider(&config)?;
    let tracer = provider.tracer("polystream");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = if config.test_writer {
        BoxMakeWriter::new(tracing_subscriber::fmt::TestWriter::new())
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    subscriber(tracer, filter, writer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("telemetry is already initialised: {e}"))?;
    tracing::info!(
        service = %config.service_name,
        version = env!("CARGO_PKG_VERSION"),
        otlp_endpoint = config.endpoint.as_deref().unwrap_or("(none: spans are not exported)"),
        "starting"
    );
    Ok(TelemetryGuard {
        provider: Mutex::new(Some(provider)),
    })
}

/// Logs (JSON, filtered) and spans (to OpenTelemetry) from one subscriber.
pub(crate) fn subscriber(
    tracer: opentelemetry_sdk::trace::Tracer,
    filter: EnvFilter,
    writer: BoxMakeWriter,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> {
    // The exporter's own stack (tonic, hyper, h2, reqwest) must never feed
    // spans back into the exporter.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        // busy/idle times on every span are noise in a trace view.
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            !EXPORTER_TARGETS.iter().any(|t| m.target().starts_with(t))
        }));
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(NoSpanFields)
        .event_format(JsonLog)
        .with_writer(writer);
    tracing_subscriber::registry()
        .with(filter)
        .with(CorrelationLayer)
        .with(otel)
        .with(fmt)
}

/// The full subscriber with a tracer that exports nowhere and logs dropped,
/// for unit tests that need real span contexts (`set_default` it).
#[cfg(test)]
pub(crate) fn test_subscriber() -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> {
    let provider = SdkTracerProvider::builder().build();
    subscriber(
        provider.tracer("test"),
        EnvFilter::new("info"),
        BoxMakeWriter::new(std::io::sink),
    )
}

fn tracer_provider(config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let mut resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    for (k, v) in &config.resource_attributes {
        // The service name variable wins over a `service.name` attribute.
        if k != "service.name" {
            resource = resource.with_attribute(KeyValue::new(k.clone(), v.clone()));
        }
    }
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(config.sampler.sampler())
        .with_resource(resource.build());
    if let Some(endpoint) = &config.endpoint {
        let exporter = match config.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(config.export_timeout)
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(http_traces_url(endpoint))
                .with_timeout(config.export_timeout)
                .build(),
        }
        .map_err(|e| {
            anyhow::anyhow!(
                "OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: cannot build the exporter: {e}"
            )
        })?;
        // A bounded queue: when the collector is slow or gone, spans are
        // dropped rather than held or waited for.
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(4096)
                    .with_max_export_batch_size(512)
                    .with_scheduled_delay(Duration::from_secs(1))
                    .build(),
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    Ok(builder.build())
}

const EXPORTER_TARGETS: &[&str] = &["h2", "hyper", "tonic", "tower", "reqwest", "opentelemetry"];

/// OTLP/HTTP sends traces to `<endpoint>/v1/traces` (the spec's rule for the
/// signal-independent endpoint variable).
pub fn http_traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Logs only (no export), kept for callers not yet moved to [`init`].
pub fn init_logging(service: &'static str) {
    let name = if service.starts_with("polystream-") {
        service.to_owned()
    } else {
        format!("polystream-{service}")
    };
    // A second init (tests) is harmless: keep the first subscriber.
    if let Ok(guard) = init_with(TelemetryConfig::local(&name)) {
        // Nothing is exported, so there is nothing to flush.
        std::mem::forget(guard);
    }
}

/// The correlation id a span carries, kept in its extensions for the log
/// formatter and for child spans created by the common helpers.
#[derive(Debug, Clone)]
struct CorrelationId(String);

/// Remembers each span's `polystream.correlation_id` (or
/// `messaging.message.conversation_id`) value.
struct CorrelationLayer;

struct CorrelationVisitor(Option<String>);

impl Visit for CorrelationVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if is_correlation_field(field.name()) && !value.is_empty() {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if is_correlation_field(field.name()) {
            let v = format!("{value:?}");
            let v = v.trim_matches('"');
            if !v.is_empty() {
                self.0 = Some(v.to_owned());
            }
        }
    }
}

fn is_correlation_field(name: &str) -> bool {
    matches!(
        name,
        CORRELATION_FIELD | "messaging.message.conversation_id" | "correlation_id"
    )
}

impl<S> tracing_subscriber::Layer<S> for CorrelationLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut v = CorrelationVisitor(None);
        attrs.record(&mut v);
        if let (Some(c), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().insert(CorrelationId(c));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let mut v = CorrelationVisitor(None);
        values.record(&mut v);
        if let (Some(c), Some(span)) = (v.0, ctx.span(id)) {
            span.extensions_mut().replace(CorrelationId(c));
        }
    }
}

/// The correlation id of the current span or its nearest ancestor that has one.
pub fn current_correlation_id() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<CorrelationId>().map(|c| c.0.clone()))
        })
        .flatten()
}

/// Records `correlation_id` on `span` (which must declare
/// [`CORRELATION_FIELD`], as the HTTP server span does): it becomes a span
/// attribute and appears on every later log line inside the span.
pub fn set_correlation_id(span: &tracing::Span, correlation_id: &dyn fmt::Display) {
    span.record(CORRELATION_FIELD, tracing::field::display(correlation_id));
}

/// A child of the current span made by `make`, or no span when the current
/// trace is one the sampler dropped: such a child would be built, timed and
/// thrown away on every call, the largest cost per command in S1's profile,
/// while log lines inside it still carry the enclosing span's trace and
/// correlation ids. Outside any trace `make` runs and the sampler decides as
/// for any root.
pub fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() && !sc.is_sampled() {
        tracing::Span::none()
    } else {
        make()
    }
}

/// The trace context to propagate from `span`: its own, or the current one
/// when [`child_span`] made none, so the next hop stays in the same trace
/// (and keeps its not-sampled decision).
pub fn propagated_context(span: &tracing::Span) -> Context {
    if span.is_none() {
        Context::current()
    } else {
        span.context()
    }
}

/// The trace id of the current span when it is sampled (what an exemplar
/// links to), as 32 hex digits.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    sampled_trace_id(&cx)
}

/// The trace id of `cx` when sampled.
pub fn sampled_trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

/// [`JsonLog`] reads what it needs of a span from its extensions; the fmt
/// layer's default would render every span's fields to text on creation and
/// on each `record`, for nothing, on every request.
struct NoSpanFields;

impl<'w> FormatFields<'w> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'w>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }

    fn add_fields(
        &self,
        _current: &'w mut tracing_subscriber::fmt::FormattedFields<Self>,
        _fields: &Record<'_>,
    ) -> fmt::Result {
        Ok(())
    }
}

/// One JSON object per line: timestamp, level, target, the event's fields,
/// the innermost span's name, `trace_id`, `span_id` and `correlation_id`.
struct JsonLog;

/// Keys [`JsonLog`] writes itself: an event field of the same name is left
/// out rather than written twice.
const RESERVED_KEYS: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "span",
    "trace_id",
    "span_id",
];

/// Writes a JSON object's members straight into the line, escaping as it
/// goes: no map, no intermediate strings per field.
struct JsonMembers<'a> {
    out: &'a mut String,
    has_correlation_id: bool,
}

impl JsonMembers<'_> {
    /// `,"name":` (every line starts with `timestamp`, so never first).
    fn key(&mut self, name: &str) -> bool {
        if RESERVED_KEYS.contains(&name) {
            return false;
        }
        if name == "correlation_id" {
            self.has_correlation_id = true;
        }
        self.out.push(',');
        push_json_str(self.out, name);
        self.out.push(':');
        true
    }

    fn raw(&mut self, field: &Field, value: impl fmt::Display) {
        if self.key(field.name()) {
            // Numbers and booleans: their Display form is valid JSON.
            let _ = write!(self.out, "{value}");
        }
    }

    fn text(&mut self, field: &Field, value: impl fmt::Display) {
        if self.key(field.name()) {
            self.out.push('"');
            let _ = write!(JsonEscape(self.out), "{value}");
            self.out.push('"');
        }
    }
}

impl Visit for JsonMembers<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, value);
        } else {
            self.raw(field, "null");
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format_args!("{value:?}"));
    }
}

/// A `fmt::Write` that JSON-escapes what is written through it.
struct JsonEscape<'a>(&'a mut String);

impl fmt::Write for JsonEscape<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.push_str(&s[plain..i]);
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.push_str(escaped);
            }
            plain = i + 1;
        }
        self.0.push_str(&s[plain..]);
        Ok(())
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let _ = JsonEscape(out).write_str(s);
    out.push('"');
}

impl<S, N> FormatEvent<S, N> for JsonLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push_str("\",\"target\":");
        push_json_str(&mut line, event.metadata().target());
        let mut members = JsonMembers {
            out: &mut line,
            has_correlation_id: false,
        };
        event.record(&mut members);
        let mut correlation_written = members.has_correlation_id;
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = true;
            for span in scope {
                if innermost {
                    innermost = false;
                    line.push_str(",\"span\":");
                    push_json_str(&mut line, span.name());
                }
                if !correlation_written && let Some(c) = span.extensions().get::<CorrelationId>() {
                    line.push_str(",\"correlation_id\":");
                    push_json_str(&mut line, &c.0);
                    correlation_written = true;
                }
            }
            // The OpenTelemetry layer attaches the entered span's context to
            // the thread (context activation). Asking the dispatcher instead
            // would fail here: it refuses re-entrant use while dispatching.
            if !innermost {
                let cx = Context::current();
                let span = cx.span();
                let sc = span.span_context();
                if sc.is_valid() {
                    let _ = write!(
                        line,
                        ",\"trace_id\":\"{}\",\"span_id\":\"{}\"",
                        sc.trace_id(),
                        sc.span_id()
                    );
                }
            }
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before killing a pod),
/// so a service can stop accepting work and finish what is in flight.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn defaults_export_nothing_and_sample_parent_based() {
        let mut r = Reader::new([("UNRELATED", "x")]);
        let c = TelemetryConfig::read(&mut r, "polystream-s1-gateway");
        r.finish().unwrap();
        assert_eq!(c, TelemetryConfig::local("polystream-s1-gateway"));
    }

    #[test]
    fn otel_variables_are_read() {
        let mut r = Reader::new([
            ("OTEL_SERVICE_NAME", "gw-a"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,k8s.namespace.name=a%2Cb",
            ),
        ]);
        let c = TelemetryConfig::read(&mut r, "polystream-s1-gateway");
        r.finish().unwrap();
        assert_eq!(c.service_name, "gw-a");
        assert_eq!(c.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
        assert_eq!(
            c.resource_attributes,
            vec![
                ("deployment.environment".into(), "prod".into()),
                ("k8s.namespace.name".into(), "a,b".into())
            ]
        );
        assert_eq!(
            http_traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
    }

    #[test]
    fn bad_otel_variables_are_named() {
        let mut r = Reader::new([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
        ]);
        TelemetryConfig::read(&mut r, "x");
        let text = r.finish().unwrap_err().to_string();
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER",
            "OTEL_RESOURCE_ATTRIBUTES",
        ] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
        let mut r = Reader::new([
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        TelemetryConfig::read(&mut r, "x");
        let text = r.finish().unwrap_err().to_string();
        assert!(text.contains("OTEL_TRACES_SAMPLER_ARG"), "{text}");
    }

    /// Collects log lines in memory.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        /// The full subscriber, its log lines written here.
        fn subscriber(&self) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> {
            let provider = SdkTracerProvider::builder().build();
            let lines = self.clone();
            let writer = BoxMakeWriter::new(move || lines.clone());
            subscriber(provider.tracer("test"), EnvFilter::new("info"), writer)
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn every_line_in_a_span_carries_trace_span_and_correlation_ids() {
        let lines = Lines::default();
        let (trace_id, child_span_id) =
            tracing::subscriber::with_default(lines.subscriber(), || {
                tracing::info!("outside any span");
                let request = tracing::info_span!(
                    "request",
                    polystream.correlation_id = tracing::field::Empty
                );
                let _in_request = request.enter();
                tracing::info!("before the id is known");
                set_correlation_id(&request, &"corr-1");
                let child = tracing::info_span!("store_call");
                let _in_child = child.enter();
                tracing::info!(rows = 3, "in a child span");
                tracing::info!(correlation_id = "own", "an event's own field wins");
                let cx = child.context();
                let span = cx.span();
                let sc = span.span_context();
                (sc.trace_id().to_string(), sc.span_id().to_string())
            });
        let text = lines.text();
        let logs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(logs.len(), 4, "{text}");
        assert_eq!(logs[0]["message"], "outside any span");
        assert!(logs[0].get("trace_id").is_none());
        assert_eq!(logs[1]["trace_id"], trace_id.as_str());
        assert!(logs[1].get("correlation_id").is_none(), "{}", logs[1]);
        assert_eq!(logs[2]["trace_id"], trace_id.as_str());
        assert_eq!(logs[2]["span_id"], child_span_id.as_str());
        assert_eq!(logs[2]["span"], "store_call");
        assert_eq!(logs[2]["correlation_id"], "corr-1");
        assert_eq!(logs[2]["rows"], 3);
        assert_eq!(logs[2]["level"], "INFO");
        assert_eq!(logs[3]["correlation_id"], "own");
    }

    #[test]
    fn children_of_a_dropped_trace_are_not_made_and_the_trace_still_propagates() {
        use opentelemetry_sdk::trace::Sampler;
        for (sampler, sampled) in [(Sampler::AlwaysOn, true), (Sampler::AlwaysOff, false)] {
            let provider = SdkTracerProvider::builder()
                .with_sampler(Sampler::ParentBased(Box::new(sampler)))
                .build();
            let sub = subscriber(
                provider.tracer("test"),
                EnvFilter::new("info"),
                BoxMakeWriter::new(std::io::sink),
            );
            tracing::subscriber::with_default(sub, || {
                // Outside any trace the sampler decides: the span is made.
                assert!(!child_span(|| tracing::info_span!("root")).is_none());
                let request = tracing::info_span!("request");
                let _in = request.enter();
                let child = child_span(|| tracing::info_span!("store_call"));
                assert_eq!(child.is_none(), !sampled, "sampled: {sampled}");
                let cx = propagated_context(&child);
                let sc = cx.span().span_context().clone();
                assert!(sc.is_valid(), "the trace goes on to the next hop");
                assert_eq!(sc.is_sampled(), sampled);
                assert_eq!(
                    sc.trace_id(),
                    request.context().span().span_context().trace_id()
                );
            });
        }
    }

    #[test]
    fn log_lines_are_json_whatever_the_fields_hold() {
        let lines = Lines::default();
        tracing::subscriber::with_default(lines.subscriber(), || {
            let err = std::io::Error::other("disk \"full\"");
            tracing::info!(
                level = "mine",
                ratio = f64::NAN,
                big = u64::MAX,
                neg = -3i64,
                ok = true,
                error = &err as &(dyn std::error::Error + 'static),
                path = "C:\\tmp\n\u{1}é",
                "quote \" and {}",
                "tab\t"
            );
        });
        let text = lines.text();
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["message"], "quote \" and tab\t", "{text}");
        assert_eq!(line["level"], "INFO", "an event field never replaces it");
        assert!(line["ratio"].is_null());
        assert_eq!(line["big"], u64::MAX);
        assert_eq!(line["neg"], -3);
        assert_eq!(line["ok"], true);
        assert_eq!(line["error"], "disk \"full\"");
        assert_eq!(line["path"], "C:\\tmp\n\u{1}é");
        assert_eq!(text.lines().count(), 1);
    }
}
