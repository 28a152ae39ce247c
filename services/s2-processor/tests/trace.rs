//! One command's trace in a real OTLP receiver (Jaeger): S2's consumer span
//! is a child of the sender's producer span (the `traceparent` header), and
//! its store calls and the outcome's producer span are its children, each
//! with the command's correlation id. Its own test binary: the tracer
//! provider is process-wide and here exports to Jaeger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt;
use polystream_common::events::{Command, UserRegistered};
use polystream_common::telemetry::{TelemetryConfig, init_with};
use serde_json::Value;
use support::{Env, unique_id};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

#[derive(Debug)]
struct Span {
    id: String,
    parent: Option<String>,
    operation: String,
    kind: String,
    tags: BTreeMap<String, String>,
}

fn spans_of(answer: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for trace in answer["data"].as_array().into_iter().flatten() {
        for s in trace["spans"].as_array().into_iter().flatten() {
            let tags: BTreeMap<String, String> = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let v = match &t["value"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (t["key"].as_str().unwrap().to_owned(), v)
                })
                .collect();
            out.push(Span {
                id: s["spanID"].as_str().unwrap().to_owned(),
                parent: s["references"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["refType"] == "CHILD_OF")
                    .and_then(|r| r["spanID"].as_str())
                    .map(str::to_owned),
                operation: s["operationName"].as_str().unwrap().to_owned(),
                kind: tags.get("span.kind").cloned().unwrap_or_default(),
                tags,
            });
        }
    }
    out
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_continues_its_senders_trace_with_store_and_send_spans() {
    let endpoint = env_or("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
    let query = env_or("JAEGER_QUERY_URL", "http://127.0.0.1:16686");
    let http = reqwest::Client::new();
    if let Err(e) = http
        .get(format!("{query}/api/services"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        panic!(
            "the OTLP trace receiver (Jaeger) is not reachable at {query}: {e}\nIt must be \
             running for this test; start it with `./dev up jaeger`."
        );
    }
    let service = format!("polystream-s2-trace-test-{}", Uuid::now_v7().simple());
    let mut config = TelemetryConfig::local(&service);
    config.endpoint = Some(endpoint);
    config.test_writer = true;
    let telemetry = init_with(config).unwrap();

    let mut t = Env::new().await;
    let p = t.start().await;
    let uid = unique_id();
    let cmd = Command::UserRegistered(UserRegistered {
        user_id: uid,
        name: format!("User {uid}"),
        email: format!("u{uid}@example.com"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        cpf: None,
        admin: false,
    });
    let env = Env::envelope(&cmd);
    let corr = env.correlationid.to_string();
    // The sender, as S1 does it: the common publish inside a request span is
    // the PRODUCER span whose context travels in `traceparent`.
    let sender = tracing::info_span!("test_sender");
    let trace_id = sender
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();
    polystream_common::kafka::publish(
        &t.producer,
        &t.config.topics.user_events,
        &cmd.subject(),
        &env,
        &[],
    )
    .instrument(sender.clone())
    .await
    .unwrap();
    drop(sender);
    t.trace_id = trace_id.clone();
    let out = t.outcome(&env).await;
    assert_eq!(out.event_type, "polystream.command.completed.v1");
    p.stop().await.unwrap();
    let started = Instant::now();
    telemetry.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "flushing took {:?}",
        started.elapsed()
    );

    let user_topic = t.config.topics.user_events.clone();
    let resp_topic = t.config.topics.response_events.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let answer: Value = http
            .get(format!("{query}/api/traces/{trace_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        let spans = spans_of(&answer);
        let done = spans
            .iter()
            .any(|s| s.operation == format!("send {resp_topic}"));
        if done {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} incomplete in Jaeger after 30s: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let find = |op: &str| {
        spans
            .iter()
            .find(|s| s.operation == op)
            .unwrap_or_else(|| panic!("no span {op:?} in {spans:#?}"))
    };
    let send = find(&format!("send {user_topic}"));
    assert_eq!(send.kind, "producer");
    let process = find(&format!("process {user_topic}"));
    assert_eq!(process.kind, "consumer");
    assert_eq!(
        process.parent.as_deref(),
        Some(send.id.as_str()),
        "S2 continues the sender's trace: {spans:#?}"
    );
    for key in [
        "polystream.correlation_id",
        "messaging.message.conversation_id",
    ] {
        assert_eq!(process.tags.get(key), Some(&corr), "{key}: {process:#?}");
    }
    assert_eq!(
        process.tags.get("messaging.consumer.group.name"),
        Some(&t.config.group_id)
    );
    // Every store call, and the outcome's send, under the process span.
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent.as_deref() == Some(process.id.as_str()))
        .collect();
    for op in [
        "select_processed_event postgres",
        "begin postgres",
        "insert_user postgres",
        "insert_processed_event postgres",
        "commit postgres",
        "record_status redis",
    ] {
        let s = children
            .iter()
            .find(|s| s.operation == op)
            .unwrap_or_else(|| panic!("no store span {op:?} under the process span: {spans:#?}"));
        assert_eq!(s.kind, "client", "{s:#?}");
        assert!(s.tags.contains_key("db.system.name"), "{s:#?}");
        assert_eq!(
            s.tags.get("polystream.correlation_id"),
            Some(&corr),
            "{s:#?}"
        );
    }
    let outcome_send = children
        .iter()
        .find(|s| s.operation == format!("send {resp_topic}"))
        .unwrap_or_else(|| panic!("no outcome send under the process span: {spans:#?}"));
    assert_eq!(outcome_send.kind, "producer");
    assert_eq!(
        outcome_send.tags.get("messaging.message.conversation_id"),
        Some(&corr)
    );
    t.cleanup().await;
}
