//! The runner: runs fetchers concurrently, each under its own timeout, with
//! a result cache that state changes invalidate. An error is a value in the
//! outcome, never a `?` that aborts a batch.

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use minijinja::Environment;
use serde_json::{Map, Value};

use super::cache::ResultCache;
use super::definition::{Definition, Problem};
use super::registry::{LoadStatus, Loaded, Registry};
use super::sources::Context;
use super::sql;
use super::{FetchError, FetchOutcome, FetchRequest};
use crate::bounds;
use crate::jinja;
use crate::state::Read;
use crate::state::StateManager;
use crate::telemetry::Escaped;

/// Runs fetchers from a registry over the states.
#[derive(Clone)]
pub struct Runner {
    /// The definitions.
    registry: Arc<Registry>,
    /// What they read.
    states: StateManager,
    /// Results by name and params.
    cache: Arc<ResultCache>,
    /// Bytes one template fetcher's render may grow the process by; its
    /// time limit is the fetcher's timeout.
    render_memory: usize,
    /// The one template language over `states`, built once.
    env: Arc<Environment<'static>>,
    /// The MySQL `sql` fetchers read; without it they fail, alone.
    sql: Option<sql::Database>,
    /// Calls over the live link, for `history`, `statistics` and `logbook`.
    ha: crate::ha::Calls,
}

impl Runner {
    pub fn new(registry: Arc<Registry>, states: StateManager) -> Self {
        Self {
            env: Arc::new(jinja::environment(&states)),
            registry,
            states,
            cache: Arc::default(),
            render_memory: bounds::DEFAULT_MEMORY,
            sql: None,
            ha: crate::ha::Calls::none(),
        }
    }

    /// The same fetchers as seen by `states`' scope: its entities only, its
    /// fetchers only, and a result cache of its own, so no answer computed
    /// for one scope is served to another.
    pub fn scoped(&self, states: StateManager) -> Self {
        Self {
            env: Arc::new(jinja::environment(&states)),
            states,
            cache: Arc::default(),
            ..self.clone()
        }
    }

    /// Whether this runner's scope may use the fetcher `name`.
    fn allowed(&self, name: &str) -> bool {
        self.states.scope().is_none_or(|s| s.allows_fetcher(name))
    }

    /// The same runner with a link to call HA over.
    pub fn with_ha(mut self, calls: crate::ha::Calls) -> Self {
        self.ha = calls;
        self
    }

    /// The same runner with another memory limit for template renders.
    pub fn with_render_memory(mut self, bytes: usize) -> Self {
        self.render_memory = bytes;
        self
    }

    /// The same runner with a MySQL for `sql` fetchers.
    pub fn with_sql(mut self, db: Option<sql::Database>) -> Self {
        self.sql = db;
        self
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn states(&self) -> &StateManager {
        &self.states
    }

    /// Bytes the result cache holds (keys and results as JSON text).
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Whether an enabled, valid fetcher has this name.
    pub fn exists(&self, name: &str) -> bool {
        self.allowed(name) && self.registry.get(name).is_some()
    }

    /// An enabled, valid definition by name.
    pub fn get(&self, name: &str) -> Option<Arc<Definition>> {
        self.registry.get(name).filter(|_| self.allowed(name))
    }

    /// The current set of definitions and problems, one consistent load;
    /// through a scope, only its fetchers and none of the rows' problems
    /// (the author's matter, and they name rows the scope may not use).
    pub fn loaded(&self) -> Arc<Loaded> {
        let all = self.registry.current();
        match self.states.scope() {
            None => all,
            Some(_) => Arc::new(all.only(|name| self.allowed(name))),
        }
    }

    /// How the last load went, and where definitions come from.
    pub fn load_status(&self) -> LoadStatus {
        self.registry.status()
    }

    /// The definitions' revision, woken on each reload that changed them.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registry.watch()
    }

    /// Whether the definitions' MySQL answers now; `Ok` for files.
    pub async fn ping(&self) -> Result<(), String> {
        self.registry.ping().await
    }

    /// The names of the enabled, valid fetchers, sorted.
    pub fn names(&self) -> Vec<String> {
        let loaded = self.registry.current();
        loaded
            .defs
            .keys()
            .filter(|n| self.allowed(n))
            .cloned()
            .collect()
    }

    /// The enabled, valid definitions, sorted by name.
    pub fn definitions(&self) -> Vec<Arc<Definition>> {
        let loaded = self.registry.current();
        let defs = loaded.defs.iter().filter(|(n, _)| self.allowed(n));
        defs.map(|(_, d)| d.clone()).collect()
    }

    /// What is wrong with the rows that did not load.
    pub fn problems(&self) -> Vec<Problem> {
        self.registry.current().problems.clone()
    }

    /// Runs them all at once; outcomes come back in request order.
    pub async fn run_many(&self, requests: Vec<FetchRequest>) -> Vec<FetchOutcome> {
        join_all(requests.into_iter().map(|r| self.run(r))).await
    }

    /// Runs one, from cache when fresh.
    pub async fn run(&self, req: FetchRequest) -> FetchOutcome {
        let started = Instant::now();
        let loaded = self.registry.current();
        let found = loaded
            .defs
            .get(&req.name)
            .filter(|_| self.allowed(&req.name));
        let Some(def) = found.cloned() else {
            return outcome(
                req.name.clone(),
                req.params,
                Err(FetchError::UnknownFetcher(req.name)),
                started,
                false,
            );
        };
        let params = match def.check(&req.params).and_then(|()| def.merge(&req.params)) {
            Ok(p) => p,
            Err(e) => {
                return outcome(
                    req.name,
                    req.params,
                    Err(FetchError::BadParams(e)),
                    started,
                    false,
                )
            }
        };
        if let Some(v) = self
            .cache
            .get(&def.name, &params, loaded.revision, &self.states)
        {
            metrics::counter!("ha_fetcher_runs_total", "fetcher" => def.name.clone(), "cached" => "true").increment(1);
            return outcome(req.name, params, Ok(v), started, true);
        }
        let timeout = def.timeout;
        let result = match tokio::time::timeout(timeout, self.compute(&def, &params)).await {
            Ok(Ok((value, reads))) => {
                let value = Arc::new(value);
                self.cache.put(
                    &def.name,
                    &params,
                    loaded.revision,
                    def.ttl,
                    value.clone(),
                    reads,
                );
                Ok(value)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(FetchError::Timeout(timeout.as_millis() as u64)),
        };
        let out = outcome(req.name, params, result, started, false);
        // Labelled by defined names only, so callers cannot grow the series.
        metrics::counter!("ha_fetcher_runs_total", "fetcher" => def.name.clone(), "cached" => "false").increment(1);
        metrics::histogram!("ha_fetcher_duration_seconds", "fetcher" => def.name.clone())
            .record(out.elapsed_ms / 1e3);
        if let Err(e) = &out.result {
            metrics::counter!("ha_fetcher_errors_total", "fetcher" => def.name.clone(), "code" => e.code()).increment(1);
        }
        match &out.result {
            Ok(_) => {
                tracing::debug!(fetcher = %Escaped(&out.name), elapsed_ms = out.elapsed_ms, "Fetcher ran")
            }
            Err(e) => {
                tracing::warn!(fetcher = %Escaped(&out.name), elapsed_ms = out.elapsed_ms, code = e.code(), error = %Escaped(e), "Fetcher failed")
            }
        }
        out
    }

    async fn compute(
        &self,
        def: &Definition,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        def.source.run(&self.context(def), params).await
    }

    /// What a run of `def` may use.
    fn context(&self, def: &Definition) -> Context {
        Context {
            states: self.states.clone(),
            env: self.env.clone(),
            render_memory: self.render_memory,
            timeout: def.timeout,
            sql: self.sql.clone(),
            ha: self.ha.clone(),
        }
    }

    /// Each of `defs` checked against what it will run on, by its own source
    /// (a `sql` query prepared on the live database): one problem per
    /// definition refused. For `check`, which validated the rows once.
    pub async fn verify(&self, defs: &[Definition]) -> Vec<Problem> {
        let mut problems = Vec::new();
        for def in defs {
            if let Err((field, reason)) = def.source.verify(&self.context(def)).await {
                problems.push(Problem::new(&def.name, field, reason));
            }
        }
        problems
    }
}

fn outcome(
    name: String,
    params: Map<String, Value>,
    result: Result<Arc<Value>, FetchError>,
    started: Instant,
    cached: bool,
) -> FetchOutcome {
    FetchOutcome {
        name,
        params,
        result,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        cached,
    }
}
