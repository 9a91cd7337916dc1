//! The tools: `live_context`, `search_entities` and `get_entity`, then one
//! per enabled fetcher by name. All read-only. A failure is a tool result
//! with `isError` and a message naming the argument or the cause, so the
//! model can correct itself; it never ends the session.

use std::sync::Arc;

use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use serde_json::Value;

use super::live::{self, GET_ENTITY, LIVE_CONTEXT, SEARCH};
use super::reply::{failure, success};
use crate::engine::Engine;
use crate::fetchers::lean;
use crate::fetchers::{input_schema, Definition, FetchRequest};

/// Names the built-in tools take; a fetcher of the same name is not listed.
pub const BUILT_IN: [&str; 3] = [LIVE_CONTEXT, SEARCH, GET_ENTITY];

/// Every tool, in a fixed order: the built-ins, then fetchers by name.
pub fn list(app: &Engine) -> Vec<Tool> {
    let mut out: Vec<Tool> = live::schemas()
        .into_iter()
        .map(|(name, description, schema)| tool(name.to_string(), description.to_string(), schema))
        .collect();
    out.extend(fetchers(app).iter().map(|d| fetcher_tool(d)));
    out
}

/// The enabled fetchers that are tools, by name.
pub fn fetchers(app: &Engine) -> Vec<Arc<Definition>> {
    let mut defs: Vec<Arc<Definition>> = app
        .fetchers()
        .definitions()
        .into_iter()
        .filter(|d| !BUILT_IN.contains(&d.name.as_str()))
        .collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs
}

fn fetcher_tool(d: &Definition) -> Tool {
    let description = if d.description.trim().is_empty() {
        format!("The {} fetcher ({} source).", d.name, d.source.kind())
    } else {
        d.description.clone()
    };
    tool(d.name.clone(), description, input_schema(d))
}

fn tool(name: String, description: String, schema: Value) -> Tool {
    let schema: JsonObject = match schema {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    };
    Tool::new(name, description, schema).with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    )
}

/// Runs the tool `name` with `arguments`.
pub async fn call(app: &Engine, name: &str, arguments: JsonObject) -> CallToolResult {
    if let Some((_, _, schema)) = live::schemas().into_iter().find(|(n, ..)| *n == name) {
        if let Err(e) = crate::fetchers::args::check(&schema, &arguments) {
            return failure(e);
        }
        let v = Value::Object(arguments);
        return match name {
            LIVE_CONTEXT => match serde_json::from_value(v) {
                Ok(a) => live::context(app, a).await,
                Err(e) => failure(e.to_string()),
            },
            SEARCH => match serde_json::from_value(v) {
                Ok(a) => live::search(app, a).await,
                Err(e) => failure(e.to_string()),
            },
            _ => {
                let id = v.get("entity_id").and_then(Value::as_str).unwrap_or("");
                live::get_entity(app, id).await
            }
        };
    }
    if !app.fetchers().exists(name) {
        return failure(format!("unknown tool {name:?}; tools/list names the tools"));
    }
    // The runner checks the params, as it does for every door.
    let out = app
        .fetchers()
        .run(FetchRequest {
            name: name.to_string(),
            params: arguments,
        })
        .await;
    match out.result {
        Ok(v) => success(lean::text(&v), (*v).clone()),
        Err(e) => failure(format!("{name}: {e}")),
    }
}
