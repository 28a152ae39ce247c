//! S3 against the real local Kafka and OpenSearch (`./dev up`). Each test has
//! its own topics, consumer group, index prefix and spool directory, and
//! starts S3 in-process on an ephemeral port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use polystream_common::config::StoreEndpoints;
use polystream_common::events::Envelope;
use polystream_common::kafka::{DEFAULT_DELIVERY_TIMEOUT, producer, publish};
use polystream_s3_monitor::{Config, Monitor};
use polystream_smoke_tests::metrics_text::{OPENMETRICS_ACCEPT, exemplar_lines, sample};
use polystream_smoke_tests::{env_or, unique, unreachable};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{Value, json};
use uuid::Uuid;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

struct Fixture {
    config: Config,
    /// The real OpenSearch, whatever `config` points S3 at.
    opensearch: String,
    producer: FutureProducer,
    http: reqwest::Client,
}

impl Fixture {
    /// Unique topics (created), group, prefix and spool; fails naming the
    /// server when Kafka or OpenSearch is not there.
    async fn new() -> Self {
        // The tracing layers the binary installs (without span export), so
        // spans continue the producers' traces as in production.
        support::init_telemetry("polystream-s3-monitor-test");
        let brokers = env_or("KAFKA_BOOTSTRAP_SERVERS", StoreEndpoints::LOCAL_KAFKA);
        let http = reqwest::Client::new();
        let opensearch = support::opensearch(&http).await;
        let id = unique("s3t");
        let producer = producer(&brokers, "s3-test", DEFAULT_DELIVERY_TIMEOUT).unwrap();
        if let Err(e) = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
        {
            unreachable("Apache Kafka", "kafka", &brokers, e);
        }
        let topics = support::unique_topics(&brokers, &id, (3, 3)).await;
        // One partition: the dead letter's document id names its partition.
        let config = support::config(&brokers, &opensearch, topics, &id, 1);
        Self {
            config,
            opensearch,
            producer,
            http,
        }
    }

    async fn send(&self, topic: &str, env: &Envelope<Value>, extra: &[(&str, &str)]) {
        let key = env.subject.clone().unwrap_or_default();
        publish(&self.producer, topic, &key, env, extra)
            .await
            .unwrap();
    }

    async fn send_raw(&self, topic: &str, key: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(body).headers(h),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// `/metrics` as OpenMetrics text.
    async fn metrics(&self, m: &Monitor) -> String {
        let url = match m.metrics_addr {
            Some(a) => format!("http://{a}/metrics"),
            None => self.url(m, "/metrics"),
        };
        let r = self
            .http
            .get(url)
            .header("accept", OPENMETRICS_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        r.text().await.unwrap()
    }

    fn url(&self, m: &Monitor, path: &str) -> String {
        format!("http://{}{path}", m.addr)
    }

    async fn get(&self, m: &Monitor, path: &str) -> (u16, String, Value) {
        let r = self.http.get(self.url(m, path)).send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        (
            status,
            ct,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every stored document of this test's indices, straight from OpenSearch.
    async fn stored(&self) -> Vec<Value> {
        let os = &self.opensearch;
        let prefix = &self.config.index_prefix;
        self.http
            .post(format!("{os}/{prefix}-*/_refresh"))
            .send()
            .await
            .unwrap();
        let r: Value = self
            .http
            .post(format!("{os}/{prefix}-*/_search"))
            .json(&json!({"size": 1000, "query": {"match_all": {}}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["hits"]["hits"].as_array().cloned().unwrap_or_default()
    }

    async fn cleanup(self) {
        let os = &self.opensearch;
        let prefix = &self.config.index_prefix;
        let _ = self.http.delete(format!("{os}/{prefix}-*")).send().await;
        let _ = self
            .http
            .delete(format!("{os}/_index_template/{prefix}"))
            .send()
            .await;
        let _ = std::fs::remove_dir_all(&self.config.spool_dir);
        self.producer.flush(Duration::from_secs(5)).unwrap();
    }
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn command(
    ty: &str,
    subject: &str,
    corr: Uuid,
    time: DateTime<Utc>,
    data: Value,
) -> Envelope<Value> {
    let mut e = Envelope::new(
        "/polystream/s1-gateway",
        ty,
        Some(subject.into()),
        corr,
        data,
    );
    e.time = time;
    e
}

fn outcome(
    cmd: &Envelope<Value>,
    time: DateTime<Utc>,
    failed: Option<(&str, &str)>,
) -> Envelope<Value> {
    let (ty, data) = match failed {
        None => (
            "polystream.command.completed.v1",
            json!({"command_id": cmd.id, "command_type": cmd.event_type, "result": {"token": "secret-token"}}),
        ),
        Some((code, reason)) => (
            "polystream.command.failed.v1",
            json!({"command_id": cmd.id, "command_type": cmd.event_type, "code": code, "reason": reason}),
        ),
    };
    let mut e = Envelope::new(
        "/polystream/s2-processor",
        ty,
        cmd.subject.clone(),
        cmd.correlationid,
        data,
    );
    e.time = time;
    e
}

use support::eventually;

fn spooled_docs(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("segment-")
                && p.extension().is_some_and(|e| e == "jsonl")
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

fn unused_local_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_the_three_topics_are_indexed_once_without_secrets_and_trailed_in_order() {
    let fx = Fixture::new().await;
    let t = fx.config.topics.clone();
    let corr = Uuid::now_v7();
    let t0 = Utc::now() - chrono::Duration::seconds(5);
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    let cpf = "52998224725";
    let reg = command(
        "polystream.user.registered.v1",
        "user/4242",
        corr,
        t0,
        json!({"user_id": 4242, "name": "Ana", "email": "ana@example.com", "password_hash": hash, "cpf": cpf, "admin": false}),
    );
    fx.send(&t.user_events, &reg, &[("traceparent", TRACEPARENT)])
        .await;
    // Redelivery: the very same event a second time.
    fx.send(&t.user_events, &reg, &[("traceparent", TRACEPARENT)])
        .await;
    let done = outcome(&reg, t0 + chrono::Duration::milliseconds(1500), None);
    fx.send(&t.response_events, &done, &[]).await;
    let corr_s = corr.to_string();
    fx.send_raw(
        &t.dead_letter,
        "user/4242",
        br#"{"not": "an envelope", "password": "hunter2"}"#,
        &[
            ("dlq_reason", "not a JSON CloudEvents envelope"),
            ("ce_correlationid", &corr_s),
            ("traceparent", TRACEPARENT),
        ],
    )
    .await;

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    let trail = eventually(60, "the three events of the flow in the trail", || async {
        let (status, _, body) = fx.get(&m, &format!("/v1/audit/{corr}")).await;
        (status == 200 && body["events"].as_array().unwrap().len() >= 3).then_some(body)
    })
    .await;
    let events = trail["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{trail:#}");
    // Ordered by time: the command, its outcome, then the dead letter (Kafka time, now).
    assert_eq!(events[0]["id"], reg.id.to_string());
    assert_eq!(events[0]["type"], "polystream.user.registered.v1");
    assert_eq!(events[0]["role"], "command");
    assert_eq!(events[0]["user_id"], "4242");
    assert_eq!(events[0]["source"], "/polystream/s1-gateway");
    assert_eq!(events[0]["topic"], t.user_events.as_str());
    assert_eq!(events[0]["headers"]["traceparent"], TRACEPARENT);
    assert_eq!(events[0]["payload"]["email"], "ana@example.com");
    assert_eq!(
        events[0]["redacted"],
        json!(["data.cpf", "data.password_hash"])
    );
    assert_eq!(
        events[0]["index"],
        format!("{}-{}", fx.config.index_prefix, t0.format("%Y.%m.%d"))
    );
    assert_eq!(events[1]["id"], done.id.to_string());
    assert_eq!(events[1]["outcome"]["status"], "completed");
    assert_eq!(events[1]["outcome"]["command_id"], reg.id.to_string());
    assert!(events[1]["payload"]["result"].get("token").is_none());
    assert_eq!(events[2]["kind"], "raw");
    assert_eq!(events[2]["role"], "dead_letter");
    assert_eq!(
        events[2]["headers"]["dlq_reason"],
        "not a JSON CloudEvents envelope"
    );
    assert_eq!(events[2]["outcome"]["status"], "dead_lettered");
    assert_eq!(events[2]["id"], format!("{}-0-0", t.dead_letter));

    // Straight from OpenSearch: one document per event, no secret anywhere.
    let stored = fx.stored().await;
    assert_eq!(stored.len(), 3, "{stored:#?}");
    let text = serde_json::to_string(&stored).unwrap();
    for secret in [
        hash,
        cpf,
        "hunter2",
        "secret-token",
        "\"password_hash\"",
        "\"cpf\"",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} reached OpenSearch: {text}"
        );
    }

    // The flow was paired, by the outcome (1.5 s) or by the dead letter,
    // whichever of the two topics was read first.
    let (_, _, flows) = fx.get(&m, "/v1/flows/unanswered").await;
    assert_eq!(flows["stats"]["completed"], 1, "{flows}");
    assert!(
        flows["stats"]["latency_ms_max"].as_i64().unwrap() >= 1500,
        "{flows}"
    );
    assert_eq!(flows["unanswered"], json!([]));

    // Unknown flows are a 404 problem; the service endpoints answer.
    let (status, ct, body) = fx.get(&m, &format!("/v1/audit/{}", Uuid::now_v7())).await;
    assert_eq!(
        (status, ct.as_str()),
        (404, "application/problem+json"),
        "{body}"
    );
    assert_eq!(fx.get(&m, "/health").await.0, 200);
    let (status, _, ready) = fx.get(&m, "/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["opensearch"]["available"], true);
    // The lag gauge comes with the first progress sample from the broker (every 5 s).
    let group = fx.config.group_id.clone();
    let metrics = eventually(30, "the consumer lag gauge", || async {
        let text = fx.metrics(&m).await;
        sample(
            &text,
            "polystream_kafka_consumer_lag",
            &[("messaging_consumer_group_name", group.as_str())],
        )
        .is_some()
        .then_some(text)
    })
    .await;
    for (topic, n) in [
        (&t.user_events, 2.0),
        (&t.response_events, 1.0),
        (&t.dead_letter, 1.0),
    ] {
        assert_eq!(
            sample(
                &metrics,
                "messaging_client_consumed_messages_total",
                &[
                    ("messaging_destination_name", topic.as_str()),
                    ("messaging_consumer_group_name", group.as_str()),
                ]
            ),
            Some(n),
            "{topic}: {metrics}"
        );
    }
    assert!(
        sample(
            &metrics,
            "polystream_store_operation_duration_seconds_count",
            &[
                ("store", "opensearch"),
                ("operation", "bulk"),
                ("outcome", "ok")
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // The audit API: server latency by route template, and its searches as store calls.
    assert!(
        sample(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[
                ("http_request_method", "GET"),
                ("http_route", "/v1/audit/{correlation_id}"),
                ("http_response_status_code", "200")
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("http_route=\"/ready\""),
        "probes are not requests: {metrics}"
    );
    assert!(
        sample(
            &metrics,
            "polystream_store_operation_duration_seconds_count",
            &[("store", "opensearch"), ("operation", "search")]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let user = [("messaging_destination_name", t.user_events.as_str())];
    let resp = [("messaging_destination_name", t.response_events.as_str())];
    let dlq = [("messaging_destination_name", t.dead_letter.as_str())];
    // Both deliveries of the command were indexed (the second overwrote the first).
    assert_eq!(
        sample(&metrics, "polystream_audit_indexed_events_total", &user),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "polystream_audit_indexed_events_total", &resp),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "polystream_audit_indexed_events_total", &dlq),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "polystream_audit_spooled_events_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "polystream_audit_spool_segments", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "polystream_flows_unanswered", &[]),
        Some(0.0)
    );
    let indexed_commands = [
        ("messaging_destination_name", t.user_events.as_str()),
        ("event_type", "polystream.user.registered.v1"),
        ("outcome", "indexed"),
    ];
    assert_eq!(
        sample(
            &metrics,
            "messaging_process_duration_seconds_count",
            &indexed_commands
        ),
        Some(2.0),
        "{metrics}"
    );
    // The raw dead letter has no known type.
    assert_eq!(
        sample(
            &metrics,
            "messaging_process_duration_seconds_count",
            &[
                ("messaging_destination_name", t.dead_letter.as_str()),
                ("event_type", "unknown"),
                ("outcome", "indexed")
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        exemplar_lines(&metrics, "messaging_process_duration_seconds_bucket")
            .filter(|l| l.contains(&format!("\"{}\"", t.user_events)))
            .any(|l| l.contains("trace_id=\"0af7651916cd43dd8448eb211c80319c\"")),
        "an exemplar carries the command's trace id: {metrics}"
    );
    // One flow, paired by its outcome or its dead letter (whichever topic was read first).
    let flows: f64 = ["completed", "failed"]
        .iter()
        .filter_map(|o| {
            sample(
                &metrics,
                "polystream_flow_duration_seconds_count",
                &[
                    ("event_type", "polystream.user.registered.v1"),
                    ("outcome", o),
                ],
            )
        })
        .sum();
    assert_eq!(flows, 1.0, "{metrics}");
    assert!(
        exemplar_lines(&metrics, "polystream_flow_duration_seconds_bucket")
            .any(|l| l.contains("trace_id=\"0af7651916cd43dd8448eb211c80319c\"")),
        "the flow's exemplar is the request's trace: {metrics}"
    );

    m.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_by_type_user_and_time_and_names_bad_parameters() {
    let fx = Fixture::new().await;
    let t = fx.config.topics.clone();
    let rated = "polystream.title.rated.v1";
    let prefs = "polystream.preferences.updated.v1";
    let sent = [
        command(
            rated,
            "user/1",
            Uuid::now_v7(),
            at(2026, 3, 1, 10, 0, 0),
            json!({"user_id": 1, "title_id": 5, "stars": 4}),
        ),
        command(
            rated,
            "user/2",
            Uuid::now_v7(),
            at(2026, 3, 1, 11, 0, 0),
            json!({"user_id": 2, "title_id": 5, "stars": 2}),
        ),
        command(
            prefs,
            "user/1",
            Uuid::now_v7(),
            at(2026, 3, 2, 9, 0, 0),
            json!({"user_id": 1, "language": "pt-BR", "notifications": true, "theme": "dark"}),
        ),
    ];
    for e in &sent {
        fx.send(&t.user_events, e, &[]).await;
    }
    let m = Monitor::start(fx.config.clone()).await.unwrap();
    eventually(60, "three indexed events", || async {
        let (s, _, b) = fx.get(&m, "/v1/audit").await;
        (s == 200 && b["events"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;
    let ids = |b: &Value| -> Vec<String> {
        b["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = |i: usize| sent[i].id.to_string();

    let (_, _, all) = fx.get(&m, "/v1/audit").await;
    assert_eq!(ids(&all), [id(2), id(1), id(0)], "newest first");
    let (_, _, b) = fx.get(&m, &format!("/v1/audit?type={rated}")).await;
    assert_eq!(ids(&b), [id(1), id(0)]);
    let (_, _, b) = fx.get(&m, "/v1/audit?user_id=1").await;
    assert_eq!(ids(&b), [id(2), id(0)]);
    let (_, _, b) = fx
        .get(&m, &format!("/v1/audit?user_id=1&type={rated}"))
        .await;
    assert_eq!(ids(&b), [id(0)]);
    let (_, _, b) = fx
        .get(
            &m,
            "/v1/audit?from=2026-03-01T10:30:00Z&to=2026-03-01T23:59:59Z",
        )
        .await;
    assert_eq!(ids(&b), [id(1)]);
    let (_, _, b) = fx
        .get(&m, "/v1/audit?from=2026-03-01T10:00:00%2B00:00&limit=2")
        .await;
    assert_eq!(ids(&b), [id(2), id(1)]);

    for (query, param) in [
        ("from=yesterday", "query.from"),
        ("to=2026-03-01", "query.to"),
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("limit=ten", "query.limit"),
        ("user=1", "query.user"),
    ] {
        let (status, ct, body) = fx.get(&m, &format!("/v1/audit?{query}")).await;
        assert_eq!(
            (status, ct.as_str()),
            (400, "application/problem+json"),
            "{query}: {body}"
        );
        assert_eq!(body["invalid-params"][0]["name"], param, "{query}: {body}");
    }

    m.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opensearch_outage_spools_and_replays_everything_exactly_once() {
    let mut fx = Fixture::new().await;
    let t = fx.config.topics.clone();
    let real = fx.opensearch.clone();
    fx.config.opensearch_url = Some(unused_local_url());
    let corr = Uuid::now_v7();
    let mut sent = Vec::new();
    for i in 0..5 {
        let e = command(
            "polystream.title.rated.v1",
            &format!("user/{}", 10 + i),
            corr,
            Utc::now(),
            json!({"user_id": 10 + i, "title_id": 1, "stars": 3}),
        );
        fx.send(&t.user_events, &e, &[]).await;
        sent.push(e);
    }
    fx.send(&t.user_events, &sent[0], &[]).await; // a redelivery

    // Phase 1: OpenSearch refuses connections; S3 keeps consuming into the spool.
    let m = Monitor::start(fx.config.clone()).await.unwrap();
    eventually(60, "six spooled documents", || async {
        (spooled_docs(&fx.config.spool_dir) == 6).then_some(())
    })
    .await;
    let (_, _, ready) = fx.get(&m, "/ready").await;
    assert_eq!(
        ready["ready"], true,
        "S3 stays ready while spooling: {ready}"
    );
    assert_eq!(ready["opensearch"]["available"], false, "{ready}");
    let (status, ct, _) = fx.get(&m, &format!("/v1/audit/{corr}")).await;
    assert_eq!((status, ct.as_str()), (503, "application/problem+json"));
    assert!(fx.stored().await.is_empty());

    // OpenSearch comes back: the health loop installs the template and replays.
    m.indexer().set_url(&real).unwrap();
    eventually(60, "the spool to drain into OpenSearch", || async {
        (spooled_docs(&fx.config.spool_dir) == 0 && fx.stored().await.len() == 5).then_some(())
    })
    .await;
    let (_, _, trail) = fx.get(&m, &format!("/v1/audit/{corr}")).await;
    let got: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = sent.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, want, "{trail:#}");

    // Phase 2: down again; this instance stops with a full spool and a second
    // one, over the same spool directory, replays it.
    m.indexer().set_url(&unused_local_url()).unwrap();
    let more: Vec<Envelope<Value>> = (0..3)
        .map(|i| {
            command(
                "polystream.title.rated.v1",
                "user/77",
                corr,
                Utc::now(),
                json!({"user_id": 77, "title_id": 2 + i, "stars": 5}),
            )
        })
        .collect();
    for e in &more {
        fx.send(&t.user_events, e, &[]).await;
    }
    eventually(60, "three more spooled documents", || async {
        (spooled_docs(&fx.config.spool_dir) == 3).then_some(())
    })
    .await;
    m.stop().await.unwrap();
    assert_eq!(fx.stored().await.len(), 5);

    let mut config = fx.config.clone();
    config.opensearch_url = Some(real.clone());
    let m2 = Monitor::start(config).await.unwrap();
    eventually(60, "the second instance to replay the spool", || async {
        (spooled_docs(&fx.config.spool_dir) == 0 && fx.stored().await.len() == 8).then_some(())
    })
    .await;
    // Nothing doubled, and the committed offsets mean nothing is re-consumed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = fx.stored().await;
    assert_eq!(stored.len(), 8);
    let mut ids: Vec<&str> = stored.iter().map(|h| h["_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);

    m2.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_are_paired_and_unanswered_commands_flagged() {
    let mut fx = Fixture::new().await;
    fx.config.flow_timeout = Duration::from_secs(1);
    let t = fx.config.topics.clone();
    let answered = command(
        "polystream.title.rated.v1",
        "user/1",
        Uuid::now_v7(),
        Utc::now(),
        json!({"user_id": 1, "title_id": 1, "stars": 1}),
    );
    let failed = command(
        "polystream.title.rated.v1",
        "user/2",
        Uuid::now_v7(),
        Utc::now(),
        json!({"user_id": 2, "title_id": 999, "stars": 1}),
    );
    let silent = command(
        "polystream.title.rated.v1",
        "user/3",
        Uuid::now_v7(),
        Utc::now(),
        json!({"user_id": 3, "title_id": 1, "stars": 1}),
    );
    for e in [&answered, &failed, &silent] {
        fx.send(&t.user_events, e, &[]).await;
    }
    fx.send(
        &t.response_events,
        &outcome(&answered, Utc::now(), None),
        &[],
    )
    .await;
    fx.send(
        &t.response_events,
        &outcome(
            &failed,
            Utc::now(),
            Some(("unknown_title", "title 999 does not exist")),
        ),
        &[],
    )
    .await;

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    let flows = eventually(60, "the silent command to be flagged", || async {
        let (_, _, b) = fx.get(&m, "/v1/flows/unanswered").await;
        (b["unanswered"].as_array().is_some_and(|u| !u.is_empty()) && b["stats"]["completed"] == 2)
            .then_some(b)
    })
    .await;
    let flagged: Vec<&str> = flows["unanswered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["correlation_id"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, [silent.correlationid.to_string()], "{flows:#}");
    assert_eq!(flows["unanswered"][0]["command_id"], silent.id.to_string());
    assert_eq!(flows["pending"], 0);
    let metrics = fx.metrics(&m).await;
    assert_eq!(
        sample(&metrics, "polystream_flows_unanswered", &[]),
        Some(1.0),
        "{metrics}"
    );
    for outcome in ["completed", "failed"] {
        assert_eq!(
            sample(
                &metrics,
                "polystream_flow_duration_seconds_count",
                &[
                    ("event_type", "polystream.title.rated.v1"),
                    ("outcome", outcome)
                ]
            ),
            Some(1.0),
            "{outcome}: {metrics}"
        );
    }

    // The failure reason is searchable in the trail.
    let trail = eventually(60, "the failed flow's trail", || async {
        let (s, _, b) = fx
            .get(&m, &format!("/v1/audit/{}", failed.correlationid))
            .await;
        (s == 200 && b["events"].as_array().unwrap().len() == 2).then_some(b)
    })
    .await;
    assert_eq!(trail["events"][1]["outcome"]["code"], "unknown_title");
    assert_eq!(
        trail["events"][1]["outcome"]["reason"],
        "title 999 does not exist"
    );

    m.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_opensearch_refuses_are_kept_aside_without_blocking() {
    let fx = Fixture::new().await;
    let t = fx.config.topics.clone();
    // A daily index that already exists with a mapping the documents break.
    let conflicting = format!("{}-2026.01.01", fx.config.index_prefix);
    fx.http
        .put(format!("{}/{conflicting}", fx.opensearch))
        .json(&json!({"mappings": {"dynamic": "strict", "properties": {"time": {"type": "date"}}}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let corr = Uuid::now_v7();
    let data = json!({"user_id": 1, "title_id": 1, "stars": 3});
    let refused = command(
        "polystream.title.rated.v1",
        "user/1",
        corr,
        at(2026, 1, 1, 12, 0, 0),
        data.clone(),
    );
    let accepted = command(
        "polystream.title.rated.v1",
        "user/1",
        corr,
        at(2026, 1, 2, 12, 0, 0),
        data,
    );
    fx.send(&t.user_events, &refused, &[]).await;
    fx.send(&t.user_events, &accepted, &[]).await;

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    let rejected_file = fx.config.spool_dir.join("rejected.jsonl");
    let rejected = eventually(60, "the refused document in rejected.jsonl", || async {
        std::fs::read_to_string(&rejected_file)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    let line: Value = serde_json::from_str(rejected.lines().next().unwrap()).unwrap();
    assert_eq!(line["id"], refused.id.to_string());
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("strict_dynamic_mapping_exception"),
        "{line}"
    );
    let stored = eventually(60, "the accepted document", || async {
        let s = fx.stored().await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["_id"], accepted.id.to_string());
    assert_eq!(
        spooled_docs(&fx.config.spool_dir),
        0,
        "a refused document is not retried"
    );

    m.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_opensearch_configured_events_are_spooled_and_the_audit_api_says_so() {
    let mut fx = Fixture::new().await;
    // The operator's contract: OPENSEARCH_URL set to the empty string.
    let mut r = polystream_common::config::Reader::new([("OPENSEARCH_URL", "")]);
    fx.config.opensearch_url = Config::read(&mut r).opensearch_url;
    r.finish().unwrap();
    assert_eq!(fx.config.opensearch_url, None);
    fx.config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let t = fx.config.topics.clone();
    let cmd = command(
        "polystream.title.rated.v1",
        "user/5",
        Uuid::now_v7(),
        Utc::now(),
        json!({"user_id": 5, "title_id": 1, "stars": 2}),
    );
    fx.send(&t.user_events, &cmd, &[]).await;
    let done = outcome(&cmd, Utc::now(), None);
    fx.send(&t.response_events, &done, &[]).await;

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    eventually(60, "both events in the spool", || async {
        (spooled_docs(&fx.config.spool_dir) == 2).then_some(())
    })
    .await;
    let (status, _, ready) = fx.get(&m, "/ready").await;
    assert_eq!(status, 200, "spool-only is a supported mode: {ready}");
    // METRICS_ADDR moves /metrics off the API listener.
    assert!(m.metrics_addr.is_some());
    assert_eq!(fx.get(&m, "/metrics").await.0, 404);
    assert_eq!(ready["opensearch"]["configured"], false, "{ready}");
    assert_eq!(ready["opensearch"]["available"], false, "{ready}");
    for path in [
        "/v1/audit".to_owned(),
        format!("/v1/audit/{}", cmd.correlationid),
    ] {
        let (status, ct, body) = fx.get(&m, &path).await;
        assert_eq!(
            (status, ct.as_str()),
            (503, "application/problem+json"),
            "{path}: {body}"
        );
        assert_eq!(
            body["type"], "https://polystream.dev/problems/opensearch-not-configured",
            "{body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains("OPENSEARCH_URL"),
            "{body}"
        );
    }
    // Flow tracking does not need OpenSearch.
    let (_, _, flows) = fx.get(&m, "/v1/flows/unanswered").await;
    assert_eq!(flows["stats"]["completed"], 1, "{flows}");
    // Nothing is ever replayed while no OpenSearch is configured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(spooled_docs(&fx.config.spool_dir), 2);
    let metrics = fx.metrics(&m).await;
    assert_eq!(
        sample(&metrics, "polystream_audit_spooled_events_total", &[]),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "polystream_audit_spool_segments", &[]).unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "messaging_process_duration_seconds_count",
            &[
                ("messaging_destination_name", t.user_events.as_str()),
                ("event_type", "polystream.title.rated.v1"),
                ("outcome", "spooled")
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "polystream_audit_indexed_events_total",
            &[("messaging_destination_name", t.user_events.as_str())]
        ),
        Some(0.0),
        "{metrics}"
    );
    m.stop().await.unwrap();

    // Configured later, the same spool is replayed.
    let mut config = fx.config.clone();
    config.opensearch_url = Some(fx.opensearch.clone());
    let m = Monitor::start(config).await.unwrap();
    eventually(
        60,
        "the spool replayed once OpenSearch is configured",
        || async {
            (spooled_docs(&fx.config.spool_dir) == 0 && fx.stored().await.len() == 2).then_some(())
        },
    )
    .await;
    m.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_documented_and_slow_and_idle_clients_are_cut_off() {
    use polystream_smoke_tests::slow_client;
    let mut fx = Fixture::new().await;
    fx.config.server.header_read_timeout = Duration::from_secs(2);
    fx.config.server.idle_timeout = Duration::from_secs(2);
    fx.config.server.max_connections = 2;
    let m = Monitor::start(fx.config.clone()).await.unwrap();
    // The API's OpenAPI document and its viewer, offline.
    let (status, _, doc) = fx.get(&m, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["paths"]["/v1/audit/{correlation_id}"]["get"].is_object(),
        "{doc}"
    );
    let (status, _, page) = fx.get(&m, "/docs/").await;
    assert_eq!(status, 200);
    assert!(
        page.as_str().is_some_and(|p| p.contains("swagger")),
        "{page}"
    );
    let cut = slow_client::trickle_head(m.addr, Duration::from_secs(1), Duration::from_secs(60))
        .await
        .expect("S3 kept a slow-header connection open for 60 s");
    assert!(cut < Duration::from_secs(15), "cut only after {cut:?}");
    let closed = slow_client::idle_close(m.addr, "/health", Duration::from_secs(60))
        .await
        .expect("S3 kept an idle connection open for 60 s");
    assert!(
        closed < Duration::from_secs(15),
        "closed only after {closed:?}"
    );
    slow_client::assert_connection_cap(m.addr, 2, "/health").await;
    m.stop().await.unwrap();
    fx.cleanup().await;
}
