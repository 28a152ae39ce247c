//! The whole platform in one process — S1, S2 and S3 on their own topics,
//! consumer groups and audit indices — against the real local servers: one
//! user's journey through every store, its audit trail, and proof that the
//! clear-text password is nowhere.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use polystream_smoke_tests::{endpoints, unique};
use serde_json::{Value, json};
use support::{Platform, logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_journey_through_every_store_with_audit_and_no_clear_text_password() {
    use reqwest::Method;
    let p = Platform::start().await;
    let password = format!("Pw-{}", uuid::Uuid::new_v4());
    let email = format!("{}@example.com", unique("ana"));

    // PostgreSQL, through S1 → Kafka → S2.
    let reg = p
        .command(
            Method::POST,
            "/v1/users",
            None,
            json!({"name": "Ana Souza", "email": email, "password": password}),
        )
        .await;
    let user_id = reg["accepted"]["user_id"]
        .as_i64()
        .expect("user id allocated");
    let token = p.login(&email, &password).await;
    let me = format!("/v1/users/{user_id}");
    p.command(
        Method::PUT,
        &format!("{me}/subscription"),
        Some(&token),
        json!({"plan": "premium"}),
    )
    .await;
    p.command(
        Method::POST,
        &format!("{me}/payments"),
        Some(&token),
        json!({"amount_cents": 3990, "method": "pix"}),
    )
    .await;
    p.command(
        Method::PUT,
        &format!("{me}/preferences"),
        Some(&token),
        json!({"language": "pt-BR", "notifications": true, "theme": "dark"}),
    )
    .await;
    let (s, sub) = p
        .send(
            Method::GET,
            &format!("{me}/subscription"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((s, sub["plan"].as_str()), (200, Some("premium")), "{sub}");
    let (s, pays) = p
        .send(Method::GET, &format!("{me}/payments"), Some(&token), None)
        .await;
    assert_eq!(s, 200, "{pays}");
    assert!(pays.to_string().contains("3990"), "{pays}");

    // MongoDB catalog (admin) and activity.
    let admin = p.login(&p.admin.0, &p.admin.1).await;
    let title = p
        .command(
            Method::POST,
            "/v1/titles",
            Some(&admin),
            json!({"title": "Cidade de Deus", "description": "Rio, 1970s.", "kind": "movie", "year": 2002, "genres": ["drama", "crime"]}),
        )
        .await;
    let title_id = title["accepted"]["title_id"]
        .as_i64()
        .expect("title id allocated");
    let (s, t) = p
        .send(
            Method::GET,
            &format!("/v1/titles/{title_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (s, t["title"].as_str()),
        (200, Some("Cidade de Deus")),
        "{t}"
    );
    p.command(
        Method::POST,
        &format!("{me}/views"),
        Some(&token),
        json!({"title_id": title_id, "seconds_watched": 7800, "position_pct": 100.0}),
    )
    .await;
    p.command(
        Method::PUT,
        &format!("{me}/ratings/{title_id}"),
        Some(&token),
        json!({"stars": 5}),
    )
    .await;
    let (s, views) = p
        .send(Method::GET, &format!("{me}/views"), Some(&token), None)
        .await;
    assert_eq!(s, 200, "{views}");
    assert!(views.to_string().contains("Cidade de Deus"), "{views}");
    // Redis rankings: the view counted, and the API serves the sorted set.
    let key = polystream_stores::keys::rank_views(
        polystream_stores::keys::Window::AllTime,
        chrono::Utc::now(),
    );
    assert_eq!(p.stores.zscore(&key, title_id).await, Some(1.0), "{key}");
    p.expect_ranking("/v1/rankings/most-watched?window=all&limit=100", &key)
        .await;

    // The audit trail of the registration, from S3 (indexing is asynchronous).
    let corr = reg["accepted"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let trail = loop {
        let res = p
            .http
            .get(format!("{}/v1/audit/{corr}", p.audit))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let body: Value = res.json().await.unwrap();
            if body["events"].as_array().map(Vec::len).unwrap_or(0) >= 2 {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete audit trail for {corr} within 60s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let types: Vec<_> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        types,
        [
            json!("polystream.user.registered.v1"),
            json!("polystream.command.completed.v1")
        ],
        "{trail}"
    );

    // The clear-text password is nowhere: Kafka, PostgreSQL, OpenSearch, logs.
    let records = p.all_records();
    assert!(
        records.len() >= 14,
        "expected every command and outcome on the topics, got {}",
        records.len()
    );
    assert!(
        records
            .iter()
            .all(|r| !String::from_utf8_lossy(r).contains(&password)),
        "password on Kafka"
    );
    let pool = sqlx::PgPool::connect(&endpoints().database_url)
        .await
        .unwrap();
    let (hash, leaks): (String, i64) = sqlx::query_as(
        "SELECT (SELECT password_hash FROM users WHERE user_id = $1),
                (SELECT count(*) FROM users WHERE strpos(name || email || coalesce(password_hash, '') || coalesce(cpf, ''), $2) > 0)
              + (SELECT count(*) FROM processed_events WHERE strpos(outcome::text, $2) > 0)",
    )
    .bind(user_id)
    .bind(&password)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        hash.starts_with("$argon2id$"),
        "stored hash is not argon2id"
    );
    assert_eq!(leaks, 0, "password in PostgreSQL");
    let docs: Value = p
        .http
        .get(format!(
            "{}/{}-*/_search?size=1000",
            endpoints().opensearch_url,
            p.index_prefix
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let indexed = docs["hits"]["hits"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        indexed >= 14,
        "expected the audit index to hold the journey, got {indexed}: {docs}"
    );
    assert!(
        !docs.to_string().contains(&password),
        "password in OpenSearch"
    );
    assert!(
        !docs.to_string().contains("$argon2id$"),
        "password hash in OpenSearch"
    );
    let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!log.is_empty(), "no log lines captured");
    assert!(!log.contains(&password), "password in the logs");

    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_endpoints_answer_like_the_original_and_complete() {
    let p = Platform::start().await;
    // Seed 002's client sends no body: every field is generated.
    let (s, created) = p.send(reqwest::Method::POST, "/usuarios", None, None).await;
    assert_eq!(s, 200, "{created}");
    let corr = created["correlation_id"]
        .as_str()
        .expect("correlation_id")
        .to_owned();
    assert!(created["status_url"].as_str().is_some(), "{created}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, st) = p
            .send(reqwest::Method::GET, &format!("/status/{corr}"), None, None)
            .await;
        assert_eq!(s, 200, "{st}");
        if st.to_string().contains("completed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed registration not completed: {st}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (s, health) = p.send(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(s, 200, "{health}");
    p.stop().await;
}
