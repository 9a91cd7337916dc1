//! JSON-RPC framing both transports share: what one message is, and the
//! error a line or body that is not one gets (the client is told, never left
//! waiting).

use serde_json::{json, Value};

/// JSON-RPC's parse error: the text is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC's invalid request: JSON, but not one message.
pub const INVALID_REQUEST: i32 = -32600;
/// What [`INVALID_REQUEST`] says.
pub const NOT_ONE_MESSAGE: &str =
    "Invalid Request: expected one JSON-RPC 2.0 message (jsonrpc \"2.0\" and a method)";

/// Whether `m` is one JSON-RPC 2.0 message: a request, a notification or a response.
pub fn one_message(m: &Value) -> bool {
    m.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && (m.get("method").is_some_and(Value::is_string)
            || m.get("result").is_some()
            || m.get("error").is_some())
}

/// A JSON-RPC error answering `id` (`null` when it could not be read).
pub fn error(code: i32, message: &str, id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}
