//! Starting S1 for a test and looking at what it did.

use std::collections::HashMap;
use std::time::Duration;

use polystream_common::config::Reader;
use polystream_s1_gateway::Config;
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::oneshot;

pub struct Harness {
    pub base: String,
    pub http: Client,
    pub config: Config,
    pub pg: PgPool,
    pub redis: redis::aio::MultiplexedConnection,
    #[allow(dead_code)]
    pub mongo: mongodb::Database,
    consumer: Option<StreamConsumer>,
    _stop: oneshot::Sender<()>,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn config(overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert(
        "KAFKA_TOPIC_USER_EVENTS".into(),
        unique("s1-test-user-events"),
    );
    vars.insert(
        "KAFKA_TOPIC_RESPONSE_EVENTS".into(),
        unique("s1-test-responses"),
    );
    // Each S1 its own rate-limit budgets: tests share 127.0.0.1 and Redis.
    vars.insert("RATE_LIMIT_SCOPE".into(), unique("s1-test"));
    vars.insert("ADMIN_EMAIL".into(), String::new());
    vars.insert("ADMIN_PASSWORD".into(), String::new());
    for (k, v) in overrides {
        vars.insert((*k).into(), (*v).into());
    }
    let mut r = Reader::new(vars);
    let c = Config::read(&mut r);
    r.finish().unwrap_or_else(|e| panic!("{e}"));
    c
}

/// Logs and local (unexported) traces for the whole test binary, so spans,
/// trace ids in logs and metric exemplars behave as in production.
fn telemetry() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let mut c = polystream_common::telemetry::TelemetryConfig::local("polystream-s1-gateway");
        c.test_writer = true;
        // Kept for the process's lifetime: nothing is exported, nothing to
        // flush. A test binary that installed its own (an OTLP export) keeps it.
        if let Ok(guard) = polystream_common::telemetry::init_with(c) {
            std::mem::forget(guard);
        }
    });
}

/// Starts S1 with its own topic; `overrides` are extra environment variables.
pub async fn start(overrides: &[(&str, &str)]) -> Harness {
    telemetry();
    let mut config = config(overrides);
    let kafka_alive = !overrides
        .iter()
        .any(|(k, _)| *k == "KAFKA_BOOTSTRAP_SERVERS");
    if kafka_alive {
        polystream_common::kafka::ensure_topics(
            &config.stores.kafka_bootstrap_servers,
            &[(config.topics.user_events.as_str(), 1)],
            1,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Kafka is not reachable at {}: {e} (start it with `./dev up kafka`)",
                config.stores.kafka_bootstrap_servers
            )
        });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.public_url = format!("http://{addr}");
    let (stop, stopped) = oneshot::channel::<()>();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        polystream_s1_gateway::serve(server_config, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    let http = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://{addr}");
    for _ in 0..200 {
        if server.is_finished() {
            panic!("S1 did not start: {:?}", server.await);
        }
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = &config.stores;
    let pg = polystream_stores::pg::connect(&s.database_url, 2)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {}: {e}", s.database_url));
    let redis = redis::Client::open(s.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {}: {e}", s.redis_url));
    let mongo = polystream_stores::mongo::connect(&s.mongodb_uri)
        .await
        .unwrap();
    let consumer = if kafka_alive {
        Some(
            polystream_common::kafka::topic_reader(
                &s.kafka_bootstrap_servers,
                &config.topics.user_events,
            )
            .await
            .unwrap(),
        )
    } else {
        None
    };
    Harness {
        base,
        http,
        config,
        pg,
        redis,
        mongo,
        consumer,
        _stop: stop,
    }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Response {
        let mut r = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: Value, token: Option<&str>) -> Response {
        let mut r = self.http.put(self.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut r = self.http.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    /// The next event on this test's topic: (key, raw bytes, parsed JSON).
    pub async fn next_event(&self) -> (String, Vec<u8>, Value) {
        let c = self.consumer.as_ref().expect("this harness has no Kafka");
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("no event on the topic within 30s")
            .unwrap();
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let bytes = m.payload().unwrap().to_vec();
        let v = serde_json::from_slice(&bytes).unwrap();
        (key, bytes, v)
    }

    /// Asserts the 202 answer, the event on Kafka and the pending status; returns the event.
    pub async fn expect_command(&self, res: Response, event_type: &str) -> (Value, Value) {
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        let cid = body["correlation_id"].as_str().unwrap().to_owned();
        assert_eq!(body["status_url"], self.url(&format!("/v1/status/{cid}")));
        assert_eq!(location, body["status_url"].as_str().unwrap());
        let (key, _, event) = self.next_event().await;
        assert_eq!(event["type"], event_type);
        assert_eq!(event["correlationid"], cid.as_str());
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/polystream/s1-gateway");
        assert_eq!(event["subject"], key.as_str());
        let status: Value = self
            .get(&format!("/v1/status/{cid}"), None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["state"], "pending", "{status}");
        assert_eq!(status["command_type"], event_type);
        (body, event)
    }

    /// A valid preferences update of `uid` (dark theme): the command's
    /// 202 body and the event on Kafka, checked as [`Self::expect_command`] does.
    pub async fn update_preferences(&self, uid: i64, token: Option<&str>) -> (Value, Value) {
        let res = self
            .put(
                &format!("/v1/users/{uid}/preferences"),
                json!({"language": "pt-BR", "notifications": true, "theme": "dark"}),
                token,
            )
            .await;
        self.expect_command(res, "polystream.preferences.updated.v1")
            .await
    }

    /// The email of a user [`Harness::user`] made.
    pub async fn email_of(&self, user_id: i64) -> String {
        sqlx::query_scalar("SELECT email FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pg)
            .await
            .unwrap()
    }

    /// A session for `email` (password `password123`, as [`Harness::user`] sets).
    pub async fn login(&self, email: &str) -> String {
        self.login_answer(email).await["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `POST /v1/sessions`'s answer for `email`, which must be `201`.
    async fn login_answer(&self, email: &str) -> Value {
        let res = self
            .post(
                "/v1/sessions",
                json!({"email": email, "password": "password123"}),
                None,
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }

    /// A user written straight into PostgreSQL (as S2 would), logged in.
    pub async fn user(&self, admin: bool) -> (i64, String) {
        let mut con = self.redis.clone();
        let id: i64 = redis::cmd("INCR")
            .arg(polystream_stores::keys::NEXT_USER_ID)
            .query_async(&mut con)
            .await
            .unwrap();
        let email = format!("{}@test.example", unique("u"));
        let hash = polystream_s1_gateway::auth::hash_password_blocking("password123").unwrap();
        sqlx::query("INSERT INTO users (user_id, name, email, password_hash, admin) VALUES ($1, 'Test User', $2, $3, $4)")
            .bind(id)
            .bind(&email)
            .bind(&hash)
            .bind(admin)
            .execute(&self.pg)
            .await
            .unwrap();
        let body = self.login_answer(&email).await;
        assert_eq!(body["user_id"], id);
        (id, body["token"].as_str().unwrap().to_owned())
    }
}

/// Asserts a 4xx problem naming `field`.
pub async fn expect_problem(res: Response, status: u16, field: Option<&str>) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    if let Some(f) = field {
        let names: Vec<&str> = body["invalid-params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&f), "expected {f} in {body}");
    }
    body
}
