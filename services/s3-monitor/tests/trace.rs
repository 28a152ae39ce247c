//! A request's trace in a real OTLP receiver (Jaeger): S3's consumer spans
//! continue it twice — under the command's producer span (S1's send) and
//! under the outcome's (S2's send) — and the OpenSearch bulk request that
//! made them durable is a store span child of one and linked to the other.
//! Its own test binary: the tracer provider is process-wide and here exports
//! to Jaeger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt;
use polystream_common::config::StoreEndpoints;
use polystream_common::events::Envelope;
use polystream_common::kafka::{DEFAULT_DELIVERY_TIMEOUT, producer, publish};
use polystream_s3_monitor::{Config, Monitor};
use polystream_smoke_tests::jaeger::{Jaeger, Span, consumer_of_send};
use polystream_smoke_tests::{env_or, unique};
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_continues_the_request_trace_under_both_sends_with_a_linked_bulk_span() {
    let jaeger = Jaeger::reachable().await;
    let http = jaeger.http.clone();
    let opensearch = support::opensearch(&http).await;
    let telemetry = jaeger.export(&unique("polystream-s3-trace-test"));

    let brokers = env_or("KAFKA_BOOTSTRAP_SERVERS", StoreEndpoints::LOCAL_KAFKA);
    let id = unique("s3-trace");
    let topics = support::unique_topics(&brokers, &id, (1, 1)).await;
    let spool_dir = std::env::temp_dir().join(format!("{id}-spool"));
    let monitor = Monitor::start(Config {
        spool_dir: spool_dir.clone(),
        // Long enough for both records to share one bulk request.
        bulk_max_wait: Duration::from_millis(1500),
        ..support::config(&brokers, &opensearch, topics.clone(), &id, 1)
    })
    .await
    .unwrap();

    // S1's send of the command, then S2's send of the outcome, in one trace.
    let producer = producer(&brokers, "s3-trace-test", DEFAULT_DELIVERY_TIMEOUT).unwrap();
    let corr = Uuid::now_v7();
    let command = Envelope::new(
        "/polystream/s1-gateway",
        "polystream.title.rated.v1",
        Some("user/9".into()),
        corr,
        json!({"user_id": 9, "title_id": 3, "stars": 5}),
    );
    let outcome = Envelope::new(
        "/polystream/s2-processor",
        "polystream.command.completed.v1",
        Some("user/9".into()),
        corr,
        json!({"command_id": command.id, "command_type": command.event_type, "result": {}}),
    );
    let request = tracing::info_span!("test_request");
    let trace_id = request
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();
    let processor = tracing::info_span!(parent: &request, "test_processor");
    publish(&producer, &topics.user_events, "user/9", &command, &[])
        .instrument(request.clone())
        .await
        .unwrap();
    publish(&producer, &topics.response_events, "user/9", &outcome, &[])
        .instrument(processor.clone())
        .await
        .unwrap();
    drop((processor, request));

    let trail = format!("http://{}/v1/audit/{corr}", monitor.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body: Value = match http.get(&trail).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        if body["events"].as_array().is_some_and(|e| e.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "both events indexed within 60s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    monitor.stop().await.unwrap();
    telemetry.shutdown().await;

    let spans = jaeger
        .trace(
            &trace_id,
            |spans| {
                spans.iter().filter(|s| s.kind == "consumer").count() == 2
                    && spans.iter().any(|s| s.operation == "bulk opensearch")
            },
            Duration::from_secs(30),
        )
        .await;
    let corr = corr.to_string();
    let mut consumers = Vec::new();
    for topic in [&topics.user_events, &topics.response_events] {
        // S3's span continues the send on the topic.
        let process = consumer_of_send(&spans, topic, &corr);
        consumers.push(process.id.clone());
    }
    // Every consumer span is the parent of a bulk span or linked from one.
    let bulks: Vec<&Span> = spans
        .iter()
        .filter(|s| s.operation == "bulk opensearch")
        .collect();
    for b in &bulks {
        assert_eq!(b.kind, "client", "{b:#?}");
        assert_eq!(
            b.tags.get("db.system.name").map(String::as_str),
            Some("opensearch")
        );
        assert!(
            b.parent.as_ref().is_some_and(|p| consumers.contains(p)),
            "a bulk span is a child of an S3 consumer span: {spans:#?}"
        );
    }
    for c in &consumers {
        assert!(
            bulks
                .iter()
                .any(|b| b.parent.as_ref() == Some(c) || b.links.contains(c)),
            "consumer span {c} has its bulk request (child or link): {spans:#?}"
        );
    }
    let _ = http.delete(format!("{opensearch}/{id}-*")).send().await;
    let _ = http
        .delete(format!("{opensearch}/_index_template/{id}"))
        .send()
        .await;
    let _ = std::fs::remove_dir_all(&spool_dir);
}
