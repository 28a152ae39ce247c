//! The spool's failure modes against the real local Kafka and OpenSearch
//! (`./dev up kafka opensearch`): corrupt segments set aside while the rest
//! replays, bulk requests refused as a whole bisected, and a full spool that
//! pauses consuming and committing until replay frees room. Outages point S3
//! at a dead port; the shared OpenSearch is never stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use polystream_common::config::StoreEndpoints;
use polystream_common::events::Envelope;
use polystream_common::kafka::{DEFAULT_DELIVERY_TIMEOUT, producer, publish};
use polystream_s3_monitor::audit::{IndexedDoc, RawRecord, Role, build};
use polystream_s3_monitor::config::DEFAULT_SPOOL_MAX_BYTES;
use polystream_s3_monitor::indexer::{BulkError, Indexer, bulk_isolating};
use polystream_s3_monitor::spool::Spool;
use polystream_s3_monitor::{Config, Monitor};
use polystream_smoke_tests::metrics_text::sample;
use polystream_smoke_tests::{env_or, unique, unreachable};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use uuid::Uuid;

struct Fixture {
    config: Config,
    opensearch: String,
    http: reqwest::Client,
}

impl Fixture {
    async fn new() -> Self {
        // S3's logs in the test output (shown on failure).
        support::init_telemetry("polystream-s3-spool-test");
        let brokers = env_or("KAFKA_BOOTSTRAP_SERVERS", StoreEndpoints::LOCAL_KAFKA);
        let http = reqwest::Client::new();
        let opensearch = support::opensearch(&http).await;
        let id = unique("s3spool");
        let topics = support::unique_topics(&brokers, &id, (3, 1)).await;
        let config = Config {
            flow_timeout: Duration::from_secs(300),
            bulk_max_wait: Duration::from_millis(100),
            ..support::config(&brokers, &opensearch, topics, &id, 1)
        };
        Self {
            config,
            opensearch,
            http,
        }
    }

    /// An audit document of this test's index prefix, as S3 builds them.
    fn doc(&self, offset: i64) -> IndexedDoc {
        let env = rating(offset);
        let rec = RawRecord {
            topic: self.config.topics.user_events.clone(),
            offset,
            key: env.subject.clone(),
            payload: Some(serde_json::to_vec(&env).unwrap()),
            timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
            ..RawRecord::default()
        };
        build(
            &rec,
            Role::Command,
            &self.config.index_prefix,
            chrono::Utc::now(),
        )
    }

    /// The ids of every stored document of this test's indices, sorted.
    async fn stored_ids(&self) -> Vec<String> {
        let os = &self.opensearch;
        let prefix = &self.config.index_prefix;
        let _ = self
            .http
            .post(format!("{os}/{prefix}-*/_refresh"))
            .send()
            .await;
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
        let mut ids: Vec<String> = r["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|h| h["_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    async fn get(&self, m: &Monitor, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("http://{}{path}", m.addr))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn metric(&self, m: &Monitor, name: &str) -> Option<f64> {
        let (_, text) = self.get(m, "/metrics").await;
        sample(text.as_str().unwrap_or_default(), name, &[])
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
    }
}

fn rating(n: i64) -> Envelope<Value> {
    Envelope::new(
        "/polystream/s1-gateway",
        "polystream.title.rated.v1",
        Some(format!("user/{}", n + 1)),
        Uuid::now_v7(),
        json!({"user_id": n + 1, "title_id": 7, "stars": 4}),
    )
}

use support::eventually;

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn spooled_docs(dir: &Path) -> usize {
    files_ending(dir, ".jsonl")
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn producer_for(brokers: &str) -> FutureProducer {
    producer(brokers, "s3-spool-test", DEFAULT_DELIVERY_TIMEOUT).unwrap()
}

/// The sum of the group's committed offsets over `partitions` of `topic`:
/// with offsets from 0, the number of records committed.
fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap_or_else(|e| unreachable("Apache Kafka", "kafka", brokers, e));
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segments_are_set_aside_while_the_others_replay() {
    let fx = Fixture::new().await;
    let dir = fx.config.spool_dir.clone();
    // Good segments, written as S3 writes them…
    let spool = Spool::open(&dir, DEFAULT_SPOOL_MAX_BYTES).unwrap();
    let good: Vec<IndexedDoc> = (0..4).map(|i| fx.doc(i)).collect();
    spool.append(&good[..2]).unwrap();
    spool.append(&good[2..]).unwrap();
    drop(spool);
    // …and, older than them (replayed first), every kind of damage.
    let line = format!("{}\n", serde_json::to_string(&good[0]).unwrap());
    let damaged: [(&str, Vec<u8>); 4] = [
        ("bad-json", format!("{line}{{\"not\": json\n").into_bytes()),
        ("truncated", line.as_bytes()[..line.len() / 2].to_vec()),
        ("non-utf8", [line.as_bytes(), b"\xff\xfe\xfd\n"].concat()),
        ("unreadable", Vec::new()),
    ];
    let mut corrupt = Vec::new();
    for (i, (what, bytes)) in damaged.iter().enumerate() {
        let path = dir.join(format!("segment-{i:020}-{what}.jsonl"));
        if *what == "unreadable" {
            // Reading a directory fails whoever runs the test (root can read 0o000 files).
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, bytes).unwrap();
        }
        corrupt.push(path);
    }

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    let want: Vec<String> = {
        let mut w: Vec<String> = good.iter().map(|d| d.id.clone()).collect();
        w.sort();
        w
    };
    eventually(
        60,
        "the good segments replayed past the corrupt ones",
        || async { (spooled_docs(&dir) == 0 && fx.stored_ids().await == want).then_some(()) },
    )
    .await;
    // Each damaged segment renamed in place, content untouched, never deleted.
    let aside = files_ending(&dir, ".jsonl.corrupt");
    assert_eq!(aside.len(), 4, "{aside:?}");
    for (path, (what, bytes)) in corrupt.iter().zip(&damaged) {
        let moved = PathBuf::from(format!("{}.corrupt", path.display()));
        assert!(moved.exists(), "{what}: {moved:?} missing");
        assert!(!path.exists(), "{what}: still a segment");
        if *what != "unreadable" {
            assert_eq!(&std::fs::read(&moved).unwrap(), bytes, "{what}");
        }
    }
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_corrupt_segments_total")
            .await,
        Some(4.0)
    );
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_segments").await,
        Some(0.0)
    );
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_bytes").await,
        Some(0.0)
    );
    // (The spool's own check: Kafka's is another matter, and shared.)
    let (_, ready) = fx.get(&m, "/ready").await;
    assert_eq!(ready["checks"][1]["name"], "spool", "{ready}");
    assert_eq!(ready["checks"][1]["ok"], true, "{ready}");
    assert_eq!(ready["spool"]["full"], false, "{ready}");

    // Never replayed again: a second replay pass leaves them alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(files_ending(&dir, ".jsonl.corrupt").len(), 4);
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_corrupt_segments_total")
            .await,
        Some(4.0)
    );
    m.stop().await.unwrap();
    fx.cleanup().await;
}

/// OpenSearch refuses a whole bulk request (400) when one id is longer than
/// 512 bytes; S3's ids are far shorter, so the document is crafted.
fn with_long_id(mut d: IndexedDoc) -> IndexedDoc {
    d.id = "x".repeat(600);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_request_refused_as_a_whole_is_bisected_against_the_real_opensearch() {
    let fx = Fixture::new().await;
    let indexer = Indexer::new(Some(&fx.opensearch), &fx.config.index_prefix).unwrap();
    indexer.ensure_ready().await.unwrap();
    let mut docs: Vec<IndexedDoc> = (0..8).map(|i| fx.doc(i)).collect();
    docs[5] = with_long_id(docs[5].clone());

    // The whole request is refused, and classified so: not an outage.
    match indexer.bulk(&docs).await {
        Err(BulkError::Refused(r)) => {
            assert!(r.contains("400"), "{r}");
            assert!(r.contains("action_request_validation_exception"), "{r}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let out = bulk_isolating(&docs, |p: Vec<IndexedDoc>| {
        let indexer = &indexer;
        async move { indexer.bulk(&p).await }
    })
    .await;
    assert!(out.unavailable.is_none());
    assert!(out.outcome.retry.is_empty());
    assert_eq!(out.outcome.rejected.len(), 1);
    assert_eq!(out.outcome.rejected[0].doc, docs[5]);
    assert_eq!(out.requests, 7, "8 → 4+4 → 2+2 → 1+1");
    let mut want: Vec<String> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, d)| d.id.clone())
        .collect();
    want.sort();
    assert_eq!(fx.stored_ids().await, want);

    // An unreachable OpenSearch stays an outage.
    let dead = Indexer::new(Some(&dead_url()), &fx.config.index_prefix).unwrap();
    assert!(matches!(
        dead.bulk(&docs).await,
        Err(BulkError::Unavailable(_))
    ));
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_batch_refused_as_a_whole_is_replayed_without_its_bad_document() {
    let fx = Fixture::new().await;
    let dir = fx.config.spool_dir.clone();
    let spool = Spool::open(&dir, DEFAULT_SPOOL_MAX_BYTES).unwrap();
    let mut docs: Vec<IndexedDoc> = (0..6).map(|i| fx.doc(i)).collect();
    docs[2] = with_long_id(docs[2].clone());
    spool.append(&docs).unwrap();
    drop(spool);

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    let mut want: Vec<String> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, d)| d.id.clone())
        .collect();
    want.sort();
    eventually(
        60,
        "the segment replayed without its refused document",
        || async { (spooled_docs(&dir) == 0 && fx.stored_ids().await == want).then_some(()) },
    )
    .await;
    let rejected = std::fs::read_to_string(dir.join("rejected.jsonl")).unwrap();
    let lines: Vec<Value> = rejected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{rejected}");
    assert_eq!(lines[0]["id"], docs[2].id);
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("action_request_validation_exception"),
        "{}",
        lines[0]
    );
    // Not an outage: OpenSearch stays available and new events go straight in.
    let (_, ready) = fx.get(&m, "/ready").await;
    assert_eq!(ready["opensearch"]["available"], true, "{ready}");
    let brokers = fx.config.kafka.bootstrap_servers.clone();
    let producer = producer_for(&brokers);
    let live = rating(100);
    publish(
        &producer,
        &fx.config.topics.user_events,
        "user/101",
        &live,
        &[],
    )
    .await
    .unwrap();
    want.push(live.id.to_string());
    want.sort();
    eventually(60, "a live event indexed", || async {
        (fx.stored_ids().await == want).then_some(())
    })
    .await;
    assert_eq!(spooled_docs(&dir), 0);
    m.stop().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_stops_consuming_and_committing_until_replay_frees_room() {
    let mut fx = Fixture::new().await;
    let real = fx.opensearch.clone();
    let brokers = fx.config.kafka.bootstrap_servers.clone();
    let topic = fx.config.topics.user_events.clone();
    let group = fx.config.group_id.clone();
    // Room for a few one-event segments (they carry headers, so a bit more
    // than this estimate each).
    let estimate = serde_json::to_vec(&fx.doc(0)).unwrap().len() as u64 + 1;
    fx.config.spool_max_bytes = estimate * 4;
    fx.config.bulk_max_events = 1;
    fx.config.opensearch_url = Some(dead_url());
    fx.config.stall_after = Duration::from_secs(2);
    let producer = producer_for(&brokers);
    let total = 10;
    let mut sent = Vec::new();
    for i in 0..total {
        let env = rating(i);
        publish(&producer, &topic, &format!("user/{}", i + 1), &env, &[])
            .await
            .unwrap();
        sent.push(env.id.to_string());
    }
    sent.sort();

    let m = Monitor::start(fx.config.clone()).await.unwrap();
    let ready = eventually(60, "/ready to say the spool is full", || async {
        let (status, body) = fx.get(&m, "/ready").await;
        (status == 503 && body["spool"]["full"] == true).then_some(body)
    })
    .await;
    let spool_check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "spool")
        .unwrap()
        .clone();
    let reason = spool_check["error"].as_str().unwrap();
    assert!(
        reason.contains("spool is full") && reason.contains("SPOOL_MAX_BYTES"),
        "{ready}"
    );
    let max = fx.config.spool_max_bytes;
    assert_eq!(ready["spool"]["max_bytes"], max);
    let bytes = ready["spool"]["bytes"].as_u64().unwrap();
    assert!(bytes <= max, "{ready}");
    assert_eq!(
        ready["checks"][0]["ok"], true,
        "Kafka itself is fine: {ready}"
    );

    // Paused: what is spooled is committed, nothing more is consumed or committed.
    let spooled = spooled_docs(&fx.config.spool_dir);
    assert!(
        (1..total as usize).contains(&spooled),
        "{spooled} spooled of {total}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(spooled_docs(&fx.config.spool_dir), spooled);
    assert_eq!(
        committed(&brokers, &group, &topic, 3),
        spooled as i64,
        "only spooled events are committed"
    );
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_full").await,
        Some(1.0)
    );
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_bytes").await,
        Some(bytes as f64)
    );
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_max_bytes").await,
        Some(max as f64)
    );
    assert!(fx.stored_ids().await.is_empty());
    // Held that long, the partitions with records waiting count as stalled.
    let stalled = eventually(30, "/ready to name a stalled partition", || async {
        let (_, body) = fx.get(&m, "/ready").await;
        let check = body["checks"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "partitions")?
            .clone();
        (check["ok"] == false).then(|| check["error"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert!(
        stalled.contains(&format!("partition {topic}[")) && stalled.contains("records behind"),
        "{stalled}"
    );

    // OpenSearch back: replay frees room, the held batch and the rest go in.
    m.indexer().set_url(&real).unwrap();
    eventually(90, "every event indexed once the spool drains", || async {
        (spooled_docs(&fx.config.spool_dir) == 0 && fx.stored_ids().await == sent).then_some(())
    })
    .await;
    eventually(30, "/ready back to 200", || async {
        let (status, body) = fx.get(&m, "/ready").await;
        (status == 200 && body["spool"]["full"] == false).then_some(())
    })
    .await;
    eventually(30, "every offset committed", || async {
        (committed(&brokers, &group, &topic, 3) == total).then_some(())
    })
    .await;
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_full").await,
        Some(0.0)
    );
    assert_eq!(
        fx.metric(&m, "polystream_audit_spool_bytes").await,
        Some(0.0)
    );
    // Exactly once: the ids are the events', no extra documents.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fx.stored_ids().await, sent);
    m.stop().await.unwrap();
    fx.cleanup().await;
}
