//! A simulated Home Assistant with the real `Application` against it, on the
//! store a test chooses (memory, or Redis with a random prefix).

use std::sync::Arc;
use std::time::Duration;

use ha_fetchers::engine::Engine;
use ha_fetchers::sim::Sim;
use ha_fetchers::state::{EntityState, MemoryStore, RedisStore, SharedStore, WriterHandle};
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::services::redis_url;
use super::wait::wait_for;

/// The token the simulated HA accepts.
pub const TOKEN: &str = "sim-token";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redis,
}

/// The store of a test, with direct access to Redis when it is one.
pub struct TestStore {
    /// What the application gets.
    pub shared: SharedStore,
    /// The same store, typed, for `redis_ids` and friends.
    pub redis: Option<Arc<RedisStore>>,
    /// The random key prefix, deleted at the end.
    pub prefix: Option<String>,
}

impl TestStore {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Memory => Self {
                shared: Arc::new(MemoryStore::new()),
                redis: None,
                prefix: None,
            },
            Kind::Redis => {
                let prefix = format!("test:{:016x}:", rand::random::<u64>());
                let store = Arc::new(
                    RedisStore::connect(&redis_url(), &prefix)
                        .await
                        .expect("Redis must run at REDIS_TEST_URL (default 127.0.0.1:6379)"),
                );
                Self {
                    shared: store.clone(),
                    redis: Some(store),
                    prefix: Some(prefix),
                }
            }
        }
    }
}

impl Drop for TestStore {
    /// Deletes the test's Redis keys even when the test panicked.
    fn drop(&mut self) {
        if let Some(prefix) = self.prefix.take() {
            // A plain thread with a blocking client: Drop cannot await.
            let _ = std::thread::spawn(move || delete_prefix_blocking(&prefix)).join();
        }
    }
}

/// Settings pointing at the sim, with fast reconnects and a free port.
pub fn settings(sim: &Sim) -> Settings {
    let mut s = Settings::embedded();
    s.ha_url = Some(sim.url());
    s.ha_token = Some(SecretString::from(TOKEN));
    s.bind = "127.0.0.1:0".parse().expect("a literal address");
    s.ha_reconnect_min = Duration::from_millis(20);
    s.ha_reconnect_max = Duration::from_millis(200);
    s.ha_rest_timeout = Duration::from_secs(2);
    s
}

/// A running application and the sim it mirrors.
pub struct Harness {
    /// The simulated Home Assistant.
    pub sim: Sim,
    /// The application's engine (states, fetchers, templates, stream).
    pub engine: Engine,
    /// The application's writer, for `flush`.
    pub writer: WriterHandle,
    /// `http://127.0.0.1:{port}` of the application's API.
    pub base: String,
    /// HTTP client for the API.
    pub http: reqwest::Client,
    /// The store in use.
    pub store: TestStore,
    /// Stops the application.
    stop: CancellationToken,
}

impl Harness {
    /// A sim with the demo house and the app on the given store.
    pub async fn start(kind: Kind) -> Self {
        let sim = Sim::start_demo(TOKEN).await.expect("sim binds");
        let s = settings(&sim);
        Self::start_with(sim, s, TestStore::new(kind).await).await
    }

    /// As [`start`](Self::start) with the caller's sim, settings and store.
    pub async fn start_with(sim: Sim, settings: Settings, store: TestStore) -> Self {
        let app = Application::build_with_store(settings, store.shared.clone())
            .await
            .expect("application builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let engine = app.engine().clone();
        let writer = app.writer().clone();
        let stop = app.shutdown_token();
        tokio::spawn(async move {
            if let Err(e) = app.run_until_stopped().await {
                panic!("application failed: {e:#}");
            }
        });
        Self {
            sim,
            engine,
            writer,
            base,
            http: reqwest::Client::new(),
            store,
            stop,
        }
    }

    /// The cached state of one entity (no REST fallback).
    pub fn cached(&self, id: &str) -> Option<EntityState> {
        self.engine.states().cached(id)
    }

    /// The cached state string of one entity.
    pub fn cached_state(&self, id: &str) -> Option<String> {
        self.cached(id).map(|s| s.state.to_string())
    }

    /// Whether the cache knows the entity at all (with or without a state).
    pub fn known(&self, id: &str) -> bool {
        let mut known = false;
        self.engine
            .states()
            .store()
            .read(&mut |ix| known = ix.get(id).is_some());
        known
    }

    /// Waits until the first snapshot is in.
    pub async fn synced(&self) {
        let n = self.sim.ids().len();
        wait_for("the first snapshot", || {
            self.engine.states().summary().entity_count >= n
                && self.engine.states().meta().connected
        })
        .await;
        self.writer.flush().await;
    }

    /// Waits until the cache holds `state` for `id`, then flushes.
    pub async fn wait_state(&self, id: &str, state: &str) {
        wait_for(&format!("{id} to be {state}"), || {
            self.cached_state(id).as_deref() == Some(state)
        })
        .await;
        self.writer.flush().await;
    }

    /// GET a path of the API: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("API answers");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// GET a path of the API as JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, v)
    }

    /// Redis's view (ids, a state, meta) when the store is Redis.
    pub fn redis(&self) -> Option<&RedisStore> {
        self.store.redis.as_deref()
    }

    /// Checks Redis holds exactly the sim's entities with HA's bytes.
    pub async fn assert_redis_matches_sim(&self) {
        let Some(r) = self.redis() else { return };
        self.writer.flush().await;
        let mut ids: Vec<String> = r.redis_ids().await.expect("redis").into_iter().collect();
        ids.sort();
        assert_eq!(ids, self.sim.ids(), "Redis entity set");
        for id in &ids {
            assert_eq!(
                r.redis_state(id).await.expect("redis"),
                self.sim.state(id),
                "Redis state of {id}"
            );
        }
    }

    /// Stops the app and the sim; dropping the store deletes the test's Redis keys.
    pub async fn finish(self) {
        self.stop.cancel();
        self.sim.stop();
    }
}

/// Deletes every Redis key under `prefix` (a random hex prefix, so no glob escaping is needed).
fn delete_prefix_blocking(prefix: &str) {
    let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(&keys).query(&mut conn);
    }
}

/// Runs a case once per store: `both!(case_fn, memory_name, redis_name);`
macro_rules! both {
    ($case:ident, $mem:ident, $redis:ident) => {
        #[tokio::test]
        async fn $mem() {
            $case($crate::helpers::Kind::Memory).await
        }
        #[tokio::test]
        async fn $redis() {
            $case($crate::helpers::Kind::Redis).await
        }
    };
}
pub(crate) use both;
