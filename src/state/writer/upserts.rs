//! The writer's upserts: a batch of new states, written into the cache
//! (`WEBSOCKET_UPDATE_CACHE=true`) or invalidated, with a failed write
//! falling back to invalidation.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{log_updates, newest_per_entity, refused_future, updates, Writer};
use crate::state::changes::CacheMode;
use crate::state::{Changed, EntityState, Update, Upserted};

impl Writer {
    /// The newest state per entity, future ones refused, written or
    /// invalidated as the cache mode says.
    pub(super) async fn apply_upserts(&mut self, states: Vec<EntityState>) {
        let mut states = newest_per_entity(states);
        states.retain(|s| {
            let future = s.from_the_future();
            if future {
                refused_future(s);
            }
            !future
        });
        match self.mode {
            CacheMode::Invalidate => self.invalidate_states(states).await,
            CacheMode::Update => self.write_states(states).await,
        }
    }

    /// `WEBSOCKET_UPDATE_CACHE=false`: the keys go; the next read refills them.
    async fn invalidate_states(&mut self, states: Vec<EntityState>) {
        let ids: Vec<Arc<str>> = states.iter().map(|s| s.entity_id.clone()).collect();
        let mut old = Vec::with_capacity(ids.len());
        self.store.read(&mut |ix| {
            old.extend(ids.iter().map(|id| match ix.get(id) {
                Some(Some(s)) => Some(s.state.clone()),
                _ => None,
            }))
        });
        let res = self.store.invalidate(&ids).await;
        let n = states.len() as u64;
        self.stats.invalidations.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("ha_cache_invalidations_total").increment(n);
        self.count_applied(n);
        for (s, old) in states.iter().zip(&old) {
            tracing::info!(entity_id = %s.entity_id, old_state = old.as_deref(), new_state = %s.state, action = "invalidate", "Cache invalidated for state change");
        }
        match res {
            Ok(()) => self.publish(|| updates(states, old)),
            Err(e) => tracing::error!(error = %e, "Failed to invalidate cache"),
        }
    }

    /// `WEBSOCKET_UPDATE_CACHE=true`: the states are written straight from
    /// the events; a failed write falls back to invalidating them.
    async fn write_states(&mut self, states: Vec<EntityState>) {
        let ids: Vec<Arc<str>> = states.iter().map(|s| s.entity_id.clone()).collect();
        let done = match self.store.upsert(states).await {
            Ok(done) => done,
            Err(e) => return self.fall_back(&ids, e).await,
        };
        let mut updated = Vec::with_capacity(done.len());
        let mut stale = 0u64;
        for (s, outcome) in done {
            match outcome {
                Upserted::Stale => {
                    stale += 1;
                    tracing::debug!(entity_id = %s.entity_id, "Dropped a state older than the cached one");
                }
                Upserted::Inserted => updated.push((s, None)),
                Upserted::Updated { old_state } => updated.push((s, old_state)),
            }
        }
        self.stats.stale.fetch_add(stale, Ordering::Relaxed);
        metrics::counter!("ha_events_stale_total").increment(stale);
        let n = updated.len() as u64;
        self.stats.updates.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("ha_cache_updates_total").increment(n);
        self.count_applied(n);
        log_updates(&updated);
        if !updated.is_empty() {
            self.publish(|| {
                updated
                    .into_iter()
                    .map(|(s, old_state)| Update {
                        entity_id: s.entity_id.clone(),
                        old_state,
                        new: Some(s),
                    })
                    .collect()
            });
        }
    }

    /// A failed write: the states it carried are invalidated, so no reader
    /// sees one older than HA's.
    async fn fall_back(&mut self, ids: &[Arc<str>], e: crate::state::StoreError) {
        let n = ids.len() as u64;
        self.stats.fallbacks.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("ha_cache_update_fallbacks_total").increment(n);
        for id in ids {
            tracing::warn!(entity_id = %id, error = %e, action = "invalidate", "Failed to update cache, falling back to invalidation");
        }
        match self.store.invalidate(ids).await {
            // The states went with the failed write: watchers re-read.
            Ok(()) => self.feed.publish(Changed::Everything),
            Err(e) => tracing::error!(error = %e, "Fallback invalidation failed too"),
        }
    }
}
