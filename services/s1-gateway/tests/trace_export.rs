//! Traces reach a real OTLP receiver (Jaeger): a write is one trace with the
//! HTTP SERVER span, its store spans and the Kafka PRODUCER span, each with
//! the request's correlation id. Its own binary: the process-wide telemetry
//! here exports to Jaeger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "api/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use polystream_common::telemetry::{TelemetryConfig, init_with};
use polystream_smoke_tests::{env_or, unique, unreachable};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use serde_json::{Value, json};

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn parent(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_one_trace_with_server_store_and_producer_spans() {
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
    let service = unique("polystream-s1-test");
    let mut config = TelemetryConfig::local(&service);
    config.endpoint = Some(endpoint);
    config.test_writer = true;
    let telemetry = init_with(config).unwrap();

    let h = harness::start(&[]).await;
    let (uid, token) = h.user(false).await;
    let res = h
        .put(
            &format!("/v1/users/{uid}/preferences"),
            json!({"language": "pt-BR", "notifications": true, "theme": "dark"}),
            Some(&token),
        )
        .await;
    let (body, _) = h
        .expect_command(res, "polystream.preferences.updated.v1")
        .await;
    let cid = body["correlation_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    telemetry.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "flushing took {:?}",
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let res: Value = http
            .get(format!(
                "{query}/api/traces?service={service}&limit=50&lookback=1h"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = res["data"].as_array().into_iter().flatten().find(|t| {
            t["spans"].as_array().into_iter().flatten().any(|s| {
                tag(s, "polystream.correlation_id").and_then(Value::as_str) == Some(&cid)
                    && tag(s, "span.kind").and_then(Value::as_str) == Some("producer")
            })
        });
        if let Some(t) = found {
            break t["spans"].as_array().unwrap().clone();
        }
        assert!(
            Instant::now() < deadline,
            "no trace of service {service} with correlation id {cid} in Jaeger within 30s: {res}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let server = spans
        .iter()
        .find(|s| s["operationName"] == "PUT /v1/users/{id}/preferences")
        .unwrap_or_else(|| panic!("no server span in {spans:#?}"));
    assert_eq!(tag(server, "span.kind").unwrap(), "server");
    assert_eq!(
        tag(server, "http.route").unwrap(),
        "/v1/users/{id}/preferences"
    );
    assert_eq!(tag(server, "http.response.status_code").unwrap(), 202);
    assert_eq!(
        tag(server, "polystream.correlation_id").unwrap(),
        cid.as_str()
    );
    let server_id = server["spanID"].as_str().unwrap();

    let producer = spans
        .iter()
        .find(|s| tag(s, "span.kind").and_then(Value::as_str) == Some("producer"))
        .unwrap();
    assert_eq!(parent(producer), Some(server_id), "{producer:#}");
    assert_eq!(
        producer["operationName"],
        format!("send {}", h.config.topics.user_events)
    );
    for (k, v) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.name", "send"),
        (
            "messaging.destination.name",
            h.config.topics.user_events.as_str(),
        ),
        ("messaging.message.conversation_id", cid.as_str()),
        ("polystream.correlation_id", cid.as_str()),
        ("messaging.kafka.message.key", &format!("user/{uid}")),
    ] {
        assert_eq!(
            tag(producer, k).and_then(Value::as_str),
            Some(v),
            "{k} on {producer:#}"
        );
    }

    // Store calls are CLIENT children of the request: the session lookup
    // (before the command existed) and recording `pending` (after, so it
    // carries the correlation id).
    let store = |op: &str| {
        spans
            .iter()
            .find(|s| s["operationName"] == format!("{op} redis"))
            .unwrap_or_else(|| panic!("no {op} span in {spans:#?}"))
    };
    for op in ["get_session", "mark_pending"] {
        let s = store(op);
        assert_eq!(parent(s), Some(server_id), "{s:#}");
        assert_eq!(tag(s, "span.kind").unwrap(), "client");
        assert_eq!(tag(s, "db.system.name").unwrap(), "redis");
        assert_eq!(tag(s, "db.operation.name").unwrap(), op);
    }
    assert_eq!(
        tag(store("mark_pending"), "polystream.correlation_id").unwrap(),
        cid.as_str()
    );

    // The record on Kafka carries the producer span's context for S2 to continue.
    let consumer = polystream_common::kafka::consumer(
        &h.config.stores.kafka_bootstrap_servers,
        &unique("s1-trace-test"),
        "s1-trace-test",
    )
    .unwrap();
    consumer
        .subscribe(&[h.config.topics.user_events.as_str()])
        .unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the command is on Kafka")
        .unwrap();
    let traceparent = polystream_common::kafka::header(record.headers(), "traceparent").unwrap();
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            producer["traceID"].as_str().unwrap(),
            producer["spanID"].as_str().unwrap()
        )
    );
}
