//! Data fetchers: definitions (rows in MySQL or files in `fetchers/`), the
//! registry that loads and hot-reloads them, and the runner that runs them.
//!
//! - [`FetchRequest`]: a fetcher name plus JSON params.
//! - [`FetchOutcome`]: what one run produced; an error is a value, never a panic.
//! - `Runner::run_many(Vec<FetchRequest>) -> Vec<FetchOutcome>` runs them concurrently,
//!   each with its own timeout and TTL cache; `Runner::exists(name)` and
//!   `Runner::names()` tell templates what is known.
//! - [`lean`]: a result as token-lean text, for LLM clients and the console.
//! - [`sql`]: the `sql` source's read-only queries over the program's own MySQL data.

pub mod args;
mod cache;
pub use cache::MAX_ENTRIES as MAX_CACHED_RESULTS;
pub use cache::{
    json_len, MAX_BYTES as MAX_CACHED_BYTES, MAX_ENTRY_BYTES as MAX_CACHED_ENTRY_BYTES,
};
pub mod db;
mod definition;
pub mod files;
mod inputs;
pub mod lean;
mod registry;
mod runner;
pub mod sources;
pub mod sql;

use std::sync::Arc;
use std::time::Duration;

pub use definition::{
    valid_name, validate, validate_all, Definition, Problem, Row, MAX_TIMEOUT_MS, MAX_TTL_SECONDS,
    NAME_RULE,
};
pub use inputs::{check_schema, input_schema, json_type};
pub use registry::{Backend, BackendKind, LoadError, LoadStatus, Loaded, Registry};
pub use runner::Runner;
pub use sources::{Context, Kind, Source};

use serde::Serialize;
use serde_json::{Map, Value};

/// How long taking a pooled MySQL connection may wait (the registry's pool
/// and the `sql` source's); keeps reloads and health snappy when MySQL is down.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// One fetcher to run.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    /// The fetcher's unique name (a template identifier).
    pub name: String,
    /// Parameters merged over the row's defaults.
    pub params: Map<String, Value>,
}

/// Why one fetcher run produced no result.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[serde(tag = "code", content = "message", rename_all = "snake_case")]
pub enum FetchError {
    #[error("unknown fetcher {0}")]
    UnknownFetcher(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("bad params: {0}")]
    BadParams(String),
    #[error("{0}")]
    Failed(String),
}

impl FetchError {
    /// A short machine-readable code (`timeout`, `unknown_fetcher`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownFetcher(_) => "unknown_fetcher",
            Self::Timeout(_) => "timeout",
            Self::BadParams(_) => "bad_params",
            Self::Failed(_) => "failed",
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FetchOutcome {
    /// Which fetcher.
    pub name: String,
    /// The params it ran with (after defaults).
    pub params: Map<String, Value>,
    /// Its value, or why there is none. Shared with the result cache: a
    /// cached answer is not copied, and the renderer can tell it has seen it.
    pub result: Result<Arc<Value>, FetchError>,
    /// Wall time of the run, or ~0 when served from cache.
    pub elapsed_ms: f64,
    /// Whether the value came from the result cache.
    pub cached: bool,
}

impl FetchRequest {
    /// A request with no params.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Map::new(),
        }
    }

    /// Adds one param.
    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.params.insert(key.to_string(), value.into());
        self
    }
}
