//! Regression: a Kafka broker restart under load must not stall a partition.
//! It stops and starts the real local broker (`./dev stop kafka`, `./dev up
//! kafka`), so it lives alone in this test binary: cargo runs test binaries
//! one after another, and no other test of this binary runs meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use polystream_common::events::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{Env, unique_id};
use uuid::Uuid;

fn dev(args: &[&str]) {
    // At run time: the target dir is shared between checkouts.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let status = Process::new(root.join("dev"))
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ./dev {args:?}: {e}"));
    assert!(status.success(), "./dev {args:?} failed: {status}");
}

/// Restarts the broker even when the test fails half-way.
struct BrokerBack;
impl Drop for BrokerBack {
    fn drop(&mut self) {
        dev(&["up", "kafka"]);
    }
}

async fn payments(t: &Env, uid: i64) -> i64 {
    t.count("SELECT count(*) FROM payments WHERE user_id = $1", uid)
        .await
}

/// The group's committed offsets reach the end of every partition.
fn caught_up(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    for p in 0..partitions {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        if at < high {
            return Err(format!("partition {p}: committed {at}, end {high}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_under_load_stalls_no_partition() {
    let t = Env::new().await;
    let p = t.start().await;
    // Three users, so every partition gets work; each user's payments queue
    // up behind each other far past the backlog at which fetching pauses.
    let users: Vec<i64> = (0..3).map(|_| unique_id()).collect();
    for &uid in &users {
        t.send(&support::registration(uid, &format!("User {uid}")))
            .await;
    }
    const PER_USER: i64 = 3000;
    for chunk in 0..(PER_USER / 100) {
        let sends = users.iter().flat_map(|&uid| {
            (0..100).map(move |i| {
                Command::PaymentRecorded(PaymentRecorded {
                    payment_id: Uuid::now_v7(),
                    user_id: uid,
                    amount_cents: 100 + chunk * 100 + i,
                    currency: "BRL".into(),
                    method: PaymentMethod::Pix,
                    status: PaymentStatus::Approved,
                    paid_at: Utc::now(),
                })
            })
        });
        let cmds: Vec<Command> = sends.collect();
        join_all(cmds.iter().map(|c| t.send(c))).await;
    }
    // The broker goes away while every partition is mid-backlog.
    let deadline = Instant::now() + Duration::from_secs(60);
    while payments(&t, users[0]).await < 20 {
        assert!(Instant::now() < deadline, "processing did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let _back = BrokerBack;
        dev(&["stop", "kafka"]);
        tokio::time::sleep(Duration::from_secs(20)).await;
    }

    let bootstrap = t.config.stores.kafka_bootstrap_servers.clone();
    let (group, topic) = (
        t.config.group_id.clone(),
        t.config.topics.user_events.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut counts = Vec::new();
        for &uid in &users {
            counts.push(payments(&t, uid).await);
        }
        let offsets = caught_up(&bootstrap, &group, &topic, 3);
        if counts.iter().all(|&c| c == PER_USER) && offsets.is_ok() {
            break;
        }
        assert!(
            counts.iter().all(|&c| c <= PER_USER),
            "a payment was applied twice: {counts:?}"
        );
        assert!(
            Instant::now() < deadline,
            "not drained 240 s after the broker came back: payments per user {counts:?} of \
             {PER_USER}; offsets: {offsets:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    p.stop().await.unwrap();
    t.cleanup().await;
}
