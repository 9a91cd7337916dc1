//! The sim's REST API: `GET /api/states` and `GET /api/states/{entity_id}`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Inner;

/// HA's answers: JSON bodies, a plain-text 401.
fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Counts the call and checks the bearer token, as HA does for every REST route;
/// returns the 401 to send when the token is wrong.
fn authorised(sim: &Inner, headers: &HeaderMap) -> Option<Response> {
    sim.counters.rest_calls.fetch_add(1, Ordering::SeqCst);
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (got != Some(sim.token.as_str()))
        .then(|| (StatusCode::UNAUTHORIZED, "401: Unauthorized").into_response())
}

pub(super) async fn all(State(sim): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Some(r) = authorised(&sim, &headers) {
        return r;
    }
    let body = sim.house.lock().states_json();
    json(StatusCode::OK, body)
}

pub(super) async fn one(
    State(sim): State<Arc<Inner>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = authorised(&sim, &headers) {
        return r;
    }
    let found = sim.house.lock().get(&id).map(str::to_string);
    match found {
        Some(body) => json(StatusCode::OK, body),
        None => json(
            StatusCode::NOT_FOUND,
            r#"{"message":"Entity not found."}"#.into(),
        ),
    }
}
