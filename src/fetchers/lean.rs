//! A fetcher's JSON result as token-lean text: `key: value` lines, lists as
//! `- ` items, and an entity (an object with `entity_id`) as one line the way
//! the `compact` filter prints it. The JSON itself goes out beside it as
//! `structuredContent`, for clients that parse.

use std::fmt::Write;

use serde_json::{Map, Value};

/// `v` as indented text, without a trailing newline.
pub fn text(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) => object(&mut out, m, 0),
        Value::Array(a) => array(&mut out, a, 0),
        other => scalar(&mut out, other),
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

fn object(out: &mut String, m: &Map<String, Value>, depth: usize) {
    for (k, v) in m {
        indent(out, depth);
        out.push_str(k);
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                object(out, inner, depth + 1);
            }
            Value::Array(a) if !a.is_empty() && !a.iter().all(is_scalar) => {
                out.push('\n');
                array(out, a, depth + 1);
            }
            other => {
                out.push(' ');
                inline(out, other);
                out.push('\n');
            }
        }
    }
}

fn array(out: &mut String, a: &[Value], depth: usize) {
    for v in a {
        indent(out, depth);
        out.push_str("- ");
        match v {
            Value::Object(m) if m.contains_key("entity_id") => entity(out, m),
            Value::Object(m) => {
                out.push('\n');
                object(out, m, depth + 1);
                continue;
            }
            other => inline(out, other),
        }
        out.push('\n');
    }
}

/// `Name [id]: state, key value, …`, or `id: …` when the name only respells
/// the id, as `compact(ids=true)` prints it.
fn entity(out: &mut String, m: &Map<String, Value>) {
    let id = m.get("entity_id").and_then(Value::as_str).unwrap_or("");
    let name = m.get("name").and_then(Value::as_str).unwrap_or(id);
    if crate::jinja::name_in_id(name, id) {
        out.push_str(id);
    } else {
        let _ = write!(out, "{name} [{id}]");
    }
    if let Some(s) = m.get("state") {
        out.push_str(": ");
        inline(out, s);
    }
    for (k, v) in m {
        if matches!(k.as_str(), "entity_id" | "name" | "state") || v.is_null() {
            continue;
        }
        out.push_str(", ");
        out.push_str(k);
        out.push(' ');
        inline(out, v);
    }
}

/// A value on one line: scalars bare, lists comma-separated, the rest as JSON.
fn inline(out: &mut String, v: &Value) {
    match v {
        Value::Array(a) if a.iter().all(is_scalar) => {
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                scalar(out, x);
            }
        }
        Value::Array(_) | Value::Object(_) => out.push_str(&v.to_string()),
        other => scalar(out, other),
    }
}

fn scalar(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entities_are_lines_and_the_rest_is_key_value() {
        let v = json!({
            "count": 2,
            "entities": [
                {"entity_id": "light.bed", "name": "Bed", "state": "on", "brightness": 180},
                {"entity_id": "light.desk", "name": "Lamp", "state": "off", "brightness": null}
            ],
            "by_state": {"on": 1, "off": 1},
            "domains": ["light", "switch"]
        });
        assert_eq!(
            text(&v),
            "by_state:\n  off: 1\n  on: 1\ncount: 2\ndomains: light, switch\n\
             entities:\n  - light.bed: on, brightness 180\n  - Lamp [light.desk]: off"
        );
        assert_eq!(text(&json!("plain")), "plain");
    }
}
