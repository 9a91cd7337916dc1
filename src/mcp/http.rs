//! `/mcp`: the Streamable HTTP transport, mounted in the API's router behind
//! its token check and guard.
//!
//! rmcp checks `Host` and `Origin` against the hosts `api::allowed_hosts` lists, as the
//! API's guard does for every route (DNS rebinding:
//! a web page on another site must not reach a loopback server under its own
//! name) and caps bodies at `MAX_BODY_BYTES` (413). Sessions stay on, since
//! subscriptions and list changes travel on a session's stream; rmcp then
//! answers every request as a one-event SSE stream, which [`json_reply`]
//! turns into the plain JSON response the spec also allows and which curl,
//! proxies and simple clients read without an SSE parser.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::handler::Mcp;
use super::sessions::{Sessions, SESSION_IDLE};
use super::wire;
use crate::door::ApiError;
use crate::engine::Engine;

/// Where the endpoint is mounted.
pub const PATH: &str = "/mcp";
/// The header naming a session (the Streamable HTTP transport's).
const SESSION_ID: &str = "mcp-session-id";
/// The largest single answer [`json_reply`] buffers (a tool result is capped
/// well below: a live context at 64 KiB).
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The `/mcp` route, serving `app` until `shutdown`.
pub fn router(
    app: Engine,
    max_body_bytes: usize,
    hosts: Vec<String>,
    max_sessions: usize,
    shutdown: CancellationToken,
) -> Router {
    let app_limit = max_body_bytes;
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.clone())
        .with_max_request_body_bytes(max_body_bytes);
    config = if hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        let origins: Vec<String> = hosts
            .iter()
            .flat_map(|h| {
                let h = if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                [format!("http://{h}:*"), format!("https://{h}:*")]
            })
            .collect();
        config
            .with_allowed_hosts(hosts)
            .with_allowed_origins(origins)
    };
    let mut manager = LocalSessionManager::default();
    // rmcp's own idle close is the backstop; `Sessions` closes idle ones first.
    manager.session_config.keep_alive = Some(SESSION_IDLE + SESSION_IDLE / 2);
    let manager = Arc::new(manager);
    let sessions = Sessions::new(manager.clone(), max_sessions, shutdown.clone());
    let lists = super::session::lists(&app, shutdown);
    let service = StreamableHttpService::new(
        move || Ok(Mcp::new(app.clone(), lists.clone())),
        manager,
        config,
    );
    let limit = BodyLimit(app_limit);
    Router::new()
        .route_service(PATH, service)
        .layer(middleware::from_fn_with_state(sessions, track))
        .layer(middleware::from_fn(json_reply))
        .layer(axum::Extension(limit))
}

/// Keeps [`Sessions`] current: a request naming a session uses it, an
/// `initialize` (no session yet) first makes room, and the session id it
/// gets back, or a `DELETE`, opens or closes one. Inside [`json_reply`],
/// which has read the body and marked an `initialize`.
async fn track(State(sessions): State<Arc<Sessions>>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let delete = req.method() == Method::DELETE;
    // Held until the new session is recorded below (or the request is dropped).
    let mut _place = None;
    match &id {
        Some(id) => sessions.touch(id),
        None if req.extensions().get::<Initialize>().is_some() => {
            _place = Some(sessions.make_room().await);
        }
        None => {}
    }
    let resp = next.run(req).await;
    match (
        id,
        resp.headers().get(SESSION_ID).and_then(|v| v.to_str().ok()),
    ) {
        (Some(id), _) if delete => sessions.closed(&id),
        (None, Some(new)) => sessions.opened(new),
        _ => {}
    }
    resp
}

/// Checks a POSTed body is a JSON-RPC message (rmcp answers anything else
/// with a plain-text 415), then answers a request with its JSON-RPC response
/// as `application/json` instead of a one-event SSE stream. Anything else
/// passes through: GET streams, 202s for notifications, errors.
async fn json_reply(req: Request, next: Next) -> Response {
    let req = match checked(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let wants_json = req.method() == Method::POST
        && req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    let is_delete = req.method() == Method::DELETE;
    let mut resp = next.run(req).await;
    // rmcp ends a session with 202; clients (the Python SDK) read anything
    // but 200 as a failed termination and say so.
    if is_delete && resp.status() == StatusCode::ACCEPTED {
        *resp.status_mut() = StatusCode::OK;
    }
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !wants_json || !is_sse || resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Some(message) = first_message(body).await else {
        return ApiError::Internal(anyhow::anyhow!("the MCP stream ended without an answer"))
            .into_response();
    };
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove("x-accel-buffering");
    Response::from_parts(parts, Body::from(message))
}

/// A POST's body, read (within the body limit rmcp would apply) and parsed
/// once: not JSON is JSON-RPC's parse error (-32700), JSON that is no
/// JSON-RPC message is an invalid request (-32600), both as 400.
async fn checked(req: Request) -> Result<Request, Response> {
    if req.method() != Method::POST {
        return Ok(req);
    }
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(usize::MAX, |l| l.0);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::TooLarge(format!("the body exceeds {limit} bytes (MAX_BODY_BYTES)"))
            .into_response()
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| rpc_error(wire::PARSE_ERROR, &format!("Parse error: {e}")))?;
    if !wire::one_message(&v) {
        return Err(rpc_error(wire::INVALID_REQUEST, wire::NOT_ONE_MESSAGE));
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    if v.get("method").and_then(|m| m.as_str()) == Some("initialize") {
        req.extensions_mut().insert(Initialize);
    }
    Ok(req)
}

/// Marks a POST that is an `initialize` (read by [`checked`]): only it opens a session.
#[derive(Clone, Copy)]
struct Initialize;

/// The body limit, for [`checked`]: put in the request by [`router`].
#[derive(Clone, Copy)]
struct BodyLimit(usize);

/// A JSON-RPC error with no id (the request could not be read), as 400.
fn rpc_error(code: i32, message: &str) -> Response {
    let body = wire::error(code, message, serde_json::Value::Null);
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// The first SSE event whose data is a JSON-RPC response (it has an `id` and
/// a `result` or `error`), skipping the priming event and keep-alives.
async fn first_message(body: Body) -> Option<String> {
    let mut stream = body.into_data_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.ok()?));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            if is_response(&data) {
                return Some(data);
            }
        }
        if buf.len() > MAX_REPLY_BYTES {
            return None;
        }
    }
    None
}

fn is_response(data: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(data).is_ok_and(|v| {
        v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_is_found_among_priming_and_keep_alives() {
        let sse = "id: 0\nretry: 3000\ndata:\n\n: ping\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        assert_eq!(
            first_message(Body::from(sse)).await.as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        );
        assert_eq!(first_message(Body::from("data:\n\n")).await, None);
    }
}
