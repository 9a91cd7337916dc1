//! The renderer: the one template language ([`crate::jinja`]) plus
//! `fetch()`, and the fetchers a template uses run concurrently before it
//! renders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::{Kwargs, Object, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::refs::{fetch_calls, FetchCall, RefsError, MAX_FETCH_CALLS};
use super::source::FetcherSource;
use super::RenderError;
use crate::bounds::{self, Limits};
use crate::fetchers::{FetchError, FetchOutcome, FetchRequest};
use crate::jinja::{self, Failure, Unavailable};
use crate::state::StateManager;

/// Longest error reason printed inside a failure marker.
const MARKER_REASON_CHARS: usize = 80;
/// The context key the per-render fetch state travels under.
const FETCH_CTX: &str = "__fetch";
/// minijinja's own globals and the names templates bind implicitly.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
    "fetch",
];

/// What a caller may pass to a render.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RenderOptions {
    /// Extra template variables; they shadow fetchers of the same name.
    #[schema(value_type = Object)]
    pub variables: Map<String, serde_json::Value>,
    /// Fail the whole render when a fetcher fails, instead of printing a marker.
    pub strict: bool,
}

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

/// A finished render.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rendered {
    /// The template's name (`inline` for previews).
    pub template: String,
    /// The text.
    pub text: String,
    /// The fetchers that ran, in the order they finished being asked for.
    pub fetchers: Vec<FetchRun>,
    /// Fetchers that failed and rendered as markers.
    pub errors: Vec<FetchFailure>,
    /// Wall time of the whole render, fetchers included.
    pub elapsed_ms: f64,
}

/// What a template refers to.
#[derive(Debug, Clone, Default)]
pub struct References {
    /// Fetchers used as plain variables.
    pub fetchers: Vec<String>,
    /// Literal `fetch("…")` calls, each once.
    pub calls: Vec<FetchCall>,
    /// Undeclared names that are neither fetchers, functions nor given variables.
    pub unknown: Vec<String>,
}

/// Renders templates; built once and shared.
pub struct Renderer {
    /// The environment: HA functions, filters, limits; no loader, so no file access.
    env: Environment<'static>,
    /// Where fetchers run.
    source: Arc<dyn FetcherSource>,
    /// Template values of the fetcher results seen last, per request.
    values: Arc<Values>,
    /// The memory and time each render gets.
    limits: Limits,
}

/// The template value of each fetcher result last rendered, by request key.
/// A warm render gets the engine's cached result (the same `Arc`) and reuses
/// its value instead of converting the JSON again, which was a large part of
/// a warm "home status" render at 10,000 entities. One entry per key the
/// templates asked for, replaced when the result changes.
#[derive(Default)]
struct Values(Mutex<HashMap<String, (Arc<serde_json::Value>, Value)>>);

impl Values {
    /// Bounds the keys: `fetch()` params come from templates and callers.
    const MAX: usize = crate::fetchers::MAX_CACHED_RESULTS;

    fn of(&self, key: &str, json: Arc<serde_json::Value>) -> Value {
        if let Some((seen, v)) = self.0.lock().get(key) {
            if Arc::ptr_eq(seen, &json) {
                return v.clone();
            }
        }
        // Converted without the lock, so concurrent renders do not wait on it.
        let v = Value::from_serialize(&*json);
        let mut map = self.0.lock();
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(key.to_string(), (json, v.clone()));
        v
    }
}

impl Renderer {
    pub fn new(states: StateManager, source: Arc<dyn FetcherSource>) -> Self {
        let mut env = jinja::environment(&states);
        env.add_function("fetch", fetch_fn);
        Self {
            env,
            source,
            values: Default::default(),
            limits: Limits::default(),
        }
    }

    /// The same renderer with other render limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The fetcher source, for listings and checks.
    pub fn source(&self) -> &Arc<dyn FetcherSource> {
        &self.source
    }

    /// Parses `body` and lists what it refers to; unknown names are reported, not errors.
    pub fn references(
        &self,
        name: &str,
        body: &str,
        variables: &Map<String, serde_json::Value>,
    ) -> Result<References, RenderError> {
        let tmpl = self.compile(name, body)?;
        self.references_of(&tmpl, name, body, variables)
    }

    fn compile<'s>(
        &self,
        name: &'s str,
        body: &'s str,
    ) -> Result<minijinja::Template<'_, 's>, RenderError> {
        self.env
            .template_from_named_str(name, body)
            .map_err(|e| RenderError::Syntax {
                template: name.to_string(),
                message: e.to_string(),
            })
    }

    fn references_of(
        &self,
        tmpl: &minijinja::Template<'_, '_>,
        name: &str,
        body: &str,
        variables: &Map<String, serde_json::Value>,
    ) -> Result<References, RenderError> {
        let calls = fetch_calls(name, body).map_err(|e| match e {
            RefsError::Syntax(message) => RenderError::Syntax {
                template: name.to_string(),
                message,
            },
            RefsError::TooMany => too_many_fetches(name),
        })?;
        let mut refs = References {
            calls,
            ..Default::default()
        };
        let undeclared: BTreeSet<String> = tmpl.undeclared_variables(false).into_iter().collect();
        for v in undeclared {
            if variables.contains_key(&v)
                || jinja::GLOBALS.contains(&v.as_str())
                || BUILTINS.contains(&v.as_str())
            {
                continue;
            }
            if self.source.exists(&v) {
                refs.fetchers.push(v);
            } else {
                refs.unknown.push(v);
            }
        }
        Ok(refs)
    }

    /// Runs the fetchers `body` uses, then renders it.
    pub async fn render(
        self: &Arc<Self>,
        name: &str,
        body: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, RenderError> {
        let this = self.clone();
        let (name, body) = (name.to_string(), body.to_string());
        let handle = tokio::runtime::Handle::current();
        let budget = self.limits.budget();
        // The render is synchronous and may wait on lazy `fetch` calls, so it runs
        // off the async workers, under its budget: it stops itself at the
        // deadline or the memory limit, so no thread is left running.
        tokio::task::spawn_blocking(move || {
            bounds::run(budget, || this.render_blocking(&name, &body, opts, handle)).unwrap_or_else(
                |stop| {
                    Err(RenderError::Stopped {
                        template: name.clone(),
                        stop,
                    })
                },
            )
        })
        .await
        .map_err(|e| RenderError::Internal(e.to_string()))?
    }

    fn render_blocking(
        &self,
        name: &str,
        body: &str,
        opts: RenderOptions,
        handle: tokio::runtime::Handle,
    ) -> Result<Rendered, RenderError> {
        let started = Instant::now();
        let tmpl = self.compile(name, body)?;
        let refs = self.references_of(&tmpl, name, body, &opts.variables)?;
        if let Some(unknown) = refs.unknown.first() {
            return Err(RenderError::UnknownFetcher {
                template: name.to_string(),
                name: unknown.clone(),
            });
        }
        let ctx = Arc::new(FetchCtx {
            template: name.to_string(),
            strict: opts.strict,
            source: self.source.clone(),
            values: self.values.clone(),
            handle,
            results: Mutex::default(),
            runs: Mutex::default(),
            errors: Mutex::default(),
            fatal: Mutex::default(),
        });

        // Everything every render needs runs at once; calls in branches run
        // when (and if) the render reaches them.
        let mut requests: Vec<FetchRequest> = refs
            .fetchers
            .iter()
            .map(|n| FetchRequest {
                name: n.clone(),
                params: Map::new(),
            })
            .collect();
        for call in &refs.calls {
            if !self.source.exists(&call.name) {
                return Err(RenderError::UnknownFetcher {
                    template: name.to_string(),
                    name: call.name.clone(),
                });
            }
            if let (Some(params), true) = (&call.params, call.upfront) {
                // `fetch("x")` and the variable `x` are the same request.
                let no_params = params.is_empty() && refs.fetchers.contains(&call.name);
                if !no_params {
                    requests.push(FetchRequest {
                        name: call.name.clone(),
                        params: params.clone(),
                    });
                }
            }
        }
        ctx.run(requests)?;

        let mut vars: BTreeMap<String, Value> = BTreeMap::new();
        for f in &refs.fetchers {
            if let Some(v) = ctx.results.lock().get(&cache_key(f, &Map::new())) {
                vars.insert(f.clone(), v.clone());
            }
        }
        for (k, v) in &opts.variables {
            vars.insert(k.clone(), Value::from_serialize(v));
        }
        vars.insert(FETCH_CTX.to_string(), Value::from_dyn_object(ctx.clone()));

        let res = jinja::render(&tmpl, Value::from(vars));
        if let Some(fatal) = ctx.fatal.lock().take() {
            return Err(fatal);
        }
        let template = name.to_string();
        let text = res.map_err(|f| match f {
            Failure::OutOfFuel => RenderError::OutOfFuel {
                template,
                fuel: jinja::FUEL,
            },
            Failure::TooLarge => RenderError::TooLarge {
                template,
                limit: jinja::MAX_OUTPUT,
            },
            Failure::Error(e) => RenderError::Render {
                template,
                message: e.to_string(),
            },
        })?;
        let fetchers = std::mem::take(&mut *ctx.runs.lock());
        let errors = std::mem::take(&mut *ctx.errors.lock());
        Ok(Rendered {
            template: name.to_string(),
            text,
            fetchers,
            errors,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

fn too_many_fetches(template: &str) -> RenderError {
    RenderError::TooManyFetches {
        template: template.to_string(),
        limit: MAX_FETCH_CALLS,
    }
}

fn cache_key(name: &str, params: &Map<String, serde_json::Value>) -> String {
    format!("{name}?{}", serde_json::Value::Object(params.clone()))
}

/// Per-render fetch state: results so far, what ran, what failed.
struct FetchCtx {
    /// For error messages.
    template: String,
    /// Whether a failure ends the render.
    strict: bool,
    /// The engine.
    source: Arc<dyn FetcherSource>,
    /// The renderer's converted results.
    values: Arc<Values>,
    /// To wait on the engine from the synchronous render.
    handle: tokio::runtime::Handle,
    /// Values by name and params, so a fetcher runs once per render.
    results: Mutex<HashMap<String, Value>>,
    /// Every run, for the response.
    runs: Mutex<Vec<FetchRun>>,
    /// Every failure, for the response.
    errors: Mutex<Vec<FetchFailure>>,
    /// The error that must end the render (strict failure, unknown fetcher).
    fatal: Mutex<Option<RenderError>>,
}

impl std::fmt::Debug for FetchCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<fetch context>")
    }
}

impl Object for FetchCtx {}

impl FetchCtx {
    /// Runs requests concurrently and records their outcomes.
    fn run(&self, requests: Vec<FetchRequest>) -> Result<(), RenderError> {
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
        let run = tokio::time::timeout(wait, self.source.run_many(requests));
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
fn fetch_fn(state: &State<'_, '_>, name: &str, kwargs: Kwargs) -> Result<Value, Error> {
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
