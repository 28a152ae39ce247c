//! Seed 002's documented requests, replayed in its README's order (curl
//! examples, then the endpoint list), checking each answer is a superset of
//! the original's: its clients keep working, Polystream's fields stay.
//!
//! S1 runs against the real servers; S2's part (recording a command's
//! outcome) is played through the same status store S2 writes, so each write
//! is also followed to its final `/status/{id}` answer.

use polystream_common::status::{CommandStatus, State, StatusStore};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Harness, start, unique};

async fn call(h: &Harness, method: &str, path: &str) -> Value {
    let req = match method {
        "POST" => h.http.post(h.url(path)),
        _ => h.http.get(h.url(path)),
    };
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

/// The original's write answer: `mensagem`, `correlation_id`, `status_url`
/// under `/status/`, and the echoed object under `key` with these fields.
fn expect_write(h: &Harness, body: &Value, key: &str, fields: &[&str]) -> Uuid {
    assert!(
        body["mensagem"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let cid: Uuid = body["correlation_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        body["status_url"],
        h.url(&format!("/status/{cid}")),
        "{body}"
    );
    let echo = &body[key];
    assert!(!echo.is_null(), "no {key}: {body}");
    for f in fields {
        assert!(echo.get(*f).is_some(), "{key}.{f} missing: {body}");
    }
    cid
}

/// The original's read answer, plus the same result at the status URL.
async fn expect_read(h: &Harness, body: &Value, state: &str) -> Value {
    assert!(
        body["mensagem"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let cid = body["correlation_id"].as_str().unwrap();
    assert_eq!(
        body["status_url"],
        h.url(&format!("/status/{cid}")),
        "{body}"
    );
    assert_eq!(body["state"], state, "{body}");
    let st = call(h, "GET", &format!("/status/{cid}")).await;
    assert_eq!(st["state"], state, "{st}");
    assert_eq!(
        st["status"],
        if state == "completed" {
            "success"
        } else {
            "error"
        },
        "{st}"
    );
    assert!(
        st["original_event_type"]
            .as_str()
            .is_some_and(|t| t.ends_with(".read")),
        "{st}"
    );
    assert!(
        st["timestamp"].is_string() && st["message"].is_string(),
        "{st}"
    );
    st
}

/// Pending at first, as the original answers; then final once S2 recorded it.
async fn expect_outcome(h: &Harness, store: &StatusStore, cid: Uuid, event_type: &str, fail: bool) {
    let st = call(h, "GET", &format!("/status/{cid}")).await;
    assert_eq!(
        (&st["status"], &st["message"], &st["state"]),
        (
            &json!("pendente"),
            &json!("Processamento em andamento"),
            &json!("pending")
        ),
        "{st}"
    );
    let mut s = CommandStatus::pending(cid, event_type);
    if fail {
        s.state = State::Failed;
        s.code = Some("unknown_user".into());
        s.reason = Some("user does not exist".into());
    } else {
        s.state = State::Completed;
        s.result = Some(json!({"ok": true}));
    }
    store.record(&s).await.unwrap();
    let st = call(h, "GET", &format!("/status/{cid}?wait=1")).await;
    let v1 = call(h, "GET", &format!("/v1/status/{cid}")).await;
    for (k, v) in v1.as_object().unwrap() {
        assert_eq!(&st[k], v, "/status keeps Polystream's {k}: {st}");
    }
    assert_eq!(st["status"], if fail { "error" } else { "success" }, "{st}");
    assert_eq!(st["original_event_type"], event_type, "{st}");
    assert_eq!(st["timestamp"], v1["updated_at"], "{st}");
    assert!(
        st["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{st}"
    );
}

#[tokio::test]
async fn seed_002_readme_requests_answer_like_the_original() {
    let h = start(&[("LEGACY_API_ACCESS", "open")]).await;
    let client = redis::Client::open(h.config.stores.redis_url.as_str()).unwrap();
    let con = redis::aio::ConnectionManager::new(client.clone())
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable: {e}"));
    let store = StatusStore::new(client, con);
    const USER: &str = "polystream.user.registered.v1";
    const SUB: &str = "polystream.subscription.changed.v1";
    const VIEW: &str = "polystream.view.recorded.v1";
    const WARM: &str = "polystream.title.cache_warm_requested.v1";

    // ---- The README's curl examples, in order ----
    let b = call(&h, "POST", "/usuarios").await;
    let created = expect_write(
        &h,
        &b,
        "usuario",
        &["user_id", "nome", "email", "cpf", "data_criacao"],
    );
    assert_eq!(b["usuario"]["user_id"], b["user_id"], "{b}");
    assert!(
        polystream_common::events::is_cpf(b["usuario"]["cpf"].as_str().unwrap()),
        "{b}"
    );
    let b = call(&h, "POST", "/usuarios/1234/assinatura").await;
    let sub = expect_write(&h, &b, "assinatura", &["user_id", "plano", "inicio", "fim"]);
    assert_eq!(b["assinatura"]["user_id"], 1234);
    // "Verificar status da operação": pending first, then the outcome.
    expect_outcome(&h, &store, created, USER, false).await;
    expect_outcome(&h, &store, sub, SUB, true).await;
    let b = call(
        &h,
        "POST",
        "/historico-visualizacao?user_id=1234&conteudo_id=5678",
    )
    .await;
    let view = expect_write(
        &h,
        &b,
        "visualizacao",
        &[
            "user_id",
            "conteudo_id",
            "titulo",
            "tipo",
            "tempo_assistido",
            "posicao",
        ],
    );
    assert_eq!(
        (
            &b["visualizacao"]["user_id"],
            &b["visualizacao"]["conteudo_id"]
        ),
        (&json!(1234), &json!(5678))
    );
    expect_outcome(&h, &store, view, VIEW, false).await;
    let b = call(&h, "POST", "/cache/conteudo/1001").await;
    let warm = expect_write(&h, &b, "conteudo_id", &[]);
    assert_eq!(b["conteudo_id"], 1001);
    expect_outcome(&h, &store, warm, WARM, false).await;

    // ---- The README's endpoint list, in order ----
    let b = call(&h, "POST", "/usuarios").await;
    expect_write(
        &h,
        &b,
        "usuario",
        &["user_id", "nome", "email", "cpf", "data_criacao"],
    );
    let b = call(&h, "POST", "/usuarios/1234/assinatura").await;
    expect_write(&h, &b, "assinatura", &["user_id", "plano", "inicio", "fim"]);
    let b = call(&h, "POST", "/usuarios/1234/pagamento").await;
    let pay = expect_write(
        &h,
        &b,
        "pagamento",
        &[
            "user_id",
            "valor",
            "forma_pagamento",
            "status",
            "data_pagamento",
        ],
    );
    assert!(
        b["payment_id"].is_string(),
        "Polystream's payment_id stays: {b}"
    );
    expect_outcome(&h, &store, pay, "polystream.payment.recorded.v1", false).await;
    let b = call(&h, "POST", "/usuarios/1234/config").await;
    let cfg = expect_write(&h, &b, "config", &["idioma", "notificacoes", "tema"]);
    expect_outcome(&h, &store, cfg, "polystream.preferences.updated.v1", false).await;
    let b = call(
        &h,
        "POST",
        "/historico-visualizacao?user_id=1234&conteudo_id=5678",
    )
    .await;
    expect_write(
        &h,
        &b,
        "visualizacao",
        &["user_id", "conteudo_id", "tempo_assistido", "posicao"],
    );
    assert!(b["view_id"].is_string(), "Polystream's view_id stays: {b}");

    // GET /historico-visualizacao/{user_id}: an unknown user is a final
    // error at the status URL, not a 404; a user with views gets them.
    let unknown_user = 7_000_000_000_000 + i64::from(std::process::id());
    let b = call(
        &h,
        "GET",
        &format!("/historico-visualizacao/{unknown_user}"),
    )
    .await;
    let st = expect_read(&h, &b, "failed").await;
    assert_eq!(st["code"], "not_found", "{st}");
    let mut con = h.redis.clone();
    let uid: i64 = redis::cmd("INCR")
        .arg(polystream_stores::keys::NEXT_USER_ID)
        .query_async(&mut con)
        .await
        .unwrap();
    let tid: i64 = redis::cmd("INCR")
        .arg(polystream_stores::keys::NEXT_TITLE_ID)
        .query_async(&mut con)
        .await
        .unwrap();
    use mongodb::bson::{Document, doc};
    h.mongo
        .collection::<Document>(polystream_stores::mongo::VIEWS)
        .insert_one(doc! {"_id": Uuid::new_v4().to_string(), "user_id": uid, "title_id": tid, "title": unique("t"), "kind": "movie",
            "seconds_watched": 100_i64, "position_pct": 40.0, "completed": false, "watched_at": mongodb::bson::DateTime::now()})
        .await
        .unwrap();
    let b = call(&h, "GET", &format!("/historico-visualizacao/{uid}")).await;
    let st = expect_read(&h, &b, "completed").await;
    assert_eq!(
        (&b["total"], &b["historico"][0]["conteudo_id"]),
        (&json!(1), &json!(tid)),
        "{b}"
    );
    assert_eq!(
        st["result"]["historico"], b["historico"],
        "the status URL carries the same result"
    );

    let b = call(&h, "POST", &format!("/recomendacoes/gerar?user_id={uid}")).await;
    assert!(
        b["mensagem"].is_string() && b["correlation_id"].is_string(),
        "{b}"
    );
    // GET /recomendacoes/{user_id}: none yet is a final error; then the list.
    let b = call(&h, "GET", &format!("/recomendacoes/{uid}")).await;
    expect_read(&h, &b, "failed").await;
    h.mongo
        .collection::<Document>(polystream_stores::mongo::RECOMMENDATIONS)
        .insert_one(doc! {"_id": uid, "generated_at": mongodb::bson::DateTime::now(), "items": [{"title_id": tid, "score": 1.0}]})
        .await
        .unwrap();
    let b = call(&h, "GET", &format!("/recomendacoes/{uid}")).await;
    let st = expect_read(&h, &b, "completed").await;
    assert_eq!(b["itens"][0]["title_id"], tid, "{b}");
    assert_eq!(st["result"]["itens"], b["itens"]);

    let b = call(&h, "POST", &format!("/cache/conteudo/{tid}")).await;
    expect_write(&h, &b, "conteudo_id", &[]);
    // GET /cache/conteudo/{id}: unknown is a final error; a title is served.
    let b = call(
        &h,
        "GET",
        &format!("/cache/conteudo/{}", 9_000_000_000_000_i64 + tid),
    )
    .await;
    expect_read(&h, &b, "failed").await;
    h.mongo
        .collection::<Document>(polystream_stores::mongo::TITLES)
        .insert_one(doc! {"_id": tid, "title": "Matrix", "kind": "movie", "year": 1999_i32, "genres": ["sci-fi"]})
        .await
        .unwrap();
    let b = call(&h, "GET", &format!("/cache/conteudo/{tid}")).await;
    let st = expect_read(&h, &b, "completed").await;
    assert_eq!(
        (&b["conteudo_id"], &b["dados"]["title"]),
        (&json!(tid), &json!("Matrix")),
        "{b}"
    );
    assert_eq!(st["result"]["dados"], b["dados"]);

    // GET /status/{correlation_id} for an id nobody issued: pending, as the original.
    let b = call(&h, "GET", &format!("/status/{}", Uuid::now_v7())).await;
    assert_eq!(
        (&b["status"], &b["message"]),
        (&json!("pendente"), &json!("Processamento em andamento")),
        "{b}"
    );
    // The canonical status still answers 404 for it.
    let res = h.get(&format!("/v1/status/{}", Uuid::now_v7()), None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(h.get("/health", None).await.status(), 200);
}
