//! A tool's answer: text for the model, and the JSON beside it for clients
//! that parse, or a failure the model can read and correct.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value};

/// A result: `text` for the model, `value` as `structuredContent` (an object,
/// as the protocol asks; anything else is wrapped as `{"result": …}`).
pub fn success(text: String, value: Value) -> CallToolResult {
    let structured = match value {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("result".into(), other);
            m
        }
    };
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(Value::Object(structured));
    r
}

/// A failed call: `isError` with the reason.
pub fn failure(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}
