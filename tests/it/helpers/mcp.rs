//! Raw JSON-RPC calls to `/mcp` over HTTP with a bearer token: what the
//! scope tests use to look through every door the same way.

use serde_json::{json, Value};

/// One call to `{base}/mcp` with `token`, in `session` when given; the
/// answer and the session id the response names.
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: Option<&str>,
    method: &str,
    params: Value,
) -> (Value, Option<String>) {
    let mut req = http
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    if let Some(id) = session {
        req = req
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let r = req.send().await.unwrap();
    let id = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    (r.json().await.unwrap_or(Value::Null), id)
}

/// A session opened with `token`: `initialize`, then `initialized`.
pub async fn open(http: &reqwest::Client, base: &str, token: &str) -> String {
    let init = json!({"protocolVersion": "2025-06-18", "capabilities": {},
                      "clientInfo": {"name": "t", "version": "0"}});
    let (_, id) = call(http, base, token, None, "initialize", init).await;
    let id = id.expect("a session id");
    http.post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    id
}
