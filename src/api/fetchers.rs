//! Fetcher routes: list, describe, run one, run several, and MySQL health.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::extract::{Json as JsonBody, Path, Query, Seen};
use super::ApiError;
use crate::capped::Capped;
use crate::door::{ErrorBody, MAX_RESPONSE_BYTES};
use crate::fetchers::{
    BackendKind, Definition, FetchError, FetchOutcome, FetchRequest, LoadStatus, Problem,
};

/// The most fetchers one batch may run: a prompt needs a handful, and every
/// item costs a task and a result held until the answer is sent (10,000
/// items peaked at 1.6 GB; 70,000 aborted the process).
pub const MAX_BATCH: usize = 32;

/// A definition as the API lists it.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub struct DefinitionView {
    /// What it returns.
    description: String,
    /// The name.
    name: String,
    /// Where the definition came from: `mysql` (a row), `file` (`fetchers/*.toml`)
    /// or `rows` (given in code, for tests).
    origin: &'static str,
    /// Defaults callers may override.
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    /// Params callers must give.
    required_params: Vec<String>,
    /// Which source runs.
    source: &'static str,
    /// The template, for template sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    /// Per-run limit.
    timeout_ms: u128,
    /// Cache ceiling.
    ttl_seconds: u64,
}

impl DefinitionView {
    /// `d` as listed; `backend` is the registry's (`LoadStatus::backend`).
    fn new(d: &Definition, backend: BackendKind) -> Self {
        Self {
            description: d.description.clone(),
            name: d.name.clone(),
            origin: backend.origin(),
            params: d.defaults.clone(),
            required_params: d.required.clone(),
            source: d.source.kind(),
            template: d.row.template.clone(),
            timeout_ms: d.timeout.as_millis(),
            ttl_seconds: d.ttl.as_secs(),
        }
    }
}

/// The body of the fetcher listing.
#[derive(Serialize, ToSchema)]
pub struct FetcherList {
    /// The loaded definitions.
    fetchers: Vec<DefinitionView>,
    /// Rows that did not load, and why.
    problems: Vec<Problem>,
    /// How the last load went.
    source: LoadStatus,
}

/// A run's outcome: `result` on success, `error` otherwise.
// What the run routes answer and `ha-fetchers fetch` prints (`outcome_json`).
#[derive(Serialize, ToSchema)]
pub struct Outcome {
    /// The fetcher.
    name: String,
    /// The params it ran with, defaults filled in.
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    /// Wall time.
    elapsed_ms: f64,
    /// Whether the engine answered from its cache.
    cached: bool,
    /// The result, any JSON; present on success.
    // Shared with the result cache: a cached answer is serialised from the
    // cache's own copy, not cloned.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    result: Option<Arc<Value>>,
    /// Present on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<OutcomeError>,
    /// The result as the token-lean text LLM clients get (`?text=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// Query options of a run.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Also answer the result as the token-lean text Model Context Protocol
    /// clients get (`text`).
    #[serde(default)]
    text: bool,
}

/// Why a run failed.
#[derive(Serialize, ToSchema)]
pub struct OutcomeError {
    /// `unknown_fetcher`, `bad_params`, `timeout`, `failed`.
    code: &'static str,
    /// For humans.
    message: String,
}

impl From<FetchOutcome> for Outcome {
    fn from(o: FetchOutcome) -> Self {
        let (result, error) = match o.result {
            Ok(v) => (Some(v), None),
            Err(e) => (
                None,
                Some(OutcomeError {
                    code: e.code(),
                    message: e.to_string(),
                }),
            ),
        };
        Self {
            name: o.name,
            params: o.params,
            elapsed_ms: (o.elapsed_ms * 1000.0).round() / 1000.0,
            cached: o.cached,
            result,
            error,
            text: None,
        }
    }
}

/// The body of a batch run.
#[derive(Serialize, ToSchema)]
pub struct RunResults {
    /// One outcome per requested fetcher, in order.
    results: Vec<Outcome>,
}

/// An outcome as JSON, as the run routes answer it (for `ha-fetchers fetch`).
pub fn outcome_json(o: &FetchOutcome) -> Value {
    serde_json::to_value(Outcome::from(o.clone())).expect("an outcome is always JSON")
}

/// A JSON answer with a status, refused (413) when it would exceed
/// [`MAX_RESPONSE_BYTES`].
pub struct CappedJson<T>(StatusCode, T);

impl<T: Serialize> IntoResponse for CappedJson<T> {
    fn into_response(self) -> Response {
        let Self(status, body) = self;
        let mut out = Capped::new(MAX_RESPONSE_BYTES);
        if serde_json::to_writer(&mut out, &body).is_err() {
            return ApiError::TooLarge(format!(
                "the answer would exceed {MAX_RESPONSE_BYTES} bytes (the response limit); \
                 ask for fewer fetchers or narrower params"
            ))
            .into_response();
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            out.into_inner(),
        )
            .into_response()
    }
}

/// The fetchers, the rows that did not load, and how loading went.
#[utoipa::path(
    get,
    path = "/api/v1/fetchers",
    operation_id = "list_fetchers",
    tag = "fetchers",
    responses(
        (status = 200, description = "The registry", body = FetcherList),
    )
)]
pub async fn list(Seen(engine): Seen) -> Json<FetcherList> {
    let loaded = engine.fetchers().loaded();
    let source = engine.fetchers().load_status();
    Json(FetcherList {
        fetchers: loaded
            .defs
            .values()
            .map(|d| DefinitionView::new(d, source.backend))
            .collect(),
        problems: loaded.problems.clone(),
        source,
    })
}

/// One fetcher's definition.
#[utoipa::path(
    get,
    path = "/api/v1/fetchers/{name}",
    operation_id = "get_fetcher",
    tag = "fetchers",
    params(("name" = String, Path, description = "The fetcher's name", example = "ha_lights_on")),
    responses(
        (status = 200, description = "The definition", body = DefinitionView),
        (status = 400, description = "Undecodable path", body = ErrorBody),
        (status = 404, description = "No such fetcher", body = ErrorBody),
        (status = 422, description = "The row exists but does not load; the message says why", body = ErrorBody),
    )
)]
pub async fn one(
    Seen(engine): Seen,
    Path(name): Path<String>,
) -> Result<Json<DefinitionView>, ApiError> {
    let loaded = engine.fetchers().loaded();
    if let Some(d) = loaded.defs.get(&name) {
        let backend = engine.fetchers().load_status().backend;
        return Ok(Json(DefinitionView::new(d, backend)));
    }
    let problems: Vec<String> = loaded
        .problems
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.to_string())
        .collect();
    if problems.is_empty() {
        Err(ApiError::NotFound(format!("unknown fetcher {name}")))
    } else {
        Err(ApiError::Unprocessable(problems.join("; ")))
    }
}

/// Params for one run: a JSON object, or nothing.
fn params_of(body: Option<JsonBody<Value>>) -> Result<Map<String, Value>, ApiError> {
    match body.map(|JsonBody(v)| v) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object of params".into(),
        )),
    }
}

/// Runs one fetcher.
#[utoipa::path(
    post,
    path = "/api/v1/fetchers/{name}/run",
    operation_id = "run_fetcher",
    tag = "fetchers",
    params(("name" = String, Path, description = "The fetcher's name", example = "ha_lights_on"), RunQuery),
    request_body(content = Option<Object>, description = "Params (a JSON object); optional", content_type = "application/json"),
    responses(
        (status = 200, description = "It ran", body = Outcome),
        (status = 400, description = "Bad params, a body that is not a JSON object, or an undecodable path or query", body = ErrorBody),
        (status = 404, description = "No such fetcher", body = ErrorBody),
        (status = 413, description = "An answer over 8 MiB (the response limit)", body = ErrorBody),
        (status = 502, description = "The fetcher failed (outcome with `error`)", body = Outcome),
        (status = 504, description = "The fetcher timed out (outcome with `error`)", body = Outcome),
    )
)]
pub async fn run_one(
    Seen(engine): Seen,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
    body: Option<JsonBody<Value>>,
) -> Result<CappedJson<Outcome>, ApiError> {
    let params = params_of(body)?;
    let out = engine.run(FetchRequest { name, params }).await;
    let status = match &out.result {
        Ok(_) => StatusCode::OK,
        Err(FetchError::UnknownFetcher(n)) => {
            return Err(ApiError::NotFound(format!("unknown fetcher {n}")))
        }
        Err(FetchError::BadParams(m)) => return Err(ApiError::BadRequest(m.clone())),
        Err(FetchError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
        Err(FetchError::Failed(_)) => StatusCode::BAD_GATEWAY,
    };
    let text = match (&out.result, q.text) {
        (Ok(v), true) => Some(crate::fetchers::lean::text(v)),
        _ => None,
    };
    let mut outcome = Outcome::from(out);
    outcome.text = text;
    Ok(CappedJson(status, outcome))
}

/// One entry of a batch.
#[derive(Deserialize, ToSchema)]
pub struct RunItem {
    /// The fetcher.
    name: String,
    /// Its params.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
}

/// A batch: `{"fetchers": [{"name": …, "params": {…}}, …]}`, at most [`MAX_BATCH`] of them.
#[derive(Deserialize, ToSchema)]
pub struct RunMany {
    /// What to run.
    fetchers: Vec<RunItem>,
}

/// Runs several fetchers at once; each fails on its own.
#[utoipa::path(
    post,
    path = "/api/v1/fetchers/run",
    operation_id = "run_fetchers",
    tag = "fetchers",
    request_body(content = RunMany, content_type = "application/json"),
    responses(
        (status = 200, description = "One outcome per fetcher, failures included", body = RunResults),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "More than 32 fetchers, or an answer over 8 MiB (the response limit)", body = ErrorBody),
        (status = 422, description = "JSON, but not a batch", body = ErrorBody),
    )
)]
pub async fn run_many(
    Seen(engine): Seen,
    JsonBody(body): JsonBody<RunMany>,
) -> Result<CappedJson<RunResults>, ApiError> {
    if body.fetchers.len() > MAX_BATCH {
        return Err(ApiError::TooLarge(format!(
            "a batch runs at most {MAX_BATCH} fetchers, not {}",
            body.fetchers.len()
        )));
    }
    let reqs = body
        .fetchers
        .into_iter()
        .map(|i| FetchRequest {
            name: i.name,
            params: i.params,
        })
        .collect();
    let outs = engine.run_many(reqs).await;
    let results = outs.into_iter().map(Outcome::from).collect();
    Ok(CappedJson(StatusCode::OK, RunResults { results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use http_body_util::BodyExt;
    use serde_json::json;

    #[tokio::test]
    async fn answers_over_the_response_limit_are_refused() {
        let small = json!({"results": ["x"]});
        assert_eq!(
            CappedJson(StatusCode::OK, small).into_response().status(),
            200
        );
        let big = json!({"result": "x".repeat(MAX_RESPONSE_BYTES)});
        let resp = CappedJson(StatusCode::OK, big).into_response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "too_large", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("8388608 bytes"), "{m}");
    }
}
