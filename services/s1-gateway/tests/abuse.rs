//! Bursts against the real `polystream-s1-gateway` process (so its memory
//! is its own), with the local PostgreSQL, Redis, Kafka and Mongo-wire
//! server (`./dev up`): 1 000 concurrent registrations stay within 200 MB
//! and those beyond the password-hashing bound get `503` + `Retry-After`;
//! 5 000 concurrent status long-polls share a bounded number of Redis
//! connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use polystream_common::config::StoreEndpoints;
use polystream_smoke_tests::{env_or, unique};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_polystream-s1-gateway");
const MAX_RSS_BYTES: u64 = 200 * 1024 * 1024;

/// One burst at a time: two at once on a small machine measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts S1 on a free port with its own topic and rate-limit scope.
    async fn start(extra: &[(&str, &str)]) -> Self {
        let brokers = env_or("KAFKA_BOOTSTRAP_SERVERS", StoreEndpoints::LOCAL_KAFKA);
        let topic = unique("s1-abuse");
        polystream_common::kafka::ensure_topics(&brokers, &[(topic.as_str(), 1)], 1)
            .await
            .unwrap_or_else(|e| {
                panic!("Apache Kafka is not reachable at {brokers}: {e} (start it with `./dev up kafka`)")
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let scope = unique("s1-abuse");
        let child = Command::new(BIN)
            .env("HTTP_ADDR", &addr)
            .env("PUBLIC_URL", format!("http://{addr}"))
            .env("KAFKA_TOPIC_USER_EVENTS", &topic)
            .env("RATE_LIMIT_SCOPE", &scope)
            .env("ADMIN_EMAIL", "")
            .env("ADMIN_PASSWORD", "")
            .env("RUST_LOG", "warn")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let mut g = Self {
            child,
            base: format!("http://{addr}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(_)) = g.child.try_wait() {
                let out = g.child.stderr.take().map(|mut e| {
                    let mut s = String::new();
                    let _ = std::io::Read::read_to_string(&mut e, &mut s);
                    s
                });
                panic!(
                    "S1 did not start (a store it needs is not up? start them with `./dev up`):\n{}",
                    out.unwrap_or_default()
                );
            }
            if http
                .get(format!("{}/ready", g.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("S1 was not ready within 30 s");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory so far (`VmHWM`).
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap()
    }

    /// TCP connections this process holds to `port` on 127.0.0.1.
    fn connections_to(&self, port: u16) -> usize {
        let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().to_string();
                Some(l.strip_prefix("socket:[")?.trim_end_matches(']').to_owned())
            })
            .collect();
        let remote = format!("0100007F:{port:04X}");
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // remote address, state ESTABLISHED (01), inode
                f.len() > 9 && f[2] == remote && f[3] == "01" && inodes.contains(f[9])
            })
            .count()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_registrations_stay_within_200_mb_and_the_excess_gets_503() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The rate limit off: the hashing pool is what must hold here.
    let s1 = Gateway::start(&[
        ("RATE_LIMIT_REGISTRATION", "off"),
        ("PASSWORD_HASH_QUEUE_SECONDS", "5"),
    ])
    .await;
    let http = client();
    let run = unique("burst");
    let sends = (0..1000).map(|i| {
        let http = http.clone();
        let url = format!("{}/v1/users", s1.base);
        let body = json!({
            "name": format!("Burst {i}"),
            "email": format!("{run}-{i}@example.com"),
            "password": "correct horse battery",
        });
        tokio::spawn(async move {
            let res = http.post(url).json(&body).send().await.unwrap();
            let retry = res.headers().contains_key("retry-after");
            (res.status().as_u16(), retry)
        })
    });
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for r in futures::future::join_all(sends).await {
        let (status, retry_after) = r.unwrap();
        if status == 503 {
            assert!(retry_after, "a 503 without Retry-After");
        }
        *by_status.entry(status).or_default() += 1;
    }
    let peak = s1.peak_rss();
    assert!(
        by_status.keys().all(|s| [202, 503].contains(s)),
        "{by_status:?}"
    );
    assert!(by_status.get(&202).is_some_and(|n| *n > 0), "{by_status:?}");
    assert!(
        by_status.get(&503).is_some_and(|n| *n > 0),
        "nothing was refused beyond the bound: {by_status:?}"
    );
    assert!(
        peak < MAX_RSS_BYTES,
        "S1 peaked at {} MB for {by_status:?}",
        peak / 1024 / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_concurrent_long_polls_share_a_bounded_set_of_redis_connections() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let s1 = Gateway::start(&[
        ("RATE_LIMIT_STATUS", "off"),
        ("RATE_LIMIT_REGISTRATION", "off"),
        ("STATUS_WAIT_MAX_CONCURRENT", "1000"),
    ])
    .await;
    let redis_port: u16 = env_or("REDIS_URL", StoreEndpoints::LOCAL_REDIS_URL)
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(6379);
    let http = client();
    // A command nobody processes (no S2 reads this topic): pending for good.
    let accepted: serde_json::Value = http
        .post(format!("{}/v1/users", s1.base))
        .json(&json!({
            "name": "Pending",
            "email": format!("{}@example.com", unique("pending")),
            "password": "correct horse battery",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_url = accepted["status_url"].as_str().unwrap().to_owned();
    let before = s1.connections_to(redis_port);
    let polls = (0..5000).map(|_| {
        let http = http.clone();
        let url = format!("{status_url}?wait=5");
        tokio::spawn(async move {
            let res = http.get(url).send().await?;
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, body))
        })
    });
    let polls = tokio::spawn(futures::future::join_all(polls));
    // While they wait: S1's Redis connections have not grown with them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = s1.connections_to(redis_port);
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = None;
    for r in polls.await.unwrap() {
        let key = match r.unwrap() {
            Ok((200, _)) => "200".to_owned(),
            Ok((s, body)) => {
                refused.get_or_insert(body);
                s.to_string()
            }
            Err(e) => format!("error: {e}"),
        };
        *by_status.entry(key).or_default() += 1;
    }
    assert_eq!(
        by_status.get("200"),
        Some(&5000),
        "{by_status:?}; first refusal: {refused:?}"
    );
    assert!(
        during <= before + 2,
        "S1's Redis connections grew from {before} to {during} with 5000 long-polls"
    );
    assert!(
        s1.peak_rss() < MAX_RSS_BYTES,
        "S1 peaked at {} MB",
        s1.peak_rss() / 1024 / 1024
    );
}
