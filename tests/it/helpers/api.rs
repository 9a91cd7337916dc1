//! The HTTP API in-process: the router over an engine, one request at a time
//! through `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use ha_fetchers::api::{router, AppState};
use ha_fetchers::engine::Engine;
use ha_fetchers::fetchers::{Registry, Runner};
use ha_fetchers::state::{EntityState, MemoryStore, SharedStore, StateManager};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

use super::fixtures::fixture;

/// The router over `engine`, guarded by `token` when there is one.
pub fn app_over(engine: Runner, token: Option<&str>) -> Router {
    let mut state = AppState::new(Engine::over(engine));
    state.api_token = token.map(|t| Arc::new(SecretString::from(t)));
    router(state)
}

/// The router with no fetchers over `store`.
pub fn app_with(store: SharedStore, token: Option<&str>) -> Router {
    let engine = Runner::new(
        Registry::from_rows(Vec::new()),
        StateManager::new(store, None),
    );
    app_over(engine, token)
}

/// The router over an empty memory store.
pub fn empty_app(token: Option<&str>) -> Router {
    app_with(Arc::new(MemoryStore::new()), token)
}

/// The router over the recorded demo house of HA 2025.4.4, in memory.
pub async fn demo_app(token: Option<&str>) -> Router {
    let text = fixture("2025.4.4", "rest-states.json");
    let raws: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text).unwrap();
    let states = raws
        .iter()
        .map(|r| EntityState::from_raw(r.get()).unwrap())
        .collect();
    let store: SharedStore = Arc::new(MemoryStore::new());
    store.replace_all(states).await.unwrap();
    app_with(store, token)
}

/// A request without a body, with a bearer token when given.
pub fn request(method: Method, uri: &str, bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    req.body(Body::empty()).unwrap()
}

/// A console login with `token`.
pub fn login(token: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/v1/session")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({ "token": token }).to_string(),
        ))
        .unwrap()
}

/// The session cookie a login answer sets, as a request sends it back
/// (`name=value`, without its attributes).
pub fn session_cookie(headers: &axum::http::HeaderMap) -> String {
    let set = headers[axum::http::header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// The JSON body of a request to a running app (or HA), sent.
pub async fn json(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// A request carrying the session `cookie` (`name=value`).
pub fn with_cookie(method: Method, uri: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

/// Sends `req`: the status and the body's bytes.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Bytes) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Sends `req`: the status and the body, which must be JSON.
pub async fn send_json(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let uri = req.uri().to_string();
    let (status, bytes) = send(app, req).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

/// A request without a body: the status and the JSON body.
pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    send_json(app, request(method, uri, bearer)).await
}

/// POSTs `body` as JSON: the status and the JSON body.
pub async fn post(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send_json(app, req).await
}
