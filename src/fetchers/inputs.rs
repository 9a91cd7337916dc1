//! What a caller may pass a fetcher, as a JSON Schema: the row's params (its
//! defaults and its required params), typed and described by its source's
//! params type. Protocol front doors describe a fetcher's inputs with it.
//!
//! Only the row's own params are listed: a fetcher is a fixed question
//! (`ha_lights_on` is the `entities` source with `domain` and `state` set),
//! and every listed param costs tokens in every prompt that carries the tool
//! list. The source's other params are still accepted, as in the REST API.

use serde_json::{json, Map, Value};

use super::sources;
use super::Definition;

/// The input schema of `def`: an object whose properties are the row's
/// params, typed by the source (or by the default, for a template), each with
/// the row's default, and whose `required` lists what a call must give.
pub fn input_schema(def: &Definition) -> Value {
    let kind = sources::find(def.source.kind());
    let mut schema = kind
        .and_then(|k| k.params_schema())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_else(free_form);
    // Tool listings are paid for in tokens on every prompt: the type's own
    // doc, `$schema`, `title` and schemars' `format` say nothing a caller needs.
    for k in ["$schema", "title", "description", "additionalProperties"] {
        schema.remove(k);
    }
    let props = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        let fixed = kind.map_or(&[][..], |k| k.fixed());
        props.retain(|k, _| def.defaults.contains_key(k) || def.required.contains(k));
        props.values_mut().for_each(lean_property);
        for (k, v) in def
            .defaults
            .iter()
            .filter(|(k, _)| !fixed.contains(&k.as_str()))
        {
            // A `null` default says "optional, any type" (a `sql` filter
            // left open), not "must be null".
            let p = props.entry(k.clone()).or_insert_with(|| match v {
                Value::Null => json!({}),
                _ => json!({"type": json_type(v)}),
            });
            if let Value::Object(p) = p {
                p.insert("default".into(), v.clone());
            }
        }
        for r in &def.required {
            props
                .entry(r.clone())
                .or_insert_with(|| json!({"type": "string"}));
        }
    }
    let required: Vec<Value> = def
        .required
        .iter()
        .filter(|r| def.defaults.get(*r).is_none_or(Value::is_null))
        .map(|r| Value::String(r.clone()))
        .collect();
    if required.is_empty() {
        schema.remove("required");
    } else {
        schema.insert("required".into(), Value::Array(required));
    }
    Value::Object(schema)
}

/// What a call's params are checked against before it runs, at every door:
/// the input schema, with the source's params the row does not list typed
/// too (they are accepted, so a wrong type is named, not left to serde).
pub fn check_schema(def: &Definition) -> Value {
    let mut schema = input_schema(def);
    let all = sources::find(def.source.kind())
        .and_then(|k| k.params_schema())
        .and_then(|mut v| v.get_mut("properties").map(Value::take));
    if let (Some(Value::Object(props)), Some(Value::Object(all))) =
        (schema.get_mut("properties"), all)
    {
        for (k, mut p) in all {
            if !props.contains_key(&k) {
                lean_property(&mut p);
                props.insert(k, p);
            }
        }
    }
    schema
}

/// A property as a caller needs it: `Option<T>` is "T" (leaving it out is
/// how a caller says none), and no `format`.
fn lean_property(p: &mut Value) {
    let Value::Object(p) = p else { return };
    p.remove("format");
    if let Some(Value::Array(types)) = p.get("type") {
        let kept: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
        if let [one] = kept[..] {
            let one = one.clone();
            p.insert("type".into(), one);
        }
    }
}

/// The schema of a source that takes any params: an object of anything.
fn free_form() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), "object".into());
    m
}

/// A value's JSON Schema type name (`integer` for whole numbers).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetchers::{validate, Row};

    fn def(source: &str, params: &str, required: &str) -> Definition {
        let row = Row {
            name: "f".into(),
            description: String::new(),
            source: source.into(),
            params: params.into(),
            required_params: required.into(),
            template: (source == "template").then(|| "{{ x }}".into()),
            ttl_seconds: 0,
            timeout_ms: 1000,
            enabled: true,
        };
        validate(&row).unwrap()
    }

    #[test]
    fn a_typed_source_gives_its_types_and_the_rows_defaults() {
        let s = input_schema(&def("entities", r#"{"domain":"light","limit":5}"#, "[]"));
        assert_eq!(s["type"], "object");
        assert_eq!(s["properties"]["domain"]["default"], "light");
        assert_eq!(s["properties"]["limit"]["default"], 5);
        assert_eq!(s["properties"]["limit"]["type"], "integer");
        assert!(s["properties"]["limit"].get("format").is_none());
        assert!(s["properties"]["domain"]["description"].is_string());
        assert!(
            s["properties"].get("breakdown").is_none(),
            "only the row's params"
        );
        assert!(s.get("description").is_none());
        assert!(s.get("additionalProperties").is_none());
        assert!(s.get("required").is_none());
    }

    #[test]
    fn required_params_without_defaults_are_required() {
        let s = input_schema(&def("entity", "{}", r#"["entity_id"]"#));
        assert_eq!(s["required"], json!(["entity_id"]));
        let q = r#"{"query": "SELECT :who AS w", "who": null}"#;
        let s = input_schema(&def("sql", q, "[]"));
        assert_eq!(s["properties"], json!({"who": {"default": null}}));
        let t = input_schema(&def("template", r#"{"n":3}"#, r#"["who"]"#));
        assert_eq!(
            t["properties"]["n"],
            json!({"type": "integer", "default": 3})
        );
        assert_eq!(t["properties"]["who"]["type"], "string");
        assert_eq!(t["required"], json!(["who"]));
    }
}
