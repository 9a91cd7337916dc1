//! `Application`: the engine behind the HTTP doors (REST, `/mcp`, the
//! console), its listener bound, running until shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::engine::{Engine, Started};
use crate::state::{MemoryStore, RedisStore, SharedStore, WriterHandle};

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

impl Application {
    /// Builds every part from settings and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let store = open_store(&settings).await?;
        Self::build_with_store(settings, store).await
    }

    /// As [`build`](Self::build), with a store made by the caller (tests inject faulty ones).
    pub async fn build_with_store(settings: Settings, store: SharedStore) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let Started {
            engine,
            writer,
            tasks,
        } = Engine::start(&settings, store, &shutdown).await?;
        let tokens = Arc::new(crate::tokens::Tokens::default());
        let backend =
            crate::tokens::backend(&settings, engine.fetchers().registry().pool().cloned());
        let reload = crate::tokens::spawn_reload(
            backend,
            tokens.clone(),
            settings.reload_interval,
            shutdown.clone(),
        );
        let mut tasks = tasks;
        tasks.push(reload.await);
        if !tokens.is_empty() && settings.api_token.is_none() {
            tracing::warn!(
                tokens = tokens.len(),
                "Scoped API tokens exist but API_TOKEN is not set: callers without a token see everything; set API_TOKEN"
            );
        }
        let state = AppState {
            engine,
            tokens,
            sessions: Arc::default(),
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

    /// The engine the doors share.
    pub fn engine(&self) -> &Engine {
        &self.state.engine
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
            state.engine.clone(),
            limits.max_body_bytes,
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
