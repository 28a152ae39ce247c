//! Issue 10, reproduction 1: a registration whose name holds a NUL (which
//! PostgreSQL refuses, SQLSTATE 22021) written straight to the topic, past
//! S1, must not halt its partition. S2's own validation refuses it: the
//! record is dead-lettered and its command fails with a reason, and every
//! command after it on the same partition completes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::time::Duration;

use polystream_common::events::{Command, UserRegistered};
use polystream_smoke_tests::metrics_text::sample;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use support::{Env, unique_id, unique_name};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

fn register(user_id: i64, name: &str) -> Command {
    Command::UserRegistered(UserRegistered {
        user_id,
        name: name.into(),
        email: format!("poison-{user_id}@example.com"),
        password_hash: HASH.into(),
        cpf: None,
        admin: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_in_a_name_is_dead_lettered_and_the_16_registrations_after_it_complete() {
    let mut t = Env::new().await;
    let p = t.start().await;
    let bad_uid = unique_id();
    // Every record on the poisoned record's key, so all share its partition.
    let key = format!("user/{bad_uid}");
    let poison = Env::envelope(&register(bad_uid, "Bad\u{0}Name"));
    let poison_bytes = serde_json::to_vec(&poison).unwrap();
    assert!(
        String::from_utf8_lossy(&poison_bytes).contains("Bad\\u0000Name"),
        "the NUL travels as JSON's \\u0000 escape"
    );
    t.send_raw(
        &key,
        &poison_bytes,
        &[("traceparent", support::TRACEPARENT)],
    )
    .await;
    let mut after = Vec::new();
    for _ in 0..16 {
        let uid = unique_id();
        let env = Env::envelope(&register(uid, &format!("User {uid}")));
        t.send_raw(
            &key,
            &serde_json::to_vec(&env).unwrap(),
            &[("traceparent", support::TRACEPARENT)],
        )
        .await;
        after.push((uid, env));
    }

    for (uid, env) in &after {
        let out = t.outcome(env).await;
        assert_eq!(
            out.event_type, "polystream.command.completed.v1",
            "registration of {uid} after the poison: {}",
            out.data
        );
        let state = t.status_of(env.correlationid).await.state;
        assert_eq!(serde_json::to_value(state).unwrap(), "completed");
        let n = t
            .count("SELECT count(*) FROM users WHERE user_id = $1", *uid)
            .await;
        assert_eq!(n, 1, "user {uid} stored once");
    }

    // The poisoned command is final: failed, with the field and the reason.
    let status = t.status_of(poison.correlationid).await;
    assert_eq!(
        serde_json::to_value(status.state).unwrap(),
        "failed",
        "{status:?}"
    );
    let reason = status.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("data.name: must not contain control characters (found U+0000)"),
        "{status:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE user_id = $1", bad_uid)
            .await,
        0,
        "nothing of the poisoned command was stored"
    );

    // Dead-lettered unchanged, with invalid_data as the reason.
    let dlq: StreamConsumer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            &t.config.stores.kafka_bootstrap_servers,
        )
        .set("group.id", unique_name("s2t-dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[&t.config.topics.dead_letter]).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
        .await
        .expect("a dead letter within 60s")
        .unwrap();
    assert_eq!(m.payload(), Some(poison_bytes.as_slice()));
    assert_eq!(m.key(), Some(key.as_bytes()));
    let reason = m
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "dlq_reason")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap();
    assert!(reason.contains("data.name"), "{reason}");
    let metrics = support::get_metrics(&format!("http://{}/metrics", p.http_addr))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &metrics,
            "polystream_dead_lettered_events_total",
            &[("reason", "invalid_data")]
        ),
        Some(1.0),
        "{metrics}"
    );
    p.stop().await.unwrap();
    t.cleanup().await;
}
