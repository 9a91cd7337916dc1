//! Definitions from `fetchers/*.toml`: the shipped set, one file per fetcher,
//! named after the file. Seeding copies them into MySQL; without MySQL they
//! are the registry's source.

use std::path::Path;

use serde::Deserialize;

use super::definition::{Problem, Row};

/// One `fetchers/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    /// What the result holds.
    #[serde(default)]
    description: String,
    /// Which source runs.
    source: String,
    /// Default params (a TOML table, stored as JSON).
    #[serde(default)]
    params: toml::Table,
    /// Params each caller must supply.
    #[serde(default)]
    required_params: Vec<String>,
    /// minijinja, for `source = "template"`.
    template: Option<String>,
    /// Cache ceiling in seconds.
    #[serde(default = "default_ttl")]
    ttl_seconds: u32,
    /// Per-run limit.
    #[serde(default = "default_timeout")]
    timeout_ms: u32,
    /// Offered at all.
    #[serde(default = "default_enabled")]
    enabled: bool,
}

fn default_ttl() -> u32 {
    30
}
fn default_timeout() -> u32 {
    2000
}
fn default_enabled() -> bool {
    true
}

/// Parses one file's text into a row; the name is the file stem.
pub fn parse(name: &str, text: &str) -> Result<Row, Problem> {
    let f: FileDef = toml::from_str(text).map_err(|e| Problem::new(name, "file", e.to_string()))?;
    // TOML tables and string lists always serialise to JSON.
    let params = serde_json::to_string(&f.params).unwrap_or_else(|_| "{}".into());
    let required_params = serde_json::to_string(&f.required_params).unwrap_or_else(|_| "[]".into());
    Ok(Row {
        name: name.to_string(),
        description: f.description.trim().to_string(),
        source: f.source,
        params,
        required_params,
        template: f.template,
        ttl_seconds: f.ttl_seconds,
        timeout_ms: f.timeout_ms,
        enabled: f.enabled,
    })
}

/// Reads every `*.toml` directly in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> std::io::Result<(Vec<Row>, Vec<Problem>)> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&p)?;
        match parse(&name, &text) {
            Ok(r) => rows.push(r),
            Err(e) => problems.push(e),
        }
    }
    Ok((rows, problems))
}
