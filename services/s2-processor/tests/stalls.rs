//! Stall detection against the real servers: a partition whose events wait
//! on an unreachable PostgreSQL longer than `STALL_AFTER_SECONDS` makes
//! `/ready` name it, sets `polystream_kafka_partition_stalled`, and both
//! clear once it moves again. The lag gauge is the group's real lag.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::time::{Duration, Instant};

use polystream_smoke_tests::metrics_text::sample;
use serde_json::Value;
use support::{Env, unique_id};

async fn ready(addr: std::net::SocketAddr) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn metric(addr: std::net::SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = support::get_metrics(&format!("http://{addr}/metrics"))
        .await
        .text()
        .await
        .unwrap();
    sample(&text, name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_waiting_past_the_window_is_reported_stalled_until_it_moves() {
    let t = Env::new().await;
    let url = t.config.stores.database_url.clone();
    let (head, rest) = url.rsplit_once('@').expect("DATABASE_URL has user@host");
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let proxy = support::Proxy::start(hostport.to_owned()).await;
    let mut config = t.config.clone();
    config.stores.database_url = format!("{head}@{}/{path}", proxy.addr);
    config.stall_after = Duration::from_secs(3);
    let p = t.start_with(config).await;
    assert_eq!(ready(p.http_addr).await.0, 200);

    proxy.cut();
    let uid = unique_id();
    let reg = t
        .send(&support::registration(uid, &format!("User {uid}")))
        .await;
    let topic = t.config.topics.user_events.clone();
    let group = t.config.group_id.clone();

    // Sampled every 5 s: reported within the window plus two samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let (code, body) = ready(p.http_addr).await;
        let partitions = body["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "partitions"))
            .cloned();
        if code == 503
            && let Some(c) = partitions
            && c["ok"] == false
        {
            break c["error"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no stall reported in /ready: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(reason.contains(&format!("partition {topic}[")), "{reason}");
    assert!(reason.contains("stalled: 1 records behind"), "{reason}");
    assert!(reason.contains("no progress since 20"), "{reason}");
    // The gauges follow at the next sample (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut stalled = Vec::new();
        let mut lags = Vec::new();
        for part in ["0", "1", "2"] {
            let labels = [
                ("messaging_destination_name", topic.as_str()),
                ("messaging_destination_partition_id", part),
                ("messaging_consumer_group_name", group.as_str()),
            ];
            stalled.push(metric(p.http_addr, "polystream_kafka_partition_stalled", &labels).await);
            lags.push(metric(p.http_addr, "polystream_kafka_consumer_lag", &labels).await);
        }
        if stalled.iter().flatten().sum::<f64>() == 1.0 {
            // The stalled partition is the one the command waits on: lag 1;
            // the others have nothing waiting.
            let lags: Vec<f64> = lags.into_iter().map(Option::unwrap).collect();
            let flags: Vec<f64> = stalled.into_iter().map(Option::unwrap).collect();
            assert_eq!(lags, flags, "lag per partition {lags:?}, stalled {flags:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stall gauge did not follow /ready: stalled {stalled:?}, lag {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = ready(p.http_addr).await;
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not ready after PostgreSQL came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = t.status.get(reg.correlationid).await.unwrap().unwrap();
    assert_eq!(
        status.state,
        polystream_common::status::State::Completed,
        "{status:?}"
    );
    p.stop().await.unwrap();
    t.cleanup().await;
}
