//! `fetch()` and the per-render fetch state: what ran, what failed, the
//! values of the results (reused across renders while a result is unchanged).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use minijinja::value::{Kwargs, Object, Value};
use minijinja::{Error, ErrorKind, State};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Map;
use sha2::{Digest, Sha256};

use super::refs::MAX_FETCH_CALLS;
use super::source::FetcherSource;
use super::RenderError;
use crate::bounds;
use crate::fetchers::{FetchError, FetchOutcome, FetchRequest};
use crate::jinja::Unavailable;

/// Longest error reason printed inside a failure marker.
const MARKER_REASON_CHARS: usize = 80;
/// The context key the per-render fetch state travels under.
pub(super) const FETCH_CTX: &str = "__fetch";

/// One fetcher that ran for a render.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FetchRun {
    /// The fetcher.
    pub name: String,
    /// The params it ran with.
    #[schema(value_type = Object)]
    pub params: Map<String, serde_json::Value>,
    /// Its wall time.
    pub elapsed_ms: f64,
    /// Whether the engine answered from its cache.
    pub cached: bool,
    /// Whether it produced a value.
    pub ok: bool,
}

/// A fetcher that failed during a render (it rendered as a marker).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FetchFailure {
    /// The fetcher.
    pub fetcher: String,
    /// `timeout`, `failed`, ….
    pub code: String,
    /// Why.
    pub message: String,
}

/// The template value of each fetcher result last rendered, by request key.
/// A warm render gets the engine's cached result (the same `Arc`) and reuses
/// its value instead of converting the JSON again, which was a large part of
/// a warm "home status" render at 10,000 entities. One entry per key the
/// templates asked for, replaced when the result changes.
///
/// Keys come from templates and callers, so they are kept as digests and the
/// whole is bounded in bytes as well as count: keyed by the params' text,
/// 400 renders of a 3 MB param held +1.7 GB.
#[derive(Default)]
pub(super) struct Values(Mutex<ValuesInner>);

/// The entries and their size, under one lock.
#[derive(Default)]
pub(super) struct ValuesInner {
    /// The result each value was converted from, the value, and the result's
    /// JSON length, by key digest.
    map: HashMap<[u8; 32], (Arc<serde_json::Value>, Value, usize)>,
    /// The results' JSON length, summed: the values are about as big.
    bytes: usize,
}

impl Values {
    /// Bounds the keys: `fetch()` params come from templates and callers.
    const MAX: usize = crate::fetchers::MAX_CACHED_RESULTS;
    /// Bounds the bytes, as the engine's own cache does.
    const MAX_BYTES: usize = crate::fetchers::MAX_CACHED_BYTES;

    fn of(&self, key: &str, json: Arc<serde_json::Value>) -> Value {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some((seen, v, _)) = self.0.lock().map.get(&digest) {
            if Arc::ptr_eq(seen, &json) {
                return v.clone();
            }
        }
        // Converted without the lock, so concurrent renders do not wait on it.
        let v = Value::from_serialize(&*json);
        // A result too big for the engine to cache comes back as a new `Arc`
        // each time, so keeping its value would only hold memory.
        let Some(bytes) = crate::fetchers::json_len(&json, crate::fetchers::MAX_CACHED_ENTRY_BYTES)
        else {
            return v;
        };
        let mut inner = self.0.lock();
        if let Some((_, _, old)) = inner.map.remove(&digest) {
            inner.bytes -= old;
        }
        if inner.map.len() >= Self::MAX || inner.bytes + bytes > Self::MAX_BYTES {
            inner.map.clear();
            inner.bytes = 0;
        }
        inner.bytes += bytes;
        inner.map.insert(digest, (json, v.clone(), bytes));
        v
    }

    /// Entries and bytes held, for tests.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        let inner = self.0.lock();
        (inner.map.len(), inner.bytes)
    }
}

pub(super) fn too_many_fetches(template: &str) -> RenderError {
    RenderError::TooManyFetches {
        template: template.to_string(),
        limit: MAX_FETCH_CALLS,
    }
}

pub(super) fn cache_key(name: &str, params: &Map<String, serde_json::Value>) -> String {
    format!("{name}?{}", serde_json::Value::Object(params.clone()))
}

/// Per-render fetch state: results so far, what ran, what failed.
pub(super) struct FetchCtx {
    /// For error messages.
    pub(super) template: String,
    /// Whether a failure ends the render.
    pub(super) strict: bool,
    /// The engine.
    pub(super) source: Arc<dyn FetcherSource>,
    /// The renderer's converted results.
    pub(super) values: Arc<Values>,
    /// To wait on the engine from the synchronous render.
    pub(super) handle: tokio::runtime::Handle,
    /// Values by name and params, so a fetcher runs once per render.
    pub(super) results: Mutex<HashMap<String, Value>>,
    /// Every run, for the response.
    pub(super) runs: Mutex<Vec<FetchRun>>,
    /// Every failure, for the response.
    pub(super) errors: Mutex<Vec<FetchFailure>>,
    /// The error that must end the render (strict failure, unknown fetcher).
    pub(super) fatal: Mutex<Option<RenderError>>,
}

impl std::fmt::Debug for FetchCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<fetch context>")
    }
}

impl Object for FetchCtx {}

impl FetchCtx {
    /// Runs requests concurrently and records their outcomes.
    pub(super) fn run(&self, requests: Vec<FetchRequest>) -> Result<(), RenderError> {
        if requests.is_empty() {
            return Ok(());
        }
        // Keyed by what the template asked for: the engine reports params with
        // the row's defaults merged in, which the template never wrote.
        let keys: Vec<String> = requests
            .iter()
            .map(|r| cache_key(&r.name, &r.params))
            .collect();
        // The wait ends with the render's deadline; each fetcher also has its own.
        let wait = bounds::remaining().unwrap_or(Duration::MAX);
        // Template fetchers run on threads of their own, under this render's account.
        let run = tokio::time::timeout(
            wait,
            bounds::for_caller(bounds::account(), self.source.run_many(requests)),
        );
        let Ok(outcomes) = self.handle.block_on(run) else {
            bounds::stop_for_deadline();
            return Err(RenderError::Render {
                template: self.template.clone(),
                message: "fetchers ran past the render's deadline".into(),
            });
        };
        for (key, o) in keys.into_iter().zip(outcomes) {
            self.record(key, o)?;
        }
        Ok(())
    }

    fn record(&self, key: String, o: FetchOutcome) -> Result<(), RenderError> {
        self.runs.lock().push(FetchRun {
            name: o.name.clone(),
            params: o.params.clone(),
            elapsed_ms: o.elapsed_ms,
            cached: o.cached,
            ok: o.result.is_ok(),
        });
        let value = match o.result {
            Ok(v) => self.values.of(&key, v),
            Err(e) => {
                if self.strict {
                    return Err(RenderError::FetcherFailed {
                        template: self.template.clone(),
                        fetcher: o.name,
                        reason: e.to_string(),
                    });
                }
                tracing::warn!(fetcher = %o.name, template = %self.template, error = %e, "Fetcher failed during a render");
                self.errors.lock().push(FetchFailure {
                    fetcher: o.name.clone(),
                    code: e.code().to_string(),
                    message: e.to_string(),
                });
                Value::from_object(Unavailable {
                    name: o.name,
                    reason: marker_reason(&e),
                })
            }
        };
        self.results.lock().insert(key, value);
        Ok(())
    }

    /// `fetch(name, k=v)`: from this render's results, else run now.
    fn fetch(&self, name: &str, params: Map<String, serde_json::Value>) -> Result<Value, Error> {
        let key = cache_key(name, &params);
        if let Some(v) = self.results.lock().get(&key) {
            return Ok(v.clone());
        }
        let fail = |e: RenderError| {
            let msg = e.to_string();
            *self.fatal.lock() = Some(e);
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        };
        if !self.source.exists(name) {
            return fail(RenderError::UnknownFetcher {
                template: self.template.clone(),
                name: name.to_string(),
            });
        }
        if self.results.lock().len() >= MAX_FETCH_CALLS {
            return fail(too_many_fetches(&self.template));
        }
        let req = FetchRequest {
            name: name.to_string(),
            params,
        };
        if let Err(e) = self.run(vec![req]) {
            return fail(e);
        }
        Ok(self.results.lock().get(&key).cloned().unwrap_or_default())
    }
}

fn marker_reason(e: &FetchError) -> String {
    match e {
        FetchError::Timeout(_) => "timeout".to_string(),
        other => other
            .to_string()
            .chars()
            .take(MARKER_REASON_CHARS)
            .collect(),
    }
}

/// The `fetch` function.
pub(super) fn fetch_fn(state: &State<'_, '_>, name: &str, kwargs: Kwargs) -> Result<Value, Error> {
    let ctx = state
        .lookup(FETCH_CTX)
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "fetch is not available here"))?;
    let ctx = ctx
        .downcast_object_ref::<FetchCtx>()
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "fetch is not available here"))?;
    let keys: Vec<String> = kwargs.args().map(str::to_string).collect();
    let mut params = Map::new();
    for k in keys {
        let v: Value = kwargs.get(&k)?;
        let json = serde_json::to_value(&v)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("fetch {k}: {e}")))?;
        params.insert(k, json);
    }
    ctx.fetch(name, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys from callers cost a digest each, and the values held are bounded
    /// in bytes, whatever the params' length or the results' size.
    #[test]
    fn the_value_cache_is_bounded_in_bytes_and_count() {
        let values = Values::default();
        let huge_param = "Zn_".repeat(1_000_000);
        for i in 0..200 {
            let key = format!("ha_search_pattern?{{\"state\":\"{huge_param}{i}\"}}");
            values.of(&key, Arc::new(serde_json::json!([])));
        }
        let (n, bytes) = values.held();
        assert_eq!((n, bytes), (200, 400), "the keys are digests");

        let big = Arc::new(serde_json::Value::String("x".repeat(4 * 1024 * 1024)));
        for i in 0..100 {
            values.of(&format!("k{i}"), big.clone());
            let (n, bytes) = values.held();
            assert!(
                n <= Values::MAX && bytes <= Values::MAX_BYTES,
                "{n} {bytes}"
            );
        }
        // Too big for the engine to cache: converted, not kept.
        let huge = Arc::new(serde_json::Value::String(
            "x".repeat(crate::fetchers::MAX_CACHED_ENTRY_BYTES + 1),
        ));
        let before = values.held();
        assert_eq!(
            values.of("huge", huge).as_str().map(str::len),
            Some(crate::fetchers::MAX_CACHED_ENTRY_BYTES + 1)
        );
        assert_eq!(values.held(), before);
    }
}
