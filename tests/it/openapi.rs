//! `/api/openapi.json`: valid JSON, lists every route the router serves,
//! documents the bearer scheme (with `/api/health` open), declares the shared
//! responses once and gives them to every operation, holds no schema no
//! operation uses, and describes what the routes really answer.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ha_fetchers::api::{HaState, BEARER};
use serde_json::{json, Value};

use crate::helpers::api::{demo_app, empty_app, request, send, send_json};

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
    ("get", "/api/v1/prompts/{name}"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/status"),
    ("get", "/api/v1/session"),
    ("post", "/api/v1/session"),
    ("delete", "/api/v1/session"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
];

/// Paths that answer without a token: the health probe, and the console's
/// login (a browser must be able to ask and to log in).
const OPEN: &[&str] = &["/api/health", "/api/v1/session"];

async fn document() -> Value {
    let (status, body) = send(
        &empty_app(Some("t")),
        request(Method::GET, "/api/openapi.json", Some("t")),
    )
    .await;
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
        if uri == "/api/v1/events" {
            // An endless stream: its head is enough.
            let resp = tower::ServiceExt::oneshot(empty_app(None), request(method, &uri, None))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            continue;
        }
        let (status, body) = send(&empty_app(None), request(method.clone(), &uri, None)).await;
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
            if OPEN.contains(&path.as_str()) {
                assert_eq!(op["security"], serde_json::json!([{}]), "{method} {path}");
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
    let (status, _) = send(
        &empty_app(Some("t")),
        request(Method::GET, "/api/openapi.json", None),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(
        &empty_app(Some("t")),
        request(Method::GET, "/api/health", None),
    )
    .await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
}

/// Every operation of the document, as (path, method, operation).
fn operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .iter()
                .map(move |(m, op)| (p.as_str(), m.as_str(), op))
        })
        .collect()
}

fn is_ref_to(v: &Value, response: &str) -> bool {
    v.get("$ref").and_then(Value::as_str) == Some(&format!("#/components/responses/{response}"))
}

#[tokio::test]
async fn shared_responses_are_declared_once_and_given_to_every_operation() {
    let doc = document().await;
    let shared = doc["components"]["responses"]
        .as_object()
        .expect("shared responses");
    for name in [
        "Unauthorized",
        "Overloaded",
        "Timeout",
        "BodyTooLarge",
        "NotJson",
    ] {
        let r = &shared[name];
        assert_eq!(
            r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
            "{name}: {r}"
        );
    }
    assert!(
        shared["Overloaded"]["headers"].get("Retry-After").is_some(),
        "{}",
        shared["Overloaded"]
    );
    // Said once: the 401 lives in components, every operation refers to it.
    let text = doc.to_string();
    assert_eq!(text.matches("Missing or wrong bearer token").count(), 1);

    for (path, method, op) in operations(&doc) {
        let responses = &op["responses"];
        let health = path == "/api/health" || path.starts_with("/api/health/");
        if !OPEN.contains(&path) {
            assert!(
                is_ref_to(&responses["401"], "Unauthorized"),
                "{method} {path}: 401 is {}",
                responses["401"]
            );
        }
        // Every operation may be busy (503) or late (504). Health probes and
        // /metrics are never shed: health's 503 is its own "degraded", and
        // /metrics has none.
        let busy = &responses["503"];
        if path == "/metrics" {
            assert!(busy.is_null(), "/metrics is never shed: {busy}");
            continue;
        }
        assert!(busy.is_object(), "{method} {path} lacks 503");
        if !health {
            assert!(
                is_ref_to(busy, "Overloaded")
                    || (busy["headers"].get("Retry-After").is_some()
                        && busy["description"].as_str().unwrap().contains("overloaded")),
                "{method} {path}: 503 does not say overloaded: {busy}"
            );
        }
        let late = &responses["504"];
        assert!(
            is_ref_to(late, "Timeout")
                || late["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("REQUEST_TIMEOUT")),
            "{method} {path}: 504 is {late}"
        );
        if op.get("requestBody").is_some() {
            for (code, name) in [("413", "BodyTooLarge"), ("415", "NotJson")] {
                let r = &responses[code];
                assert!(
                    is_ref_to(r, name)
                        || r["description"]
                            .as_str()
                            .is_some_and(|d| d.contains("MAX_BODY_BYTES")),
                    "{method} {path}: {code} is {r}"
                );
            }
        }
    }
    // Where a route's own response meets a shared one with another body, the
    // schema admits both: a fetcher that timed out answers an outcome, the
    // request deadline an error body.
    let timed_out = &doc["paths"]["/api/v1/fetchers/{name}/run"]["post"]["responses"]["504"];
    let any_of = timed_out["content"]["application/json"]["schema"]["anyOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{timed_out}"));
    let refs: Vec<&str> = any_of.iter().filter_map(|s| s["$ref"].as_str()).collect();
    assert_eq!(
        refs,
        [
            "#/components/schemas/Outcome",
            "#/components/schemas/ErrorBody"
        ]
    );
}

/// Every `$ref` under `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn no_schema_is_a_leftover() {
    let doc = document().await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    // Reachable from the operations, through shared responses and other schemas.
    let mut todo = Vec::new();
    refs(&doc["paths"], &mut todo);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(r) = todo.pop() {
        if !seen.insert(r) {
            continue;
        }
        let target = if let Some(name) = r.strip_prefix("#/components/schemas/") {
            &schemas[name]
        } else if let Some(name) = r.strip_prefix("#/components/responses/") {
            &doc["components"]["responses"][name]
        } else {
            panic!("unexpected reference {r}")
        };
        assert!(!target.is_null(), "{r} points nowhere");
        refs(target, &mut todo);
    }
    let unused: Vec<&String> = schemas
        .keys()
        .filter(|n| !seen.contains(format!("#/components/schemas/{n}").as_str()))
        .collect();
    assert!(unused.is_empty(), "schemas no operation uses: {unused:?}");
    let unused: Vec<&String> = doc["components"]["responses"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter(|n| !seen.contains(format!("#/components/responses/{n}").as_str()))
        .collect();
    assert!(unused.is_empty(), "responses no operation uses: {unused:?}");
    for (name, s) in schemas {
        let d = s["description"].as_str().unwrap_or_default();
        assert!(!d.contains("doc only"), "{name} is a doc-only schema: {d}");
    }
}

/// The states routes answer HA's own bytes; `HaState`, their schema, reads them.
#[tokio::test]
async fn states_are_what_their_schema_says() {
    let app = demo_app(None).await;
    let (status, body) = send(&app, request(Method::GET, "/api/v1/states", None)).await;
    assert_eq!(status, StatusCode::OK);
    let all: Vec<HaState> = serde_json::from_slice(&body).expect("states read as HaState");
    assert_eq!(all.len(), 108);
    let (status, body) = send(
        &app,
        request(Method::GET, "/api/v1/states/light.bed_light", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let one: HaState = serde_json::from_slice(&body).expect("a state reads as HaState");
    assert_eq!(one.entity_id, "light.bed_light");

    let doc = document().await;
    let states = &doc["paths"]["/api/v1/states"]["get"]["responses"]["200"];
    assert_eq!(
        states["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/HaState",
        "{states}"
    );
}

/// The codes failures answer are the ones the document lists.
#[tokio::test]
async fn error_codes_are_documented() {
    let doc = document().await;
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    let codes: Vec<&str> = codes
        .as_array()
        .unwrap_or_else(|| panic!("{codes}"))
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let cases = [
        (Method::GET, "/api/v1/nothing", Some("t"), None, "not_found"),
        (
            Method::DELETE,
            "/api/v1/states",
            Some("t"),
            None,
            "method_not_allowed",
        ),
        (Method::GET, "/api/v1/states", None, None, "unauthorized"),
        (
            Method::GET,
            "/api/v1/states?q=",
            Some("t"),
            None,
            "bad_request",
        ),
        (
            Method::POST,
            "/api/v1/render",
            Some("t"),
            Some(("text/plain", "x".to_string())),
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/v1/render",
            Some("t"),
            Some(("application/json", "{}".to_string())),
            "unprocessable",
        ),
        (
            Method::POST,
            "/api/v1/render",
            Some("t"),
            Some(("application/json", "x".repeat(2 << 20))),
            "payload_too_large",
        ),
    ];
    for (method, uri, bearer, body, want) in cases {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let body = match body {
            Some((kind, text)) => {
                req = req.header("content-type", kind);
                Body::from(text)
            }
            None => Body::empty(),
        };
        let (_, v) = send_json(&empty_app(Some("t")), req.body(body).unwrap()).await;
        assert_eq!(v["error"]["code"], want, "{method} {uri}: {v}");
        assert!(codes.contains(&want), "{want} is not in {codes:?}");
        assert_eq!(
            v,
            json!({"error": {"code": want, "message": v["error"]["message"]}})
        );
    }
}
