//! The OpenAPI document (`/openapi.json`, committed as docs/openapi.json) and
//! Swagger UI at `/docs`, whose assets are embedded in the binary.

use axum::Router;
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
    // Every API route is rate limited (crate::limits).
    let layers = polystream_common::openapi::Layers { rate_limited: true };
    polystream_common::openapi::document_errors(&mut doc, layers);
    doc
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
