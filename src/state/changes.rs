//! What the writer is sent, and the handle that sends it: the session and
//! the REST fallback only ever hold a [`WriterHandle`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{EntityState, RegistryKind};

/// What to do with a `state_changed` event's new state (a setting).
pub use crate::config::CacheMode;

/// One change from a `state_changed` event.
#[derive(Debug, Clone)]
pub enum Change {
    /// `new_state` was an object.
    Upsert(EntityState),
    /// `new_state` as text, parsed by the writer: parsing every state on the
    /// session's task made that one task the ingest bottleneck, and the writer
    /// runs beside it. A bad state is logged and skipped there.
    Unparsed { entity_id: Arc<str>, raw: Arc<str> },
    /// `new_state` was null: HA removed the entity. `at` is `time_fired` in micros.
    Remove { entity_id: Arc<str>, at: i64 },
}

/// What the session tells the writer.
#[derive(Debug)]
pub enum WriterMsg {
    /// A full `get_states` result; replaces the cache.
    Snapshot(Vec<EntityState>),
    /// A periodic `get_states` result over a live link: replaces the cache
    /// like a snapshot, and what it repaired is counted and reported.
    Reconcile(Vec<EntityState>),
    /// Changes from events, in arrival order.
    Changes(Vec<Change>),
    /// The session authenticated and subscribed.
    Connected { ha_version: String },
    /// The link dropped or failed; `error` says why.
    Disconnected { error: Option<String> },
    /// A registry list (`config/*_registry/list…` result) as HA sent it.
    Registry { kind: RegistryKind, raw: Arc<str> },
    /// HA answered a ping: the link is alive though nothing changed.
    Alive,
    /// Acknowledged once everything sent before it is applied.
    Flush(oneshot::Sender<()>),
}

/// Counters for health and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events received from the session.
    pub events: AtomicU64,
    /// Events that changed the cache.
    pub applied: AtomicU64,
    /// Updates written into the cache.
    pub updates: AtomicU64,
    /// Deletes in invalidate mode.
    pub invalidations: AtomicU64,
    /// Failed updates that fell back to a delete.
    pub fallbacks: AtomicU64,
    /// Events older than what we held.
    pub stale: AtomicU64,
    /// Snapshots applied.
    pub resyncs: AtomicU64,
    /// The last [`RESYNCS_KEPT`] snapshots applied, oldest first.
    pub recent_resyncs: parking_lot::Mutex<std::collections::VecDeque<Resync>>,
    /// What the periodic reconciles found.
    pub reconcile: parking_lot::Mutex<Reconciled>,
}

/// What the periodic reconciles (anti-entropy) found since start.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Reconciled {
    /// Reconciles done.
    pub runs: u64,
    /// When the last one was applied (Unix seconds).
    pub last_at: Option<f64>,
    /// Entities repaired, by the field that was wrong (`state`, `attributes`,
    /// `last_changed`, `last_reported`, `last_updated`, `context`, `other`), and
    /// `added` and `removed` for entities the cache lacked or still held.
    pub repairs: std::collections::BTreeMap<String, u64>,
}

/// Snapshots remembered for the console's status view.
pub const RESYNCS_KEPT: usize = 20;

/// One applied snapshot.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Resync {
    /// Unix seconds.
    pub at: f64,
    /// Entities in the snapshot.
    pub entities: usize,
    /// Entities it dropped from the cache (gone from Home Assistant).
    pub removed: usize,
}

impl WriterStats {
    /// Remembers a snapshot, forgetting the oldest past [`RESYNCS_KEPT`].
    pub fn record_resync(&self, r: Resync) {
        let mut recent = self.recent_resyncs.lock();
        if recent.len() == RESYNCS_KEPT {
            recent.pop_front();
        }
        recent.push_back(r);
    }
}

/// The sending side, held by the session and by tests.
#[derive(Clone)]
pub struct WriterHandle {
    /// Unbounded so the socket reader never waits on the cache.
    pub(super) tx: mpsc::UnboundedSender<WriterMsg>,
    /// Shared counters.
    pub stats: Arc<WriterStats>,
    /// Signalled when the store was repaired and a fresh snapshot from HA would make it complete.
    pub(super) resync: Arc<tokio::sync::Notify>,
    /// What the writer applied, for live watchers.
    pub(super) feed: super::Feed,
}

impl WriterHandle {
    /// The feed of applied changes.
    pub fn feed(&self) -> &super::Feed {
        &self.feed
    }

    /// Resolves when the writer wants the session to take a new snapshot.
    pub async fn resync_wanted(&self) {
        self.resync.notified().await
    }

    pub fn send(&self, msg: WriterMsg) {
        if let WriterMsg::Changes(c) = &msg {
            self.stats
                .events
                .fetch_add(c.len() as u64, Ordering::Relaxed);
        }
        // A closed writer means we are shutting down; nothing left to keep.
        let _ = self.tx.send(msg);
    }

    /// Waits until everything sent so far is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(WriterMsg::Flush(tx));
        let _ = rx.await;
    }
}
