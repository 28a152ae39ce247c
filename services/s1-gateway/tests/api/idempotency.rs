//! `Idempotency-Key`: a retry returns the first answer and publishes no
//! second event; a retry after an unacknowledged send repeats that event.

use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{expect_problem, start, unique};

async fn pay(
    h: &crate::harness::Harness,
    uid: i64,
    token: &str,
    key: &str,
    amount: i64,
) -> reqwest::Response {
    h.http
        .post(h.url(&format!("/v1/users/{uid}/payments")))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"amount_cents": amount, "method": "pix"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_publishes_nothing_more() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let key = unique("pay");
    let first = pay(&h, uid, &token, &key, 1990).await;
    let (answer, event) = h
        .expect_command(first, "polystream.payment.recorded.v1")
        .await;
    assert_eq!(answer["payment_id"], event["data"]["payment_id"]);

    let retry = pay(&h, uid, &token, &key, 1990).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.headers()["location"],
        answer["status_url"].as_str().unwrap()
    );
    let again: Value = retry.json().await.unwrap();
    assert_eq!(again, answer, "the same answer, ids included");

    // The same key for another request is a client bug, named.
    let other = pay(&h, uid, &token, &key, 2500).await;
    let p = expect_problem(other, 422, Some("header.idempotency-key")).await;
    assert_eq!(
        p["type"],
        "https://polystream.dev/problems/idempotency-key-reused"
    );

    // A new key is a new payment: exactly one more event, and it is that one.
    let second = pay(&h, uid, &token, &unique("pay"), 2500).await;
    let (answer2, event2) = h
        .expect_command(second, "polystream.payment.recorded.v1")
        .await;
    assert_ne!(answer2["payment_id"], answer["payment_id"]);
    assert_eq!(event2["data"]["amount_cents"], 2500);

    // A malformed key is named too.
    let res = pay(&h, uid, &token, "has spaces", 1).await;
    expect_problem(res, 400, Some("header.idempotency-key")).await;
}

#[tokio::test]
async fn a_refused_request_leaves_the_key_free() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let key = unique("fix");
    let res = h
        .http
        .post(h.url(&format!("/v1/users/{uid}/payments")))
        .bearer_auth(&token)
        .header("idempotency-key", &key)
        .json(&json!({"amount_cents": -5, "method": "pix"}))
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, Some("body.amount_cents")).await;
    // Fixed and retried under the same key: accepted.
    let res = pay(&h, uid, &token, &key, 5).await;
    h.expect_command(res, "polystream.payment.recorded.v1")
        .await;
}

#[tokio::test]
async fn a_retry_after_an_unacknowledged_send_repeats_the_same_event() {
    // Two replicas sharing Redis: the first cannot reach Kafka.
    let scope = unique("idem");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let broken = start(&[
        ("RATE_LIMIT_SCOPE", scope.as_str()),
        ("KAFKA_BOOTSTRAP_SERVERS", dead_addr.as_str()),
        ("KAFKA_ACK_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    let healthy = start(&[("RATE_LIMIT_SCOPE", scope.as_str())]).await;
    let (uid, token) = healthy.user(false).await;
    let key = unique("pay");

    // 503: the event may or may not have been written.
    let res = pay(&broken, uid, &token, &key, 4200).await;
    expect_problem(res, 503, None).await;

    // The client retries (another replica): the event recorded before the
    // first send goes out again, with its id, so S2 can apply it only once.
    let res = pay(&healthy, uid, &token, &key, 4200).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let answer: Value = res.json().await.unwrap();
    let consumer = polystream_common::kafka::topic_reader(
        &healthy.config.stores.kafka_bootstrap_servers,
        &healthy.config.topics.user_events,
    )
    .await
    .unwrap();
    let m = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.recv())
        .await
        .expect("no event within 30 s")
        .unwrap();
    let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
    assert_eq!(event["correlationid"], answer["correlation_id"]);
    assert_eq!(event["data"]["payment_id"], answer["payment_id"]);
    assert_eq!(event["data"]["amount_cents"], 4200);

    // The record held exactly this event before it was first sent.
    let mut redis = healthy.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("idempotency:{scope}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stored: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["state"], "done", "{stored}");

    // And a third try replays that answer.
    let res = pay(&healthy, uid, &token, &key, 4200).await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.json::<Value>().await.unwrap(), answer);
}
