//! Traces reach a real OTLP receiver (Jaeger): a write is one trace with the
//! HTTP SERVER span, its store spans and the Kafka PRODUCER span, each with
//! the request's correlation id; a request whose caller did not sample its
//! trace makes no spans below the server span, yet the trace goes on to
//! Kafka. Its own binary: the process-wide telemetry here exports to Jaeger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "api/harness.rs"]
mod harness;

use std::time::Duration;

use polystream_smoke_tests::jaeger::{CORRELATION_KEY, Jaeger, find, shutdown_within};
use polystream_smoke_tests::unique;
use rdkafka::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_one_trace_with_server_store_and_producer_spans() {
    let jaeger = Jaeger::reachable().await;
    let service = unique("polystream-s1-test");
    let telemetry = jaeger.export(&service);

    let h = harness::start(&[]).await;
    let (uid, token) = h.user(false).await;
    let (body, _) = h.update_preferences(uid, Some(&token)).await;
    let cid = body["correlation_id"].as_str().unwrap().to_owned();

    // The caller decided not to sample this trace (flags 00).
    let dropped_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = h
        .http
        .put(h.url(&format!("/v1/users/{uid}/preferences")))
        .bearer_auth(&token)
        .header(
            "traceparent",
            format!("00-{dropped_trace}-00f067aa0ba902b7-00"),
        )
        .json(&serde_json::json!({"language": "en", "notifications": false, "theme": "light"}))
        .send()
        .await
        .unwrap();
    let (unsampled, _) = h
        .expect_command(res, "polystream.preferences.updated.v1")
        .await;
    shutdown_within(telemetry, Duration::from_secs(15)).await;

    let spans = jaeger
        .find_trace(
            &[
                ("service", service.as_str()),
                ("limit", "50"),
                ("lookback", "1h"),
            ],
            |t| {
                t.iter()
                    .any(|s| s.tag(CORRELATION_KEY) == Some(&cid) && s.kind == "producer")
            },
            Duration::from_secs(30),
        )
        .await;

    let server = find(&spans, "PUT /v1/users/{id}/preferences");
    assert_eq!(server.kind, "server");
    assert_eq!(server.tag("http.route"), Some("/v1/users/{id}/preferences"));
    assert_eq!(server.tag("http.response.status_code"), Some("202"));
    assert_eq!(server.tag(CORRELATION_KEY), Some(cid.as_str()));

    let producer = spans.iter().find(|s| s.kind == "producer").unwrap();
    assert_eq!(
        producer.parent.as_deref(),
        Some(server.id.as_str()),
        "{producer:#?}"
    );
    assert_eq!(
        producer.operation,
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
        assert_eq!(producer.tag(k), Some(v), "{k} on {producer:#?}");
    }

    // Store calls are CLIENT children of the request: the session lookup
    // (before the command existed) and recording `pending` (after, so it
    // carries the correlation id).
    let store = |op: &str| find(&spans, &format!("{op} redis"));
    for op in ["get_session", "mark_pending"] {
        let s = store(op);
        assert_eq!(s.parent.as_deref(), Some(server.id.as_str()), "{s:#?}");
        assert_eq!(s.kind, "client");
        assert_eq!(s.tag("db.system.name"), Some("redis"));
        assert_eq!(s.tag("db.operation.name"), Some(op));
    }
    assert_eq!(
        store("mark_pending").tag(CORRELATION_KEY),
        Some(cid.as_str())
    );

    // The record on Kafka carries the producer span's context for S2 to continue.
    let consumer = polystream_common::kafka::topic_reader(
        &h.config.stores.kafka_bootstrap_servers,
        &h.config.topics.user_events,
    )
    .await
    .unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the command is on Kafka")
        .unwrap();
    let traceparent = polystream_common::kafka::header(record.headers(), "traceparent").unwrap();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", producer.trace_id, producer.id)
    );

    // Not sampled: the next hop continues the caller's trace, still not
    // sampled, and nothing of it was exported.
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the unsampled command is on Kafka")
        .unwrap();
    assert_eq!(
        polystream_common::kafka::header(
            record.headers(),
            polystream_common::events::headers::CE_CORRELATION_ID
        ),
        unsampled["correlation_id"].as_str()
    );
    let traceparent = polystream_common::kafka::header(record.headers(), "traceparent").unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{dropped_trace}-")) && traceparent.ends_with("-00"),
        "{traceparent}"
    );
    assert_eq!(jaeger.spans(dropped_trace).await.unwrap(), Vec::new());
}
