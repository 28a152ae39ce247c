use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use polystream_smoke_tests::{env_or, unique, unreachable};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_span_reaches_the_trace_receiver() {
    let endpoint = env_or("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
    let query = env_or("JAEGER_QUERY_URL", "http://127.0.0.1:16686");
    let http = reqwest::Client::new();
    if let Err(e) = http
        .get(format!("{query}/api/services"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        unreachable("the OTLP trace receiver (Jaeger)", "jaeger", &query, e);
    }

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

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = http
            .get(format!("{query}/api/traces/{trace_id}"))
            .send()
            .await
            .unwrap();
        if res.status().is_success() {
            let body: Value = res.json().await.unwrap();
            let spans = body["data"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if spans.len() == 2 {
                let root = spans
                    .iter()
                    .find(|s| s["operationName"] == "smoke-request")
                    .expect("root span stored");
                let tags = root["tags"].as_array().unwrap();
                assert!(
                    tags.iter()
                        .any(|t| t["key"] == "correlation_id" && t["value"] == "corr-smoke"),
                    "{root}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} not found in Jaeger within 30s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
