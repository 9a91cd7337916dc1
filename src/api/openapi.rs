//! `GET /api/openapi.json`: the API contract, generated from the handlers'
//! `#[utoipa::path]` annotations so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{fetchers, health, prompts, states};

/// The security scheme's name in the document (the `security` attribute repeats it literally).
pub const BEARER: &str = "bearer";

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ha-fetchers",
        description = "Mirrors Home Assistant, runs data fetchers, renders LLM prompts. \
            Every route but `/api/health` needs `Authorization: Bearer <API_TOKEN>` when \
            API_TOKEN is set. Failures answer `{\"error\": {\"code\", \"message\"}}`; \
            a method a path does not list answers 405 with that body and an `Allow` header."
    ),
    paths(
        health::overall,
        health::websocket_route,
        health::redis_route,
        fetchers::mysql_health,
        states::list,
        states::one,
        states::domains,
        states::summary,
        fetchers::list,
        fetchers::one,
        fetchers::run_one,
        fetchers::run_many,
        prompts::list,
        prompts::render,
        prompts::render_inline,
        super::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "health", description = "Liveness of the link to HA and the backing services."),
        (name = "states", description = "The mirrored Home Assistant states."),
        (name = "fetchers", description = "Data fetchers: list and run."),
        (name = "prompts", description = "Prompt templates: list and render."),
        (name = "meta", description = "Metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme the global `security` refers to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API_TOKEN setting."))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
