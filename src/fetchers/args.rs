//! A call's params against a schema: the top-level names, types and
//! required ones. Every door (REST, MCP, the console, `fetch`) checks a
//! fetcher's params here, through the runner, so one mistake gets one
//! message everywhere; MCP's own tools use it too. Clients send what a model
//! wrote, so a mistake must come back naming the param, before anything runs
//! (serde's own messages name the type, not the field).

use serde_json::{Map, Value};

use super::json_type as type_name;

/// `Err` names the first param at fault and what it should be.
pub fn check(schema: &Value, args: &Map<String, Value>) -> Result<(), String> {
    let props = schema.get("properties").and_then(Value::as_object);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (k, v) in args {
        // A null is a param left out, as in the row's params.
        if v.is_null() {
            continue;
        }
        match props.and_then(|p| p.get(k)) {
            Some(p) => check_value(k, p, v)?,
            None if closed => {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(format!(
                    "unknown param `{k}`; this takes {}",
                    if known.is_empty() {
                        "no params".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            None => {}
        }
    }
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if args.get(r).is_none_or(Value::is_null) {
            return Err(format!("missing required param `{r}`"));
        }
    }
    Ok(())
}

/// One param against its property schema (and an array's items).
fn check_value(name: &str, prop: &Value, v: &Value) -> Result<(), String> {
    let wanted = types(prop);
    if !wanted.is_empty() && !wanted.iter().any(|t| is_type(t, v)) {
        return Err(format!(
            "param `{name}` must be {}, not {}",
            wanted.join(" or "),
            type_name(v)
        ));
    }
    if let (Some(min), Some(n)) = (
        prop.get("minimum").and_then(Value::as_f64),
        v.as_f64().filter(|_| v.is_number()),
    ) {
        if n < min {
            return Err(format!("param `{name}` must be at least {min}"));
        }
    }
    if let (Some(items), Some(list)) = (prop.get("items"), v.as_array()) {
        for item in list {
            check_value(&format!("{name}[]"), items, item)?;
        }
    }
    Ok(())
}

/// The JSON Schema type names a property allows (`type` as a string or a list).
fn types(prop: &Value) -> Vec<&str> {
    match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match t {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        _ => t == type_name(v) || (t == "number" && type_name(v) == "integer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn mistakes_name_the_param() {
        let s = json!({
            "type": "object",
            "properties": {
                "limit": {"type": ["integer", "null"], "minimum": 0},
                "domain": {"type": "string"},
                "attributes": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["domain"],
            "additionalProperties": false
        });
        assert_eq!(
            check(&s, &args(json!({"domain": "light", "limit": 3}))),
            Ok(())
        );
        let e = check(&s, &args(json!({"domain": "light", "limit": "3"}))).unwrap_err();
        assert!(
            e.contains("`limit` must be integer or null, not string"),
            "{e}"
        );
        let e = check(&s, &args(json!({"limit": 3}))).unwrap_err();
        assert!(e.contains("missing required param `domain`"), "{e}");
        let e = check(&s, &args(json!({"domain": "x", "colour": 1}))).unwrap_err();
        assert!(e.contains("unknown param `colour`"), "{e}");
        let e = check(&s, &args(json!({"domain": "x", "limit": -1}))).unwrap_err();
        assert!(e.contains("at least 0"), "{e}");
        let e = check(&s, &args(json!({"domain": "x", "attributes": [1]}))).unwrap_err();
        assert!(e.contains("`attributes[]` must be string"), "{e}");
    }
}
