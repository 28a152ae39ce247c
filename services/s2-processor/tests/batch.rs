//! A partition with a backlog is processed in batches (one PostgreSQL
//! transaction, outcomes sent before any is awaited): every command still
//! gets its own outcome, effects happen exactly once, and a batch that hits
//! a broken rule or a redelivered event is redone one event at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[allow(dead_code)] // the shared support, partly used here
mod support;

use chrono::{Duration as Days, Utc};
use mongodb::bson::{Document, doc};
use polystream_common::events::*;
use polystream_smoke_tests::metrics_text::sample;
use support::{Env, metrics_text, registration, unique_id};
use uuid::Uuid;

fn pay(user_id: i64) -> Command {
    Command::PaymentRecorded(PaymentRecorded {
        payment_id: Uuid::now_v7(),
        user_id,
        amount_cents: 1990,
        currency: "BRL".into(),
        method: PaymentMethod::Pix,
        status: PaymentStatus::Approved,
        paid_at: Utc::now(),
    })
}

fn view(user_id: i64, title_id: i64, minutes_ago: i64) -> Command {
    Command::ViewRecorded(ViewRecorded {
        view_id: Uuid::now_v7(),
        user_id,
        title_id,
        seconds_watched: 60,
        position_pct: 10.0,
        completed: minutes_ago % 2 == 0,
        watched_at: Utc::now() - Days::minutes(minutes_ago),
    })
}

/// The processor's metrics once `name` is at least 1 (fails after 20 s).
async fn metric_reaches(p: &polystream_s2_processor::Running, name: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics_text(p.metrics_addr.unwrap()).await;
        if sample(&text, name, &[]).unwrap_or(0.0) >= 1.0 {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed 0:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_is_processed_in_batches_with_exactly_once_effects() {
    let mut t = Env::new().await;
    let (a, b, title) = (unique_id(), unique_id(), unique_id());

    // A title and a user b exist first.
    let p = t.start().await;
    t.expect_completed(&Command::TitleUpserted(TitleUpserted {
        title_id: title,
        title: "Batch".into(),
        description: "watched in batches".into(),
        kind: TitleKind::Movie,
        year: 2020,
        directors: vec![],
        cast: vec![],
        genres: vec!["drama".into()],
        categories: vec![],
        seasons: vec![],
    }))
    .await;
    t.expect_completed(&registration(b, "User B")).await;
    p.stop().await.unwrap();

    // The backlog, all on Kafka before the processor starts again: on a's
    // key a registration, payments and preferences; on b's key views with a
    // duplicate registration (a broken rule) in the middle.
    let mut a_envs = vec![Env::envelope(&registration(a, "User A"))];
    // Enough that some wait while others are handled, however the first
    // fetch arrives.
    for _ in 0..200 {
        a_envs.push(Env::envelope(&pay(a)));
    }
    let twice = a_envs[10].clone();
    a_envs.push(Env::envelope(&Command::PreferencesUpdated(
        PreferencesUpdated {
            user_id: a,
            language: "pt-BR".into(),
            notifications: false,
            theme: Theme::Dark,
        },
    )));
    let mut b_envs = Vec::new();
    for i in 0..20 {
        b_envs.push(Env::envelope(&view(b, title, 100 - i)));
    }
    let dup = Env::envelope(&registration(b, "User B again"));
    b_envs.push(dup.clone());
    for i in 20..40 {
        b_envs.push(Env::envelope(&view(b, title, 100 - i)));
    }
    let mut config = t.config.clone();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    // One lane at a time (a's and b's keys may share a partition): first a's
    // clean backlog, which goes in batches…
    for e in &a_envs {
        t.send_env(e).await;
    }
    let p = t.start_with(config.clone()).await;
    for e in &a_envs {
        let out = t.outcome(e).await;
        assert_eq!(
            out.event_type, "polystream.command.completed.v1",
            "{}: {}",
            e.event_type, out.data
        );
        assert_eq!(out.data["command_id"], e.id.to_string());
    }
    // Counted once the batch's sends are acknowledged, a moment after the
    // outcomes are visible.
    let text = metric_reaches(&p, "polystream_processor_batch_events_count").await;
    assert!(
        sample(&text, "polystream_processor_batch_events_sum", &[]).unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    p.stop().await.unwrap();

    // …then b's, where the broken rule abandons a batch: its events are
    // redone one by one, each with its own outcome.
    for e in &b_envs {
        t.send_env(e).await;
    }
    let p = t.start_with(config).await;
    for e in &b_envs {
        let out = t.outcome(e).await;
        let want = if e.id == dup.id {
            "polystream.command.failed.v1"
        } else {
            "polystream.command.completed.v1"
        };
        assert_eq!(out.event_type, want, "{}: {}", e.event_type, out.data);
        assert_eq!(out.data["command_id"], e.id.to_string());
    }
    metric_reaches(&p, "polystream_processor_batches_abandoned_total").await;
    assert_eq!(
        t.status_of(dup.correlationid).await.code.as_deref(),
        Some("duplicate_user")
    );

    // A payment sent again (as a producer retry would): the recorded outcome
    // again, and still one row.
    t.send_env(&twice).await;
    let again = t.outcome_n(twice.correlationid, 2).await;
    assert_eq!(again.event_type, "polystream.command.completed.v1");

    // Exactly once: the payment sent twice is one row.
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE user_id = $1", a)
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM payments WHERE user_id = $1", a)
            .await,
        200
    );
    assert_eq!(
        t.count("SELECT count(*) FROM preferences WHERE user_id = $1", a)
            .await,
        1
    );
    let views = t
        .mongo
        .collection::<Document>(polystream_stores::mongo::VIEWS)
        .count_documents(doc! {"user_id": b})
        .await
        .unwrap();
    assert_eq!(views, 40);
    // b's history head holds the latest views, newest first, and counts all.
    let head = t
        .mongo
        .collection::<Document>(polystream_stores::mongo::VIEW_HISTORY)
        .find_one(doc! {"_id": polystream_stores::views::head_id(b)})
        .await
        .unwrap()
        .expect("b's history head");
    assert_eq!(head.get_i64("total").unwrap(), 40);
    let items: Vec<serde_json::Value> =
        serde_json::from_str(head.get_str("items").unwrap()).unwrap();
    let at: Vec<chrono::DateTime<Utc>> = items
        .iter()
        .map(|i| i["watched_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(at.len(), polystream_stores::views::RECENT);
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "newest first: {at:?}");
    p.stop().await.unwrap();
    t.cleanup().await;
}
