//! Issue 10, reproduction 1: a registration whose name holds a NUL (which
//! PostgreSQL refuses, SQLSTATE 22021) written straight to the topic, past
//! S1, must not halt its partition. S2's own validation refuses it: the
//! record is dead-lettered and its command fails with a reason, and every
//! command after it on the same partition completes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // the shared support, partly used here
mod support;

use std::time::Duration;

use polystream_common::events::Command;
use polystream_smoke_tests::metrics_text::sample;
use rdkafka::Message;
use support::{Env, unique_id};

fn register(user_id: i64, name: &str) -> Command {
    support::registration(user_id, name)
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
    let dlq = t.dead_letters();
    let m = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
        .await
        .expect("a dead letter within 60s")
        .unwrap();
    assert_eq!(m.payload(), Some(poison_bytes.as_slice()));
    assert_eq!(m.key(), Some(key.as_bytes()));
    let reason = support::header(&m, "dlq_reason").unwrap();
    assert!(reason.contains("data.name"), "{reason}");
    let metrics = support::metrics_text(p.http_addr).await;
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
