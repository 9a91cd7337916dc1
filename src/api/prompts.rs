//! `/api/v1/prompts` and `/api/v1/render`: list and render prompt templates.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Json as JsonBody, Path, Seen};
use super::ApiError;
use crate::door::ErrorBody;
use crate::prompt::{RenderOptions, Rendered};

/// A template in the listing (the body is left out to keep it short).
#[derive(Debug, Serialize, ToSchema)]
pub struct Listed {
    /// What to render it by.
    name: String,
    /// One line about it.
    description: String,
    /// Disabled templates do not render.
    enabled: bool,
    /// Last change in MySQL, when it comes from there.
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The prompt templates (without their bodies).
#[utoipa::path(
    get,
    path = "/api/v1/prompts",
    operation_id = "list_prompts",
    tag = "prompts",
    responses(
        (status = 200, description = "The templates", body = Vec<Listed>),
    )
)]
pub async fn list(Seen(engine): Seen) -> Json<Vec<Listed>> {
    Json(
        engine
            .prompt_list()
            .into_iter()
            .map(|t| Listed {
                name: t.name,
                description: t.description,
                enabled: t.enabled,
                updated_at: t.updated_at,
            })
            .collect(),
    )
}

/// A template with its source, for editing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Template {
    /// What to render it by.
    name: String,
    /// One line about it.
    description: String,
    /// Disabled templates do not render.
    enabled: bool,
    /// Last change in MySQL, when it comes from there.
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The minijinja source.
    body: String,
}

/// One template with its source.
#[utoipa::path(
    get,
    path = "/api/v1/prompts/{name}",
    operation_id = "get_prompt",
    tag = "prompts",
    params(("name" = String, Path, description = "The template's name", example = "home_status")),
    responses(
        (status = 200, description = "The template", body = Template),
        (status = 400, description = "Undecodable path", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
    )
)]
pub async fn one(Seen(engine): Seen, Path(name): Path<String>) -> Result<Json<Template>, ApiError> {
    let t = engine
        .prompts()
        .get(&name)
        .filter(|_| engine.prompt_allowed(&name))
        .ok_or_else(|| ApiError::NotFound(format!("no prompt template named {name}")))?;
    Ok(Json(Template {
        name: t.name,
        description: t.description,
        enabled: t.enabled,
        updated_at: t.updated_at,
        body: t.body,
    }))
}

/// Renders a stored template, running the fetchers it uses.
#[utoipa::path(
    post,
    path = "/api/v1/prompts/{name}/render",
    operation_id = "render_prompt",
    tag = "prompts",
    params(("name" = String, Path, description = "The template's name", example = "home_status")),
    request_body(content = Option<RenderOptions>, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "The rendered text, with the fetchers that ran", body = Rendered),
        (status = 400, description = "Not JSON, or undecodable path", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 422, description = "Disabled, syntax error, unknown fetcher, out of fuel, …, or a body that is not render options", body = ErrorBody),
        (status = 503, description = "Strict mode and a fetcher failed", body = ErrorBody),
    )
)]
pub async fn render(
    Seen(engine): Seen,
    Path(name): Path<String>,
    body: Option<JsonBody<RenderOptions>>,
) -> Result<Json<Rendered>, ApiError> {
    let opts = body.map(|JsonBody(o)| o).unwrap_or_default();
    Ok(Json(engine.render(&name, opts).await?))
}

/// An inline template for preview.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Inline {
    /// The template source.
    body: String,
    /// Variables and strictness.
    #[serde(flatten)]
    opts: RenderOptions,
}

/// Renders a template given in the body (a preview; nothing is stored).
#[utoipa::path(
    post,
    path = "/api/v1/render",
    operation_id = "render_inline",
    tag = "prompts",
    request_body(content = Inline, content_type = "application/json"),
    responses(
        (status = 200, description = "The rendered text, with the fetchers that ran", body = Rendered),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 404, description = "It includes a template that does not exist", body = ErrorBody),
        (status = 422, description = "Syntax error, unknown fetcher, out of fuel, …, or a body that is not an inline template", body = ErrorBody),
        (status = 503, description = "Strict mode and a fetcher failed", body = ErrorBody),
    )
)]
pub async fn render_inline(
    Seen(engine): Seen,
    JsonBody(req): JsonBody<Inline>,
) -> Result<Json<Rendered>, ApiError> {
    Ok(Json(engine.render_inline(&req.body, req.opts).await?))
}
