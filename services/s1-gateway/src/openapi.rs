//! The OpenAPI document (`/openapi.json`, committed as docs/openapi.json) and
//! Swagger UI at `/docs`, whose assets are embedded in the binary.

use axum::Router;
use axum::http::Method;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Polystream gateway (S1)", description = "Writes answer 202 with a correlation_id; follow status_url for the outcome. Errors are RFC 9457 problem+json."),
    components(schemas(polystream_common::problem::Problem, polystream_common::problem::InvalidParam)),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The whole document: the paths come from the routes S1 serves
/// ([`crate::api_routes`], seed 002's included).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(crate::api_routes(true).into_openapi());
    // First: the header is a parameter, so a malformed one is a documented 400.
    document_idempotency(&mut doc);
    // Every API route is rate limited (crate::limits).
    let layers = polystream_common::openapi::Layers { rate_limited: true };
    polystream_common::openapi::document_errors(&mut doc, layers);
    doc
}

/// The `Idempotency-Key` header (crate::idempotency) and its answers, on
/// every operation the middleware applies to.
fn document_idempotency(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    for (template, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(op) = op else { continue };
            if !crate::idempotency::applies(&method, template) {
                continue;
            }
            let schema = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$"));
            op.parameters.get_or_insert_with(Vec::new).push(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "A retry with the same key within 24 h gets the first answer and never \
                         a second effect",
                    ))
                    .schema(Some(schema))
                    .build()
                    .into(),
            );
            for (code, why) in [
                (409, "A request with this Idempotency-Key is still running"),
                (422, "This Idempotency-Key was used for a different request"),
            ] {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| polystream_common::openapi::problem_response(why).into());
            }
        }
    }
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn document() -> String {
    let mut doc = openapi();
    // The crate version would make every release rewrite the committed file.
    doc.info.version = "1".into();
    polystream_common::generated::canonical_json(serde_json::to_value(&doc).unwrap_or_default())
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn has_key_header(doc: &serde_json::Value, path: &str, method: &str) -> bool {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
            })
    }

    #[test]
    fn idempotency_key_is_declared_where_the_middleware_honours_it() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert!(has_key_header(&doc, "/v1/users/{id}/payments", "post"));
        assert!(has_key_header(&doc, "/v1/titles/{id}", "delete"));
        assert!(!has_key_header(&doc, "/v1/users/{id}/payments", "get"));
        assert!(
            !has_key_header(&doc, "/v1/titles/{id}/assets", "post"),
            "uploads are streamed"
        );
        let responses = &doc["paths"]["/v1/users/{id}/payments"]["post"]["responses"];
        let logout = &doc["paths"]["/v1/sessions/current"]["delete"]["responses"];
        assert!(
            logout["400"].is_object(),
            "a malformed key is a 400 even without other input"
        );
        for code in ["409", "422", "429"] {
            assert!(
                responses[code]["content"]["application/problem+json"].is_object(),
                "{code}"
            );
        }
    }
}
