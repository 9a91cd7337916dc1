//! `/api/v1/states`, `/api/v1/domains`, `/api/v1/summary`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Path, Query as Q, Seen};
use super::ApiError;
use crate::door::ErrorBody;
use crate::state::{DomainCount, Summary};
use crate::state::{EntityState, Glob, Query};

/// A state exactly as Home Assistant sent it: the states routes answer HA's
/// own JSON, so fields a newer HA adds appear too.
// Never serialised: the routes write HA's bytes (`raw_array`, `one`), a
// measured hot path. This type is their schema, and what a client or a test
// reads those bytes into (tests/it/openapi.rs does).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct HaState {
    /// `domain.object_id`.
    pub entity_id: String,
    /// The state text (`on`, `21.5`, `unavailable`, …).
    pub state: String,
    /// HA's attributes, free-form.
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// When the state text last changed (ISO 8601).
    pub last_changed: String,
    /// When the state or its attributes last changed (ISO 8601).
    pub last_updated: String,
    /// When HA last wrote it, even unchanged (HA 2024.3 and later).
    #[serde(default)]
    pub last_reported: Option<String>,
    /// HA's context: `id`, `parent_id`, `user_id`.
    #[schema(value_type = Object)]
    pub context: Value,
}

/// Query string of the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this domain.
    domain: Option<String>,
    /// Only this state.
    state: Option<String>,
    /// Glob over entity id and friendly name.
    q: Option<String>,
}

/// Writes states as a JSON array of HA's own bytes, with no re-serialising.
pub fn raw_array(states: &[EntityState]) -> Response {
    let mut body = String::with_capacity(states.iter().map(|s| s.raw.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, s) in states.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&s.raw);
    }
    body.push(']');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// States, filtered by domain, state and a glob.
#[utoipa::path(
    get,
    path = "/api/v1/states",
    operation_id = "list_states",
    tag = "states",
    params(ListParams),
    responses(
        (status = 200, description = "The matching states, as HA sent them", body = Vec<HaState>),
        (status = 400, description = "Bad glob in `q`, or an undecodable query string", body = ErrorBody),
        (status = 502, description = "HA answered another entity's state for an entity the cache had dropped (`bad_gateway`)", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody),
    )
)]
pub async fn list(Seen(engine): Seen, Q(p): Q<ListParams>) -> Result<Response, ApiError> {
    let pattern =
        p.q.as_deref()
            .map(Glob::new)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("q: {e}")))?;
    let q = Query {
        domain: p.domain,
        state: p.state,
        pattern,
    };
    Ok(raw_array(&engine.states().list(&q).await?))
}

/// One state, from the cache or (on a miss) HA's REST API.
#[utoipa::path(
    get,
    path = "/api/v1/states/{entity_id}",
    operation_id = "get_state",
    tag = "states",
    params(("entity_id" = String, Path, description = "`domain.object_id`", pattern = r"^[a-z0-9_]+\.[a-z0-9_]+$", max_length = 255, example = "light.bed_light")),
    responses(
        (status = 200, description = "The state, as HA sent it", body = HaState),
        (status = 400, description = "Not a valid entity id", body = ErrorBody),
        (status = 404, description = "No such entity", body = ErrorBody),
        (status = 502, description = "HA answered another entity's state (`bad_gateway`); nothing was cached", body = ErrorBody),
        (status = 503, description = "Neither the cache nor HA could answer", body = ErrorBody),
    )
)]
pub async fn one(Seen(engine): Seen, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = engine.states().get(&id).await?;
    // The stored text is the body: shared, not copied.
    let body = axum::body::Body::from(axum::body::Bytes::from_owner(RawJson(s.raw)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A stored state's JSON as response bytes.
struct RawJson(std::sync::Arc<str>);

impl AsRef<[u8]> for RawJson {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Entities per domain, and per state within each.
#[utoipa::path(
    get,
    path = "/api/v1/domains",
    operation_id = "list_domains",
    tag = "states",
    responses(
        (status = 200, description = "One entry per domain", body = Vec<DomainCount>),
    )
)]
pub async fn domains(Seen(engine): Seen) -> Json<Vec<DomainCount>> {
    Json(engine.states().domains())
}

/// Cache statistics and link status.
#[utoipa::path(
    get,
    path = "/api/v1/summary",
    operation_id = "get_summary",
    tag = "states",
    responses(
        (status = 200, description = "The summary", body = Summary),
    )
)]
pub async fn summary(Seen(engine): Seen) -> Json<Summary> {
    Json(engine.states().summary())
}
