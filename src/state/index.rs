//! The in-process index: the hot read path of both stores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A fast hasher for ids on the read path, seeded per process.
pub(crate) type Ids<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

use super::entity::{domain_of, EntityState};
use super::registry::{Registries, RegistryError, RegistryKind};

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    /// A new entity.
    Inserted,
    /// Replaced an older state; carries the old state string for the log.
    Updated { old_state: Option<Arc<str>> },
    /// Dropped: what we hold is newer.
    Stale,
}

/// What a slot holds: a state, or a known entity whose state was invalidated.
pub type Slot = Option<EntityState>;

/// One entity's entry.
#[derive(Debug)]
struct Entry {
    slot: Slot,
    /// Whether HA exposes it to Assist, as [`Registries::exposed`] says: kept
    /// here because an `assist` scope asks it of every entity a listing
    /// walks, and the entry is in hand then (a lookup in HA's list per id
    /// made `live_context` through `assist` 12 % slower than the admin's).
    exposed: bool,
}

/// Entities by id and by domain, with a change counter per domain.
#[derive(Default, Debug)]
pub struct Index {
    /// id → state (`None` marks an invalidated entry that a read must
    /// refill) and exposure.
    by_id: Ids<Entry>,
    /// domain → sorted ids, so listings come out in a stable order.
    by_domain: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// domain → generation, bumped on every change, so fetcher results know when they are stale.
    generations: Ids<u64>,
    /// Bumped on every change anywhere.
    generation: u64,
    /// Areas, devices and entity links, for area-aware templates.
    registries: Registries,
}

impl Index {
    /// Newest wins: whether the state held for `id` is newer than `at`
    /// (micros), so a write or removal from `at` must be dropped. The one
    /// place the rule is written; the Redis store asks it too.
    pub fn holds_newer(&self, id: &str, at: i64) -> bool {
        matches!(self.by_id.get(id), Some(Entry { slot: Some(cur), .. }) if cur.last_updated > at)
    }

    /// Inserts or replaces a state unless ours is newer.
    pub fn upsert(&mut self, s: EntityState) -> Upserted {
        if self.holds_newer(&s.entity_id, s.last_updated) {
            return Upserted::Stale;
        }
        self.put(s)
    }

    /// Inserts or replaces a state whatever we hold.
    fn put(&mut self, s: EntityState) -> Upserted {
        let id = s.entity_id.clone();
        let outcome = match self.by_id.get_mut(&id) {
            Some(Entry {
                slot: Some(old), ..
            }) if old.raw == s.raw => {
                return Upserted::Updated {
                    old_state: Some(old.state.clone()),
                }
            }
            Some(e) => Upserted::Updated {
                old_state: e.slot.replace(s).map(|old| old.state),
            },
            None => {
                let exposed = self.registries.exposed(&id);
                let slot = Some(s);
                self.by_id.insert(id.clone(), Entry { slot, exposed });
                self.add_to_domain(&id);
                Upserted::Inserted
            }
        };
        self.bump(domain_of(&id));
        outcome
    }

    /// Removes an entity unless our state is newer than `at` (micros; 0 = always).
    pub fn remove(&mut self, id: &str, at: i64) -> Option<Slot> {
        if at > 0 && self.holds_newer(id, at) {
            return None;
        }
        let slot = self.by_id.remove(id)?.slot;
        let d = domain_of(id);
        if let Some(set) = self.by_domain.get_mut(d) {
            set.remove(id);
            if set.is_empty() {
                self.by_domain.remove(d);
            }
        }
        self.bump(d);
        Some(slot)
    }

    /// Drops the state but remembers the entity, so listings know to refill it.
    pub fn invalidate(&mut self, id: &str) {
        if let Some(e) = self.by_id.get_mut(id) {
            e.slot = None;
        } else {
            let id: Arc<str> = Arc::from(id);
            self.add_to_domain(&id);
            let exposed = self.registries.exposed(&id);
            self.by_id.insert(
                id,
                Entry {
                    slot: None,
                    exposed,
                },
            );
        }
        self.bump(domain_of(id));
    }

    /// Makes the index equal to `snapshot` and returns the ids removed. The
    /// snapshot is the truth, even against a newer `last_updated` we hold: that
    /// one came from a bad answer or a clock that jumped, and would otherwise
    /// pin the entity forever. (Events received after the snapshot was asked
    /// for are applied after it, newest wins, as usual.)
    pub fn replace_all(&mut self, snapshot: Vec<EntityState>) -> Vec<Arc<str>> {
        let keep: std::collections::HashSet<Arc<str>> =
            snapshot.iter().map(|s| s.entity_id.clone()).collect();
        let gone: Vec<Arc<str>> = self
            .by_id
            .keys()
            .filter(|id| !keep.contains(*id))
            .cloned()
            .collect();
        for id in &gone {
            self.remove(id, 0);
        }
        for s in snapshot {
            self.put(s);
        }
        gone
    }

    pub fn get(&self, id: &str) -> Option<&Slot> {
        self.by_id.get(id).map(|e| &e.slot)
    }

    /// The slot of `id` and whether HA exposes it to Assist.
    pub fn entry(&self, id: &str) -> Option<(&Slot, bool)> {
        self.by_id.get(id).map(|e| (&e.slot, e.exposed))
    }

    /// Whether HA exposes `id` to Assist: the entry's flag when it is known.
    pub fn exposed(&self, id: &str) -> bool {
        match self.by_id.get(id) {
            Some(e) => e.exposed,
            None => self.registries.exposed(id),
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every entity with its slot, in no order: for counts over the whole
    /// house, which need no order and no lookup per id.
    pub fn slots(&self) -> impl Iterator<Item = (&Arc<str>, &Slot, bool)> {
        self.by_id.iter().map(|(id, e)| (id, &e.slot, e.exposed))
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every id, sorted by domain then id.
    pub fn ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_domain.values().flatten()
    }

    /// Ids of one domain, sorted.
    pub fn domain_ids(&self, domain: &str) -> impl Iterator<Item = &Arc<str>> {
        self.by_domain.get(domain).into_iter().flatten()
    }

    /// Domains with their entity counts.
    pub fn domains(&self) -> impl Iterator<Item = (&Arc<str>, usize)> {
        self.by_domain.iter().map(|(d, s)| (d, s.len()))
    }

    /// The area, entity and device registries.
    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// Replaces one registry from HA's answer. Areas filter results of every
    /// domain, so every domain's generation moves and no cached result
    /// outlives an area change; a new exposure list sets every entry's flag.
    pub fn set_registry(&mut self, kind: RegistryKind, raw: Arc<str>) -> Result<(), RegistryError> {
        self.generation += 1;
        let g = self.generation;
        self.generations.values_mut().for_each(|v| *v = g);
        self.registries.set(kind, raw)?;
        if kind == RegistryKind::Exposed {
            let reg = &self.registries;
            self.by_id
                .iter_mut()
                .for_each(|(id, e)| e.exposed = reg.exposed(id));
        }
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn domain_generation(&self, domain: &str) -> u64 {
        self.generations.get(domain).copied().unwrap_or(0)
    }

    fn add_to_domain(&mut self, id: &Arc<str>) {
        let d = domain_of(id);
        match self.by_domain.get_mut(d) {
            Some(set) => {
                set.insert(id.clone());
            }
            None => {
                self.by_domain
                    .insert(Arc::from(d), BTreeSet::from([id.clone()]));
            }
        }
    }

    fn bump(&mut self, domain: &str) {
        self.generation += 1;
        let g = self.generation;
        match self.generations.get_mut(domain) {
            Some(v) => *v = g,
            None => {
                self.generations.insert(Arc::from(domain), g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: &str, state: &str, ts: &str) -> EntityState {
        EntityState::from_raw(&format!(
            r#"{{"entity_id":"{id}","state":"{state}","attributes":{{}},"last_updated":"{ts}"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn older_state_never_overwrites_newer() {
        let mut ix = Index::default();
        ix.upsert(st("light.a", "on", "2026-01-01T00:00:02+00:00"));
        assert_eq!(
            ix.upsert(st("light.a", "off", "2026-01-01T00:00:01+00:00")),
            Upserted::Stale
        );
        assert_eq!(&*ix.get("light.a").unwrap().as_ref().unwrap().state, "on");
    }

    #[test]
    fn a_registry_change_moves_every_generation() {
        let mut ix = Index::default();
        ix.upsert(st("light.a", "on", "2026-01-01T00:00:00+00:00"));
        let (g, gl) = (ix.generation(), ix.domain_generation("light"));
        ix.set_registry(RegistryKind::Area, "[]".into()).unwrap();
        assert!(ix.generation() > g);
        assert!(ix.domain_generation("light") > gl);
    }

    #[test]
    fn every_entry_knows_whether_ha_exposes_it() {
        let mut ix = Index::default();
        ix.upsert(st("light.a", "on", "2026-01-01T00:00:00+00:00"));
        ix.invalidate("light.b");
        assert!(!ix.exposed("light.a") && !ix.exposed("light.b"));
        let list = r#"{"exposed_entities": {"light.a": {"conversation": true},
            "light.b": {"conversation": true}, "light.c": {"conversation": true},
            "light.d": {"conversation": false}}}"#;
        ix.set_registry(RegistryKind::Exposed, list.into()).unwrap();
        ix.upsert(st("light.c", "on", "2026-01-01T00:00:00+00:00"));
        ix.upsert(st("light.d", "on", "2026-01-01T00:00:00+00:00"));
        ix.upsert(st("light.a", "off", "2026-01-01T00:00:01+00:00"));
        for (id, want) in [
            ("light.a", true),
            ("light.b", true),
            ("light.c", true),
            ("light.d", false),
        ] {
            assert_eq!(ix.exposed(id), want, "{id}");
            assert_eq!(ix.entry(id).unwrap().1, want, "{id}");
            assert_eq!(ix.exposed(id), ix.registries().exposed(id), "{id}");
        }
        assert!(ix.exposed("light.e") == ix.registries().exposed("light.e"));
        ix.set_registry(RegistryKind::Exposed, r#"{"exposed_entities": {}}"#.into())
            .unwrap();
        assert!(ix.slots().all(|(_, _, exposed)| !exposed));
    }

    #[test]
    fn replace_all_drops_vanished_and_bumps_generations() {
        let mut ix = Index::default();
        ix.upsert(st("light.a", "on", "2026-01-01T00:00:00+00:00"));
        ix.upsert(st("switch.b", "on", "2026-01-01T00:00:00+00:00"));
        let g = ix.domain_generation("switch");
        let gone = ix.replace_all(vec![st("light.a", "off", "2026-01-01T00:00:05+00:00")]);
        assert_eq!(gone, vec![Arc::<str>::from("switch.b")]);
        assert!(ix.domain_generation("switch") > g);
        assert_eq!(ix.domains().count(), 1);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn invalidate_keeps_the_entity_known() {
        let mut ix = Index::default();
        ix.upsert(st("light.a", "on", "2026-01-01T00:00:00+00:00"));
        ix.invalidate("light.a");
        assert_eq!(ix.get("light.a"), Some(&None));
        assert_eq!(ix.domain_ids("light").count(), 1);
    }
}
