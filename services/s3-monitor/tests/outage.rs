//! A real OpenSearch outage: the server is stopped with `./dev stop` while
//! events keep arriving, then started again with `./dev up`. Nothing may be
//! lost or doubled. A test binary of its own, so no other test shares the
//! outage (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use polystream_common::events::Envelope;
use polystream_common::kafka::{DEFAULT_DELIVERY_TIMEOUT, producer, publish};
use polystream_s3_monitor::{Config, Monitor};
use polystream_smoke_tests::{endpoints, unique};
use serde_json::{Value, json};
use uuid::Uuid;

fn dev(args: &[&str]) {
    // Resolved at run time: checkouts share the target dir, so a path baked in
    // at compile time may name another checkout.
    let script =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../dev");
    let status = Command::new(script).args(args).status().unwrap();
    assert!(
        status.success(),
        "`./dev {}` failed: {status}",
        args.join(" ")
    );
}

async fn count(http: &reqwest::Client, os: &str, prefix: &str) -> Option<u64> {
    let _ = http.post(format!("{os}/{prefix}-*/_refresh")).send().await;
    let res = http
        .get(format!("{os}/{prefix}-*/_count"))
        .send()
        .await
        .ok()?;
    let body: Value = res.json().await.ok()?;
    body["count"].as_u64()
}

async fn wait_for(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {secs}s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_stopped_and_restarted_mid_run_loses_nothing() {
    let ep = endpoints();
    let http = reqwest::Client::new();
    let os = support::opensearch(&http).await;
    let id = unique("s3-outage");
    let brokers = ep.kafka_bootstrap_servers.clone();
    let topics = support::unique_topics(&brokers, &id, (3, 3)).await;
    let monitor = Monitor::start(Config {
        flow_timeout: Duration::from_secs(300),
        ..support::config(&brokers, &os, topics.clone(), &id, 3)
    })
    .await
    .unwrap();
    let producer = producer(&brokers, "s3-outage-test", DEFAULT_DELIVERY_TIMEOUT).unwrap();
    let mut sent = Vec::new();
    let send_batch = async |n: usize, sent: &mut Vec<Uuid>| {
        for i in 0..n {
            let env = Envelope::new(
                "/polystream/s1-gateway",
                "polystream.title.rated.v1",
                Some(format!("user/{}", i + 1)),
                Uuid::now_v7(),
                json!({"user_id": i + 1, "title_id": 7, "stars": 4}),
            );
            publish(
                &producer,
                &topics.user_events,
                &format!("user/{}", i + 1),
                &env,
                &[],
            )
            .await
            .unwrap();
            sent.push(env.id);
        }
    };

    send_batch(5, &mut sent).await;
    wait_for("the first 5 events indexed", 60, async || {
        count(&http, &os, &id).await == Some(5)
    })
    .await;

    dev(&["stop", "opensearch"]);
    let ready = format!("http://{}/ready", monitor.addr);
    send_batch(5, &mut sent).await;
    // S3 keeps consuming: the events land in its spool.
    wait_for(
        "the events sent during the outage spooled",
        60,
        async || {
            let body: Value = match http.get(&ready).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => return false,
            };
            body["opensearch"]["available"] == false
                && body["opensearch"]["spooled_segments"].as_u64().unwrap_or(0) > 0
        },
    )
    .await;
    send_batch(5, &mut sent).await;

    dev(&["up", "opensearch"]);
    wait_for("all 15 events indexed after the restart", 180, async || {
        count(&http, &os, &id).await == Some(15)
    })
    .await;

    // Exactly once: every event id present, no extra documents.
    let body: Value = http
        .get(format!("{os}/{id}-*/_search?size=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = body["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = sent.iter().map(Uuid::to_string).collect();
    want.sort();
    assert_eq!(ids, want);
    monitor.stop().await.unwrap();
}
