//! `sql`: one read-only query over the program's own MySQL data (reminders,
//! calendars, notes), its `:name` params bound from the call. The checks and
//! the run live in [`crate::fetchers::sql`]; this is the row's side.
//!
//! Results are cached for the row's `ttl_seconds` only: no state change can
//! tell when MySQL data changed, so no domain generation ends them sooner.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Context, Kind, Source};
use crate::fetchers::sql::{self, Limits, Query, DEFAULT_ROWS, MAX_ROWS};
use crate::fetchers::FetchError;
use crate::state::Read;
use crate::telemetry::Escaped;

/// Params the row sets and callers cannot change (`Definition::merge`
/// refuses a call that does).
const FIXED: &[&str] = &["query", "json_columns"];

/// What a run says when no MySQL is configured.
const NO_DATABASE: &str = "no MySQL for sql fetchers: set FETCHERS_SQL_URL or DATABASE_URL";

/// The kind.
#[derive(Debug)]
pub struct Sql;

/// A checked query, ready to run.
#[derive(Debug)]
struct Ready {
    /// The fetcher's name, for the capped-result log line and metric.
    name: String,
    /// The rewritten query.
    query: Query,
    /// Text columns to read as JSON.
    json: Vec<String>,
}

impl Kind for Sql {
    fn name(&self) -> &'static str {
        "sql"
    }

    fn fixed(&self) -> &'static [&'static str] {
        FIXED
    }

    fn build(
        &self,
        name: &str,
        probe: &Map<String, Value>,
        template: Option<&str>,
    ) -> Result<Arc<dyn Source>, (&'static str, String)> {
        super::no_template(self.name(), template)?;
        let text = probe.get("query").and_then(Value::as_str).ok_or((
            "params",
            "source sql needs params.query: one SELECT with :name params".to_string(),
        ))?;
        let query = sql::parse(text).map_err(|r| ("params.query", r))?;
        let json = match probe.get("json_columns") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                (
                    "params",
                    "json_columns must be an array of column names".to_string(),
                )
            })?,
        };
        if let Some(v) = probe.get("limit") {
            rows_limit(v).map_err(|r| ("params", r))?;
        }
        for n in query.names() {
            if !probe.contains_key(n) {
                return Err((
                    "params",
                    format!("the query uses :{n}; give it a default in params or list it in required_params"),
                ));
            }
        }
        if let Some(k) = unused(probe, &query) {
            return Err(("params", k));
        }
        Ok(Arc::new(Ready {
            name: name.to_string(),
            query,
            json,
        }))
    }
}

/// Why `params` holds a key the query does not use, if it does.
fn unused(params: &Map<String, Value>, q: &Query) -> Option<String> {
    let k = params
        .keys()
        .find(|k| !FIXED.contains(&k.as_str()) && *k != "limit" && !q.binds.contains(k))?;
    let names = q.names();
    let uses = match names.is_empty() {
        true => "no params".to_string(),
        false => names
            .iter()
            .map(|n| format!(":{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Some(format!(
        "{k} is not a param of the query (it uses {uses}; limit caps the rows)"
    ))
}

/// `limit` as a row count in `1..=MAX_ROWS`.
fn rows_limit(v: &Value) -> Result<u64, String> {
    v.as_u64()
        .filter(|n| (1..=MAX_ROWS).contains(n))
        .ok_or_else(|| format!("limit must be a whole number of rows, 1 to {MAX_ROWS}"))
}

#[async_trait]
impl Source for Ready {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn follows_states(&self) -> bool {
        false
    }

    async fn run(
        &self,
        cx: &Context,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        let db = cx
            .sql
            .as_ref()
            .ok_or_else(|| FetchError::Failed(NO_DATABASE.into()))?;
        if let Some(why) = unused(params, &self.query) {
            return Err(FetchError::BadParams(why));
        }
        let rows = match params.get("limit") {
            None => DEFAULT_ROWS,
            Some(v) => rows_limit(v).map_err(FetchError::BadParams)?,
        };
        let limits = Limits {
            rows,
            time: cx.timeout,
        };
        let out = db.run(&self.query, params, &self.json, &limits).await?;
        if let Some(cap) = out.capped {
            tracing::warn!(fetcher = %Escaped(&self.name), cap, rows = out.rows.len(), "sql fetcher result capped");
            metrics::counter!("ha_fetcher_sql_capped_total", "fetcher" => self.name.clone(), "cap" => cap)
                .increment(1);
        }
        Ok((Value::Array(out.rows), Vec::new()))
    }

    /// Prepares the query on the live database, so an unknown table or
    /// column is named by `check`, not at the first call.
    async fn verify(&self, cx: &Context) -> Result<(), (&'static str, String)> {
        match &cx.sql {
            Some(db) => db
                .prepare(&self.query)
                .await
                .map_err(|r| ("params.query", r)),
            None => Ok(()),
        }
    }
}
