//! The whole platform in one process — S1, S2 and S3 on their own topics,
//! consumer groups and audit indices — against the real local servers: one
//! user's journey through every store, its audit trail, and proof that the
//! clear-text password is nowhere.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use polystream_common::config::Reader;
use polystream_smoke_tests::{endpoints, unique};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// Every log line the three services write during the tests.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
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

struct LogSink(Arc<Mutex<Vec<u8>>>);
impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Platform {
    api: String,
    audit: String,
    topics: [String; 3],
    index_prefix: String,
    admin: (String, String),
    http: reqwest::Client,
    s1_stop: Option<tokio::sync::oneshot::Sender<()>>,
    s2: Option<polystream_s2_processor::Running>,
    s3: Option<polystream_s3_monitor::Monitor>,
    _spool: std::path::PathBuf,
}

fn settings(overrides: &[(&str, String)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = std::env::vars().collect();
    for (k, v) in overrides {
        m.insert((*k).to_string(), v.clone());
    }
    m
}

impl Platform {
    async fn start() -> Self {
        logs();
        endpoints(); // fails early, naming a bad setting
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
            _spool: spool,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.s1_stop.take() {
            let _ = tx.send(());
        }
        if let Some(s2) = self.s2.take() {
            s2.stop().await.unwrap();
        }
        if let Some(s3) = self.s3.take() {
            s3.stop().await.unwrap();
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Sends a command and waits for its outcome; panics unless it completed.
    async fn command(
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

    async fn outcome(&self, accepted: &Value) -> Value {
        let url = accepted["status_url"].as_str().expect("status_url");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let res = self
                .http
                .get(format!("{url}?wait=10"))
                .send()
                .await
                .unwrap();
            let body: Value = res.json().await.unwrap();
            if body["state"] != "pending" {
                return body;
            }
            assert!(Instant::now() < deadline, "no outcome within 60s: {body}");
        }
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self
                .send(
                    reqwest::Method::POST,
                    "/v1/sessions",
                    None,
                    Some(json!({"email": email, "password": password})),
                )
                .await;
            if status == 201 {
                return body["token"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "cannot log in as {email}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Every record on the platform's topics.
    fn all_records(&self) -> Vec<Vec<u8>> {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_journey_through_every_store_with_audit_and_no_clear_text_password() {
    use reqwest::Method;
    let p = Platform::start().await;
    let password = format!("Pw-{}", uuid::Uuid::new_v4());
    let email = format!("{}@example.com", unique("ana"));

    // PostgreSQL, through S1 → Kafka → S2.
    let reg = p
        .command(
            Method::POST,
            "/v1/users",
            None,
            json!({"name": "Ana Souza", "email": email, "password": password}),
        )
        .await;
    let user_id = reg["accepted"]["user_id"]
        .as_i64()
        .expect("user id allocated");
    let token = p.login(&email, &password).await;
    let me = format!("/v1/users/{user_id}");
    p.command(
        Method::PUT,
        &format!("{me}/subscription"),
        Some(&token),
        json!({"plan": "premium"}),
    )
    .await;
    p.command(
        Method::POST,
        &format!("{me}/payments"),
        Some(&token),
        json!({"amount_cents": 3990, "method": "pix"}),
    )
    .await;
    p.command(
        Method::PUT,
        &format!("{me}/preferences"),
        Some(&token),
        json!({"language": "pt-BR", "notifications": true, "theme": "dark"}),
    )
    .await;
    let (s, sub) = p
        .send(
            Method::GET,
            &format!("{me}/subscription"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((s, sub["plan"].as_str()), (200, Some("premium")), "{sub}");
    let (s, pays) = p
        .send(Method::GET, &format!("{me}/payments"), Some(&token), None)
        .await;
    assert_eq!(s, 200, "{pays}");
    assert!(pays.to_string().contains("3990"), "{pays}");

    // MongoDB catalog (admin) and activity.
    let admin = p.login(&p.admin.0, &p.admin.1).await;
    let title = p
        .command(
            Method::POST,
            "/v1/titles",
            Some(&admin),
            json!({"title": "Cidade de Deus", "description": "Rio, 1970s.", "kind": "movie", "year": 2002, "genres": ["drama", "crime"]}),
        )
        .await;
    let title_id = title["accepted"]["title_id"]
        .as_i64()
        .expect("title id allocated");
    let (s, t) = p
        .send(
            Method::GET,
            &format!("/v1/titles/{title_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (s, t["title"].as_str()),
        (200, Some("Cidade de Deus")),
        "{t}"
    );
    p.command(
        Method::POST,
        &format!("{me}/views"),
        Some(&token),
        json!({"title_id": title_id, "seconds_watched": 7800, "position_pct": 100.0}),
    )
    .await;
    p.command(
        Method::PUT,
        &format!("{me}/ratings/{title_id}"),
        Some(&token),
        json!({"stars": 5}),
    )
    .await;
    let (s, views) = p
        .send(Method::GET, &format!("{me}/views"), Some(&token), None)
        .await;
    assert_eq!(s, 200, "{views}");
    assert!(views.to_string().contains("Cidade de Deus"), "{views}");
    // Redis rankings.
    let (s, rank) = p
        .send(
            Method::GET,
            "/v1/rankings/most-watched?window=all",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{rank}");
    assert!(rank.to_string().contains(&title_id.to_string()), "{rank}");

    // The audit trail of the registration, from S3 (indexing is asynchronous).
    let corr = reg["accepted"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let trail = loop {
        let res = p
            .http
            .get(format!("{}/v1/audit/{corr}", p.audit))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let body: Value = res.json().await.unwrap();
            if body["events"].as_array().map(Vec::len).unwrap_or(0) >= 2 {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete audit trail for {corr} within 60s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let types: Vec<_> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        types,
        [
            json!("polystream.user.registered.v1"),
            json!("polystream.command.completed.v1")
        ],
        "{trail}"
    );

    // The clear-text password is nowhere: Kafka, PostgreSQL, OpenSearch, logs.
    let records = p.all_records();
    assert!(
        records.len() >= 14,
        "expected every command and outcome on the topics, got {}",
        records.len()
    );
    assert!(
        records
            .iter()
            .all(|r| !String::from_utf8_lossy(r).contains(&password)),
        "password on Kafka"
    );
    let pool = sqlx::PgPool::connect(&endpoints().database_url)
        .await
        .unwrap();
    let (hash, leaks): (String, i64) = sqlx::query_as(
        "SELECT (SELECT password_hash FROM users WHERE user_id = $1),
                (SELECT count(*) FROM users WHERE strpos(name || email || password_hash || coalesce(cpf, ''), $2) > 0)
              + (SELECT count(*) FROM processed_events WHERE strpos(outcome::text, $2) > 0)",
    )
    .bind(user_id)
    .bind(&password)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        hash.starts_with("$argon2id$"),
        "stored hash is not argon2id"
    );
    assert_eq!(leaks, 0, "password in PostgreSQL");
    let docs: Value = p
        .http
        .get(format!(
            "{}/{}-*/_search?size=1000",
            endpoints().opensearch_url,
            p.index_prefix
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let indexed = docs["hits"]["hits"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        indexed >= 14,
        "expected the audit index to hold the journey, got {indexed}: {docs}"
    );
    assert!(
        !docs.to_string().contains(&password),
        "password in OpenSearch"
    );
    assert!(
        !docs.to_string().contains("$argon2id$"),
        "password hash in OpenSearch"
    );
    let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!log.is_empty(), "no log lines captured");
    assert!(!log.contains(&password), "password in the logs");

    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_endpoints_answer_like_the_original_and_complete() {
    let p = Platform::start().await;
    // Seed 002's client sends no body: every field is generated.
    let (s, created) = p.send(reqwest::Method::POST, "/usuarios", None, None).await;
    assert_eq!(s, 200, "{created}");
    let corr = created["correlation_id"]
        .as_str()
        .expect("correlation_id")
        .to_owned();
    assert!(created["status_url"].as_str().is_some(), "{created}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, st) = p
            .send(reqwest::Method::GET, &format!("/status/{corr}"), None, None)
            .await;
        assert_eq!(s, 200, "{st}");
        if st.to_string().contains("completed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed registration not completed: {st}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (s, health) = p.send(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(s, 200, "{health}");
    p.stop().await;
}
