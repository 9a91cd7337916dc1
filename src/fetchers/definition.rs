//! Fetcher definitions: the raw row as stored, and the typed, validated form
//! the engine runs. Validation turns a bad row into `(name, field, reason)`
//! problems instead of an error that stops the whole load.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template::Compiled;
use crate::state::Glob;

/// The longest timeout a row may ask for.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// The longest TTL a row may ask for (a day); generations end most entries sooner.
pub const MAX_TTL_SECONDS: u32 = 86_400;

/// A definition as stored: one `data_fetchers` row or one `fetchers/*.toml` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Unique template identifier.
    pub name: String,
    /// What the result holds, for authors.
    pub description: String,
    /// Which built-in source runs (`entities`, `entity`, `summary`, `device_status`, `template`).
    pub source: String,
    /// JSON text of the default params.
    pub params: String,
    /// JSON text of the array of param names callers must supply.
    pub required_params: String,
    /// minijinja text for `source = template`.
    pub template: Option<String>,
    /// Cache ceiling in seconds; 0 disables caching.
    pub ttl_seconds: u32,
    /// Per-run time limit.
    pub timeout_ms: u32,
    /// Whether it is offered at all.
    pub enabled: bool,
}

/// One thing wrong with one row, reported the same way by `check`, the API and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The row's name (or file stem).
    pub name: String,
    /// The column at fault.
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl Problem {
    pub fn new(name: &str, field: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetcher {}: field {}: {}",
            self.name, self.field, self.reason
        )
    }
}

/// Params of the `entities` source: a filtered listing.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntitiesParams {
    /// Only this domain (`light`).
    pub domain: Option<String>,
    /// Only this state (`on`).
    pub state: Option<String>,
    /// A glob over entity id and friendly name.
    pub pattern: Option<String>,
    /// Only entities in this area (id or name; an entity's own area, else its device's).
    pub area: Option<String>,
    /// Add counts per state.
    #[serde(default)]
    pub breakdown: bool,
    /// Leave out the entity list (counts only).
    #[serde(default)]
    pub counts_only: bool,
    /// Extra attribute names to include per entity.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// The most entities listed.
    pub limit: Option<usize>,
}

/// Params of the `entity` source: one entity.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityParams {
    /// The entity to read; required.
    pub entity_id: Option<String>,
}

/// Params of the `device_status` source.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceStatusParams {
    /// Domains to break down; all when empty.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// Params of the `summary` source: none.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryParams {}

/// What a fetcher computes.
#[derive(Debug, Clone)]
pub enum Source {
    /// Entities by domain, state and pattern.
    Entities,
    /// A single entity.
    Entity,
    /// Cache health and statistics.
    Summary,
    /// Link mode (live WebSocket vs REST fallback) and device availability.
    DeviceStatus,
    /// An author's minijinja over the states.
    Template(Arc<Compiled>),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Entities => "entities",
            Self::Entity => "entity",
            Self::Summary => "summary",
            Self::DeviceStatus => "device_status",
            Self::Template(_) => "template",
        }
    }
}

/// The source names a row may use.
pub const SOURCES: &[&str] = &["entities", "entity", "summary", "device_status", "template"];

/// A validated fetcher, ready to run.
#[derive(Debug, Clone)]
pub struct Definition {
    /// Unique template identifier.
    pub name: String,
    /// What the result holds.
    pub description: String,
    /// What runs.
    pub source: Source,
    /// Defaults that callers' params override.
    pub defaults: Map<String, Value>,
    /// Param names each call must end up with.
    pub required: Vec<String>,
    /// Cache ceiling; zero disables caching.
    pub ttl: Duration,
    /// Per-run time limit.
    pub timeout: Duration,
    /// The row it came from, for listings.
    pub row: Row,
}

impl Definition {
    /// Defaults overlaid with the caller's params, checked against `required`.
    pub fn merge(&self, params: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let mut merged = self.defaults.clone();
        for (k, v) in params {
            merged.insert(k.clone(), v.clone());
        }
        for r in &self.required {
            if merged.get(r).is_none_or(Value::is_null) {
                return Err(format!("missing required param {r}"));
            }
        }
        Ok(merged)
    }
}

/// `a-z` first, then `a-z0-9_`, at most 64: usable as a template variable.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks typed params of a built-in source; `Err` names the reason.
pub fn check_params(source: &str, params: &Map<String, Value>) -> Result<(), String> {
    let v = Value::Object(params.clone());
    let typed = |e: serde_json::Error| e.to_string();
    match source {
        "entities" => {
            let p: EntitiesParams = serde_json::from_value(v).map_err(typed)?;
            if let Some(pat) = &p.pattern {
                Glob::new(pat).map_err(|e| format!("pattern: {e}"))?;
            }
        }
        "entity" => {
            let p: EntityParams = serde_json::from_value(v).map_err(typed)?;
            if let Some(id) = &p.entity_id {
                if !crate::state::valid_entity_id(id) {
                    return Err(format!("entity_id {id:?} is not a valid entity id"));
                }
            }
        }
        "summary" => {
            let _: SummaryParams = serde_json::from_value(v).map_err(typed)?;
        }
        "device_status" => {
            let _: DeviceStatusParams = serde_json::from_value(v).map_err(typed)?;
        }
        _ => {}
    }
    Ok(())
}

/// The params a source cannot run without.
fn source_required(source: &str) -> &'static [&'static str] {
    match source {
        "entity" => &["entity_id"],
        _ => &[],
    }
}

/// Validates a row into a definition, or lists everything wrong with it.
pub fn validate(row: &Row) -> Result<Definition, Vec<Problem>> {
    let name = row.name.as_str();
    let mut problems = Vec::new();
    let mut bad = |field: &str, reason: String| problems.push(Problem::new(name, field, reason));

    if !valid_name(name) {
        bad(
            "name",
            "must start with a-z and hold only a-z, 0-9 and _ (at most 64)".into(),
        );
    }
    let defaults = match serde_json::from_str::<Value>(&row.params) {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            bad("params", format!("must be a JSON object, not {other}"));
            Map::new()
        }
        Err(e) => {
            bad("params", format!("is not valid JSON: {e}"));
            Map::new()
        }
    };
    let required = match serde_json::from_str::<Vec<String>>(&row.required_params) {
        Ok(r) => r,
        Err(e) => {
            bad(
                "required_params",
                format!("must be a JSON array of names: {e}"),
            );
            Vec::new()
        }
    };
    if !SOURCES.contains(&row.source.as_str()) {
        bad(
            "source",
            format!(
                "unknown source {:?}; use one of {}",
                row.source,
                SOURCES.join(", ")
            ),
        );
    }
    for r in source_required(&row.source) {
        if !defaults.contains_key(*r) && !required.iter().any(|x| x == r) {
            bad(
                "params",
                format!(
                    "missing required param {r}: give it in params or list it in required_params"
                ),
            );
        }
    }
    if row.source != "template" {
        // Check defaults plus placeholders for caller-supplied params, so types are checked too.
        let mut probe = defaults.clone();
        for r in &required {
            probe
                .entry(r.clone())
                .or_insert_with(|| Value::String("light.x".into()));
        }
        if let Err(e) = check_params(&row.source, &probe) {
            bad("params", e);
        }
        if row
            .template
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
        {
            bad(
                "template",
                format!("only source template uses a template, not {}", row.source),
            );
        }
    }
    if row.timeout_ms == 0 || row.timeout_ms > MAX_TIMEOUT_MS {
        bad("timeout_ms", format!("must be 1..={MAX_TIMEOUT_MS}"));
    }
    if row.ttl_seconds > MAX_TTL_SECONDS {
        bad("ttl_seconds", format!("must be at most {MAX_TTL_SECONDS}"));
    }
    let source = match row.source.as_str() {
        "entities" => Some(Source::Entities),
        "entity" => Some(Source::Entity),
        "summary" => Some(Source::Summary),
        "device_status" => Some(Source::DeviceStatus),
        "template" => match row.template.as_deref().filter(|t| !t.trim().is_empty()) {
            None => {
                bad("template", "source template needs a template".into());
                None
            }
            Some(t) => match Compiled::new(name, t) {
                Ok(c) => Some(Source::Template(Arc::new(c))),
                Err(e) => {
                    bad("template", e);
                    None
                }
            },
        },
        _ => None,
    };
    match source {
        Some(source) if problems.is_empty() => Ok(Definition {
            name: row.name.clone(),
            description: row.description.clone(),
            source,
            defaults,
            required,
            ttl: Duration::from_secs(row.ttl_seconds.into()),
            timeout: Duration::from_millis(row.timeout_ms.into()),
            row: row.clone(),
        }),
        _ => Err(problems),
    }
}

/// Validates every enabled row; returns the good definitions and every problem (disabled rows are checked too).
pub fn validate_all(rows: &[Row]) -> (Vec<Definition>, Vec<Problem>) {
    let mut defs = Vec::new();
    let mut problems = Vec::new();
    for row in rows {
        match validate(row) {
            Ok(d) if row.enabled => defs.push(d),
            Ok(_) => {}
            Err(p) => problems.extend(p),
        }
    }
    (defs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(name: &str, source: &str, params: &str) -> Row {
        Row {
            name: name.into(),
            description: String::new(),
            source: source.into(),
            params: params.into(),
            required_params: "[]".into(),
            template: None,
            ttl_seconds: 30,
            timeout_ms: 1000,
            enabled: true,
        }
    }

    fn fields(r: &Row) -> Vec<String> {
        validate(r)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn bad_rows_name_their_field() {
        assert_eq!(fields(&row("a", "entities", "{nope")), ["params"]);
        assert_eq!(fields(&row("a", "nope", "{}")), ["source"]);
        assert_eq!(fields(&row("a", "entity", "{}")), ["params"]);
        assert_eq!(fields(&row("a", "entities", r#"{"colour":1}"#)), ["params"]);
        assert_eq!(fields(&row("Bad-Name", "summary", "{}")), ["name"]);
        let mut t = row("t", "template", "{}");
        t.template = Some("{% for x in %}".into());
        assert_eq!(fields(&t), ["template"]);
        let mut e = row("e", "entity", "{}");
        e.required_params = r#"["entity_id"]"#.into();
        assert!(validate(&e).is_ok());
    }

    #[test]
    fn merge_overrides_defaults_and_enforces_required() {
        let mut e = row("e", "entity", "{}");
        e.required_params = r#"["entity_id"]"#.into();
        let d = validate(&e).unwrap();
        assert!(d.merge(&Map::new()).is_err());
        let mut p = Map::new();
        p.insert("entity_id".into(), "light.a".into());
        assert_eq!(d.merge(&p).unwrap()["entity_id"], "light.a");
    }
}
