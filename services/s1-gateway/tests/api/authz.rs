//! The authorization matrix: every route S1 serves × {anonymous, user A,
//! user B, admin}, each against A's data. The routes come from the router
//! itself (`api_routes`, which also builds the OpenAPI document), so a route
//! added without a row here fails the test by name, and a row for a route
//! that no longer exists fails too.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{start, unique};

/// What one caller may do on one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Let through: a 2xx, or 404 when A's data does not exist (no S2 runs
    /// here, so commands never take effect).
    Ok,
    /// 401: a token is needed.
    Auth,
    /// 403: the caller is not the account's owner (or not an admin).
    Deny,
}
use Expect::{Auth, Deny, Ok};

/// Who calls, in the order of a row's cells.
const CALLERS: [&str; 4] = ["anonymous", "user A", "user B", "admin"];

const PUBLIC: [Expect; 4] = [Ok, Ok, Ok, Ok];
/// A's own data: A and admins.
const OWNER: [Expect; 4] = [Auth, Ok, Deny, Ok];
/// Admins only.
const ADMIN: [Expect; 4] = [Auth, Deny, Deny, Ok];
/// Any signed-in caller, on their own session.
const SIGNED_IN: [Expect; 4] = [Auth, Ok, Ok, Ok];

/// One route's request (query and body valid for it) and expectations.
struct Row {
    query: &'static str,
    body: Option<Value>,
    expect: [Expect; 4],
}

fn row(query: &'static str, body: Option<Value>, expect: [Expect; 4]) -> Row {
    Row {
        query,
        body,
        expect,
    }
}

fn matrix(email_a: &str) -> BTreeMap<&'static str, Row> {
    let title = json!({"title": "Matrix", "kind": "movie", "year": 1999});
    BTreeMap::from([
        ("GET /v1/status/{correlation_id}", row("", None, PUBLIC)),
        (
            "POST /v1/users",
            row(
                "",
                Some(
                    json!({"name": "New", "email": format!("{}@test.example", unique("n")), "password": "password123"}),
                ),
                PUBLIC,
            ),
        ),
        ("GET /v1/users/{id}", row("", None, OWNER)),
        (
            "POST /v1/sessions",
            row(
                "",
                Some(json!({"email": email_a, "password": "password123"})),
                PUBLIC,
            ),
        ),
        ("DELETE /v1/sessions/current", row("", None, SIGNED_IN)),
        ("GET /v1/users/{id}/sessions", row("", None, OWNER)),
        (
            "DELETE /v1/users/{id}/sessions/{session_id}",
            row("", None, OWNER),
        ),
        (
            "PUT /v1/users/{id}/subscription",
            row("", Some(json!({"plan": "premium"})), OWNER),
        ),
        ("GET /v1/users/{id}/subscription", row("", None, OWNER)),
        (
            "POST /v1/users/{id}/payments",
            row(
                "",
                Some(json!({"amount_cents": 1990, "method": "pix"})),
                OWNER,
            ),
        ),
        ("GET /v1/users/{id}/payments", row("", None, OWNER)),
        (
            "PUT /v1/users/{id}/preferences",
            row(
                "",
                Some(json!({"language": "pt-BR", "notifications": true, "theme": "dark"})),
                OWNER,
            ),
        ),
        ("GET /v1/users/{id}/preferences", row("", None, OWNER)),
        ("POST /v1/titles", row("", Some(title.clone()), ADMIN)),
        ("GET /v1/titles", row("", None, PUBLIC)),
        ("GET /v1/titles/{id}", row("", None, PUBLIC)),
        ("PUT /v1/titles/{id}", row("", Some(title), ADMIN)),
        ("DELETE /v1/titles/{id}", row("", None, ADMIN)),
        (
            "POST /v1/titles/{id}/relations",
            row(
                "",
                Some(json!({"related_title_id": 2, "relation": "sequel"})),
                ADMIN,
            ),
        ),
        ("GET /v1/titles/{id}/relations", row("", None, PUBLIC)),
        (
            "POST /v1/titles/{id}/assets",
            row("kind=poster", None, ADMIN),
        ),
        (
            "GET /v1/titles/{id}/assets/{asset_id}",
            row("", None, PUBLIC),
        ),
        (
            "POST /v1/users/{id}/views",
            row(
                "",
                Some(json!({"title_id": 1, "seconds_watched": 60, "position_pct": 10.0})),
                OWNER,
            ),
        ),
        ("GET /v1/users/{id}/views", row("", None, OWNER)),
        (
            "PUT /v1/users/{id}/ratings/{title_id}",
            row("", Some(json!({"stars": 4})), OWNER),
        ),
        ("POST /v1/users/{id}/recommendations", row("", None, OWNER)),
        ("GET /v1/users/{id}/recommendations", row("", None, OWNER)),
        ("GET /v1/rankings/{kind}", row("", None, PUBLIC)),
        ("GET /v1/stats/counters", row("", None, ADMIN)),
        // Seed 002's endpoints, with LEGACY_API_ACCESS=token (the default).
        (
            "POST /usuarios",
            row(
                "nome=Novo&email=novo@test.example&senha=password123",
                None,
                PUBLIC,
            ),
        ),
        (
            "POST /usuarios/{id}/assinatura",
            row("plano=premium", None, OWNER),
        ),
        (
            "POST /usuarios/{id}/pagamento",
            row("valor=19.9&forma_pagamento=pix", None, OWNER),
        ),
        (
            "POST /usuarios/{id}/config",
            row("idioma=pt-BR&notificacoes=true&tema=escuro", None, OWNER),
        ),
        (
            "POST /historico-visualizacao",
            row("conteudo_id=1", None, OWNER),
        ),
        (
            "GET /historico-visualizacao/{user_id}",
            row("", None, OWNER),
        ),
        ("POST /recomendacoes/gerar", row("", None, OWNER)),
        ("GET /recomendacoes/{user_id}", row("", None, OWNER)),
        ("POST /cache/conteudo/{id}", row("", None, PUBLIC)),
        ("GET /cache/conteudo/{id}", row("", None, PUBLIC)),
        ("GET /status/{correlation_id}", row("", None, PUBLIC)),
    ])
}

/// `METHOD path` of every route the router serves, from the router.
fn served_routes() -> Vec<String> {
    let doc = polystream_s1_gateway::api_routes(true).into_openapi();
    let mut routes = Vec::new();
    for (path, item) in &doc.paths.paths {
        let item = serde_json::to_value(item).unwrap();
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                routes.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn every_route_answers_each_caller_as_the_matrix_says() {
    let h = start(&[
        ("RATE_LIMIT_LOGIN", "off"),
        ("RATE_LIMIT_REGISTRATION", "off"),
        ("RATE_LIMIT_WRITES", "off"),
        ("RATE_LIMIT_READS", "off"),
        ("RATE_LIMIT_STATUS", "off"),
        ("LEGACY_API", "true"),
        ("LEGACY_API_ACCESS", "token"),
    ])
    .await;
    let (a, token_a) = h.user(false).await;
    let (_, token_b) = h.user(false).await;
    let (_, token_admin) = h.user(true).await;
    let email_a = h.email_of(a).await;
    let table = matrix(&email_a);

    let served = served_routes();
    let missing: Vec<&String> = served
        .iter()
        .filter(|r| !table.contains_key(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the authorization matrix: {missing:?}"
    );
    let stale: Vec<&&str> = table
        .keys()
        .filter(|r| !served.iter().any(|s| s == *r))
        .collect();
    assert!(
        stale.is_empty(),
        "matrix rows for routes S1 does not serve: {stale:?}"
    );

    let mut wrong = Vec::new();
    for (route, r) in &table {
        let (method, template) = route.split_once(' ').unwrap();
        for (cell, expect) in r.expect.iter().enumerate() {
            // Sessions a cell may end are its own, fresh ones, so no cell
            // spends the tokens the next ones use.
            let token = match cell {
                0 => None,
                1 => Some(token_a.clone()),
                2 => Some(token_b.clone()),
                _ => Some(token_admin.clone()),
            };
            let token = match (route, &token) {
                // Other callers' fresh sessions: a new user of the same kind.
                (&"DELETE /v1/sessions/current", Some(_)) if cell == 1 => {
                    Some(h.login(&email_a).await)
                }
                (&"DELETE /v1/sessions/current", Some(_)) => Some(h.user(cell == 3).await.1),
                _ => token,
            };
            // A spare session of A's, for the route that ends one by id.
            let spare_a = if template.contains("{session_id}") {
                h.login(&email_a).await
            } else {
                String::new()
            };
            let path = template
                .replace("{id}", &a.to_string())
                .replace("{user_id}", &a.to_string())
                .replace("{title_id}", "1")
                .replace("{kind}", "most-watched")
                .replace("{asset_id}", "0123456789abcdef01234567")
                .replace(
                    "{session_id}",
                    &polystream_s1_gateway::auth::token_hash(&spare_a),
                )
                .replace("{correlation_id}", &uuid::Uuid::now_v7().to_string());
            // Title routes name a title, not A.
            let path = if template.starts_with("/v1/titles/{id}") {
                path.replacen(&format!("/v1/titles/{a}"), "/v1/titles/1", 1)
            } else {
                path
            };
            let query = if template.starts_with("/historico-visualizacao") && method == "POST"
                || template == "/recomendacoes/gerar"
            {
                format!("user_id={a}&{}", r.query)
            } else {
                r.query.to_owned()
            };
            let url = if query.is_empty() {
                h.url(&path)
            } else {
                h.url(&format!("{path}?{query}"))
            };
            let mut req = h
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), url);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            if let Some(body) = &r.body {
                req = req.json(body);
            } else if template.ends_with("/assets") {
                req = req
                    .header("content-type", "image/png")
                    .body(b"\x89PNG\r\n\x1a\n".to_vec());
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let ok = match expect {
                Ok => (200..300).contains(&status) || status == 404,
                Auth => status == 401,
                Deny => status == 403,
            };
            if !ok {
                let body = res.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{route} as {}: expected {expect:?}, got {status} {body:.200}",
                    CALLERS[cell]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ from the matrix:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}
