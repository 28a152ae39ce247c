//! The OpenAPI document (`/openapi.json`, committed as docs/openapi.json) and
//! Swagger UI at `/docs`, whose assets are embedded in the binary.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::legacy;
use crate::routes::{accounts, catalog, status};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Polystream gateway (S1)", description = "Writes answer 202 with a correlation_id; follow status_url for the outcome. Errors are RFC 9457 problem+json."),
    paths(
        status::get_status,
        accounts::post_user, accounts::get_user, accounts::post_session, accounts::list_sessions,
        accounts::delete_current_session, accounts::delete_session,
        accounts::put_subscription, accounts::get_subscription,
        accounts::post_payment, accounts::list_payments,
        accounts::put_preferences, accounts::get_preferences,
        catalog::post_title, catalog::list_titles, catalog::get_title, catalog::put_title, catalog::delete_title,
        catalog::post_relation, catalog::list_relations, catalog::post_asset, catalog::get_asset,
        catalog::post_view, catalog::list_views, catalog::put_rating,
        catalog::post_recommendations, catalog::get_recommendations,
        catalog::get_ranking, catalog::get_counters,
        legacy::criar_usuario, legacy::assinatura, legacy::pagamento, legacy::config,
        legacy::registrar_visualizacao, legacy::historico, legacy::gerar_recomendacoes,
        legacy::recomendacoes, legacy::cachear, legacy::ler_cache, legacy::status,
    ),
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

/// The document as committed: pretty JSON with a trailing newline.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    // The crate version would make every release rewrite the committed file.
    doc.info.version = "1".into();
    polystream_common::generated::canonical_json(serde_json::to_value(&doc).unwrap_or_default())
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
