//! `Application`: wires the pipe together, binds its listener, and runs until shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::fetchers::{Engine, Registry};
use crate::ha::{HaRest, Session, SessionConfig};
use crate::periodic::every_blocking;
use crate::prompt::{self, Prompts, Renderer};
use crate::state::{
    Fallback, MemoryStore, RedisStore, SharedStore, StateManager, Writer, WriterHandle,
};

/// A built service, listening but not yet serving.
pub struct Application {
    /// The bound listener; port 0 in settings picks a free port.
    listener: TcpListener,
    /// Shared handler state.
    state: AppState,
    /// Feeds the store; tests use it to inject changes and to flush.
    writer: WriterHandle,
    /// The one shutdown signal every task watches.
    shutdown: CancellationToken,
    /// Background tasks to wait for at shutdown.
    tasks: Vec<JoinHandle<()>>,
    /// From shutdown to `run_until_stopped` returning, whatever clients do.
    shutdown_deadline: Duration,
    /// The `Host` names `/mcp` answers to (empty: any).
    mcp_hosts: Vec<String>,
    /// `/mcp` sessions kept at once.
    mcp_max_sessions: usize,
}

/// The longest a shutdown takes, from the signal to `run_until_stopped`
/// returning: slow clients holding connections open cannot keep the process
/// alive (ten of them kept it up 31 s), and orchestrators kill at 10 s or later.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The part of the shutdown deadline kept for flushing cache writes and
/// stopping background tasks once the connections are closed.
const CLEANUP_RESERVE: Duration = Duration::from_secs(2);

/// Opens the store the settings ask for.
pub async fn open_store(settings: &Settings) -> anyhow::Result<SharedStore> {
    Ok(match settings.redis_url() {
        Some(url) => {
            let trust = crate::tls::Trust {
                ca_file: settings.redis_ca_file.clone(),
                skip_verify: !settings.redis_tls_verify,
            };
            let store = RedisStore::connect_with(url, &settings.redis_prefix, &trust)
                .await
                .map_err(|e| match crate::tls::describe(&e) {
                    Some(why) => anyhow::anyhow!("{why}"),
                    None => anyhow::Error::new(e),
                })
                .context("REDIS_URL: could not connect to Redis")?;
            Arc::new(store)
        }
        None => Arc::new(MemoryStore::new()),
    })
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

impl Application {
    /// Builds every part from settings and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let store = open_store(&settings).await?;
        Self::build_with_store(settings, store).await
    }

    /// As [`build`](Self::build), with a store made by the caller (tests inject faulty ones).
    /// The one place the parts are wired, in the order they depend on each
    /// other; splitting it would hide that order.
    pub async fn build_with_store(settings: Settings, store: SharedStore) -> anyhow::Result<Self> {
        crate::telemetry::prometheus();
        let shutdown = CancellationToken::new();
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

        let ha = settings.home_assistant()?;
        let mut fallback: Option<Arc<dyn Fallback>> = None;
        if let Some(link) = &ha {
            let tls = crate::tls::client_config(&link.trust).context("HA_CA_FILE")?;
            fallback = Some(Arc::new(HaRest::with_tls(
                link.rest.clone(),
                link.token.clone(),
                settings.ha_rest_timeout,
                Some(tls.clone()),
            )));
            tracing::info!(url = %crate::config::redacted(&link.ws), via = link.via, "Home Assistant");
            let cfg = SessionConfig {
                url: link.ws.clone(),
                token: link.token.clone(),
                tls: Some(tls),
                max_frame: settings.ha_max_frame_bytes,
                heartbeat: settings.ha_heartbeat.then_some((
                    settings.ha_heartbeat_interval,
                    settings.ha_heartbeat_timeout,
                )),
                reconnect_min: settings.ha_reconnect_min,
                reconnect_max: settings.ha_reconnect_max,
                reconcile: (!settings.reconcile_interval.is_zero())
                    .then_some(settings.reconcile_interval),
            };
            let session = Session::new(cfg, writer.clone(), shutdown.clone());
            tasks.push(tokio::spawn(session.run()));
        } else {
            tracing::warn!("HA_URL is not set: no Home Assistant to mirror");
        }

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
        let fetchers = Engine::new(registry, states.clone())
            .with_render_memory(settings.render_memory_limit)
            .with_sql(settings.sql_database()?);
        let renderer = Arc::new(
            Renderer::new(states.clone(), Arc::new(fetchers.clone()))
                .with_limits(settings.render_limits()),
        );
        let prompts = open_prompts(&settings, pool, renderer, &shutdown, &mut tasks).await?;
        let stream =
            crate::stream::Hub::new(writer.feed().clone(), settings.events_buffer as usize);
        tasks.push(stream.spawn(
            writer.stats.clone(),
            fetchers.clone(),
            prompts.clone(),
            shutdown.clone(),
        ));
        let state = AppState {
            stream,
            sessions: Arc::default(),
            fetchers,
            prompts,
            states,
            ha_configured: ha.is_some(),
            ha_tls: ha.as_ref().and_then(|l| {
                let secure = matches!(l.ws.scheme(), "wss" | "https");
                secure.then_some(if l.trust.skip_verify {
                    "unverified"
                } else {
                    "verified"
                })
            }),
            cache_max_age: settings.cache_max_age,
            api_token: settings.api_token.clone().map(Arc::new),
            limits: api::Limits::from_settings(&settings),
        };
        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("BIND: could not listen on {}", settings.bind))?;
        Ok(Self {
            listener,
            state,
            writer,
            shutdown,
            tasks,
            shutdown_deadline: SHUTDOWN_DEADLINE,
            mcp_hosts: crate::api::allowed_hosts(&settings),
            mcp_max_sessions: settings.mcp_max_sessions as usize,
        })
    }

    /// Replaces [`SHUTDOWN_DEADLINE`], so tests can check the deadline holds
    /// without waiting the full 10 s.
    pub fn with_shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    /// Cancel it to stop everything.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: in-flight
    /// requests finish, the WebSocket closes, and pending cache writes land;
    /// all within the shutdown deadline, after which what is left is dropped.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            writer,
            shutdown,
            tasks,
            shutdown_deadline,
            mcp_hosts,
            mcp_max_sessions,
        } = self;
        let limits = state.limits.clone();
        let reserve = CLEANUP_RESERVE.min(shutdown_deadline / 2);
        let doors = crate::mcp::router(
            Arc::new(state.clone()),
            mcp_hosts,
            mcp_max_sessions,
            shutdown.clone(),
        )
        .merge(crate::console::router());
        let began = api::serve(
            listener,
            api::router_with(state, doors),
            &limits,
            shutdown.clone(),
            shutdown_deadline - reserve,
        )
        .await;
        let deadline = began + shutdown_deadline;
        shutdown.cancel();
        if tokio::time::timeout_at(deadline, writer.flush())
            .await
            .is_err()
        {
            tracing::warn!("Pending cache writes did not land before the shutdown deadline");
        }
        drop(writer);
        for t in tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        Ok(())
    }
}
