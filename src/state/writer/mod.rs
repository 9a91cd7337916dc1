//! The single writer: applies HA's changes to the store in arrival order.
//!
//! The session hands changes over an unbounded channel and never awaits the
//! store; the writer drains whatever has queued up, parses the events' state
//! text, and writes it as one batch, so a burst costs a few pipelines, not one
//! round trip per event.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::changes::{CacheMode, Change, WriterHandle, WriterMsg, WriterStats};
use super::{now_secs, Changed, EntityState, Meta, SharedStore, Update};

mod reconcile;
mod upserts;

/// The most queued messages folded into one batch.
pub const MAX_BATCH: usize = 4096;
/// How often the writer checks whether a failed backing store is back and needs a rewrite.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(1);
/// How often `last_event_at` is written to the store's meta hash during steady traffic.
pub const META_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Events after which the writer's next tick hands freed memory back (see `trim_after_burst`).
pub const BURST_EVENTS: u64 = 10_000;

/// The task that owns all writes to the store.
pub struct Writer {
    /// Where states go.
    store: SharedStore,
    /// Update or invalidate.
    mode: CacheMode,
    /// Incoming work.
    rx: mpsc::UnboundedReceiver<WriterMsg>,
    /// The link facts, written to the store's meta hash.
    meta: Meta,
    /// Shared counters.
    stats: Arc<WriterStats>,
    /// When meta was last flushed to the store.
    meta_flushed: std::time::Instant,
    /// Wakes the session for a resync after a repair.
    resync: Arc<tokio::sync::Notify>,
    /// Events received since memory was last trimmed.
    since_trim: u64,
    /// Told what each applied batch changed.
    feed: super::Feed,
}

impl Writer {
    /// Starts the writer; it ends when every handle is dropped.
    pub fn spawn(store: SharedStore, mode: CacheMode) -> (WriterHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let meta = store.meta();
        let resync = Arc::new(tokio::sync::Notify::new());
        let feed = super::Feed::default();
        let w = Writer {
            feed: feed.clone(),
            resync: resync.clone(),
            store,
            mode,
            rx,
            meta,
            stats: stats.clone(),
            meta_flushed: std::time::Instant::now(),
            since_trim: 0,
        };
        (
            WriterHandle {
                tx,
                stats,
                resync,
                feed,
            },
            tokio::spawn(w.run()),
        )
    }

    async fn run(mut self) {
        let mut queued = Vec::new();
        let mut repair = tokio::time::interval(REPAIR_INTERVAL);
        repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut queued, MAX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.drain(&mut queued).await;
                }
                _ = repair.tick() => {
                    self.repair().await;
                    self.trim_after_burst();
                }
            }
        }
        self.flush_meta().await;
    }

    /// Repairs a backing store that failed writes, then asks for a fresh snapshot.
    async fn repair(&mut self) {
        match self.store.repair().await {
            Ok(true) => self.resync.notify_one(),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "Store still failing; repair postponed"),
        }
    }

    /// A burst queues its events' text here faster than Redis takes it; the
    /// buffers are freed once written, but glibc keeps them. Checked on each
    /// repair tick, so at most once a second and within a second of a burst.
    fn trim_after_burst(&mut self) {
        if self.since_trim >= BURST_EVENTS {
            self.since_trim = 0;
            tokio::task::spawn_blocking(crate::memory::trim);
        }
    }

    /// Applies one drained batch of messages in order.
    async fn drain(&mut self, queued: &mut Vec<WriterMsg>) {
        let mut changes: Vec<Change> = Vec::new();
        let mut meta_dirty = false;
        for msg in queued.drain(..) {
            match msg {
                WriterMsg::Changes(c) => {
                    self.since_trim += c.len() as u64;
                    changes.extend(c);
                    self.meta.last_event_at = Some(now_secs());
                }
                other => {
                    self.apply_changes(std::mem::take(&mut changes)).await;
                    meta_dirty |= self.handle(other).await;
                }
            }
        }
        self.apply_changes(changes).await;
        if meta_dirty || self.meta_flushed.elapsed() >= META_FLUSH_INTERVAL {
            self.flush_meta().await;
        }
    }

    /// Handles a non-change message; returns whether meta must be written now.
    async fn handle(&mut self, msg: WriterMsg) -> bool {
        match msg {
            WriterMsg::Snapshot(states) => {
                let states = self.keep_cached_for_future(states);
                let n = states.len();
                match self.store.replace_all(states).await {
                    Ok(gone) => {
                        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("ha_resyncs_total").increment(1);
                        tracing::info!(
                            entities = n,
                            removed = gone.len(),
                            "Cache resynced from snapshot"
                        );
                        self.stats.record_resync(super::Resync {
                            at: now_secs(),
                            entities: n,
                            removed: gone.len(),
                        });
                        for id in gone {
                            tracing::info!(entity_id = %id, action = "remove", "Entity vanished during resync");
                        }
                        self.meta.last_resync_at = Some(now_secs());
                        self.feed.publish(Changed::Everything);
                    }
                    Err(e) => tracing::error!(error = %e, "Failed to apply snapshot"),
                }
                // The snapshot frame and its parse were the largest buffers this
                // process holds; hand their pages back now rather than at the next trim.
                tokio::task::spawn_blocking(crate::memory::trim);
                true
            }
            WriterMsg::Reconcile(states) => {
                self.reconcile(states).await;
                true
            }
            WriterMsg::Connected { ha_version } => {
                if self.meta.last_resync_at.is_some() || self.meta.last_error.is_some() {
                    self.meta.reconnects += 1;
                    metrics::counter!("ha_reconnects_total").increment(1);
                }
                self.meta.connected = true;
                self.meta.ha_version = Some(ha_version);
                // last_error stays: after a reconnect, health should still say why the link dropped.
                self.meta.last_event_at = Some(now_secs());
                true
            }
            WriterMsg::Disconnected { error } => {
                self.meta.connected = false;
                if error.is_some() {
                    self.meta.last_error = error;
                }
                true
            }
            WriterMsg::Registry { kind, raw } => {
                match self.store.set_registry(kind, raw).await {
                    Ok(()) => tracing::info!(registry = kind.name(), "Registry updated"),
                    Err(e) => {
                        tracing::warn!(registry = kind.name(), error = %e, "Failed to store a registry")
                    }
                }
                false
            }
            WriterMsg::Alive => {
                self.meta.last_event_at = Some(now_secs());
                false
            }
            WriterMsg::Flush(ack) => {
                self.flush_meta().await;
                let _ = ack.send(());
                false
            }
            WriterMsg::Changes(_) => unreachable!("changes are batched by run"),
        }
    }

    async fn flush_meta(&mut self) {
        self.store.read(&mut |ix| self.meta.entity_count = ix.len());
        metrics::gauge!("ha_entities").set(self.meta.entity_count as f64);
        if let Err(e) = self.store.set_meta(&self.meta).await {
            tracing::warn!(error = %e, "Failed to write link meta");
        }
        self.meta_flushed = std::time::Instant::now();
    }

    /// Applies a run of changes: consecutive upserts go out as one batch.
    async fn apply_changes(&mut self, changes: Vec<Change>) {
        let mut upserts = Vec::new();
        let mut removes = Vec::new();
        for c in changes {
            let s = match c {
                Change::Upsert(s) => s,
                Change::Unparsed { entity_id, raw } => match parsed(entity_id, raw) {
                    Some(s) => s,
                    None => continue,
                },
                Change::Remove { entity_id, at } => {
                    if !upserts.is_empty() {
                        self.apply_upserts(std::mem::take(&mut upserts)).await;
                    }
                    removes.push((entity_id, at));
                    continue;
                }
            };
            if !removes.is_empty() {
                self.apply_removes(std::mem::take(&mut removes)).await;
            }
            upserts.push(s);
        }
        if !upserts.is_empty() {
            self.apply_upserts(upserts).await;
        }
        if !removes.is_empty() {
            self.apply_removes(removes).await;
        }
    }

    async fn apply_removes(&mut self, ids: Vec<(Arc<str>, i64)>) {
        match self.store.remove(&ids).await {
            Ok(()) => {
                self.count_applied(ids.len() as u64);
                self.publish(|| {
                    ids.iter()
                        .map(|(id, _)| Update::removed(id.clone()))
                        .collect()
                });
                for (id, _) in &ids {
                    tracing::info!(entity_id = %id, action = "remove", "Entity removed from cache");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, count = ids.len(), "Failed to remove entities from cache")
            }
        }
    }

    /// Tells watchers what a batch changed. With none (full-speed ingest
    /// with no subscriber) the updates are not even collected.
    fn publish(&self, updates: impl FnOnce() -> Vec<Update>) {
        if self.feed.is_watched() {
            self.feed.publish(Changed::Entities(updates().into()));
        }
    }

    /// Counts applied events once per batch: a metrics lookup per event costs
    /// more than the event at full speed.
    fn count_applied(&self, n: u64) {
        self.stats.applied.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("ha_events_applied_total").increment(n);
    }
}

/// One `info` line per entity while events trickle in (what operators grep
/// for); during a burst one `info` line per batch, with the entities at `debug`.
fn log_updates(updated: &[(EntityState, Option<Arc<str>>)]) {
    match updated {
        [] => {}
        [(s, old)] => {
            tracing::info!(entity_id = %s.entity_id, old_state = old.as_deref(), new_state = %s.state, action = "update", "Cache updated from WebSocket")
        }
        many => {
            tracing::info!(
                count = many.len(),
                first = %many[0].0.entity_id,
                action = "update",
                "Cache updated from WebSocket"
            );
            for (s, old) in many {
                tracing::debug!(entity_id = %s.entity_id, old_state = old.as_deref(), new_state = %s.state, action = "update", "Cache updated from WebSocket");
            }
        }
    }
}

/// Warns of (and counts) a state refused for a `last_updated` too far ahead.
fn refused_future(s: &EntityState) {
    metrics::counter!("ha_states_future_refused_total").increment(1);
    tracing::warn!(
        entity_id = %s.entity_id,
        last_updated_us = s.last_updated,
        "Refused a state whose last_updated is more than {} s ahead of this host's clock",
        super::MAX_FUTURE.as_secs()
    );
}

/// Feed records for written states, with the old values read before the write.
fn updates(states: Vec<EntityState>, old: Vec<Option<Arc<str>>>) -> Vec<Update> {
    states
        .into_iter()
        .zip(old)
        .map(|(s, old_state)| Update {
            entity_id: s.entity_id.clone(),
            old_state,
            new: Some(s),
        })
        .collect()
}

/// An event's `new_state`, or `None` (logged) when it is not a usable state of that entity.
fn parsed(entity_id: Arc<str>, raw: Arc<str>) -> Option<EntityState> {
    EntityState::from_shared(raw, Some(entity_id))
        .map_err(|e| tracing::warn!(error = %e, "Skipping a malformed event"))
        .ok()
}

/// Keeps one state per entity, the last seen, in first-seen order.
fn newest_per_entity(states: Vec<EntityState>) -> Vec<EntityState> {
    if states.len() < 2 {
        return states;
    }
    let mut pos: super::index::Ids<usize> = Default::default();
    let mut out: Vec<EntityState> = Vec::with_capacity(states.len());
    for s in states {
        match pos.get(&s.entity_id) {
            Some(&i) if out[i].last_updated <= s.last_updated => out[i] = s,
            Some(_) => {}
            None => {
                pos.insert(s.entity_id.clone(), out.len());
                out.push(s);
            }
        }
    }
    out
}
