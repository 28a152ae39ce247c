//! Rate limits and login lockout, against the real Redis the replicas share.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{expect_problem, start, unique};

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn expect_429(res: reqwest::Response, max_wait: u64) -> Value {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&res);
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
    let body = expect_problem(res, 429, None).await;
    assert_eq!(body["type"], "https://polystream.dev/problems/rate-limited");
    body
}

#[tokio::test]
async fn two_replicas_spend_one_address_budget_and_answer_429_beyond_it() {
    let scope = unique("limits");
    let settings = [
        ("RATE_LIMIT_SCOPE", scope.as_str()),
        ("RATE_LIMIT_REGISTRATION", "3/min"),
    ];
    let a = start(&settings).await;
    let b = start(&settings).await;
    // Invalid bodies cost the same as valid ones: the limit comes first.
    let bad = json!({"name": "x"});
    for h in [&a, &b, &a] {
        let res = h.post("/v1/users", bad.clone(), None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    for h in [&b, &a] {
        let res = h.post("/v1/users", bad.clone(), None).await;
        // 3 per minute: the next one is 20 s away.
        expect_429(res, 20).await;
    }
    // Other classes have their own budgets.
    let res = a.get("/v1/titles", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A separate scope (another platform on the same Redis) is untouched.
    let other = start(&[("RATE_LIMIT_REGISTRATION", "3/min")]).await;
    let res = other.post("/v1/users", bad, None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // The refusals are counted.
    let metrics = a.http.get(a.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    let refused: f64 = text
        .lines()
        .find(|l| l.starts_with("polystream_rate_limited_total{class=\"registration\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no registration series in:\n{text}"));
    assert!(refused >= 1.0, "{refused}");
}

#[tokio::test]
async fn an_account_has_its_own_budget_whatever_address_it_comes_from() {
    let h = start(&[
        ("RATE_LIMIT_READS", "4/min"),
        ("TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    let (id, token) = h.user(false).await;
    let (_, other) = h.user(false).await;
    let read = |token: &str, n: u32| {
        h.http
            .get(h.url(&format!("/v1/users/{id}")))
            .bearer_auth(token)
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .send()
    };
    // Four addresses, one read each: the account's budget is spent.
    for n in 1..=4 {
        assert_eq!(read(&token, n).await.unwrap().status(), StatusCode::OK);
    }
    expect_429(read(&token, 5).await.unwrap(), 15).await;
    // Another account from one of those addresses still reads (403: not its
    // profile, but past both limits).
    assert_eq!(
        read(&other, 1).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_trusted_proxy_gives_each_client_its_own_budget() {
    let h = start(&[
        ("RATE_LIMIT_REGISTRATION", "1/min"),
        ("TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    let from = |ip: &'static str| {
        h.http
            .post(h.url("/v1/users"))
            .header("x-forwarded-for", ip)
            .json(&json!({}))
            .send()
    };
    assert_eq!(
        from("198.51.100.1").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        from("198.51.100.2").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    expect_429(from("198.51.100.1").await.unwrap(), 60).await;
}

#[tokio::test]
async fn a_password_brute_force_is_locked_out_for_known_and_unknown_emails_alike() {
    let h = start(&[
        ("RATE_LIMIT_LOGIN", "off"),
        ("LOGIN_LOCKOUT_FAILURES", "3"),
        ("LOGIN_LOCKOUT_SECONDS", "2"),
        ("LOGIN_LOCKOUT_MAX_SECONDS", "60"),
    ])
    .await;
    let (id, _) = h.user(false).await;
    let email = h.email_of(id).await;
    let unknown = format!("{}@test.example", unique("nobody"));
    for who in [email.as_str(), unknown.as_str()] {
        let login = |password: &'static str| {
            h.post(
                "/v1/sessions",
                json!({"email": who, "password": password}),
                None,
            )
        };
        for _ in 0..3 {
            expect_problem(login("wrong-password").await, 401, None).await;
        }
        // Locked: even the right password waits, and the answer is the
        // same whether the account exists.
        let body = expect_429(login("password123").await, 2).await;
        assert!(
            body["detail"].as_str().unwrap().contains("failed logins"),
            "{body}"
        );
        // The next failure after the lock doubles it.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        expect_problem(login("wrong-password").await, 401, None).await;
        expect_429(login("password123").await, 4).await;
    }
    // Once the lock has passed, the right password logs in and forgets the failures.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let res = h
        .post(
            "/v1/sessions",
            json!({"email": email, "password": "password123"}),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    expect_problem(
        h.post(
            "/v1/sessions",
            json!({"email": email, "password": "wrong-password"}),
            None,
        )
        .await,
        401,
        None,
    )
    .await;
    let res = h
        .post(
            "/v1/sessions",
            json!({"email": email, "password": "password123"}),
            None,
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "one failure does not lock"
    );
}
