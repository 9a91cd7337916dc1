//! Fetcher definitions: the raw row as stored, and the typed, validated form
//! the engine runs. Validation turns a bad row into `(name, field, reason)`
//! problems instead of an error that stops the whole load.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::sources::{self, Source};

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
    /// Which built-in source runs (`entities`, `entity`, `summary`, `device_status`, `template`, `sql`).
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

/// One thing wrong with one fetcher row or prompt template, reported the same
/// way by `check`, the API and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `fetcher` or `template`, for the printed form.
    #[serde(skip)]
    pub what: &'static str,
    /// The row's (or template's) name, or file stem.
    pub name: String,
    /// The column at fault.
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl Problem {
    pub fn new(name: &str, field: &str, reason: impl Into<String>) -> Self {
        Self {
            what: "fetcher",
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
            "{} {}: field {}: {}",
            self.what, self.name, self.field, self.reason
        )
    }
}

/// A validated fetcher, ready to run.
#[derive(Debug, Clone)]
pub struct Definition {
    /// Unique template identifier.
    pub name: String,
    /// What the result holds.
    pub description: String,
    /// What runs.
    pub source: Arc<dyn Source>,
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
    /// What a call's params are checked against, built on first use.
    checks: std::sync::OnceLock<Value>,
}

impl Definition {
    /// Checks a call's params by name and type before anything runs: the
    /// one check every door gets, with one message naming the param.
    pub fn check(&self, params: &Map<String, Value>) -> Result<(), String> {
        let schema = self.checks.get_or_init(|| super::check_schema(self));
        super::args::check(schema, params)
    }

    /// Defaults overlaid with the caller's params, checked against `required`
    /// and against the source's fixed params, which only the row sets.
    pub fn merge(&self, params: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let fixed = sources::find(self.source.kind()).map_or(&[][..], |k| k.fixed());
        let mut merged = self.defaults.clone();
        for (k, v) in params {
            if fixed.contains(&k.as_str()) && self.defaults.get(k) != Some(v) {
                return Err(format!("{k} is set by the fetcher's row, not by a call"));
            }
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

/// What [`valid_name`] asks, for error messages.
pub const NAME_RULE: &str = "must start with a-z and hold only a-z, 0-9 and _ (at most 64)";

/// `a-z` first, then `a-z0-9_`, at most 64: usable as a template variable,
/// in a URL and as a tool or prompt name. Fetchers and templates share it.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Validates a row into a definition, or lists everything wrong with it.
/// Long because it is the one list of a row's rules, checked in one pass so
/// an author sees every problem of a row at once.
pub fn validate(row: &Row) -> Result<Definition, Vec<Problem>> {
    let name = row.name.as_str();
    let mut problems = Vec::new();
    let mut bad = |field: &str, reason: String| problems.push(Problem::new(name, field, reason));

    if !valid_name(name) {
        bad("name", NAME_RULE.into());
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
    let kind = sources::find(&row.source);
    if kind.is_none() {
        bad(
            "source",
            format!(
                "unknown source {:?}; use one of {}",
                row.source,
                sources::names().join(", ")
            ),
        );
    }
    for r in kind.map_or(&[][..], |k| k.required()) {
        if !defaults.contains_key(*r) && !required.iter().any(|x| x == r) {
            bad(
                "params",
                format!(
                    "missing required param {r}: give it in params or list it in required_params"
                ),
            );
        }
    }
    let template = row.template.as_deref().filter(|t| !t.trim().is_empty());
    if row.timeout_ms == 0 || row.timeout_ms > MAX_TIMEOUT_MS {
        bad("timeout_ms", format!("must be 1..={MAX_TIMEOUT_MS}"));
    }
    if row.ttl_seconds > MAX_TTL_SECONDS {
        bad("ttl_seconds", format!("must be at most {MAX_TTL_SECONDS}"));
    }
    // Defaults plus placeholders for caller-supplied params, so types are checked too.
    let mut probe = defaults.clone();
    for r in &required {
        probe
            .entry(r.clone())
            .or_insert_with(|| Value::String("light.x".into()));
    }
    let source = kind.and_then(|k| match k.build(name, &probe, template) {
        Ok(s) => Some(s),
        Err((field, reason)) => {
            bad(field, reason);
            None
        }
    });
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
            checks: std::sync::OnceLock::new(),
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
        // Compiled at load: the reason says where.
        let reason = &validate(&t).unwrap_err()[0].reason;
        assert!(reason.contains("(line 1, column"), "{reason}");
        let mut s = row("s", "summary", "{}");
        s.template = Some("{{ 1 }}".into());
        assert_eq!(
            fields(&s),
            ["template"],
            "a source that renders none refuses one"
        );
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

    #[test]
    fn merge_refuses_a_call_that_changes_a_fixed_param() {
        let d = validate(&row("s", "sql", r#"{"query": "SELECT 1 AS one"}"#)).unwrap();
        let mut p = Map::new();
        p.insert("query".into(), "SELECT 1 AS one".into());
        assert!(d.merge(&p).is_ok(), "the row's own value is no change");
        p.insert("query".into(), "SELECT * FROM data_fetchers".into());
        assert!(d
            .merge(&p)
            .unwrap_err()
            .contains("query is set by the fetcher's row"));
        let mut p = Map::new();
        p.insert("json_columns".into(), serde_json::json!(["a"]));
        assert!(d.merge(&p).is_err());
    }
}
