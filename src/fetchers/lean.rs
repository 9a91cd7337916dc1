//! A fetcher's JSON result as token-lean text: `key: value` lines, lists as
//! `- ` items, and an entity (an object with `entity_id`) as one line the way
//! the `compact` filter and `live_context` print it (`sensor.x: 54 %`). The JSON itself goes out beside it as
//! `structuredContent`, for clients that parse.

use std::fmt::Write;

use serde_json::{Map, Value};

/// `v` as indented text, without a trailing newline.
pub fn text(v: &Value) -> String {
    let mut out = String::new();
    match v {
        // A `statistics` value: one line.
        Value::Object(m) if m.contains_key("statistic_id") && m.contains_key("value") => {
            out.push_str(&past_line(m).unwrap_or_default())
        }
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
            // A `history` entity or a `logbook` event has its own line.
            Value::Object(m) => match (past_line(m), m.contains_key("entity_id")) {
                (Some(l), _) => out.push_str(&l),
                (None, true) => entity(out, m),
                (None, false) => {
                    out.push('\n');
                    object(out, m, depth + 1);
                    continue;
                }
            },
            other => inline(out, other),
        }
        out.push('\n');
    }
}

/// `Name [id]: state unit, key value, …`, or `id: …` when the name only
/// respells the id: the line `compact(ids=true)` and `live_context` print.
fn entity(out: &mut String, m: &Map<String, Value>) {
    out.push_str(&crate::jinja::Entity::from_result(m).compact_line(true));
}

fn past_line(m: &Map<String, Value>) -> Option<String> {
    super::sources::past::lean::line(m)
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
        // A state with its unit, attribute keys as words, as `live_context` reads.
        let v = json!([{"entity_id": "sensor.outside_humidity", "name": "Outside Humidity",
            "state": "54", "device_class": "humidity", "unit_of_measurement": "%"},
            {"entity_id": "climate.hvac", "name": "Hvac", "state": "cool",
            "current_temperature": 22, "temperature_unit": "°C", "hvac_action": "cooling"}]);
        assert_eq!(
            text(&v),
            "- sensor.outside_humidity: 54 %\n\
             - climate.hvac: cool, current temperature 22 °C, hvac action cooling"
        );
        assert_eq!(text(&json!("plain")), "plain");
    }
}
