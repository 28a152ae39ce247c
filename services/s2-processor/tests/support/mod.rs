//! A processor started in-process on its own topics, consumer group and
//! MongoDB database, plus clients to send commands and inspect every store.
//! A server that is not running fails the test with a message naming it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mongodb::Database;
use polystream_common::config::Topics;
use polystream_common::events::{Command, Envelope};
use polystream_common::status::{CommandStatus, StatusStore};
use polystream_s2_processor::{Config, Running};
use polystream_smoke_tests::metrics_text::OPENMETRICS_ACCEPT;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::aio::ConnectionManager;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
pub const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// The tracing layers the binary installs, without span export, logging
/// through the test harness (shown for failed tests only). A second call, or
/// a test binary that installed its own first, keeps the first.
pub fn init_telemetry() {
    let mut config =
        polystream_common::telemetry::TelemetryConfig::local("polystream-s2-processor-test");
    config.test_writer = true;
    if let Ok(guard) = polystream_common::telemetry::init_with(config) {
        // Nothing is exported, so there is nothing to flush.
        std::mem::forget(guard);
    }
}

/// Ids no other run or test uses: time-based, then counted up.
pub fn unique_id() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    if NEXT.load(Ordering::SeqCst) == 0 {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(1);
        // Multiplied so concurrent test binaries a microsecond apart do not collide.
        let _ = NEXT.compare_exchange(
            0,
            micros * 100 % 9_000_000_000_000_000,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    NEXT.fetch_add(1, Ordering::SeqCst)
}

pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7().simple())
}

/// A valid CPF made from 9 digits derived from `seed`.
pub fn cpf(seed: i64) -> String {
    let mut d: Vec<u32> = format!("{:09}", seed.rem_euclid(1_000_000_000))
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    if d.iter().all(|&x| x == d[0]) {
        d[0] = (d[0] + 1) % 10;
    }
    for n in [9usize, 10] {
        let sum: u32 = (0..n).map(|i| d[i] * (n as u32 + 1 - i as u32)).sum();
        let r = (sum * 10) % 11;
        d.push(if r == 10 { 0 } else { r });
    }
    d.iter()
        .map(|x| char::from_digit(*x, 10).unwrap())
        .collect()
}

pub struct Env {
    pub config: Config,
    pub producer: FutureProducer,
    pub pg: PgPool,
    pub mongo: Database,
    pub redis: ConnectionManager,
    pub status: StatusStore,
    responses: StreamConsumer,
    seen: HashMap<Uuid, Vec<Envelope<Value>>>,
    /// The trace every outcome must continue (the commands' trace).
    pub trace_id: String,
}

fn fail(server: &str, component: &str, err: impl std::fmt::Display) -> ! {
    panic!(
        "{server} is not reachable: {err}\nIt must be running for this test; start it with \
         `./dev up {component}` (or run the whole suite with `./dev test`)."
    )
}

impl Env {
    /// Fresh topics, group and MongoDB database; the processor is not started yet.
    pub async fn new() -> Self {
        // The tracing layers the binary installs (without span export), so
        // trace context propagates as in production.
        init_telemetry();
        let mut config = Config::from_env().unwrap_or_else(|e| panic!("{e}"));
        let name = unique_name("s2t");
        config.topics = Topics {
            user_events: format!("{name}-user"),
            response_events: format!("{name}-resp"),
            dead_letter: format!("{name}-dlq"),
        };
        config.group_id = format!("{name}-group");
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.layout.partitions = 3;
        let base = config.stores.mongodb_uri.trim_end_matches('/').to_owned();
        config.stores.mongodb_uri = format!("{base}/{}", name.replace('-', "_"));

        let ep = &config.stores;
        let pg = polystream_stores::pg::connect(&ep.database_url, 4)
            .await
            .unwrap_or_else(|e| fail("PostgreSQL", "postgres", e));
        let mongo = polystream_stores::mongo::connect(&ep.mongodb_uri)
            .await
            .unwrap_or_else(|e| fail("MongoDB (FerretDB)", "ferretdb", e));
        if let Err(e) = mongo.run_command(mongodb::bson::doc! {"ping": 1}).await {
            fail("MongoDB (FerretDB)", "ferretdb", e);
        }
        let client = redis::Client::open(ep.redis_url.as_str()).unwrap();
        let redis = ConnectionManager::new(client.clone())
            .await
            .unwrap_or_else(|e| fail("Redis", "redis", e));
        let status = StatusStore::new(client, redis.clone());
        let producer = polystream_common::kafka::producer(
            &ep.kafka_bootstrap_servers,
            "s2-test",
            polystream_common::kafka::DEFAULT_DELIVERY_TIMEOUT,
        )
        .unwrap();
        polystream_common::kafka::ensure_topics(
            &ep.kafka_bootstrap_servers,
            &[
                (config.topics.user_events.as_str(), 3),
                (config.topics.response_events.as_str(), 3),
                (config.topics.dead_letter.as_str(), 3),
            ],
            1,
        )
        .await
        .unwrap_or_else(|e| fail("Apache Kafka", "kafka", e));
        let responses = polystream_common::kafka::topic_reader(
            &ep.kafka_bootstrap_servers,
            &config.topics.response_events,
        )
        .await
        .unwrap();
        Self {
            config,
            producer,
            pg,
            mongo,
            redis,
            status,
            responses,
            seen: HashMap::new(),
            trace_id: TRACE_ID.to_owned(),
        }
    }

    pub async fn start(&self) -> Running {
        self.start_with(self.config.clone()).await
    }

    pub async fn start_with(&self, config: Config) -> Running {
        polystream_s2_processor::start(config)
            .await
            .unwrap_or_else(|e| panic!("the processor did not start: {e:#}"))
    }

    /// The envelope of `cmd`, as S1 would publish it.
    pub fn envelope(cmd: &Command) -> Envelope<Value> {
        Envelope::new(
            "/polystream/test",
            cmd.event_type(),
            Some(cmd.subject()),
            Uuid::now_v7(),
            cmd.to_data(),
        )
    }

    /// Produces raw bytes with a key and optional headers; waits for the ack.
    pub async fn send_raw(&self, key: &str, bytes: &[u8], headers: &[(&str, &str)]) {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        self.producer
            .send(
                FutureRecord::to(&self.config.topics.user_events)
                    .key(key)
                    .payload(bytes)
                    .headers(h),
                Duration::from_secs(15),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Sends `cmd` in a new envelope; returns the envelope.
    pub async fn send(&self, cmd: &Command) -> Envelope<Value> {
        let env = Self::envelope(cmd);
        self.send_env(&env).await;
        env
    }

    pub async fn send_env(&self, env: &Envelope<Value>) {
        let bytes = serde_json::to_vec(env).unwrap();
        self.send_raw(
            env.subject.as_deref().unwrap_or("none"),
            &bytes,
            &[("traceparent", TRACEPARENT)],
        )
        .await;
    }

    /// Waits for the `n`th outcome (1-based) with this correlation id.
    pub async fn outcome_n(&mut self, correlation: Uuid, n: usize) -> Envelope<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(v) = self.seen.get(&correlation)
                && v.len() >= n
            {
                return v[n - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no outcome #{n} for {correlation} within 90s"
            );
            let Ok(msg) = tokio::time::timeout(left, self.responses.recv()).await else {
                continue;
            };
            // A fresh topic can briefly be unknown to the reader: transient.
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("reading outcomes: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let env: Envelope<Value> = serde_json::from_slice(msg.payload().unwrap()).unwrap();
            let trace = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "traceparent")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            // The same trace, continued by S2's own send span.
            let trace = trace.unwrap_or_default();
            let parts: Vec<&str> = trace.split('-').collect();
            assert_eq!(
                parts.get(1).copied(),
                Some(self.trace_id.as_str()),
                "the outcome of {} continues the command's trace: {trace}",
                env.event_type
            );
            assert_ne!(trace, TRACEPARENT, "the parent is S2's send span");
            self.seen.entry(env.correlationid).or_default().push(env);
        }
    }

    pub async fn outcome(&mut self, env: &Envelope<Value>) -> Envelope<Value> {
        self.outcome_n(env.correlationid, 1).await
    }

    /// Sends `cmd` and returns its outcome's `data`, asserting the outcome type.
    pub async fn expect_completed(&mut self, cmd: &Command) -> Value {
        let env = self.send(cmd).await;
        let out = self.outcome(&env).await;
        assert_eq!(
            out.event_type, "polystream.command.completed.v1",
            "{} should complete: {}",
            env.event_type, out.data
        );
        assert_eq!(out.subject, env.subject);
        assert_eq!(out.data["command_id"], env.id.to_string());
        let status = self.status_of(env.correlationid).await;
        assert_eq!(
            serde_json::to_value(status.state).unwrap(),
            "completed",
            "{status:?}"
        );
        out.data
    }

    /// Sends `cmd` and asserts it fails with `code`.
    pub async fn expect_failed(&mut self, cmd: &Command, code: &str) -> Value {
        let env = self.send(cmd).await;
        let out = self.outcome(&env).await;
        assert_eq!(
            out.event_type, "polystream.command.failed.v1",
            "{} should fail with {code}: {}",
            env.event_type, out.data
        );
        assert_eq!(out.data["code"], code, "{}", out.data);
        let status = self.status_of(env.correlationid).await;
        assert_eq!(status.code.as_deref(), Some(code), "{status:?}");
        assert_eq!(serde_json::to_value(status.state).unwrap(), "failed");
        out.data
    }

    pub async fn status_of(&self, correlation: Uuid) -> CommandStatus {
        self.status
            .get(correlation)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no status for {correlation}"))
    }

    pub async fn count(&self, sql: &'static str, id: i64) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.pg)
            .await
            .unwrap()
    }

    pub async fn redis_score(&self, key: &str, member: i64) -> Option<f64> {
        let mut con = self.redis.clone();
        redis::cmd("ZSCORE")
            .arg(key)
            .arg(member)
            .query_async(&mut con)
            .await
            .unwrap()
    }

    pub async fn redis_get(&self, key: &str) -> Option<String> {
        let mut con = self.redis.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap()
    }

    /// Drops the test's MongoDB database and Kafka topics.
    pub async fn cleanup(self) {
        let _ = self.mongo.drop().await;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set(
                "bootstrap.servers",
                &self.config.stores.kafka_bootstrap_servers,
            )
            .create()
            .unwrap();
        let t = &self.config.topics;
        let _ = admin
            .delete_topics(
                &[&t.user_events, &t.response_events, &t.dead_letter],
                &AdminOptions::new(),
            )
            .await;
    }
}

/// A TCP proxy in front of a server that a test can cut and restore, to
/// make a store unreachable without stopping the shared server.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = state.subscribe();
                if !*rx.borrow() {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// `GET /metrics` as Prometheus asks for it: OpenMetrics, with exemplars.
pub async fn get_metrics(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("accept", OPENMETRICS_ACCEPT)
        .send()
        .await
        .unwrap()
}

/// A valid argon2id PHC string (the processor never checks the hash itself).
pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// A registration of `user_id` named `name`, with an email from its id.
pub fn registration(user_id: i64, name: &str) -> Command {
    Command::UserRegistered(polystream_common::events::UserRegistered {
        user_id,
        name: name.into(),
        email: format!("u{user_id}@example.com"),
        password_hash: Some(HASH.into()),
        cpf: None,
        admin: false,
    })
}

impl Env {
    /// A fresh reader of the test's dead-letter topic, from its beginning.
    pub fn dead_letters(&self) -> StreamConsumer {
        let dlq: StreamConsumer = ClientConfig::new()
            .set(
                "bootstrap.servers",
                &self.config.stores.kafka_bootstrap_servers,
            )
            .set("group.id", unique_name("s2t-dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        dlq.subscribe(&[&self.config.topics.dead_letter]).unwrap();
        dlq
    }
}

/// A header of a record as text.
pub fn header<M: Message>(m: &M, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The processor's `/metrics` text (OpenMetrics).
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    get_metrics(&format!("http://{addr}/metrics"))
        .await
        .text()
        .await
        .unwrap()
}
