//! The renderer: the one template language ([`crate::jinja`]) plus
//! `fetch()`, and the fetchers a template uses run concurrently before it
//! renders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use minijinja::value::Value;
use minijinja::Environment;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::fetch::{
    cache_key, fetch_fn, too_many_fetches, FetchCtx, FetchFailure, FetchRun, Values, FETCH_CTX,
};
use super::refs::{fetch_calls, FetchCall};
use super::source::FetcherSource;
use super::RenderError;
use crate::bounds::{self, Limits};
use crate::fetchers::FetchRequest;
use crate::jinja::{self, Compiled, Failure};
use crate::state::StateManager;

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
    /// Literal `fetch("…")` calls, each once; shared with the compiled
    /// template, not copied per render.
    pub calls: Arc<[FetchCall]>,
    /// Undeclared names that are neither fetchers, functions nor given variables.
    pub unknown: Vec<String>,
}

/// A prompt template compiled once, when it loads (or per request for a
/// preview), with the `fetch()` calls found in the same parse.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The program.
    compiled: Compiled,
    /// Its literal `fetch()` calls.
    calls: Arc<[FetchCall]>,
}

impl Prepared {
    /// The template's name.
    pub fn name(&self) -> &str {
        self.compiled.name()
    }
}

/// Compiles `body` as the template `name` and finds its `fetch()` calls.
pub fn prepare(name: &str, body: &str) -> Result<Prepared, RenderError> {
    let mut calls = Ok(Vec::new());
    let compiled =
        Compiled::new(name, body, |tree| calls = fetch_calls(tree)).map_err(|message| {
            RenderError::Syntax {
                template: name.to_string(),
                message,
            }
        })?;
    let calls = calls.map_err(|_| too_many_fetches(name))?;
    Ok(Prepared {
        compiled,
        calls: calls.into(),
    })
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

    /// A renderer over `states` (a scope's) and the fetchers they see,
    /// with this one's limits.
    pub fn scoped(&self, states: StateManager, source: Arc<dyn FetcherSource>) -> Self {
        Self::new(states, source).with_limits(self.limits)
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

    /// What `t` refers to, given the fetchers loaded now; unknown names are
    /// reported, not errors.
    pub fn references(
        &self,
        t: &Prepared,
        variables: &Map<String, serde_json::Value>,
    ) -> References {
        let mut refs = References {
            calls: t.calls.clone(),
            ..Default::default()
        };
        for v in t.compiled.undeclared() {
            if variables.contains_key(v)
                || jinja::GLOBALS.contains(&v.as_str())
                || BUILTINS.contains(&v.as_str())
            {
                continue;
            }
            if self.source.exists(v) {
                refs.fetchers.push(v.clone());
            } else {
                refs.unknown.push(v.clone());
            }
        }
        refs
    }

    /// Compiles `body` for this one render and renders it: previews, tests.
    /// The compile runs on the render's blocking thread, off the async
    /// workers; its constant folds have a budget of their own.
    pub async fn render_source(
        self: &Arc<Self>,
        name: &str,
        body: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, RenderError> {
        let (n, body) = (name.to_string(), body.to_string());
        self.bounded(name, move |this, handle| {
            this.render_blocking(&prepare(&n, &body)?, opts, handle)
        })
        .await
    }

    /// Runs the fetchers `t` uses, then renders it, under the render budget.
    pub async fn render(
        self: &Arc<Self>,
        t: &Prepared,
        opts: RenderOptions,
    ) -> Result<Rendered, RenderError> {
        let (name, t) = (t.name().to_string(), t.clone());
        self.bounded(&name, move |this, handle| {
            this.render_blocking(&t, opts, handle)
        })
        .await
    }

    /// Runs `f` on the one bounded render path ([`bounds::spawn`]).
    async fn bounded(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce(&Renderer, tokio::runtime::Handle) -> Result<Rendered, RenderError>
            + Send
            + 'static,
    ) -> Result<Rendered, RenderError> {
        let this = self.clone();
        let handle = tokio::runtime::Handle::current();
        bounds::spawn(self.limits.budget(), move || f(&this, handle))
            .await
            .unwrap_or_else(|stop| {
                Err(RenderError::Stopped {
                    template: name.to_string(),
                    stop,
                })
            })
    }

    fn render_blocking(
        &self,
        t: &Prepared,
        opts: RenderOptions,
        handle: tokio::runtime::Handle,
    ) -> Result<Rendered, RenderError> {
        let started = Instant::now();
        let name = t.name();
        let refs = self.references(t, &opts.variables);
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

        ctx.run(self.upfront(name, &refs)?)?;

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

        let res = t.compiled.render(&self.env, Value::from(vars));
        if let Some(fatal) = ctx.fatal.lock().take() {
            return Err(fatal);
        }
        let text = res.map_err(|f| failure(&t.compiled, f))?;
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

    /// The requests every render of this template makes, to run at once
    /// before it starts; calls in branches run when (and if) it reaches them.
    fn upfront(&self, name: &str, refs: &References) -> Result<Vec<FetchRequest>, RenderError> {
        let mut requests: Vec<FetchRequest> = refs
            .fetchers
            .iter()
            .map(|n| FetchRequest {
                name: n.clone(),
                params: Map::new(),
            })
            .collect();
        for call in refs.calls.iter() {
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
        Ok(requests)
    }
}

/// The render error for what stopped `t`.
fn failure(t: &Compiled, f: Failure) -> RenderError {
    let template = t.name().to_string();
    match f {
        Failure::OutOfFuel => RenderError::OutOfFuel {
            template,
            fuel: jinja::FUEL,
        },
        Failure::TooLarge => RenderError::TooLarge {
            template,
            limit: jinja::MAX_OUTPUT,
        },
        Failure::Error(_) => RenderError::Render {
            message: t.describe(&f),
            template,
        },
    }
}
