//! Shared by the end-to-end test files: the whole platform in one process —
//! S1, S2 and S3 on their own topics, consumer groups and audit indices —
//! plus direct handles on the stores and the audit trail, to assert effects
//! where they live rather than through the API that wrote them.
#![allow(dead_code)] // each test file uses a different part of this module
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use polystream_common::config::Reader;
use polystream_smoke_tests::api::Api;
use polystream_smoke_tests::{endpoints, unique, unreachable};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// How long a command may take from S1 to its recorded outcome, and an
/// event from Kafka to the audit index. Generous: the box is shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Direct connections to the stores that own the data.
#[derive(Clone)]
pub struct Stores {
    pub pg: sqlx::PgPool,
    pub mongo: mongodb::Database,
    pub redis: redis::aio::ConnectionManager,
}

impl Stores {
    /// Connects to every server the platform needs, failing with a message
    /// that names the one that is not there.
    pub async fn connect() -> Self {
        let e = endpoints();
        let pg = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&e.database_url)
            .await
            .unwrap_or_else(|err| unreachable("PostgreSQL", "postgres", &e.database_url, err));
        let client = redis::Client::open(e.redis_url.as_str())
            .unwrap_or_else(|err| unreachable("Redis", "redis", &e.redis_url, err));
        let redis = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|err| err.to_string()))
        .unwrap_or_else(|err| unreachable("Redis", "redis", &e.redis_url, err));
        let mongo = polystream_stores::mongo::connect(&e.mongodb_uri)
            .await
            .unwrap_or_else(|err| {
                unreachable("MongoDB-wire server", "ferretdb", &e.mongodb_uri, err)
            });
        if let Err(err) = mongo.run_command(mongodb::bson::doc! {"ping": 1}).await {
            unreachable("MongoDB-wire server", "ferretdb", &e.mongodb_uri, err);
        }
        let os = reqwest::Client::new()
            .get(&e.opensearch_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Err(err) = os {
            unreachable("OpenSearch", "opensearch", &e.opensearch_url, err);
        }
        let brokers = e.kafka_bootstrap_servers.clone();
        let kafka = tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .map_err(|e| e.to_string())?;
            c.fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
        if let Err(err) = kafka {
            unreachable("Apache Kafka", "kafka", &e.kafka_bootstrap_servers, err);
        }
        Self { pg, mongo, redis }
    }

    pub fn coll(&self, name: &str) -> mongodb::Collection<mongodb::bson::Document> {
        self.mongo.collection(name)
    }

    /// One MongoDB document by `_id`, or a panic naming what is missing.
    pub async fn doc(
        &self,
        collection: &str,
        id: impl Into<mongodb::bson::Bson>,
    ) -> mongodb::bson::Document {
        let id = id.into();
        self.coll(collection)
            .find_one(mongodb::bson::doc! {"_id": id.clone()})
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no document {id} in MongoDB collection {collection}"))
    }

    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let mut con = self.redis.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap()
    }

    pub async fn zscore(&self, key: &str, member: i64) -> Option<f64> {
        let mut con = self.redis.clone();
        redis::cmd("ZSCORE")
            .arg(key)
            .arg(member)
            .query_async(&mut con)
            .await
            .unwrap()
    }
}

/// Every log line the three services write during the tests.
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(
                "info,polystream_s1_gateway=debug,polystream_s2_processor=debug,polystream_s3_monitor=debug,polystream_common=debug",
            )
            .with_writer(move || LogSink(sink.clone()))
            .init();
        buf
    })
}

pub struct LogSink(Arc<Mutex<Vec<u8>>>);
impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Platform {
    pub api: String,
    pub audit: String,
    pub topics: [String; 3],
    pub index_prefix: String,
    pub admin: (String, String),
    pub http: reqwest::Client,
    s1_stop: Option<tokio::sync::oneshot::Sender<()>>,
    s2: Option<polystream_s2_processor::Running>,
    s3: Option<polystream_s3_monitor::Monitor>,
    spool: std::path::PathBuf,
    /// Direct handles on the owning stores, for asserting effects.
    pub stores: Stores,
}

pub fn settings(overrides: &[(&str, String)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = std::env::vars().collect();
    for (k, v) in overrides {
        m.insert((*k).to_string(), v.clone());
    }
    m
}

impl Platform {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like [`Platform::start`], with `extra` settings for all three services
    /// (e.g. how they reach Kafka).
    pub async fn start_with(extra: &[(&str, String)]) -> Self {
        logs();
        // Fails early, naming a bad setting or an unreachable server.
        let stores = Stores::connect().await;
        let id = unique("e2e");
        let topics = [
            format!("{id}-user"),
            format!("{id}-resp"),
            format!("{id}-dlq"),
        ];
        let index_prefix = format!("{id}-audit");
        let spool = std::env::temp_dir().join(format!("{id}-spool"));
        let admin = (
            format!("admin-{id}@example.com"),
            "admin-password-1".to_string(),
        );
        let common = vec![
            ("KAFKA_TOPIC_USER_EVENTS", topics[0].clone()),
            ("KAFKA_TOPIC_RESPONSE_EVENTS", topics[1].clone()),
            ("KAFKA_TOPIC_DEAD_LETTER", topics[2].clone()),
            ("KAFKA_PARTITIONS", "3".into()),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
        ];
        let common = [common, extra.to_vec()].concat();

        let mut r = Reader::new(settings(
            &[common.clone(), vec![("KAFKA_GROUP_ID", format!("{id}-s2"))]].concat(),
        ));
        let c2 = polystream_s2_processor::Config::read(&mut r);
        r.finish().unwrap();
        let s2 = polystream_s2_processor::start(c2).await.unwrap();

        let mut r = Reader::new(settings(
            &[
                common.clone(),
                vec![
                    ("KAFKA_GROUP_ID", format!("{id}-s3")),
                    ("AUDIT_INDEX_PREFIX", index_prefix.clone()),
                    ("SPOOL_DIR", spool.display().to_string()),
                ],
            ]
            .concat(),
        ));
        let c3 = polystream_s3_monitor::Config::read(&mut r);
        r.finish().unwrap();
        let s3 = polystream_s3_monitor::Monitor::start(c3).await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let mut r = Reader::new(settings(
            &[
                common,
                vec![
                    ("PUBLIC_URL", api.clone()),
                    ("RATE_LIMIT_SCOPE", id.clone()),
                    // The seed's clients send no token (their own test).
                    ("LEGACY_API_ACCESS", "open".to_owned()),
                    ("ADMIN_EMAIL", admin.0.clone()),
                    ("ADMIN_PASSWORD", admin.1.clone()),
                ],
            ]
            .concat(),
        ));
        let c1 = polystream_s1_gateway::Config::read(&mut r);
        r.finish().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            polystream_s1_gateway::serve(c1, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });

        Self {
            api,
            audit: format!("http://{}", s3.addr),
            topics,
            index_prefix,
            admin,
            http: reqwest::Client::new(),
            s1_stop: Some(tx),
            s2: Some(s2),
            s3: Some(s3),
            spool,
            stores,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.s1_stop.take() {
            let _ = tx.send(());
        }
        if let Some(s2) = self.s2.take() {
            s2.stop().await.unwrap();
        }
        if let Some(s3) = self.s3.take() {
            s3.stop().await.unwrap();
        }
        // Kept when a test fails before this point: it is evidence.
        let _ = std::fs::remove_dir_all(&self.spool);
    }

    /// S1's API as the tests' client.
    pub fn client(&self) -> Api {
        Api {
            base: self.api.clone(),
            http: self.http.clone(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.client().send(method, path, token, body).await
    }

    /// Sends a command and waits for its outcome; panics unless it completed.
    pub async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let (status, accepted) = self.send(method, path, token, Some(body)).await;
        assert_eq!(status, 202, "{path}: {accepted}");
        let outcome = self.outcome(&accepted).await;
        assert_eq!(outcome["state"], "completed", "{path}: {outcome}");
        json!({"accepted": accepted, "outcome": outcome})
    }

    pub async fn outcome(&self, accepted: &Value) -> Value {
        self.client().outcome(accepted).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        self.client().login(email, password).await
    }

    /// Every record on the platform's topics.
    pub fn all_records(&self) -> Vec<Vec<u8>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", endpoints().kafka_bootstrap_servers)
            .set("group.id", unique("e2e-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut out = Vec::new();
        for topic in &self.topics {
            let meta = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            let mut remaining = 0;
            for p in meta.topics()[0].partitions() {
                let (lo, hi) = consumer
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .unwrap();
                remaining += hi - lo;
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while remaining > 0 && Instant::now() < deadline {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
                    out.push(m.payload().unwrap_or_default().to_vec());
                    remaining -= 1;
                }
            }
            assert_eq!(remaining, 0, "could not read all of {topic}");
        }
        out
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// Sends a command and waits for its outcome; panics unless it failed
    /// with `code`. Returns `{accepted, outcome}`.
    pub async fn command_fails(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        code: &str,
    ) -> Value {
        let (status, accepted) = self.send(method, path, token, body).await;
        assert!(
            status == 202 || status == 200,
            "{path}: {status} {accepted}"
        );
        let outcome = self.outcome(&accepted).await;
        assert_eq!(
            (outcome["state"].as_str(), outcome["code"].as_str()),
            (Some("failed"), Some(code)),
            "{path}: {outcome}"
        );
        assert!(
            outcome["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{path}: a failure needs a reason: {outcome}"
        );
        json!({"accepted": accepted, "outcome": outcome})
    }

    /// A seed-002 write: answers 200 (not 202) with `{correlation_id,
    /// status_url}`, query parameters only; waits for it to complete.
    pub async fn seed_command(&self, method: reqwest::Method, path: &str) -> Value {
        let (status, accepted) = self.send(method, path, None, None).await;
        assert_eq!(status, 200, "{path}: {accepted}");
        assert!(
            accepted["status_url"]
                .as_str()
                .is_some_and(|u| u.contains("/status/")),
            "{path}: seed status_url is under /status/: {accepted}"
        );
        let outcome = self.outcome(&accepted).await;
        assert_eq!(outcome["state"], "completed", "{path}: {outcome}");
        json!({"accepted": accepted, "outcome": outcome})
    }

    /// The audit trail S3 serves for a correlation id, once it holds at least
    /// `events` events (indexing is asynchronous).
    pub async fn trail(&self, correlation_id: &str, events: usize) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        let url = format!("{}/v1/audit/{correlation_id}", self.audit);
        loop {
            let res = self
                .http
                .get(&url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("S3 monitor unreachable at {url}: {e}"));
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if status == 200 {
                let got = body["events"].as_array().cloned().unwrap_or_default();
                if got.len() >= events {
                    return got;
                }
            }
            assert!(
                Instant::now() < deadline,
                "S3 has no trail of {events} events for {correlation_id} within {DEADLINE:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Asserts S3's trail for a command: the command of `command_type`, then
    /// its outcome (`completed`, or `failed` with `code`).
    pub async fn expect_trail(&self, sent: &Value, command_type: &str, code: Option<&str>) {
        let corr = sent["accepted"]["correlation_id"]
            .as_str()
            .expect("correlation_id");
        let trail = self.trail(corr, 2).await;
        let types: Vec<&str> = trail.iter().filter_map(|e| e["type"].as_str()).collect();
        let outcome_type = if code.is_some() {
            "polystream.command.failed.v1"
        } else {
            "polystream.command.completed.v1"
        };
        assert_eq!(
            types,
            [command_type, outcome_type],
            "trail of {corr}: {trail:?}"
        );
        for e in &trail {
            assert_eq!(e["correlation_id"], corr, "{e}");
        }
        let outcome = &trail[1]["outcome"];
        assert_eq!(
            outcome["status"],
            if code.is_some() {
                "failed"
            } else {
                "completed"
            },
            "trail of {corr}: {outcome}"
        );
        assert_eq!(outcome["command_type"], command_type, "{outcome}");
        if let Some(code) = code {
            assert_eq!(outcome["code"], code, "trail of {corr}: {outcome}");
        }
    }

    /// The ranking the API serves is the sorted set in Redis. Other tests add
    /// views and ratings concurrently, so compare against a snapshot that did
    /// not change while the API was read.
    pub async fn expect_ranking(&self, path: &str, key: &str) {
        let zset = || async {
            let mut con = self.stores.redis.clone();
            let items: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(99)
                .arg("REV")
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await
                .unwrap();
            items
                .into_iter()
                .map(|(id, score)| (id.parse::<i64>().unwrap(), score))
                .collect::<Vec<_>>()
        };
        for _ in 0..10 {
            let before = zset().await;
            let (st, ranking) = self.get(path, None).await;
            assert_eq!(st, 200, "{path}: {ranking}");
            let after = zset().await;
            if before != after {
                continue;
            }
            let served: Vec<(i64, f64)> = ranking["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["title_id"].as_i64().unwrap(),
                        i["score"].as_f64().unwrap(),
                    )
                })
                .collect();
            // Scores compared to a relative 1e-12: serde_json's default
            // float parser may read an average back one ULP off.
            let same = served.len() == before.len()
                && served
                    .iter()
                    .zip(&before)
                    .all(|((a, x), (b, y))| a == b && (x - y).abs() <= 1e-12 * y.abs().max(1.0));
            assert!(
                same,
                "{path} is not {key}: {served:?} vs {before:?}: {ranking}"
            );
            return;
        }
        panic!("{key} kept changing while {path} was read");
    }
}
