//! The engine: the one façade every door uses (REST, MCP, the console, the
//! command line, the bench). Built once from [`Settings`] and a store, it
//! holds the mirrored states, the fetchers, the prompt templates and the
//! change stream, and starts what keeps them current: the HA session, the
//! reloaders, the stream's pump. `serve`, `render`, `mcp`, `fetch` and the
//! tests all build it through [`Engine::start`], with the same limits;
//! HTTP matters (the token, request limits, logins) stay in the doors.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::fetchers::{Definition, FetchOutcome, FetchRequest, Registry, Runner};
use crate::ha::{HaRest, Session, SessionConfig};
use crate::periodic::every_blocking;
use crate::prompt::{self, Prompts, RenderError, RenderOptions, Rendered, Renderer};
use crate::state::{Fallback, Scope, SharedStore, StateManager, Writer, WriterHandle};
use crate::stream::{Hub, Subscription};

/// The states, fetchers, templates and change stream, behind one handle;
/// cloned into every door (an `Arc` inside).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// What a scoped caller sees through; `None`: everything.
    view: Option<Arc<View>>,
}

/// The parts as one scope sees them: its states, its fetchers (with a
/// result cache of their own), a renderer over both.
struct View {
    /// The scope, to tell whether a cached view is still the token's.
    scope: Arc<Scope>,
    /// The states it sees.
    states: StateManager,
    /// The fetchers it may run, over those states.
    fetchers: Runner,
    /// Renders templates over those states and fetchers.
    renderer: Arc<Renderer>,
}

/// Scoped views kept at most: one per token, rebuilt when its scope changes.
const MAX_VIEWS: usize = 256;

struct Inner {
    /// Reads of the mirrored states.
    states: StateManager,
    /// Runs the data fetchers; holds their registry.
    fetchers: Runner,
    /// Prompt templates and their renderer.
    prompts: Arc<Prompts>,
    /// The change stream and the activity figures.
    stream: Hub,
    /// How Home Assistant is reached, for health.
    link: Link,
    /// Views built for scopes, by token name: building one compiles a
    /// template environment, so it is kept while the scope stays the same.
    views: parking_lot::Mutex<std::collections::HashMap<Arc<str>, Arc<View>>>,
}

/// What health says about the link to Home Assistant.
#[derive(Clone, Debug)]
pub struct Link {
    /// Whether a Home Assistant is configured at all.
    pub configured: bool,
    /// Over TLS: `verified`, or `unverified` with `HA_TLS_VERIFY=false`.
    pub tls: Option<&'static str>,
    /// With nothing from HA for this long, health reports stale.
    pub cache_max_age: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            configured: false,
            tls: None,
            cache_max_age: Duration::from_secs(300),
        }
    }
}

/// A started engine and what its owner stops at shutdown.
pub struct Started {
    /// The handle the doors share.
    pub engine: Engine,
    /// Feeds the store; flushed at shutdown, and tests inject changes with it.
    pub writer: WriterHandle,
    /// Background tasks, ending when the shutdown token is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Builds every part from `settings` over `store` and starts what keeps
    /// it current until `shutdown`: the one place the parts are wired, in
    /// the order they depend on each other.
    pub async fn start(
        settings: &Settings,
        store: SharedStore,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Started> {
        Self::start_with(settings, store, shutdown, true).await
    }

    /// As [`start`](Self::start) with no Home Assistant, whatever the
    /// settings say, and no word about it: `check` reads definitions only.
    pub async fn start_offline(
        settings: &Settings,
        store: SharedStore,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Started> {
        Self::start_with(settings, store, shutdown, false).await
    }

    async fn start_with(
        settings: &Settings,
        store: SharedStore,
        shutdown: &CancellationToken,
        with_ha: bool,
    ) -> anyhow::Result<Started> {
        crate::telemetry::prometheus();
        let (writer, writer_task) = Writer::spawn(store.clone(), settings.cache_mode());
        let mut tasks = vec![
            writer_task,
            every_blocking(
                crate::memory::TRIM_EVERY,
                shutdown.clone(),
                crate::memory::trim,
            ),
            every_blocking(
                crate::telemetry::METRICS_UPKEEP_EVERY,
                shutdown.clone(),
                crate::telemetry::metrics_upkeep,
            ),
        ];
        let (fallback, link, calls) = match with_ha {
            true => mirror(settings, &writer, shutdown, &mut tasks)?,
            false => (None, Link::default(), crate::ha::Calls::none()),
        };
        let states = StateManager::new(store, fallback)
            .with_feed(writer.feed().clone())
            .with_writer_stats(writer.stats.clone());
        let registry = Registry::open(settings.database_url.as_ref(), &settings.fetchers_dir)
            .await
            .context("DATABASE_URL is set but cannot be used (the shipped files are not served in its place); fix it or unset it")?;
        tasks.push(registry.spawn_reloader(settings.reload_interval, shutdown.clone()));
        // Templates read MySQL through the fetcher registry's pool: one pool per process.
        let pool = registry.pool().cloned();
        // Process-wide, as the memory it bounds is.
        crate::bounds::set_total(settings.render_memory_total);
        crate::fetchers::sources::past::set_max_window(settings.history_max_window);
        let fetchers = Runner::new(registry, states.clone())
            .with_render_memory(settings.render_memory_limit)
            .with_sql(crate::fetchers::sql::Database::of(settings)?)
            .with_ha(calls);
        let renderer = Arc::new(
            Renderer::new(states.clone(), Arc::new(fetchers.clone()))
                .with_limits(crate::bounds::Limits::of(settings)),
        );
        let prompts = open_prompts(settings, pool, renderer, shutdown, &mut tasks).await?;
        let stream = Hub::new(writer.feed().clone(), settings.events_buffer as usize);
        tasks.push(stream.spawn(
            writer.stats.clone(),
            fetchers.clone(),
            prompts.clone(),
            shutdown.clone(),
        ));
        let engine = Self::from_parts(states, fetchers, prompts, stream, link);
        Ok(Started {
            engine,
            writer,
            tasks,
        })
    }

    /// An engine over parts built by the caller: router tests that need one
    /// part changed (a faulty store, fixed templates) start from here.
    pub fn from_parts(
        states: StateManager,
        fetchers: Runner,
        prompts: Arc<Prompts>,
        stream: Hub,
        link: Link,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                states,
                fetchers,
                prompts,
                stream,
                link,
                views: Default::default(),
            }),
            view: None,
        }
    }

    /// An engine over `fetchers` (and its states) with no templates, no HA
    /// and nothing started: what router tests over a fixed store start from.
    pub fn over(fetchers: Runner) -> Self {
        let states = fetchers.states().clone();
        let renderer = Arc::new(Renderer::new(states.clone(), Arc::new(fetchers.clone())));
        let stream = Hub::new(states.feed().clone(), 10_000);
        let prompts = Arc::new(Prompts::new(renderer, Vec::new()));
        Self::from_parts(states, fetchers, prompts, stream, Link::default())
    }

    /// The same engine as `scope` sees it: every read, fetcher run and
    /// render through it answers as if the entities outside the scope did
    /// not exist. Doors take the scope from the caller's token and use only
    /// the engine they get back.
    pub fn scoped(&self, scope: Arc<Scope>) -> Engine {
        let mut views = self.inner.views.lock();
        let view = match views.get(&scope.name) {
            Some(v) if Arc::ptr_eq(&v.scope, &scope) => v.clone(),
            _ => {
                if views.len() >= MAX_VIEWS {
                    views.clear();
                }
                let states = self.inner.states.scoped(scope.clone());
                let fetchers = self.inner.fetchers.scoped(states.clone());
                let renderer = self
                    .inner
                    .prompts
                    .renderer()
                    .scoped(states.clone(), Arc::new(fetchers.clone()));
                let v = Arc::new(View {
                    scope: scope.clone(),
                    states,
                    fetchers,
                    renderer: Arc::new(renderer),
                });
                views.insert(scope.name.clone(), v.clone());
                v
            }
        };
        Engine {
            inner: self.inner.clone(),
            view: Some(view),
        }
    }

    /// The scope this engine answers for; `None`: everything (the admin).
    pub fn scope(&self) -> Option<&Arc<Scope>> {
        self.view.as_ref().map(|v| &v.scope)
    }

    /// Reads of the mirrored states.
    pub fn states(&self) -> &StateManager {
        match &self.view {
            Some(v) => &v.states,
            None => &self.inner.states,
        }
    }

    /// The data fetchers: list, get, run.
    pub fn fetchers(&self) -> &Runner {
        match &self.view {
            Some(v) => &v.fetchers,
            None => &self.inner.fetchers,
        }
    }

    /// Whether this engine's scope may render the prompt `name`.
    pub fn prompt_allowed(&self, name: &str) -> bool {
        self.scope().is_none_or(|s| s.allows_prompt(name))
    }

    /// The prompt templates: list, get, render.
    pub fn prompts(&self) -> &Arc<Prompts> {
        &self.inner.prompts
    }

    /// The stored templates this engine's scope may use, sorted by name:
    /// what every door lists.
    pub fn prompt_list(&self) -> Vec<prompt::PromptTemplate> {
        let mut list = self.inner.prompts.list();
        list.retain(|t| self.prompt_allowed(&t.name));
        list
    }

    /// The change stream: subscribe, activity.
    pub fn stream(&self) -> &Hub {
        &self.inner.stream
    }

    /// How Home Assistant is reached.
    pub fn link(&self) -> &Link {
        &self.inner.link
    }

    /// Runs one fetcher.
    pub async fn run(&self, req: FetchRequest) -> FetchOutcome {
        self.fetchers().run(req).await
    }

    /// Runs several fetchers at once; outcomes come back in request order.
    pub async fn run_many(&self, reqs: Vec<FetchRequest>) -> Vec<FetchOutcome> {
        self.fetchers().run_many(reqs).await
    }

    /// The fetcher `name`, if it loaded.
    pub fn fetcher(&self, name: &str) -> Option<Arc<Definition>> {
        self.fetchers().get(name)
    }

    /// Renders the stored, enabled template `name`.
    pub async fn render(&self, name: &str, opts: RenderOptions) -> Result<Rendered, RenderError> {
        match &self.view {
            Some(_) if !self.prompt_allowed(name) => Err(RenderError::NotFound(name.to_string())),
            Some(v) => {
                self.inner
                    .prompts
                    .render_with(&v.renderer, name, opts)
                    .await
            }
            None => self.inner.prompts.render(name, opts).await,
        }
    }

    /// Renders a body that is not stored: an author's preview.
    pub async fn render_inline(
        &self,
        body: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, RenderError> {
        match &self.view {
            Some(v) => {
                v.renderer
                    .render_source(prompt::INLINE_NAME, body, opts)
                    .await
            }
            None => self.inner.prompts.render_inline(body, opts).await,
        }
    }

    /// Follows the change stream, resuming after `last_event_id` when the
    /// buffer still holds it.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        self.inner.stream.subscribe(last_event_id)
    }

    /// The fetchers' and the templates' revisions, woken when either changes:
    /// what a door that lists them waits on instead of polling.
    pub fn revisions(&self) -> (watch::Receiver<u64>, watch::Receiver<u64>) {
        (self.inner.fetchers.watch(), self.inner.prompts.watch())
    }
}

/// What mirroring HA gives the engine: the REST fallback for misses, the
/// link's settings for health, and calls over the link for fetchers.
type Mirrored = (Option<Arc<dyn Fallback>>, Link, crate::ha::Calls);

/// The HA session and REST fallback the settings ask for, started; none
/// without a Home Assistant.
fn mirror(
    settings: &Settings,
    writer: &WriterHandle,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Mirrored> {
    let mut link = Link {
        cache_max_age: settings.cache_max_age,
        ..Link::default()
    };
    let Some(ha) = settings.home_assistant()? else {
        tracing::warn!("HA_URL is not set: no Home Assistant to mirror");
        return Ok((None, link, crate::ha::Calls::none()));
    };
    let tls = crate::tls::client_config(&ha.trust).context("HA_CA_FILE")?;
    let fallback: Arc<dyn Fallback> = Arc::new(HaRest::with_tls(
        ha.rest.clone(),
        ha.token.clone(),
        settings.ha_rest_timeout,
        Some(tls.clone()),
    ));
    tracing::info!(url = %crate::config::redacted(&ha.ws), via = ha.via, "Home Assistant");
    let cfg = SessionConfig {
        url: ha.ws.clone(),
        token: ha.token.clone(),
        tls: Some(tls),
        max_frame: settings.ha_max_frame_bytes,
        heartbeat: settings.ha_heartbeat.then_some((
            settings.ha_heartbeat_interval,
            settings.ha_heartbeat_timeout,
        )),
        reconnect_min: settings.ha_reconnect_min,
        reconnect_max: settings.ha_reconnect_max,
        reconcile: (!settings.reconcile_interval.is_zero()).then_some(settings.reconcile_interval),
    };
    let session = Session::new(cfg, writer.clone(), shutdown.clone());
    let calls = session.calls();
    tasks.push(tokio::spawn(session.run()));
    link.configured = true;
    let secure = matches!(ha.ws.scheme(), "wss" | "https");
    link.tls = secure.then_some(if ha.trust.skip_verify {
        "unverified"
    } else {
        "verified"
    });
    Ok((Some(fallback), link, calls))
}

/// Templates from MySQL (reloaded on an interval) when DATABASE_URL is set, else from files.
/// MySQL down at start is not fatal: the shipped files serve until it answers,
/// as the fetcher registry does.
async fn open_prompts(
    settings: &Settings,
    pool: Option<sqlx::MySqlPool>,
    renderer: Arc<Renderer>,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Arc<Prompts>> {
    let dir = settings.fetchers_dir.join(prompt::PROMPTS_SUBDIR);
    let from_files = || prompt::load_dir(&dir).context("FETCHERS_DIR: prompt templates");
    let Some(pool) = pool else {
        return Ok(Arc::new(Prompts::new(renderer, from_files()?)));
    };
    let templates = match prompt::load_db(&pool).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "MySQL unavailable: serving prompt templates from files until it answers");
            from_files()?
        }
    };
    let prompts = Arc::new(Prompts::new(renderer, templates));
    tasks.push(prompts.spawn_reload(pool, settings.reload_interval, shutdown.clone()));
    Ok(prompts)
}
