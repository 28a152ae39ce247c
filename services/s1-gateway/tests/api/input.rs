//! Control characters (issue 10, reproduction 1): refused at the edge with a
//! problem naming the field, before anything is published or stored.

use reqwest::Response;
use serde_json::{Value, json};

use crate::harness::{Harness, expect_problem, start};

const NUL_REASON: &str = "must not contain control characters (found U+0000)";

/// A 400 naming `field` with a control-character reason.
async fn refused(res: Response, field: &str) -> Value {
    let body = expect_problem(res, 400, Some(field)).await;
    let reason = body["invalid-params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == field)
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("must not contain control characters (found U+"),
        "{body}"
    );
    body
}

/// Nothing was published for the refused requests: the next event on the
/// topic is the valid command sent after them (its `data.field` is `value`).
async fn only_the_valid_one_was_published(
    h: &Harness,
    res: Response,
    event_type: &str,
    (field, value): (&str, &str),
) {
    let (_, ev) = h.expect_command(res, event_type).await;
    assert_eq!(ev["data"][field], value, "{ev}");
}

#[tokio::test]
async fn a_nul_in_a_registration_is_a_problem_naming_the_field_and_nothing_is_published() {
    let h = start(&[]).await;
    let body = refused(
        h.post(
            "/v1/users",
            json!({"name": "Bad\u{0}Name", "email": "bad@example.com", "password": "password123"}),
            None,
        )
        .await,
        "body.name",
    )
    .await;
    assert_eq!(body["invalid-params"][0]["reason"], NUL_REASON);
    for (k, v) in [
        ("email", "bad\u{0}@example.com"),
        ("cpf", "5299822472\u{0}5"),
        ("name", "Tab\tName"),
        ("name", "Esc\u{1b}[31m"),
        ("name", "C1\u{85}"),
        ("password", "password\u{0}123"),
    ] {
        let mut b = json!({"name": "Ana", "email": "ana@example.com", "password": "password123"});
        b[k] = json!(v);
        refused(h.post("/v1/users", b, None).await, &format!("body.{k}")).await;
    }
    let email = format!("{}@example.com", crate::harness::unique("ok"));
    only_the_valid_one_was_published(
        &h,
        h.post(
            "/v1/users",
            json!({"name": "Ana", "email": email, "password": "password123"}),
            None,
        )
        .await,
        "polystream.user.registered.v1",
        ("email", &email),
    )
    .await;
}

#[tokio::test]
async fn every_command_body_and_nested_string_is_checked_per_field() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let (_, admin) = h.user(true).await;
    refused(
        h.put(
            &format!("/v1/users/{uid}/preferences"),
            json!({"language": "pt\u{0}BR", "notifications": true, "theme": "dark"}),
            Some(&token),
        )
        .await,
        "body.language",
    )
    .await;
    refused(
        h.post(
            &format!("/v1/users/{uid}/payments"),
            json!({"amount_cents": 100, "currency": "BR\u{0}", "method": "pix"}),
            Some(&token),
        )
        .await,
        "body.currency",
    )
    .await;
    let title = |k: &str, v: Value| {
        let mut b = json!({"title": "Ok", "description": "two\nlines", "kind": "movie", "year": 2000,
            "directors": ["A"], "cast": ["B", "C"], "genres": ["drama", "crime"], "categories": ["x"]});
        b[k] = v;
        b
    };
    for (k, v, field) in [
        ("genres", json!(["drama", "cri\u{7}me"]), "body.genres[1]"),
        ("cast", json!(["ok", "ok", "x\u{0}"]), "body.cast[2]"),
        ("directors", json!(["a\nb"]), "body.directors[0]"),
        ("categories", json!(["\u{2028}"]), "body.categories[0]"),
        ("title", json!("two\nlines"), "body.title"),
        ("description", json!("nul\u{0}"), "body.description"),
        ("description", json!("bell\u{7}"), "body.description"),
    ] {
        refused(h.post("/v1/titles", title(k, v), Some(&admin)).await, field).await;
    }
    // A description may span lines (and take tabs): the one multi-line field.
    let res = h
        .post(
            "/v1/titles",
            title("description", json!("line 1\r\nline\t2")),
            Some(&admin),
        )
        .await;
    only_the_valid_one_was_published(
        &h,
        res,
        "polystream.title.upserted.v1",
        ("description", "line 1\r\nline\t2"),
    )
    .await;
}

#[tokio::test]
async fn input_that_goes_straight_to_a_store_is_refused_too() {
    let h = start(&[]).await;
    let (uid, token) = h.user(false).await;
    let (_, admin) = h.user(true).await;
    // Login looks the email up in PostgreSQL, which cannot take a NUL: a 400,
    // not the 503 a store error would give.
    refused(
        h.post(
            "/v1/sessions",
            json!({"email": "a\u{0}@example.com", "password": "password123"}),
            None,
        )
        .await,
        "body.email",
    )
    .await;
    // Query parameters (the genre filter goes to MongoDB as is).
    refused(
        h.get("/v1/titles?genre=dra%00ma", None).await,
        "query.genre",
    )
    .await;
    refused(
        h.get(
            &format!("/v1/users/{uid}/payments?limit=1%0A"),
            Some(&token),
        )
        .await,
        "query.limit",
    )
    .await;
    refused(
        h.get("/v1/rankings/top-rated?window=day%1B", None).await,
        "query.window",
    )
    .await;
    // Path segments.
    let res = h
        .http
        .delete(h.url(&format!("/v1/users/{uid}/sessions/ab%00cd")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    refused(res, "path.session_id").await;
    refused(
        h.get(&format!("/v1/users/{uid}%00"), Some(&token)).await,
        "path.id",
    )
    .await;
    // A header used as a value: an asset's Content-Type is stored with the
    // blob before the command exists. (HTTP allows a tab in a header value.)
    let res = h
        .http
        .post(h.url("/v1/titles/1/assets?kind=poster"))
        .bearer_auth(&admin)
        .header("content-type", "image/png\tx")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    refused(res, "header.content-type").await;
    refused(
        h.http
            .post(h.url("/v1/titles/1/assets?kind=poster&filename=a%00.png"))
            .bearer_auth(&admin)
            .header("content-type", "image/png")
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap(),
        "query.filename",
    )
    .await;
}

#[tokio::test]
async fn the_seed_routes_refuse_control_characters_naming_their_parameters() {
    let h = start(&[("LEGACY_API_ACCESS", "open")]).await;
    let post = |path: String| h.http.post(h.url(&path)).send();
    refused(
        post("/usuarios?nome=Bad%00Name".into()).await.unwrap(),
        "query.nome",
    )
    .await;
    refused(
        post("/usuarios?email=a%00b@example.com".into())
            .await
            .unwrap(),
        "query.email",
    )
    .await;
    refused(
        post("/usuarios/7/config?idioma=pt%00BR".into())
            .await
            .unwrap(),
        "query.idioma",
    )
    .await;
    refused(
        post("/historico-visualizacao?user_id=1&conteudo_id=2&titulo=x%07".into())
            .await
            .unwrap(),
        "query.titulo",
    )
    .await;
    refused(
        post("/usuarios/7%00/pagamento".into()).await.unwrap(),
        "path.id",
    )
    .await;
    // The command's own rules name the seed's parameter, not the event field.
    expect_problem(
        post("/usuarios?senha=curta".into()).await.unwrap(),
        400,
        Some("query.senha"),
    )
    .await;
    expect_problem(
        post("/usuarios?cpf=12345678900".into()).await.unwrap(),
        400,
        Some("query.cpf"),
    )
    .await;
    // Nothing of the above was published.
    let res = post("/usuarios?nome=Maria%20Lima".into()).await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let (_, _, ev) = h.next_event().await;
    assert_eq!(ev["type"], "polystream.user.registered.v1");
    assert_eq!(ev["data"]["name"], "Maria Lima");
}
