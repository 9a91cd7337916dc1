//! The state store: a trait with an in-memory and a Redis implementation,
//! the writer that feeds it, and the read-side manager with its queries.
//!
//! Reads are synchronous and come from an in-process [`Index`] that both
//! stores keep; writes are async because Redis is behind them.

mod changes;
mod entity;
mod feed;
mod glob;
mod index;
mod manager;
mod memory;
mod meta;
mod read;
mod reconcile;
mod redis;
mod registry;
mod scope;
mod writer;

pub use changes::{
    CacheMode, Change, Reconciled, Resync, WriterHandle, WriterMsg, WriterStats, RESYNCS_KEPT,
};
pub use entity::{domain_of, parse_ts, valid_entity_id, EntityState, StateParseError, MAX_FUTURE};
pub use feed::{Changed, Feed, Update, Watcher, FEED_CAPACITY};
pub use glob::{Glob, GlobError};
pub(crate) use index::Ids;
pub use index::{Index, Slot, Upserted};
pub use manager::{
    now_secs, DomainCount, Fallback, FallbackError, Query, StateError, StateManager, Summary,
};
pub use memory::MemoryStore;
pub use meta::Meta;
pub use read::Read;
pub use redis::RedisStore;
pub use registry::{Registries, RegistryError, RegistryKind};
pub use scope::{Entities, Scope, ScopeSpec};
pub use writer::Writer;

use std::sync::Arc;

use async_trait::async_trait;

/// Failures of a store's backing service.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("store write rejected: {0}")]
    Rejected(String),
}

/// Where the mirrored states live.
///
/// Reads never block on I/O: both implementations answer them from an
/// in-process index. Writes go to the backing service and then the index.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for health and logs (`memory`, `redis`).
    fn kind(&self) -> &'static str;

    /// Runs `f` with read access to the index.
    fn read(&self, f: &mut dyn FnMut(&Index));

    /// Writes states, newest wins; returns what each did, in order.
    async fn upsert(
        &self,
        states: Vec<EntityState>,
    ) -> Result<Vec<(EntityState, Upserted)>, StoreError>;

    /// Removes entities that HA deleted; `at` is the event time in micros.
    async fn remove(&self, ids: &[(Arc<str>, i64)]) -> Result<(), StoreError>;

    /// Deletes cached states but keeps the entities known, so reads refill them.
    async fn invalidate(&self, ids: &[Arc<str>]) -> Result<(), StoreError>;

    /// Makes the store equal to a full snapshot; returns the ids that vanished.
    async fn replace_all(&self, snapshot: Vec<EntityState>) -> Result<Vec<Arc<str>>, StoreError>;

    /// Replaces one of HA's registries with the JSON list HA sent.
    async fn set_registry(&self, kind: RegistryKind, raw: Arc<str>) -> Result<(), StoreError>;

    /// The link facts last written.
    fn meta(&self) -> Meta;

    /// Records connection facts in the store's meta hash.
    async fn set_meta(&self, meta: &Meta) -> Result<(), StoreError>;

    /// Checks the backing service answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Rewrites the backing service from the in-process index when it failed
    /// a write and is back, or lost its data while idle. Called every second
    /// by the writer; returns whether a rewrite was done.
    async fn repair(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Rewrites so far and the last one's time (Unix seconds), for health.
    fn rewrites(&self) -> Rewrites {
        Rewrites::default()
    }
}

/// How often the backing service was rewritten from the index.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Rewrites {
    /// After failed writes (Redis down, then back).
    pub after_failed_writes: u64,
    /// After Redis lost its data while idle: a restart without persistence,
    /// `FLUSHDB`/`FLUSHALL`, a failover to an empty replica.
    pub after_data_loss: u64,
    /// When the last rewrite was done (Unix seconds).
    pub last_at: Option<f64>,
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;
