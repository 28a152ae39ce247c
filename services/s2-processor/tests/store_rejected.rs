//! A command that passes validation but that PostgreSQL rejects on every
//! attempt (a real data exception) fails with `store_rejected`, is
//! dead-lettered, and does not hold up its partition; a redelivery
//! republishes the recorded failure instead of trying again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // shared helpers this test does not use
mod support;

use std::time::Duration;

use chrono::NaiveDate;
use polystream_common::events::*;
use polystream_smoke_tests::metrics_text::sample;
use rdkafka::Message;
use support::{Env, unique_id};

fn subscription(user_id: i64, started_on: NaiveDate) -> Command {
    Command::SubscriptionChanged(SubscriptionChanged {
        user_id,
        plan: Plan::Basic,
        status: SubscriptionStatus::Active,
        started_on,
        renews_on: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_the_store_rejects_fails_is_dead_lettered_and_the_partition_moves_on() {
    let mut t = Env::new().await;
    let mut config = t.config.clone();
    config.permanent_attempts = 2;
    let p = t.start_with(config).await;
    let uid = unique_id();
    t.expect_completed(&support::registration(uid, &format!("User {uid}")))
        .await;

    // 5000 BC is a valid chrono date the contract accepts, but before
    // PostgreSQL's DATE range: SQLSTATE 22008, the same request every time.
    let bad = subscription(uid, NaiveDate::from_ymd_opt(-5000, 1, 1).unwrap());
    assert!(
        bad.validate().is_ok(),
        "the test needs a command that passes validation: {:?}",
        bad.validate()
    );
    let env = t.send(&bad).await;
    let out = t.outcome(&env).await;
    assert_eq!(
        out.event_type, "polystream.command.failed.v1",
        "{}",
        out.data
    );
    assert_eq!(out.data["code"], "store_rejected", "{}", out.data);
    let reason = out.data["reason"].as_str().unwrap();
    assert!(reason.contains("SQLSTATE 22008"), "{reason}");
    let status = t.status_of(env.correlationid).await;
    assert_eq!(status.code.as_deref(), Some("store_rejected"), "{status:?}");
    assert_eq!(serde_json::to_value(status.state).unwrap(), "failed");

    // Nothing committed, and the failure is on record in the ledger.
    assert_eq!(
        t.count("SELECT count(*) FROM subscriptions WHERE user_id = $1", uid)
            .await,
        0
    );
    let recorded: String = sqlx::query_scalar(
        "SELECT outcome->'data'->>'code' FROM processed_events WHERE event_id = $1",
    )
    .bind(env.id)
    .fetch_one(&t.pg)
    .await
    .unwrap();
    assert_eq!(recorded, "store_rejected");

    // The partition moved on: a later command for the same key completes.
    let good = subscription(uid, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
    t.expect_completed(&good).await;
    assert_eq!(
        t.count("SELECT count(*) FROM subscriptions WHERE user_id = $1", uid)
            .await,
        1
    );

    // Redelivered: the recorded failure is republished, not retried.
    t.send_env(&env).await;
    let again = t.outcome_n(env.correlationid, 2).await;
    assert_eq!(again.data, out.data);

    // The record went to the dead-letter topic once, unchanged, saying why.
    let dlq = t.dead_letters();
    let m = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
        .await
        .expect("a dead letter within 60s")
        .unwrap();
    let why = support::header(&m, "dlq_reason").unwrap();
    assert!(
        why.starts_with("store_rejected: postgresql: SQLSTATE 22008"),
        "{why}"
    );
    let dead: Envelope<serde_json::Value> = serde_json::from_slice(m.payload().unwrap()).unwrap();
    assert_eq!(dead.id, env.id);
    assert!(
        tokio::time::timeout(Duration::from_secs(3), dlq.recv())
            .await
            .is_err(),
        "the redelivery is not dead-lettered again"
    );

    let metrics = support::metrics_text(p.http_addr).await;
    assert_eq!(
        sample(
            &metrics,
            "polystream_dead_lettered_events_total",
            &[("reason", "store_rejected")]
        ),
        Some(1.0),
        "{metrics}"
    );
    p.stop().await.unwrap();
    t.cleanup().await;
}
