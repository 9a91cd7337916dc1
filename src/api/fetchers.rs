//! Fetcher routes: list, describe, run one, run several, and MySQL health.

use std::sync::Arc;

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::{Json as JsonBody, Path};
use super::{ApiError, AppState};
use crate::fetchers::{Definition, FetchError, FetchOutcome, FetchRequest, LoadStatus, Problem};

/// How long the health probe waits for MySQL.
const MYSQL_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The most fetchers one batch may run: a prompt needs a handful, and every
/// item costs a task and a result held until the answer is sent (10,000
/// items peaked at 1.6 GB; 70,000 aborted the process).
pub const MAX_BATCH: usize = 32;

/// The largest answer a fetcher route sends; a bigger one is refused (413)
/// before it is fully built, rather than buffered whatever its size.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// A definition as the API lists it.
#[derive(Serialize, ToSchema)]
struct DefinitionView<'a> {
    /// The name.
    name: &'a str,
    /// What it returns.
    description: &'a str,
    /// Which source runs.
    source: &'static str,
    /// Defaults callers may override.
    #[schema(value_type = Object)]
    params: &'a Map<String, Value>,
    /// Params callers must give.
    #[schema(value_type = Vec<String>)]
    required_params: &'a [String],
    /// The template, for template sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    /// Cache ceiling.
    ttl_seconds: u64,
    /// Per-run limit.
    timeout_ms: u128,
}

fn view(d: &Definition) -> DefinitionView<'_> {
    DefinitionView {
        name: &d.name,
        description: &d.description,
        source: d.source.kind(),
        params: &d.defaults,
        required_params: &d.required,
        template: d.row.template.as_deref(),
        ttl_seconds: d.ttl.as_secs(),
        timeout_ms: d.timeout.as_millis(),
    }
}

/// The body of the fetcher listing (doc only: built with `json!`).
#[derive(ToSchema)]
#[allow(dead_code)]
struct FetcherList {
    /// The loaded definitions.
    fetchers: Vec<DefinitionView<'static>>,
    /// Rows that did not load, and why.
    problems: Vec<Problem>,
    /// How the last load went.
    source: LoadStatus,
}

/// A run's outcome (doc only: [`outcome_json`] builds it).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Outcome {
    /// The fetcher.
    name: String,
    /// The params it ran with, defaults filled in.
    #[schema(value_type = Object)]
    params: Value,
    /// Wall time.
    elapsed_ms: f64,
    /// Whether the engine answered from its cache.
    cached: bool,
    /// The result, any JSON; present on success.
    #[schema(required = false)]
    result: Value,
    /// Present on failure.
    #[schema(required = false)]
    error: Option<OutcomeError>,
}

/// Why a run failed (doc only).
#[derive(ToSchema)]
#[allow(dead_code)]
struct OutcomeError {
    /// `unknown_fetcher`, `bad_params`, `timeout`, `failed`.
    code: String,
    /// For humans.
    message: String,
}

/// The body of a batch run (doc only).
#[derive(ToSchema)]
#[allow(dead_code)]
struct RunResults {
    /// One outcome per requested fetcher, in order.
    results: Vec<Outcome>,
}

/// The body of the MySQL health route (doc only: built with `json!`).
#[derive(ToSchema)]
#[allow(dead_code)]
struct MysqlHealth {
    /// Whether definitions come from MySQL at all.
    configured: bool,
    /// Whether it answered and the last load worked.
    ok: bool,
    /// `mysql`, `files` or `rows`.
    backend: String,
    /// Why it is not ok.
    error: Option<String>,
    /// Unix seconds of the last successful load.
    last_ok_at: Option<f64>,
    /// Definitions loaded.
    fetchers: usize,
    /// Rows that did not load.
    problems: usize,
}

/// An outcome as it is sent: borrows the result, so a cached one is
/// serialised from the cache's own copy, not cloned first.
#[derive(Serialize)]
struct OutcomeView<'a> {
    name: &'a str,
    params: &'a Map<String, Value>,
    elapsed_ms: f64,
    cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

impl<'a> From<&'a FetchOutcome> for OutcomeView<'a> {
    fn from(o: &'a FetchOutcome) -> Self {
        Self {
            name: &o.name,
            params: &o.params,
            elapsed_ms: (o.elapsed_ms * 1000.0).round() / 1000.0,
            cached: o.cached,
            result: o.result.as_deref().ok(),
            error: o
                .result
                .as_ref()
                .err()
                .map(|e| json!({"code": e.code(), "message": e.to_string()})),
        }
    }
}

/// A batch's answer as it is sent.
#[derive(Serialize)]
struct Results<'a> {
    results: Vec<OutcomeView<'a>>,
}

/// An outcome as JSON: `result` on success, `error: {code, message}` otherwise.
pub fn outcome_json(o: &FetchOutcome) -> Value {
    serde_json::to_value(OutcomeView::from(o)).expect("an outcome is always JSON")
}

/// A `Vec` that refuses to grow past [`MAX_RESPONSE_BYTES`]: serialising into
/// it stops at the limit instead of building the whole answer first.
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RESPONSE_BYTES {
            return Err(std::io::Error::other("response limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `body` as a JSON response, or 413 when it would exceed [`MAX_RESPONSE_BYTES`].
fn capped_json(status: StatusCode, body: &impl Serialize) -> Result<Response, ApiError> {
    let mut out = Capped(Vec::new());
    if serde_json::to_writer(&mut out, body).is_err() {
        return Err(ApiError::TooLarge(format!(
            "the answer would exceed {MAX_RESPONSE_BYTES} bytes (the response limit); \
             ask for fewer fetchers or narrower params"
        )));
    }
    Ok((status, [(header::CONTENT_TYPE, "application/json")], out.0).into_response())
}

/// The fetchers, the rows that did not load, and how loading went.
#[utoipa::path(
    get,
    path = "/api/v1/fetchers",
    operation_id = "list_fetchers",
    tag = "fetchers",
    responses(
        (status = 200, description = "The registry", body = FetcherList),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn list(State(app): State<Arc<AppState>>) -> Json<Value> {
    let loaded = app.fetchers.registry().current();
    let defs: Vec<_> = loaded.defs.values().map(|d| view(d)).collect();
    Json(json!({
        "fetchers": defs,
        "problems": loaded.problems,
        "source": app.fetchers.registry().status(),
    }))
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
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such fetcher", body = ErrorBody),
        (status = 422, description = "The row exists but does not load; the message says why", body = ErrorBody),
    )
)]
pub async fn one(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = app.fetchers.registry().current();
    if let Some(d) = loaded.defs.get(&name) {
        return Ok(Json(json!(view(d))));
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
    params(("name" = String, Path, description = "The fetcher's name", example = "ha_lights_on")),
    request_body(content = Option<Object>, description = "Params (a JSON object); optional", content_type = "application/json"),
    responses(
        (status = 200, description = "It ran", body = Outcome),
        (status = 400, description = "Bad params, a body that is not a JSON object, or undecodable path", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such fetcher", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES, or an answer over 8 MiB", body = ErrorBody),
        (status = 415, description = "A body without `content-type: application/json`", body = ErrorBody),
        (status = 502, description = "The fetcher failed (outcome with `error`)", body = Outcome),
        (status = 504, description = "The fetcher timed out (outcome with `error`)", body = Outcome),
    )
)]
pub async fn run_one(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Option<JsonBody<Value>>,
) -> Result<Response, ApiError> {
    let params = params_of(body)?;
    let out = app.fetchers.run(FetchRequest { name, params }).await;
    let status = match &out.result {
        Ok(_) => StatusCode::OK,
        Err(FetchError::UnknownFetcher(n)) => {
            return Err(ApiError::NotFound(format!("unknown fetcher {n}")))
        }
        Err(FetchError::BadParams(m)) => return Err(ApiError::BadRequest(m.clone())),
        Err(FetchError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
        Err(FetchError::Failed(_)) => StatusCode::BAD_GATEWAY,
    };
    capped_json(status, &OutcomeView::from(&out))
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
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body over MAX_BODY_BYTES, more than 32 fetchers, or an answer over 8 MiB", body = ErrorBody),
        (status = 415, description = "A body without `content-type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not a batch", body = ErrorBody),
    )
)]
pub async fn run_many(
    State(app): State<Arc<AppState>>,
    JsonBody(body): JsonBody<RunMany>,
) -> Result<Response, ApiError> {
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
    let outs = app.fetchers.run_many(reqs).await;
    let results = outs.iter().map(OutcomeView::from).collect();
    capped_json(StatusCode::OK, &Results { results })
}

/// Where fetcher definitions come from, and whether MySQL answers.
#[utoipa::path(
    get,
    path = "/api/health/mysql",
    operation_id = "health_mysql",
    tag = "health",
    responses(
        (status = 200, description = "Healthy (or definitions come from files)", body = MysqlHealth),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "MySQL does not answer or the last load failed (same body)", body = MysqlHealth),
    )
)]
pub async fn mysql_health(State(app): State<Arc<AppState>>) -> Response {
    let reg = app.fetchers.registry();
    let status = reg.status();
    let configured = status.backend == "mysql";
    let ping = match tokio::time::timeout(MYSQL_PING_TIMEOUT, reg.ping()).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "mysql did not answer within {MYSQL_PING_TIMEOUT:?}"
        )),
    };
    let error = ping.err().or(status.error.clone());
    let ok = error.is_none();
    let loaded = reg.current();
    let body = json!({
        "configured": configured,
        "ok": ok,
        "backend": status.backend,
        "error": error,
        "last_ok_at": status.last_ok_at,
        "fetchers": loaded.defs.len(),
        "problems": loaded.problems.len(),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_over_the_response_limit_are_refused() {
        let small = json!({"results": ["x"]});
        assert_eq!(capped_json(StatusCode::OK, &small).unwrap().status(), 200);
        let big = json!({"result": "x".repeat(MAX_RESPONSE_BYTES)});
        match capped_json(StatusCode::OK, &big) {
            Err(ApiError::TooLarge(m)) => assert!(m.contains("8388608 bytes"), "{m}"),
            other => panic!("expected TooLarge, got {:?}", other.map(|r| r.status())),
        }
    }
}
