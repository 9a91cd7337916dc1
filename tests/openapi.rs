//! `/api/openapi.json`: valid JSON, lists every route the router serves, and
//! documents the bearer scheme (with `/api/health` open).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ha_fetchers::api::{router, AppState, BEARER};
use ha_fetchers::fetchers::{Engine, Registry};
use ha_fetchers::state::{MemoryStore, SharedStore, StateManager};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

/// Every (method, path) the router serves, in the document's spelling.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/health"),
    ("get", "/api/health/websocket"),
    ("get", "/api/health/redis"),
    ("get", "/api/health/mysql"),
    ("get", "/api/v1/states"),
    ("get", "/api/v1/states/{entity_id}"),
    ("get", "/api/v1/domains"),
    ("get", "/api/v1/summary"),
    ("get", "/api/v1/fetchers"),
    ("get", "/api/v1/fetchers/{name}"),
    ("post", "/api/v1/fetchers/{name}/run"),
    ("post", "/api/v1/fetchers/run"),
    ("get", "/api/v1/prompts"),
    ("post", "/api/v1/prompts/{name}/render"),
    ("post", "/api/v1/render"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
];

fn app(token: Option<&str>) -> axum::Router {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        Registry::from_rows(Vec::new()),
        StateManager::new(store, None),
    );
    let mut state = AppState::new(engine);
    state.api_token = token.map(|t| Arc::new(SecretString::from(t)));
    router(state)
}

async fn get(
    app: axum::Router,
    method: Method,
    uri: &str,
    bearer: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

async fn document() -> Value {
    let (status, body) = get(app(Some("t")), Method::GET, "/api/openapi.json", Some("t")).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).expect("the document is JSON")
}

#[tokio::test]
async fn lists_every_route_and_only_those() {
    let doc = document().await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .expect("path item")
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);

    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().expect("operationId"))
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "operation ids must be unique");
}

/// Each documented route is served: the router answers it with something other
/// than its "no such route" or "method not allowed" fallbacks.
#[tokio::test]
async fn every_documented_route_is_served() {
    for (method, path) in ROUTES {
        let uri = path
            .replace("{entity_id}", "light.nowhere")
            .replace("{name}", "nothing");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = get(app(None), method.clone(), &uri, None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if status == StatusCode::NOT_FOUND {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert_ne!(msg, "no such route", "{method} {uri}");
        }
    }
}

#[tokio::test]
async fn documents_the_bearer_scheme_and_the_open_health_route() {
    let doc = document().await;
    let scheme = &doc["components"]["securitySchemes"][BEARER];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(doc["security"], serde_json::json!([{ BEARER: [] }]));

    // /api/health overrides the global requirement with an empty one: open.
    let health = &doc["paths"]["/api/health"]["get"];
    let open = health["security"]
        .as_array()
        .expect("health has its own security");
    assert!(
        open.iter()
            .all(|r| r.as_object().is_some_and(|o| o.is_empty())),
        "{open:?}"
    );

    // Every other operation inherits the bearer scheme and documents 401.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if path == "/api/health" {
                continue;
            }
            assert!(
                op.get("security").is_none(),
                "{method} {path} overrides security"
            );
            assert!(
                op["responses"].get("401").is_some(),
                "{method} {path} lacks 401"
            );
        }
    }
}

#[tokio::test]
async fn the_document_needs_the_token() {
    let (status, _) = get(app(Some("t")), Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(app(Some("t")), Method::GET, "/api/health", None).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
}
