//! A tool's answer: text for the model, and the JSON beside it for clients
//! that parse, or a failure the model can read and correct.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value};

/// The most a reply (a tool's text and JSON together, a resource's text) may
/// be: the same cap the REST fetcher routes keep. A 9.9 MB entity came back
/// from `get_entity` as 19.5 MB, past what the HTTP door buffers.
pub const MAX_REPLY_BYTES: usize = crate::door::MAX_RESPONSE_BYTES;

/// Why a reply of `bytes` (or more) is not sent.
pub fn too_large(bytes: usize) -> String {
    format!(
        "the answer is over {} bytes, past the reply cap of {} MiB; narrow the call (a filter, a limit, one entity)",
        bytes,
        MAX_REPLY_BYTES / (1024 * 1024)
    )
}

/// A result: `text` for the model, `value` as `structuredContent` (an object,
/// as the protocol asks; anything else is wrapped as `{"result": …}`); a
/// failure instead when both together pass [`MAX_REPLY_BYTES`].
pub fn success(text: String, value: Value) -> CallToolResult {
    let room = MAX_REPLY_BYTES.saturating_sub(text.len());
    if text.len() > MAX_REPLY_BYTES || crate::fetchers::json_len(&value, room).is_none() {
        return failure(too_large(MAX_REPLY_BYTES));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_past_the_cap_is_a_failure_naming_it() {
        let big = "a".repeat(MAX_REPLY_BYTES / 2 + 1);
        let r = success(big.clone(), Value::String(big));
        assert_eq!(r.is_error, Some(true));
        let text = r.content[0].as_text().unwrap().text.clone();
        assert!(text.contains("reply cap of 8 MiB"), "{text}");
        assert!(r.structured_content.is_none());
        let ok = success("x".into(), serde_json::json!({"a": 1}));
        assert_ne!(ok.is_error, Some(true));
    }
}
