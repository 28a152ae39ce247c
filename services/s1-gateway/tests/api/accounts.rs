//! Users, sessions, subscriptions, payments, preferences.

use serde_json::{Value, json};

use crate::harness::{expect_problem, start, unique};

#[tokio::test]
async fn register_publishes_a_hashed_password_and_never_the_clear_text() {
    let h = start(&[]).await;
    let email = format!("{}@example.com", unique("ana"));
    let secret = "clear-text-secret-42";
    let res = h
        .post(
            "/v1/users",
            json!({"name": "Ana Souza", "email": email, "password": secret, "cpf": "52998224725"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let uid = body["user_id"].as_i64().unwrap();
    assert!(uid > 0);
    assert_eq!(location, body["status_url"].as_str().unwrap());
    let (key, bytes, event) = h.next_event().await;
    assert_eq!(key, format!("user/{uid}"));
    assert_eq!(event["type"], "polystream.user.registered.v1");
    assert_eq!(event["correlationid"], body["correlation_id"]);
    let data = &event["data"];
    assert_eq!(data["user_id"], uid);
    assert_eq!(data["email"], email.as_str());
    assert_eq!(data["cpf"], "52998224725");
    assert_eq!(data["admin"], false);
    assert!(
        data["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$")
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains(secret),
        "clear-text password on Kafka"
    );
    let status: Value = h
        .get(
            body["status_url"]
                .as_str()
                .unwrap()
                .trim_start_matches(&h.base),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "pending");
}

#[tokio::test]
async fn register_rejects_bad_input_naming_the_field() {
    let h = start(&[]).await;
    let ok = json!({"name": "Ana", "email": "ana@example.com", "password": "password123"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    expect_problem(
        h.post("/v1/users", with("nickname", json!("x")), None)
            .await,
        400,
        Some("body.nickname"),
    )
    .await;
    expect_problem(
        h.post("/v1/users", with("name", json!(12)), None).await,
        400,
        Some("body.name"),
    )
    .await;
    expect_problem(
        h.post("/v1/users", with("password", json!("short")), None)
            .await,
        400,
        Some("body.password"),
    )
    .await;
    expect_problem(
        h.post("/v1/users", with("email", json!("not-an-email")), None)
            .await,
        400,
        Some("body.email"),
    )
    .await;
    expect_problem(
        h.post("/v1/users", with("cpf", json!("12345678900")), None)
            .await,
        400,
        Some("body.cpf"),
    )
    .await;
    expect_problem(
        h.post(
            "/v1/users",
            json!({"name": "Ana", "password": "password123"}),
            None,
        )
        .await,
        400,
        Some("body.email"),
    )
    .await;
}

#[tokio::test]
async fn sessions_login_list_end_and_authorization() {
    let h = start(&[]).await;
    let (a, token_a) = h.user(false).await;
    let (b, token_b) = h.user(false).await;

    // No token, bad token: 401. Someone else's data: 403.
    expect_problem(h.get(&format!("/v1/users/{a}"), None).await, 401, None).await;
    expect_problem(
        h.get(&format!("/v1/users/{a}"), Some("nope")).await,
        401,
        None,
    )
    .await;
    expect_problem(
        h.get(&format!("/v1/users/{b}"), Some(&token_a)).await,
        403,
        None,
    )
    .await;
    let res = h
        .put(
            &format!("/v1/users/{b}/preferences"),
            json!({"language": "en", "notifications": false, "theme": "light"}),
            Some(&token_a),
        )
        .await;
    expect_problem(res, 403, None).await;
    expect_problem(
        h.get("/v1/users/abc", Some(&token_a)).await,
        400,
        Some("path.id"),
    )
    .await;

    // The profile never includes the hash.
    let me: Value = h
        .get(&format!("/v1/users/{a}"), Some(&token_a))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], a);
    assert!(me.get("password_hash").is_none());

    // Wrong password: 401, same as unknown email.
    let email = me["email"].as_str().unwrap();
    let res = h
        .post(
            "/v1/sessions",
            json!({"email": email, "password": "wrong-password"}),
            None,
        )
        .await;
    expect_problem(res, 401, None).await;

    // A second session; list shows both; the token itself is stored only hashed.
    let second: Value = h
        .post(
            "/v1/sessions",
            json!({"email": email, "password": "password123"}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let token2 = second["token"].as_str().unwrap();
    let list: Vec<Value> = h
        .get(&format!("/v1/users/{a}/sessions"), Some(&token_a))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let mut con = h.redis.clone();
    let raw: Option<String> = redis::cmd("GET")
        .arg(polystream_stores::keys::session(token2))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        raw.is_none(),
        "a session is keyed by the token's hash, never the token"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(polystream_stores::keys::session(
            second["session_id"].as_str().unwrap(),
        ))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 3500 && ttl <= 3600, "{ttl}");

    // End the second from the first; it stops working.
    let sid = second["session_id"].as_str().unwrap();
    let res = h
        .http
        .delete(h.url(&format!("/v1/users/{a}/sessions/{sid}")))
        .bearer_auth(&token_a)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    expect_problem(
        h.get(&format!("/v1/users/{a}"), Some(token2)).await,
        401,
        None,
    )
    .await;
    // B cannot end A's sessions.
    let res = h
        .http
        .delete(h.url(&format!("/v1/users/{a}/sessions/{sid}")))
        .bearer_auth(&token_b)
        .send()
        .await
        .unwrap();
    expect_problem(res, 403, None).await;

    // Log out.
    let res = h
        .http
        .delete(h.url("/v1/sessions/current"))
        .bearer_auth(&token_a)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    expect_problem(
        h.get(&format!("/v1/users/{a}"), Some(&token_a)).await,
        401,
        None,
    )
    .await;

    // An admin reads anyone.
    let (_, admin) = h.user(true).await;
    assert_eq!(
        h.get(&format!("/v1/users/{b}"), Some(&admin))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn subscription_payment_preferences_commands_and_reads() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let t = Some(token.as_str());

    let res = h
        .put(
            &format!("/v1/users/{uid}/subscription"),
            json!({"plan": "premium", "started_on": "2026-11-01"}),
            t,
        )
        .await;
    let (_, ev) = h
        .expect_command(res, "polystream.subscription.changed.v1")
        .await;
    assert_eq!(
        ev["data"],
        json!({"user_id": uid, "plan": "premium", "status": "active", "started_on": "2026-11-01", "renews_on": "2026-12-01"})
    );
    expect_problem(
        h.put(
            &format!("/v1/users/{uid}/subscription"),
            json!({"plan": "gold"}),
            t,
        )
        .await,
        400,
        Some("body.plan"),
    )
    .await;
    expect_problem(
        h.put(
            &format!("/v1/users/{uid}/subscription"),
            json!({"plan": "basic", "started_on": "2026-11-01", "renews_on": "2026-10-01"}),
            t,
        )
        .await,
        400,
        Some("body.renews_on"),
    )
    .await;

    let res = h
        .post(
            &format!("/v1/users/{uid}/payments"),
            json!({"amount_cents": 3990, "method": "pix"}),
            t,
        )
        .await;
    let (body, ev) = h
        .expect_command(res, "polystream.payment.recorded.v1")
        .await;
    assert_eq!(ev["data"]["payment_id"], body["payment_id"]);
    assert_eq!(ev["data"]["amount_cents"], 3990);
    assert_eq!(ev["data"]["currency"], "BRL");
    assert_eq!(ev["data"]["status"], "approved");
    expect_problem(
        h.post(
            &format!("/v1/users/{uid}/payments"),
            json!({"amount_cents": 0, "method": "pix"}),
            t,
        )
        .await,
        400,
        Some("body.amount_cents"),
    )
    .await;
    expect_problem(
        h.post(
            &format!("/v1/users/{uid}/payments"),
            json!({"amount_cents": "ten", "method": "pix"}),
            t,
        )
        .await,
        400,
        Some("body.amount_cents"),
    )
    .await;

    let (_, ev) = h.update_preferences(uid, t).await;
    assert_eq!(ev["data"]["theme"], "dark");
    expect_problem(
        h.put(
            &format!("/v1/users/{uid}/preferences"),
            json!({"language": "português", "notifications": true, "theme": "dark"}),
            t,
        )
        .await,
        400,
        Some("body.language"),
    )
    .await;

    // Reads come from PostgreSQL: seed what S2 would write.
    expect_problem(
        h.get(&format!("/v1/users/{uid}/subscription"), t).await,
        404,
        None,
    )
    .await;
    sqlx::query("INSERT INTO subscriptions (user_id, plan, status, started_on, renews_on) VALUES ($1, 'standard', 'active', '2026-01-01', '2026-02-01')")
        .bind(uid).execute(&h.pg).await.unwrap();
    sqlx::query("INSERT INTO preferences (user_id, language, notifications, theme) VALUES ($1, 'en-US', false, 'light')")
        .bind(uid).execute(&h.pg).await.unwrap();
    for (i, at) in [
        "2026-01-01T10:00:00Z",
        "2026-02-01T10:00:00Z",
        "2026-03-01T10:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        sqlx::query("INSERT INTO payments (payment_id, user_id, amount_cents, currency, method, status, paid_at) VALUES ($1, $2, $3, 'BRL', 'pix', 'approved', $4::timestamptz)")
            .bind(uuid::Uuid::new_v4()).bind(uid).bind(1000 + i as i64).bind(*at).execute(&h.pg).await.unwrap();
    }
    let s: Value = h
        .get(&format!("/v1/users/{uid}/subscription"), t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["plan"], "standard");
    assert_eq!(s["renews_on"], "2026-02-01");
    let p: Value = h
        .get(&format!("/v1/users/{uid}/preferences"), t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["language"], "en-US");
    let pays: Vec<Value> = h
        .get(&format!("/v1/users/{uid}/payments?limit=2"), t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        pays.iter()
            .map(|p| p["amount_cents"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1002, 1001]
    );
    let older: Vec<Value> = h
        .get(
            &format!("/v1/users/{uid}/payments?before=2026-02-01T10:00:00Z"),
            t,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    expect_problem(
        h.get(&format!("/v1/users/{uid}/payments?limit=0"), t).await,
        400,
        Some("query.limit"),
    )
    .await;
    expect_problem(
        h.get(&format!("/v1/users/{uid}/payments?colour=red"), t)
            .await,
        400,
        Some("query.colour"),
    )
    .await;
}

#[tokio::test]
async fn an_ended_session_is_never_written_back_by_a_request_in_flight() {
    use polystream_s1_gateway::auth::{SessionData, token_hash};
    use polystream_stores::sessions;
    let h = start(&[]).await;
    let (id, token) = h.user(false).await;
    let hash = token_hash(&token);
    let con = redis::aio::ConnectionManager::new(
        redis::Client::open(h.config.stores.redis_url.as_str()).unwrap(),
    )
    .await
    .unwrap();
    // A request has read the session...
    let doc: SessionData = sessions::document(&con, &hash).await.unwrap().unwrap();
    // ...the user logs out...
    let res = h
        .http
        .delete(h.url("/v1/sessions/current"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // ...and the request's sliding refresh must not bring the session back.
    assert!(
        !sessions::refresh(&con, &hash, id, &doc, 3600, 0)
            .await
            .unwrap()
    );
    assert!(
        sessions::document::<SessionData>(&con, &hash)
            .await
            .unwrap()
            .is_none()
    );
    expect_problem(
        h.get(&format!("/v1/users/{id}"), Some(&token)).await,
        401,
        None,
    )
    .await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_active() {
    let h = start(&[("SESSION_MAX_LIFETIME_SECONDS", "3")]).await;
    let (id, token) = h.user(false).await;
    for _ in 0..3 {
        let res = h.get(&format!("/v1/users/{id}"), Some(&token)).await;
        assert_eq!(res.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let body = expect_problem(
        h.get(&format!("/v1/users/{id}"), Some(&token)).await,
        401,
        None,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("log in again")
            || body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}
