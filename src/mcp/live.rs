//! The built-in tools over the live mirror: `live_context` (Home Assistant's
//! `GetLiveContext`, with ids, filters and a size cap), `search_entities` and
//! `get_entity`. Every line is the `compact` filter's, so an entity reads the
//! same here as in a prompt.

use std::collections::HashSet;

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::reply::{failure, success};
use crate::engine::Engine;
use crate::jinja::Entity;
use crate::state::{EntityState, Glob, Query, StateError};

/// The live-context tool's name.
pub const LIVE_CONTEXT: &str = "live_context";
/// The search tool's name.
pub const SEARCH: &str = "search_entities";
/// The one-entity tool's name.
pub const GET_ENTITY: &str = "get_entity";
/// `live_context` lines when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 200;
/// The most lines `live_context` prints, whatever the limit asked.
pub const MAX_LIMIT: usize = 2_000;
/// The most bytes of lines `live_context` (and a domain resource) prints: at
/// about 4 bytes a token, a 16k-token answer, well inside every model's context.
pub const MAX_BYTES: usize = 64 * 1024;
/// `search_entities` matches per page when the caller names no limit.
pub const SEARCH_PAGE: usize = 25;
/// The largest `search_entities` page.
pub const MAX_SEARCH_PAGE: usize = 200;

/// The `live_context` tool's arguments.
#[derive(Debug, Default, Deserialize)]
pub struct ContextArgs {
    /// Only this domain.
    pub domain: Option<String>,
    /// Only this area (id or name).
    pub area: Option<String>,
    /// A glob over entity id and friendly name; bare words match anywhere.
    pub name: Option<String>,
    /// The most lines.
    pub limit: Option<usize>,
}

/// The `search_entities` tool's arguments.
#[derive(Debug, Deserialize)]
pub struct SearchArgs {
    /// A glob over entity id and friendly name; bare words match anywhere.
    pub query: String,
    /// Only this domain.
    pub domain: Option<String>,
    /// Matches per page.
    pub limit: Option<usize>,
    /// Matches to skip: the previous page's `next_offset`.
    #[serde(default)]
    pub offset: usize,
}

/// The input schemas of the three tools, in listing order.
pub fn schemas() -> [(&'static str, &'static str, Value); 3] {
    [
        (
            LIVE_CONTEXT,
            "The house right now: one line per entity with its id, area, state and useful \
             attributes. Filter by domain, area or name to stay small.",
            json!({
                "type": "object",
                "properties": {
                    "domain": {"type": "string", "description": "Only this domain, e.g. light"},
                    "area": {"type": "string", "description": "Only this area (id or name)"},
                    "name": {"type": "string", "description": "Glob over entity id and name; bare words match anywhere"},
                    "limit": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT,
                              "description": format!("The most lines (at most {MAX_LIMIT})")}
                },
                "additionalProperties": false
            }),
        ),
        (
            SEARCH,
            "Find entity ids by a glob over id and friendly name, a page at a time.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Glob (* and ?) or bare words"},
                    "domain": {"type": "string", "description": "Only this domain"},
                    "limit": {"type": "integer", "minimum": 1, "default": SEARCH_PAGE,
                              "description": format!("Matches per page (at most {MAX_SEARCH_PAGE})")},
                    "offset": {"type": "integer", "minimum": 0, "default": 0,
                               "description": "Matches to skip: the previous page's next_offset"}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
        (
            GET_ENTITY,
            "One entity in full: state, every attribute and timestamps, as Home Assistant sent it.",
            json!({
                "type": "object",
                "properties": {
                    "entity_id": {"type": "string", "description": "e.g. light.bed_light"}
                },
                "required": ["entity_id"],
                "additionalProperties": false
            }),
        ),
    ]
}

/// A name filter as a glob: bare words match anywhere in the id or name.
fn glob(arg: &str, text: &str) -> Result<Glob, String> {
    let pattern = if text.contains(['*', '?']) {
        text.to_string()
    } else {
        format!("*{text}*")
    };
    Glob::new(&pattern).map_err(|e| format!("param `{arg}`: {e}"))
}

/// The states `q` matches, refilling invalidated ones, sorted by id.
async fn matching(app: &Engine, q: &Query) -> Result<Vec<EntityState>, String> {
    app.states().list(q).await.map_err(|e| e.to_string())
}

/// Lines for `states` (with areas), at most `limit` and [`MAX_BYTES`], then
/// an "N more" line for the rest.
pub fn lines(app: &Engine, states: &[EntityState], limit: usize, hint: &str) -> String {
    let ids: Vec<&str> = states.iter().map(|s| &*s.entity_id).collect();
    let areas = app.states().area_names(&ids);
    let mut out = String::new();
    let mut shown = 0;
    for (s, area) in states.iter().zip(areas).take(limit) {
        let line = Entity::of(s, area).compact_line(true);
        if out.len() + line.len() + 3 > MAX_BYTES {
            break;
        }
        out.push_str("- ");
        out.push_str(&line);
        out.push('\n');
        shown += 1;
    }
    let more = states.len() - shown;
    if more > 0 {
        out.push_str(&format!("… {more} more ({hint})\n"));
    }
    out.pop();
    out
}

/// `live_context`.
pub async fn context(app: &Engine, a: ContextArgs) -> CallToolResult {
    let pattern = match a.name.as_deref().map(|n| glob("name", n)).transpose() {
        Ok(p) => p,
        Err(e) => return failure(e),
    };
    let in_area: Option<HashSet<String>> = match &a.area {
        Some(area) => match app.states().area_entities(area) {
            Some(ids) => Some(ids),
            None => return failure(format!("param `area`: no area {area:?} is known")),
        },
        None => None,
    };
    let q = Query {
        domain: a.domain.clone(),
        state: None,
        pattern,
    };
    let mut states = match matching(app, &q).await {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    if let Some(ids) = &in_area {
        states.retain(|s| ids.contains(&*s.entity_id));
    }
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let text = if states.is_empty() {
        "no entities match".to_string()
    } else {
        lines(
            app,
            &states,
            limit,
            "narrow with domain, area or name, or raise limit",
        )
    };
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// `search_entities`.
pub async fn search(app: &Engine, a: SearchArgs) -> CallToolResult {
    let pattern = match glob("query", &a.query) {
        Ok(p) => p,
        Err(e) => return failure(e),
    };
    let q = Query {
        domain: a.domain.clone(),
        state: None,
        pattern: Some(pattern),
    };
    let states = match matching(app, &q).await {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    let limit = a.limit.unwrap_or(SEARCH_PAGE).clamp(1, MAX_SEARCH_PAGE);
    let page: Vec<&EntityState> = states.iter().skip(a.offset).take(limit).collect();
    let next = a.offset + page.len();
    let mut text = String::new();
    for s in &page {
        text.push_str(&format!("{} [{}]: {}\n", s.name(), s.entity_id, s.state));
    }
    let next_offset = (next < states.len()).then_some(next);
    match next_offset {
        Some(n) => text.push_str(&format!(
            "{} of {} shown; next page: offset {n}",
            page.len(),
            states.len()
        )),
        None if states.is_empty() => text.push_str("no entities match"),
        None => text.push_str(&format!("{} of {} shown", page.len(), states.len())),
    }
    let entities: Vec<Value> = page
        .iter()
        .map(|s| json!({"entity_id": &*s.entity_id, "name": s.name(), "state": &*s.state}))
        .collect();
    let mut structured = Map::new();
    structured.insert("total".into(), states.len().into());
    structured.insert("offset".into(), a.offset.into());
    structured.insert("next_offset".into(), next_offset.into());
    structured.insert("entities".into(), entities.into());
    success(text, Value::Object(structured))
}

/// `get_entity`.
pub async fn get_entity(app: &Engine, entity_id: &str) -> CallToolResult {
    match app.states().get(entity_id).await {
        Ok(s) => success(s.raw.to_string(), s.json()),
        Err(StateError::NotFound(_)) => failure(format!(
            "no entity {entity_id:?}; search_entities finds ids"
        )),
        Err(StateError::BadEntityId(_)) => failure(format!(
            "param `entity_id`: {entity_id:?} is not an entity id (domain.object_id)"
        )),
        Err(e) => failure(e.to_string()),
    }
}
