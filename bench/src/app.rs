//! The app under test: the real `Application` with a Redis store under a
//! fresh key prefix, mirroring the project's simulated HA (`ha_fetchers::sim`)
//! seeded with the bench's house.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ha_fetchers::engine::Engine;
use ha_fetchers::sim::{self, Sim};
use ha_fetchers::state::{RedisStore, WriterHandle};
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

#[cfg(doc)]
use super::house::House;
use super::refs::delete_prefix;

/// The token the fake HA accepts.
pub const TOKEN: &str = "bench-token";

/// The fake HA: the simulated HA on a free loopback port, holding `snapshot`
/// (a house's [`House::snapshot_json`]). The bench sends events with
/// [`Sim::send_frames`], prebuilt before the clock starts, and reads its REST
/// counter and milestone instants ([`Sim::marks`]).
pub async fn fake_ha(snapshot: &str) -> anyhow::Result<Sim> {
    let seed = sim::House::from_json(snapshot)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(Sim::start(listener, seed, TOKEN)?)
}

/// The Redis the app writes to (db 0, under a per-run prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// How long to wait for a snapshot before giving up.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);
/// How often the snapshot's completion is polled: well under a millisecond of error.
const RESYNC_POLL: Duration = Duration::from_micros(200);
/// How long the app may take to drain at shutdown.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A running app.
pub struct Running {
    /// The engine: the `StateManager` and its counters.
    pub engine: Engine,
    /// The writer, for stats and flush.
    pub writer: WriterHandle,
    /// The HTTP port.
    pub port: u16,
    /// The store, to check Redis holds what the mirror says.
    pub store: Arc<RedisStore>,
    /// The key prefix, removed at the end.
    pub prefix: String,
    /// Stops the app.
    stop: CancellationToken,
    /// The serving task.
    task: tokio::task::JoinHandle<()>,
}

/// A unique Redis prefix for one app run.
pub fn fresh_prefix(tag: &str) -> String {
    format!(
        "bench:{}:{tag}:{}:",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Running {
    /// Builds and serves an app that mirrors `fake`.
    pub async fn start(fake: &Sim, tag: &str) -> anyhow::Result<Self> {
        Self::start_with(fake, tag, |_| {}).await
    }

    /// As [`start`](Self::start), with `tune` changing the settings last.
    pub async fn start_with(
        fake: &Sim,
        tag: &str,
        tune: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        let prefix = fresh_prefix(tag);
        let mut s = Settings::embedded();
        s.ha_url = Some(fake.url());
        s.ha_token = Some(SecretString::from(TOKEN));
        s.redis_url = Some(SecretString::from(REDIS_URL));
        s.redis_prefix = prefix.clone();
        tune(&mut s);
        let store = Arc::new(
            RedisStore::connect(REDIS_URL, &prefix)
                .await
                .context("Redis at 127.0.0.1:6379")?,
        );
        let app = Application::build_with_store(s, store.clone()).await?;
        let engine = app.engine().clone();
        let writer = app.writer().clone();
        let port = app.port();
        let stop = app.shutdown_token();
        let task = tokio::spawn(async move {
            if let Err(e) = app.run_until_stopped().await {
                eprintln!("app under test failed: {e:#}");
            }
        });
        Ok(Self {
            engine,
            writer,
            port,
            store,
            prefix,
            stop,
            task,
        })
    }

    /// Waits until a snapshot is applied; returns when it was seen.
    pub async fn wait_resync(&self, n: u64) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        while self.writer.stats.resyncs.load(Ordering::Relaxed) < n {
            anyhow::ensure!(Instant::now() < deadline, "no snapshot applied in time");
            tokio::time::sleep(RESYNC_POLL).await;
        }
        Ok(Instant::now())
    }

    /// Stops the app and removes its keys.
    pub async fn stop(self) {
        let Self {
            engine,
            writer,
            store,
            prefix,
            stop,
            task,
            ..
        } = self;
        // The writer ends (and writes its last meta) only when every handle is gone.
        drop((engine, writer, store));
        stop.cancel();
        let _ = tokio::time::timeout(STOP_LIMIT, task).await;
        let _ = delete_prefix(REDIS_URL, &prefix).await;
    }
}
