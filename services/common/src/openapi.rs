//! The error answers every operation of a Polystream API can give, added to
//! its OpenAPI document in one place so each handler's `#[utoipa::path]` lists
//! only what is particular to it, and a client (or schemathesis) finds every
//! status it can receive documented, with its RFC 9457 body.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

use crate::problem::CONTENT_TYPE;

/// Which answers the server's own layers give, beyond a handler's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layers {
    /// Requests are rate limited (429 with `Retry-After`).
    pub rate_limited: bool,
}

/// Documents, on every operation of `doc`:
/// - each 4xx/5xx answer as `application/problem+json` with the `Problem`
///   schema (handlers may have declared plain JSON);
/// - 400 where it takes parameters or a body (a malformed one is named);
/// - 413 and 415 where it takes a body (too large, not JSON);
/// - 401 where it declares a security requirement;
/// - 429 when `layers.rate_limited`.
pub fn document_errors(doc: &mut OpenApi, layers: Layers) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            document_operation(op, layers);
        }
    }
}

fn document_operation(op: &mut Operation, layers: Layers) {
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = op.request_body.is_some();
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut add = |code: u16, why: &str, when: bool| {
        if when {
            op.responses
                .responses
                .entry(code.to_string())
                .or_insert_with(|| RefOr::T(problem_response(why)));
        }
    };
    add(
        400,
        "Invalid input; `invalid-params` names each field",
        has_params || has_body,
    );
    add(413, "The body is larger than this route accepts", has_body);
    add(415, "The body is not `application/json`", has_body);
    add(401, "No valid `Authorization: Bearer` token", secured);
    add(
        429,
        "Rate limited; retry after `Retry-After` seconds",
        layers.rate_limited,
    );
    for (code, response) in op.responses.responses.iter_mut() {
        let is_error = code.starts_with('4') || code.starts_with('5');
        if let (true, RefOr::T(r)) = (is_error, response) {
            r.content.clear();
            r.content
                .insert(CONTENT_TYPE.to_owned(), RefOr::T(problem_content()));
        }
    }
}

fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

/// A response whose body is a `Problem`, described by `description`.
pub fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(CONTENT_TYPE, problem_content())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn doc(paths: Value) -> OpenApi {
        serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": paths,
        }))
        .unwrap()
    }

    fn responses(doc: &OpenApi, path: &str, method: &str) -> Value {
        serde_json::to_value(doc).unwrap()["paths"][path][method]["responses"].clone()
    }

    #[test]
    fn errors_become_problem_json_and_common_answers_are_added_where_they_apply() {
        let mut d = doc(json!({
            "/things/{id}": {
                "put": {
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "security": [{"bearer": []}],
                    "responses": {
                        "202": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "404": {"description": "none", "content": {"application/json": {"schema": {"type": "object"}}}}
                    }
                }
            },
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}}
        }));
        document_errors(&mut d, Layers { rate_limited: true });
        let put = responses(&d, "/things/{id}", "put");
        let mut codes: Vec<&str> = put
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        codes.sort_unstable();
        assert_eq!(codes, ["202", "400", "401", "404", "413", "415", "429"]);
        assert!(put["202"]["content"]["application/json"].is_object());
        for code in ["400", "401", "404", "413", "415", "429"] {
            let content = put[code]["content"].as_object().unwrap();
            assert_eq!(content.keys().collect::<Vec<_>>(), [CONTENT_TYPE], "{code}");
            assert_eq!(
                content[CONTENT_TYPE]["schema"]["$ref"],
                "#/components/schemas/Problem"
            );
        }
        assert_eq!(
            put["404"]["description"], "none",
            "a handler's own text is kept"
        );
        let health = responses(&d, "/health", "get");
        assert_eq!(
            health.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["200", "429"]
        );
    }

    #[test]
    fn without_rate_limiting_a_bare_route_keeps_its_answers() {
        let mut d = doc(json!({"/health": {"get": {"responses": {"200": {"description": "ok"}}}}}));
        document_errors(&mut d, Layers::default());
        let health = responses(&d, "/health", "get");
        assert_eq!(
            health.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["200"]
        );
    }
}
