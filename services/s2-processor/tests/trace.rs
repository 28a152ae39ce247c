//! One command's trace in a real OTLP receiver (Jaeger): S2's consumer span
//! is a child of the sender's producer span (the `traceparent` header), and
//! its store calls and the outcome's producer span are its children, each
//! with the command's correlation id. Its own test binary: the tracer
//! provider is process-wide and here exports to Jaeger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use polystream_common::events::{Command, UserRegistered};
use polystream_smoke_tests::jaeger::{Jaeger, Span, children, consumer_of_send, shutdown_within};
use support::{Env, unique_id};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_continues_its_senders_trace_with_store_and_send_spans() {
    let jaeger = Jaeger::reachable().await;
    let service = format!("polystream-s2-trace-test-{}", Uuid::now_v7().simple());
    let telemetry = jaeger.export(&service);

    let mut t = Env::new().await;
    let p = t.start().await;
    let uid = unique_id();
    let cmd = Command::UserRegistered(UserRegistered {
        user_id: uid,
        name: format!("User {uid}"),
        email: format!("u{uid}@example.com"),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into()),
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
    shutdown_within(telemetry, Duration::from_secs(15)).await;

    let user_topic = t.config.topics.user_events.clone();
    let resp_topic = t.config.topics.response_events.clone();
    let spans = jaeger
        .trace(
            &trace_id,
            |spans| {
                spans
                    .iter()
                    .any(|s| s.operation == format!("send {resp_topic}"))
            },
            Duration::from_secs(30),
        )
        .await;
    // S2 continues the sender's trace.
    let process = consumer_of_send(&spans, &user_topic, &corr);
    assert_eq!(
        process.tags.get("messaging.consumer.group.name"),
        Some(&t.config.group_id)
    );
    // Every store call, and the outcome's send, under the process span.
    let children: Vec<&Span> = children(&spans, process);
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
