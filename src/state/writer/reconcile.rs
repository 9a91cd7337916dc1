//! The writer's periodic reconcile: a fresh `get_states` applied like a
//! snapshot, after counting what it repairs.

use super::{refused_future, Writer};
use crate::state::{now_secs, EntityState, Update};

impl Writer {
    /// Applies a periodic `get_states` like a snapshot, after counting what
    /// it repairs: per field, with a warning for anything that means an event
    /// was missed, and a feed record per repaired entity.
    pub(super) async fn reconcile(&mut self, states: Vec<EntityState>) {
        let states = self.keep_cached_for_future(states);
        let mut repairs: std::collections::BTreeMap<String, u64> = Default::default();
        let mut updates = Vec::new();
        self.store.read(&mut |ix| {
            for s in &states {
                let (fields, old_state) = match ix.get(&s.entity_id) {
                    Some(Some(cur)) => (
                        crate::state::reconcile::differing(&cur.raw, &s.raw),
                        Some(cur.state.clone()),
                    ),
                    Some(None) => continue, // invalidated: not held, nothing to repair
                    None => (vec!["added"], None),
                };
                if fields.is_empty() {
                    continue;
                }
                if crate::state::reconcile::missed_an_event(&fields) {
                    tracing::warn!(entity_id = %s.entity_id, fields = ?fields, "Reconcile repaired a state an event should have set");
                }
                for f in fields {
                    *repairs.entry(f.to_string()).or_default() += 1;
                }
                updates.push(Update {
                    entity_id: s.entity_id.clone(),
                    old_state,
                    new: Some(s.clone()),
                });
            }
        });
        match self.store.replace_all(states).await {
            Ok(gone) => {
                for id in gone {
                    tracing::warn!(entity_id = %id, "Reconcile removed an entity HA no longer has");
                    *repairs.entry("removed".into()).or_default() += 1;
                    updates.push(Update::removed(id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Failed to apply a reconcile");
                return;
            }
        }
        for (field, n) in &repairs {
            metrics::counter!("ha_reconcile_repairs_total", "field" => field.clone()).increment(*n);
        }
        tracing::info!(repairs = ?repairs, "Reconciled the cache with a fresh get_states");
        let mut r = self.stats.reconcile.lock();
        r.runs += 1;
        r.last_at = Some(now_secs());
        for (field, n) in repairs {
            *r.repairs.entry(field).or_default() += n;
        }
        drop(r);
        if !updates.is_empty() {
            self.publish(|| updates);
        }
    }

    /// A snapshot's states from too far in the future are refused; for
    /// those, what the cache holds stays (or nothing, if it holds nothing).
    pub(super) fn keep_cached_for_future(&self, states: Vec<EntityState>) -> Vec<EntityState> {
        if !states.iter().any(EntityState::from_the_future) {
            return states;
        }
        let mut out = Vec::with_capacity(states.len());
        self.store.read(&mut |ix| {
            for s in &states {
                if !s.from_the_future() {
                    out.push(s.clone());
                    continue;
                }
                refused_future(s);
                if let Some(Some(cur)) = ix.get(&s.entity_id) {
                    out.push(cur.clone());
                }
            }
        });
        out
    }
}
