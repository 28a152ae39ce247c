//! Health, errors, the status endpoint, Kafka unavailability.

use std::time::{Duration, Instant};

use polystream_common::status::{CommandStatus, State, StatusStore};
use serde_json::{Value, json};

use crate::harness::{expect_problem, start};

#[tokio::test]
async fn health_ready_metrics_and_problem_fallbacks() {
    let h = start(&[]).await;
    assert_eq!(h.get("/health", None).await.status(), 200);
    let ready = h.get("/ready", None).await;
    assert_eq!(ready.status(), 200);
    let r: Value = ready.json().await.unwrap();
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(h.get("/metrics", None).await.status(), 200);
    expect_problem(h.get("/nowhere", None).await, 404, None).await;
    let res = h.http.patch(h.url("/v1/users")).send().await.unwrap();
    expect_problem(res, 405, None).await;
    // Too large a body is 413, not a 5xx.
    let big = "x".repeat(h.config.max_body_bytes + 10);
    let res = h
        .post(
            "/v1/users",
            json!({"name": big, "email": "a@b.co", "password": "password123"}),
            None,
        )
        .await;
    expect_problem(res, 413, None).await;
    let res = h
        .http
        .post(h.url("/v1/users"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(res, 415, None).await;
}

#[tokio::test]
async fn openapi_and_docs_are_served_and_committed_document_is_current() {
    let h = start(&[]).await;
    let doc: Value = h.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["paths"]["/v1/users"]["post"].is_object());
    let docs = h.get("/docs/", None).await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    // Read at run time: checkouts share the target dir, so a path baked in at
    // compile time may name another checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let committed = std::fs::read_to_string(
        std::path::Path::new(&manifest_dir).join("../../docs/openapi.json"),
    )
    .unwrap_or_default();
    assert!(
        committed == polystream_s1_gateway::openapi::document(),
        "docs/openapi.json is stale; regenerate it with \
         `cargo run -p polystream-s1-gateway -- --print-openapi > docs/openapi.json`"
    );
}

#[tokio::test]
async fn long_polls_are_bounded_share_one_subscription_and_unknown_ids_answer_at_once() {
    let h = start(&[("STATUS_WAIT_MAX_CONCURRENT", "2")]).await;
    // An unknown id: 404 at once, not after the wait it asked for.
    let started = Instant::now();
    expect_problem(
        h.get(
            &format!("/v1/status/{}?wait=20", uuid::Uuid::new_v4()),
            None,
        )
        .await,
        404,
        None,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an unknown id waited {:?}",
        started.elapsed()
    );

    // A pending command: two long-polls wait (the bound), a third answers
    // `pending` at once; then the outcome wakes both.
    let client = redis::Client::open(h.config.stores.redis_url.as_str()).unwrap();
    let store = StatusStore::new(
        client.clone(),
        redis::aio::ConnectionManager::new(client.clone())
            .await
            .unwrap(),
    );
    let cid = uuid::Uuid::new_v4();
    store.mark_pending(cid, "polystream.test.v1").await.unwrap();
    let url = format!("/v1/status/{cid}?wait=20");
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (http, full) = (h.http.clone(), format!("{}{url}", h.base));
            tokio::spawn(async move {
                let res = http.get(full).send().await.unwrap();
                res.json::<Value>().await.unwrap()
            })
        })
        .collect();
    // Once both wait, a third, beyond the bound, answers at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let third: Value = h.get(&url, None).await.json().await.unwrap();
    assert_eq!(third["state"], "pending", "{third}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a long-poll beyond the bound of 2 waited {:?}",
        started.elapsed()
    );
    // No per-request subscription: nobody subscribed to this command's channel.
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let numsub: (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("status-changed:{cid}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(numsub.1, 0, "a long-poll subscribed on its own");
    let mut done = CommandStatus::pending(cid, "polystream.test.v1");
    done.state = State::Completed;
    store.record(&done).await.unwrap();
    for w in waiters {
        let body = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("a waiting long-poll was not woken by the outcome")
            .unwrap();
        assert_eq!(body["state"], "completed", "{body}");
    }
}

#[tokio::test]
async fn status_long_poll_returns_as_soon_as_the_outcome_is_recorded() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let (body, _) = h.update_preferences(uid, Some(&token)).await;
    let cid: uuid::Uuid = body["correlation_id"].as_str().unwrap().parse().unwrap();

    let client = redis::Client::open(h.config.stores.redis_url.as_str()).unwrap();
    let store = StatusStore::new(
        client.clone(),
        redis::aio::ConnectionManager::new(client).await.unwrap(),
    );
    let recorder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut s = CommandStatus::pending(cid, "polystream.preferences.updated.v1");
        s.state = State::Completed;
        s.result = Some(json!({"user_id": uid}));
        store.record(&s).await.unwrap();
    });
    let started = Instant::now();
    let res = h.get(&format!("/v1/status/{cid}?wait=20"), None).await;
    let elapsed = started.elapsed();
    let status: Value = res.json().await.unwrap();
    assert_eq!(status["state"], "completed", "{status}");
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?}");
    recorder.await.unwrap();

    expect_problem(
        h.get("/v1/status/not-a-uuid", None).await,
        400,
        Some("path.correlation_id"),
    )
    .await;
    expect_problem(
        h.get(&format!("/v1/status/{cid}?wait=31"), None).await,
        400,
        Some("query.wait"),
    )
    .await;
    expect_problem(
        h.get(&format!("/v1/status/{cid}?wait=soon"), None).await,
        400,
        Some("query.wait"),
    )
    .await;
    expect_problem(
        h.get(&format!("/v1/status/{}", uuid::Uuid::new_v4()), None)
            .await,
        404,
        None,
    )
    .await;
}

#[tokio::test]
async fn kafka_unreachable_is_503_never_202() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let h = start(&[
        ("KAFKA_BOOTSTRAP_SERVERS", &addr),
        ("KAFKA_ACK_TIMEOUT_SECONDS", "2"),
    ])
    .await;
    let res = h
        .post(
            "/v1/users",
            json!({"name": "Ana", "email": "ana@example.com", "password": "password123"}),
            None,
        )
        .await;
    let p = expect_problem(res, 503, None).await;
    assert!(p["detail"].as_str().unwrap().contains("kafka"), "{p}");
    assert_eq!(h.get("/ready", None).await.status(), 503);
}

#[tokio::test]
async fn bootstrap_admin_is_registered_once_with_a_hashed_password() {
    let email = format!("{}@admin.example", crate::harness::unique("root"));
    let secret = "bootstrap-secret-99";
    let h = start(&[("ADMIN_EMAIL", &email), ("ADMIN_PASSWORD", secret)]).await;
    let (key, bytes, ev) = h.next_event().await;
    assert_eq!(ev["type"], "polystream.user.registered.v1");
    assert_eq!(ev["data"]["email"], email.as_str());
    assert_eq!(ev["data"]["admin"], true);
    assert_eq!(key, format!("user/{}", ev["data"]["user_id"]));
    assert!(!String::from_utf8_lossy(&bytes).contains(secret));

    // Once the account exists (S2 wrote it), a restart publishes nothing.
    sqlx::query("INSERT INTO users (user_id, name, email, password_hash, admin) VALUES ($1, 'Administrator', $2, $3, true)")
        .bind(ev["data"]["user_id"].as_i64().unwrap())
        .bind(&email)
        .bind(ev["data"]["password_hash"].as_str().unwrap())
        .execute(&h.pg)
        .await
        .unwrap();
    let again = start(&[("ADMIN_EMAIL", &email), ("ADMIN_PASSWORD", secret)]).await;
    let res = again
        .post(
            "/v1/sessions",
            json!({"email": email, "password": secret}),
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let token: Value = res.json().await.unwrap();
    let res = again
        .post(
            "/v1/titles",
            json!({"title": "X", "kind": "movie", "year": 2000}),
            token["token"].as_str(),
        )
        .await;
    // The only event on the new topic is the title: no second registration.
    again
        .expect_command(res, "polystream.title.upserted.v1")
        .await;
}
