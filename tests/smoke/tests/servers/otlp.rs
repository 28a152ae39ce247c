use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use polystream_smoke_tests::jaeger::{Jaeger, find};
use polystream_smoke_tests::{unique, unreachable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_span_reaches_the_trace_receiver() {
    let jaeger = Jaeger::reachable().await;
    let endpoint = jaeger.otlp.clone();

    // The OpenTelemetry SDK on its own (not the services' telemetry set-up):
    // this proves the receiver, not our configuration of it.
    let service = unique("polystream-smoke");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("polystream-smoke");
    let trace_id = tracer.in_span("smoke-request", |cx| {
        cx.span()
            .set_attribute(KeyValue::new("correlation_id", "corr-smoke"));
        let mut child = tracer.start("smoke-store-call");
        child.set_attribute(KeyValue::new("db.system.name", "postgresql"));
        child.end();
        cx.span().span_context().trace_id()
    });
    provider.force_flush().unwrap_or_else(|e| {
        unreachable("the OTLP trace receiver (Jaeger)", "jaeger", &endpoint, e)
    });
    provider.shutdown().unwrap();

    let spans = jaeger
        .trace(
            &trace_id.to_string(),
            |s| s.len() == 2,
            Duration::from_secs(30),
        )
        .await;
    let root = find(&spans, "smoke-request");
    assert_eq!(root.tag("correlation_id"), Some("corr-smoke"), "{root:#?}");
}
