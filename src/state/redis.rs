//! The Redis store: the shared cache other processes read, and what survives our restart.
//!
//! Layout under the prefix `P` (default `ha:`):
//! - `P state:{entity_id}`: the state's JSON text as HA sent it;
//! - `P domain:{domain}`: a set of entity ids;
//! - `P entities`: a set of every entity id;
//! - `P meta`: a hash of link facts (see [`Meta`]);
//! - `P registry:{area|entity|device}`: HA's registry list as the JSON text it sent;
//! - `P alive`: a marker written with the rest; when it is gone, Redis lost
//!   its data (see [`MARKER_KEY`]).
//!
//! Reads come from an in-process mirror kept in step with every write, so a
//! read never waits on Redis. A write goes to Redis first and reaches the
//! mirror only when Redis took it, so the two never disagree.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::{
    domain_of, EntityState, Index, MemoryStore, Meta, RegistryKind, Store, StoreError, Upserted,
};

/// How long one Redis command may take before we call Redis down.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Commands per pipeline when writing a snapshot, to bound one round trip's size.
const SNAPSHOT_CHUNK: usize = 2000;
/// The marker key (under the prefix). Checked once a second: a Redis that
/// restarted without persistence, was flushed or failed over to an empty
/// replica has lost it, even when nothing is being written.
pub const MARKER_KEY: &str = "alive";

/// A store backed by Redis with an in-process mirror for reads.
pub struct RedisStore {
    /// Multiplexed, self-reconnecting connection.
    conn: ConnectionManager,
    /// Key prefix, so several homes or test runs share one Redis.
    prefix: String,
    /// The read path, equal to what Redis holds.
    mirror: MemoryStore,
    /// Set when a write failed, so Redis may lack changes the mirror has.
    dirty: AtomicBool,
    /// Rewrites done, for health.
    rewrites: parking_lot::Mutex<super::Rewrites>,
}

impl RedisStore {
    /// Connects and loads the mirror from what Redis already holds.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, prefix, &crate::tls::Trust::default()).await
    }

    /// As [`connect`](Self::connect); a `rediss://` URL is checked against
    /// `trust` (a CA file, or no check at all when it says so).
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        trust: &crate::tls::Trust,
    ) -> Result<Self, StoreError> {
        crate::tls::install_provider();
        let client = match (&trust.ca_file, trust.skip_verify) {
            (_, true) => redis::Client::open(format!("{url}#insecure"))?,
            (Some(path), false) => {
                let root_cert = std::fs::read(path).map_err(redis::RedisError::from)?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url, certs)?
            }
            (None, false) => redis::Client::open(url)?,
        };
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(REDIS_RESPONSE_TIMEOUT)
            .set_connection_timeout(REDIS_CONNECT_TIMEOUT)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        let store = Self {
            conn,
            prefix: prefix.to_string(),
            mirror: MemoryStore::new(),
            dirty: AtomicBool::new(false),
            rewrites: Default::default(),
        };
        store.load().await?;
        store.mark().await?;
        Ok(store)
    }

    fn key(&self, part: &str) -> String {
        format!("{}{}", self.prefix, part)
    }

    fn state_key(&self, id: &str) -> String {
        format!("{}state:{}", self.prefix, id)
    }

    fn domain_key(&self, id: &str) -> String {
        format!("{}domain:{}", self.prefix, domain_of(id))
    }

    /// Rebuilds the mirror from Redis, so a restart serves the last known house at once.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn.smembers(self.key("entities")).await?;
        let mut states = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(SNAPSHOT_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.state_key(id)).collect();
            let raws: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            for (id, raw) in chunk.iter().zip(raws) {
                match raw.map(|r| EntityState::from_raw(&r)) {
                    Some(Ok(s)) => states.push(s),
                    Some(Err(e)) => {
                        tracing::warn!(entity_id = %id, error = %e, "Skipping unreadable state in Redis")
                    }
                    None => {}
                }
            }
        }
        let n = states.len();
        for kind in RegistryKind::ALL {
            let raw: Option<String> = conn.get(self.registry_key(kind)).await?;
            if let Some(raw) = raw {
                if let Err(e) = self.mirror.set_registry(kind, raw.into()).await {
                    tracing::warn!(error = %e, "Skipping an unreadable registry in Redis");
                }
            }
        }
        let mut ix = self.mirror.index().write();
        ix.replace_all(states);
        for id in &ids {
            if ix.get(id).is_none() {
                ix.invalidate(id);
            }
        }
        Ok(n)
    }

    /// Writes the marker whose absence means Redis lost its data.
    async fn mark(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.set::<_, _, ()>(self.key(MARKER_KEY), 1).await?;
        Ok(())
    }

    /// Whether Redis still holds the marker.
    async fn marked(&self) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.key(MARKER_KEY)).await?)
    }

    fn registry_key(&self, kind: RegistryKind) -> String {
        format!("{}registry:{}", self.prefix, kind.name())
    }

    /// Every entity id Redis knows.
    #[cfg(feature = "test-support")]
    pub async fn redis_ids(&self) -> Result<HashSet<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.smembers(self.key("entities")).await?)
    }

    /// The raw JSON Redis holds for one entity (tests and the bench).
    #[cfg(feature = "test-support")]
    pub async fn redis_state(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.state_key(id)).await?)
    }

    /// The meta hash as Redis holds it.
    #[cfg(feature = "test-support")]
    pub async fn redis_meta(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(self.key("meta")).await?)
    }

    /// Runs a pipeline; a failure marks Redis as needing a repair.
    async fn exec(&self, pipe: &redis::Pipeline) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let res = pipe.query_async::<()>(&mut conn).await;
        if res.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok(res?)
    }

    fn push_set(&self, pipe: &mut redis::Pipeline, s: &EntityState, new: bool) {
        pipe.set(self.state_key(&s.entity_id), &*s.raw).ignore();
        if new {
            pipe.sadd(self.key("entities"), &*s.entity_id).ignore();
            pipe.sadd(self.domain_key(&s.entity_id), &*s.entity_id)
                .ignore();
        }
    }

    /// Makes Redis hold exactly `states` plus the known-but-invalidated `invalid` ids.
    /// Everything is written before anything is removed, so Redis readers never
    /// see a half-empty cache; the removals go in one `MULTI`.
    async fn write_all(
        &self,
        states: &[EntityState],
        invalid: &[Arc<str>],
    ) -> Result<(), StoreError> {
        for chunk in states.chunks(SNAPSHOT_CHUNK) {
            let mut pipe = redis::pipe();
            for s in chunk {
                self.push_set(&mut pipe, s, true);
            }
            self.exec(&pipe).await?;
        }
        let mut keep: HashSet<&str> = states.iter().map(|s| &*s.entity_id).collect();
        keep.extend(invalid.iter().map(|id| &**id));
        let mut conn = self.conn.clone();
        let known: HashSet<String> =
            conn.smembers(self.key("entities")).await.inspect_err(|_| {
                self.dirty.store(true, Ordering::Relaxed);
            })?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for id in known.iter().filter(|id| !keep.contains(id.as_str())) {
            self.push_remove(&mut pipe, id);
        }
        for id in invalid {
            pipe.unlink(self.state_key(id)).ignore();
            pipe.sadd(self.key("entities"), &**id).ignore();
            pipe.sadd(self.domain_key(id), &**id).ignore();
        }
        self.exec(&pipe).await
    }

    fn push_remove(&self, pipe: &mut redis::Pipeline, id: &str) {
        pipe.unlink(self.state_key(id)).ignore();
        pipe.srem(self.key("entities"), id).ignore();
        pipe.srem(self.domain_key(id), id).ignore();
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn read(&self, f: &mut dyn FnMut(&Index)) {
        self.mirror.read(f)
    }

    async fn upsert(
        &self,
        states: Vec<EntityState>,
    ) -> Result<Vec<(EntityState, Upserted)>, StoreError> {
        let mut pipe = redis::pipe();
        let mut any = false;
        self.mirror.read(&mut |ix| {
            for s in &states {
                if ix.holds_newer(&s.entity_id, s.last_updated) {
                    continue;
                }
                match ix.get(&s.entity_id) {
                    Some(Some(old)) if old.raw == s.raw => {}
                    known => {
                        self.push_set(&mut pipe, s, known.is_none());
                        any = true;
                    }
                }
            }
        });
        if any {
            self.exec(&pipe).await?;
        }
        self.mirror.upsert(states).await
    }

    async fn remove(&self, ids: &[(Arc<str>, i64)]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        self.mirror.read(&mut |ix| {
            for (id, at) in ids {
                if !(*at > 0 && ix.holds_newer(id, *at)) {
                    self.push_remove(&mut pipe, id);
                }
            }
        });
        self.exec(&pipe).await?;
        self.mirror.remove(ids).await
    }

    async fn invalidate(&self, ids: &[Arc<str>]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.unlink(self.state_key(id)).ignore();
            pipe.sadd(self.key("entities"), &**id).ignore();
            pipe.sadd(self.domain_key(id), &**id).ignore();
        }
        let res = self.exec(&pipe).await;
        // The mirror forgets the state even when Redis is down: serving a state
        // we were told to drop would be worse than a REST round trip.
        self.mirror.invalidate(ids).await?;
        res
    }

    async fn replace_all(&self, snapshot: Vec<EntityState>) -> Result<Vec<Arc<str>>, StoreError> {
        let res = self.write_all(&snapshot, &[]).await;
        // The snapshot is the truth whatever Redis says; a failed write is repaired later.
        let gone = self.mirror.replace_all(snapshot).await?;
        res.map(|()| gone)
    }

    async fn set_registry(&self, kind: RegistryKind, raw: Arc<str>) -> Result<(), StoreError> {
        // Check the shape first, so Redis never holds a list the mirror would refuse.
        super::Registries::default()
            .set(kind, raw.clone())
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let mut conn = self.conn.clone();
        conn.set::<_, _, ()>(self.registry_key(kind), &*raw).await?;
        self.mirror.set_registry(kind, raw).await
    }

    fn meta(&self) -> Meta {
        self.mirror.meta()
    }

    async fn set_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.hset_multiple::<_, _, _, ()>(self.key("meta"), &meta.fields())
            .await?;
        self.mirror.set_meta(meta).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn repair(&self) -> Result<bool, StoreError> {
        let lost = if self.dirty.load(Ordering::Relaxed) {
            self.ping().await?;
            false
        } else if self.marked().await? {
            return Ok(false);
        } else {
            true
        };
        self.dirty.store(false, Ordering::Relaxed);
        let mut states = Vec::new();
        let mut invalid = Vec::new();
        self.mirror.read(&mut |ix| {
            for id in ix.ids() {
                match ix.get(id) {
                    Some(Some(s)) => states.push(s.clone()),
                    _ => invalid.push(id.clone()),
                }
            }
        });
        self.write_all(&states, &invalid).await?;
        self.set_meta(&self.mirror.meta()).await?;
        let mut registries = Vec::new();
        self.mirror.read(&mut |ix| {
            registries.extend(
                RegistryKind::ALL
                    .into_iter()
                    .filter_map(|k| Some((k, ix.registries().raw(k)?.clone()))),
            )
        });
        let mut conn = self.conn.clone();
        for (kind, raw) in registries {
            conn.set::<_, _, ()>(self.registry_key(kind), &*raw).await?;
        }
        self.mark().await?;
        let mut r = self.rewrites.lock();
        r.last_at = Some(super::now_secs());
        if lost {
            r.after_data_loss += 1;
            metrics::counter!("redis_rewrites_total", "after" => "data_loss").increment(1);
            tracing::warn!(
                entities = states.len(),
                "Redis lost its data (a restart without persistence, a flush or a failover): rewrote it from the in-process index"
            );
        } else {
            r.after_failed_writes += 1;
            metrics::counter!("redis_rewrites_total", "after" => "failed_writes").increment(1);
            tracing::info!(
                entities = states.len(),
                "Redis is back: rewrote it from the in-process index"
            );
        }
        Ok(true)
    }

    fn rewrites(&self) -> super::Rewrites {
        self.rewrites.lock().clone()
    }
}
