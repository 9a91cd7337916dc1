//! Clients of `/mcp`: rmcp's own, which records what the server tells it,
//! and raw JSON-RPC calls over HTTP with a bearer token, what the scope tests
//! use to look through every door the same way.

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    ResourceUpdatedNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Records what the server tells the client.
#[derive(Clone)]
pub struct Heard(pub mpsc::UnboundedSender<String>);

impl ClientHandler for Heard {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("ha-fetchers-tests", "0"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_06_18)
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(p.uri);
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send("tools/list_changed".into());
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send("prompts/list_changed".into());
    }
}

pub type Client = RunningService<RoleClient, Heard>;

/// rmcp's client on `{base}/mcp` with `token`, and what the server tells it:
/// updated resources' URIs, `tools/list_changed` and `prompts/list_changed`.
pub async fn connect(base: &str, token: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg =
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(token);
    let client = Heard(tx)
        .serve(StreamableHttpClientTransport::from_config(cfg))
        .await
        .expect("the client initializes");
    (client, rx)
}

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
