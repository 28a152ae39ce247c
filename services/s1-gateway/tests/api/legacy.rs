//! Seed 002's endpoints, through the compatibility layer.

use mongodb::bson::{Document, doc};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::harness::{Harness, expect_problem, start};

/// 200 with correlation_id and a seed-style status_url; the event on Kafka; pending status.
async fn expect_legacy(h: &Harness, res: Response, event_type: &str) -> (Value, Value) {
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let body: Value = res.json().await.unwrap();
    let cid = body["correlation_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], h.url(&format!("/status/{cid}")));
    assert!(body["mensagem"].is_string(), "{body}");
    let (key, bytes, ev) = h.next_event().await;
    assert_eq!(ev["type"], event_type);
    assert_eq!(ev["correlationid"], cid.as_str());
    assert_eq!(ev["subject"], key.as_str());
    let status: Value = h
        .get(&format!("/status/{cid}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "pending");
    assert_eq!(status["status"], "pendente");
    let _ = bytes;
    (body, ev)
}

async fn post(h: &Harness, path: &str) -> Response {
    h.http.post(h.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn seed_002_endpoints_translate_onto_the_real_commands() {
    let h = start(&[("LEGACY_API_ACCESS", "open")]).await;
    let root: Value = h.get("/", None).await.json().await.unwrap();
    assert_eq!(root["docs"], "/docs");
    assert_eq!(h.get("/health", None).await.status(), 200);

    // POST /usuarios with nothing: generated, plausible, valid.
    let (body, ev) = expect_legacy(
        &h,
        post(&h, "/usuarios").await,
        "polystream.user.registered.v1",
    )
    .await;
    let d = &ev["data"];
    assert_eq!(d["user_id"], body["user_id"]);
    assert!(
        polystream_common::events::is_cpf(d["cpf"].as_str().unwrap()),
        "{d}"
    );
    assert!(
        polystream_common::events::is_email(d["email"].as_str().unwrap()),
        "{d}"
    );
    // No `senha`: the account has no password, so no hash travels.
    assert!(d.get("password_hash").is_none(), "{d}");
    let (_, ev) = expect_legacy(
        &h,
        post(
            &h,
            "/usuarios?nome=Maria%20Lima&email=maria@example.com&senha=segredo-forte-1",
        )
        .await,
        "polystream.user.registered.v1",
    )
    .await;
    assert_eq!(ev["data"]["name"], "Maria Lima");
    assert!(!ev.to_string().contains("segredo-forte-1"));
    assert!(
        ev["data"]["password_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("$argon2id$")),
        "{ev}"
    );

    let (_, ev) = expect_legacy(
        &h,
        post(&h, "/usuarios/1234/assinatura").await,
        "polystream.subscription.changed.v1",
    )
    .await;
    assert_eq!(ev["data"]["user_id"], 1234);
    let (_, ev) = expect_legacy(
        &h,
        post(&h, "/usuarios/1234/assinatura?plano=premium").await,
        "polystream.subscription.changed.v1",
    )
    .await;
    assert_eq!(ev["data"]["plan"], "premium");
    expect_problem(
        post(&h, "/usuarios/1234/assinatura?plano=ouro").await,
        400,
        Some("query.plano"),
    )
    .await;
    expect_problem(
        post(&h, "/usuarios/abc/assinatura").await,
        400,
        Some("path.id"),
    )
    .await;

    let (body, ev) = expect_legacy(
        &h,
        post(
            &h,
            "/usuarios/1234/pagamento?valor=39.90&forma_pagamento=pix",
        )
        .await,
        "polystream.payment.recorded.v1",
    )
    .await;
    assert_eq!(ev["data"]["amount_cents"], 3990);
    assert_eq!(ev["data"]["method"], "pix");
    assert_eq!(ev["data"]["payment_id"], body["payment_id"]);
    expect_legacy(
        &h,
        post(&h, "/usuarios/1234/pagamento").await,
        "polystream.payment.recorded.v1",
    )
    .await;

    let (_, ev) = expect_legacy(
        &h,
        post(&h, "/usuarios/1234/config?tema=escuro&idioma=pt-BR").await,
        "polystream.preferences.updated.v1",
    )
    .await;
    assert_eq!(ev["data"]["theme"], "dark");
    expect_problem(
        post(&h, "/usuarios/1234/config?idioma=???").await,
        400,
        Some("query.idioma"),
    )
    .await;

    let (_, ev) = expect_legacy(&h, post(&h, "/historico-visualizacao?user_id=1234&conteudo_id=5678&titulo=Matrix&tipo=filme&tempo_assistido=3600&posicao=95").await, "polystream.view.recorded.v1").await;
    assert_eq!(ev["data"]["title_id"], 5678);
    assert_eq!(ev["data"]["seconds_watched"], 3600);
    assert_eq!(ev["data"]["completed"], true);
    expect_legacy(
        &h,
        post(&h, "/historico-visualizacao?user_id=1234&conteudo_id=5678").await,
        "polystream.view.recorded.v1",
    )
    .await;
    expect_problem(
        post(&h, "/historico-visualizacao?conteudo_id=5678").await,
        400,
        Some("query.user_id"),
    )
    .await;
    expect_problem(
        post(
            &h,
            "/historico-visualizacao?user_id=1&conteudo_id=2&tipo=novela",
        )
        .await,
        400,
        Some("query.tipo"),
    )
    .await;
    expect_problem(
        post(
            &h,
            "/historico-visualizacao?user_id=1&conteudo_id=2&posicao=150",
        )
        .await,
        400,
        Some("query.posicao"),
    )
    .await;

    expect_legacy(
        &h,
        post(&h, "/recomendacoes/gerar?user_id=1234").await,
        "polystream.recommendations.requested.v1",
    )
    .await;
    let (_, ev) = expect_legacy(
        &h,
        post(&h, "/cache/conteudo/1001").await,
        "polystream.title.cache_warm_requested.v1",
    )
    .await;
    assert_eq!(ev["data"]["title_id"], 1001);

    // Reads, in the seed's field names, from what S2 would have written.
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
    let views = h
        .mongo
        .collection::<Document>(polystream_stores::mongo::VIEWS);
    for (kind, done) in [("movie", true), ("series", false)] {
        views.insert_one(doc! {"_id": uuid::Uuid::new_v4().to_string(), "user_id": uid, "title_id": tid, "title": "Matrix", "kind": kind,
            "seconds_watched": 100_i64, "position_pct": 40.0, "completed": done, "watched_at": mongodb::bson::DateTime::now()}).await.unwrap();
    }
    let hist: Value = h
        .get(&format!("/historico-visualizacao/{uid}?tipo=série"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hist["total"], 1, "{hist}");
    assert_eq!(hist["historico"][0]["tipo"], "série");
    assert_eq!(hist["historico"][0]["conteudo_id"], tid);
    let hist: Value = h
        .get(
            &format!("/historico-visualizacao/{uid}?concluido=true&limit=10"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hist["historico"][0]["tipo"], "filme");
    assert_eq!(hist["total"], 1);

    // No recommendations yet: 200 with a final failed status, never a 404.
    let none: Value = h
        .get(&format!("/recomendacoes/{uid}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&none["state"], &none["code"]),
        (&json!("failed"), &json!("not_found")),
        "{none}"
    );
    h.mongo.collection::<Document>(polystream_stores::mongo::RECOMMENDATIONS)
        .insert_one(doc! {"_id": uid, "generated_at": mongodb::bson::DateTime::now(), "items": [{"title_id": tid, "score": 1.0}]}).await.unwrap();
    let rec: Value = h
        .get(&format!("/recomendacoes/{uid}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rec["itens"][0]["title_id"], tid);

    h.mongo.collection::<Document>(polystream_stores::mongo::TITLES)
        .insert_one(doc! {"_id": tid, "title": "Matrix", "kind": "movie", "year": 1999_i32, "genres": ["sci-fi"]}).await.unwrap();
    let first: Value = h
        .get(&format!("/cache/conteudo/{tid}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["cache"], "miss");
    let second: Value = h
        .get(&format!("/cache/conteudo/{tid}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["cache"], "hit");
    assert_eq!(second["dados"]["title"], "Matrix");
}

#[tokio::test]
async fn legacy_api_can_be_turned_off() {
    let h = start(&[("LEGACY_API", "false")]).await;
    expect_problem(post(&h, "/usuarios").await, 404, None).await;
    assert_eq!(h.get("/", None).await.status(), 200);
}

#[tokio::test]
async fn by_default_an_accounts_seed_routes_need_its_token() {
    let h = start(&[]).await;
    let (a, token_a) = h.user(false).await;
    let (_, token_b) = h.user(false).await;
    let (_, admin) = h.user(true).await;
    // Registration, the title cache and status stay open, as in the original.
    assert_eq!(post(&h, "/usuarios").await.status(), 200);
    let account_routes = [
        (
            Method::POST,
            format!("/usuarios/{a}/assinatura?plano=premium"),
        ),
        (Method::POST, format!("/usuarios/{a}/pagamento?valor=19.9")),
        (Method::POST, format!("/usuarios/{a}/config?idioma=pt-BR")),
        (
            Method::POST,
            format!("/historico-visualizacao?user_id={a}&conteudo_id=1"),
        ),
        (Method::GET, format!("/historico-visualizacao/{a}")),
        (Method::POST, format!("/recomendacoes/gerar?user_id={a}")),
        (Method::GET, format!("/recomendacoes/{a}")),
    ];
    for (method, path) in &account_routes {
        let call = |token: Option<&str>| {
            let mut r = h.http.request(method.clone(), h.url(path));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        expect_problem(call(None).await.unwrap(), 401, None).await;
        expect_problem(call(Some(&token_b)).await.unwrap(), 403, None).await;
        for token in [&token_a, &admin] {
            let res = call(Some(token)).await.unwrap();
            assert_eq!(res.status(), 200, "{method} {path}");
        }
    }
}
