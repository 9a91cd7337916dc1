//! The read side: lookups with a REST fallback on a miss, and the queries
//! that the API and the fetchers share.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;

use super::{EntityState, Feed, Glob, GlobError, Meta, SharedStore, Slot, Watcher};

/// Why the fallback source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("Home Assistant is unreachable: {0}")]
    Unreachable(String),
    #[error("Home Assistant answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Home Assistant sent an unusable state: {0}")]
    Invalid(String),
    /// The answer is another entity's state: refused, never cached.
    #[error("Home Assistant answered a state for {got} when asked for {asked}; it was refused, not cached")]
    WrongEntity { asked: String, got: String },
}

/// Where a cache miss is answered from: HA's REST API in production.
#[async_trait]
pub trait Fallback: Send + Sync + 'static {
    /// One state, or `None` when HA has no such entity.
    async fn fetch_state(&self, entity_id: &str) -> Result<Option<EntityState>, FallbackError>;
}

/// Read-side failures, mapped to HTTP statuses by the API.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("entity {0} not found")]
    NotFound(String),
    #[error("invalid entity id {0:?}")]
    BadEntityId(String),
    #[error("invalid search pattern: {0}")]
    BadPattern(#[from] GlobError),
    #[error("{0}")]
    Unavailable(#[from] FallbackError),
}

/// Filters for a listing; all optional, all combined.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Only this domain (`light`).
    pub domain: Option<String>,
    /// Only entities in this state (`on`).
    pub state: Option<String>,
    /// A glob over entity id and friendly name.
    pub pattern: Option<Glob>,
}

/// Counts for one domain.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DomainCount {
    /// The domain name.
    pub domain: String,
    /// Entities in it.
    pub count: usize,
    /// Entities per state.
    pub states: BTreeMap<String, usize>,
}

/// Cache health and statistics.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Entities in the cache.
    pub entity_count: usize,
    /// Domains in the cache.
    pub domain_count: usize,
    /// Entities per domain.
    pub domains: BTreeMap<String, usize>,
    /// Whether the WebSocket session is up.
    pub connected: bool,
    /// HA's version.
    pub ha_version: Option<String>,
    /// Seconds since HA last sent an event or pong.
    pub last_event_age_secs: Option<f64>,
    /// Seconds since the last resync.
    pub last_resync_age_secs: Option<f64>,
    /// Reconnects since start.
    pub reconnects: u64,
    /// The store in use (`memory`, `redis`).
    pub store: &'static str,
}

/// Reads states for the API, fetchers and templates.
#[derive(Clone)]
pub struct StateManager {
    /// The cache.
    store: SharedStore,
    /// Answers misses; `None` when there is no HA to ask.
    fallback: Option<Arc<dyn Fallback>>,
    /// REST reads done, for metrics and the "no REST in steady state" check.
    rest_reads: Arc<std::sync::atomic::AtomicU64>,
    /// The writer's change feed; a silent one until [`with_feed`](Self::with_feed).
    feed: Feed,
    /// The writer's counters (resyncs, reconciles), once wired.
    writer_stats: Option<Arc<super::WriterStats>>,
    /// What this handle may see; `None`: everything. Entities outside it
    /// are answered as if they did not exist, and never asked of HA.
    scope: Option<Arc<super::Scope>>,
}

/// Seconds since the epoch, now: the unit of the meta's timestamps.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl StateManager {
    pub fn new(store: SharedStore, fallback: Option<Arc<dyn Fallback>>) -> Self {
        Self {
            store,
            fallback,
            rest_reads: Default::default(),
            feed: Feed::default(),
            writer_stats: None,
            scope: None,
        }
    }

    /// The same states as seen by `scope`.
    pub fn scoped(&self, scope: Arc<super::Scope>) -> Self {
        Self {
            scope: Some(scope),
            ..self.clone()
        }
    }

    /// The scope this handle sees through; `None`: everything.
    pub fn scope(&self) -> Option<&Arc<super::Scope>> {
        self.scope.as_ref()
    }

    /// Whether this handle sees `id`, reading the index already held.
    pub fn sees_in(&self, ix: &super::Index, id: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.allows(id, ix))
    }

    /// [`Self::sees_in`] for an entry in hand, with its exposure flag.
    pub fn sees_entry(&self, ix: &super::Index, id: &str, exposed: bool) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|s| s.allows_entry(id, exposed, ix))
    }

    /// Whether this handle sees every entity (the admin, or an `all`
    /// scope): what may see records of no entity, or of another
    /// integration's statistic, whose words may be about any of them.
    pub fn sees_all(&self) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|s| s.spec.entities == super::Entities::All)
    }

    /// Whether this handle sees `id`.
    pub fn sees(&self, id: &str) -> bool {
        let Some(scope) = &self.scope else {
            return true;
        };
        let mut out = false;
        self.store.read(&mut |ix| out = scope.allows(id, ix));
        out
    }

    /// Reads that can report the writer's counters.
    pub fn with_writer_stats(mut self, stats: Arc<super::WriterStats>) -> Self {
        self.writer_stats = Some(stats);
        self
    }

    /// The recent snapshots applied, oldest first (none without a writer).
    pub fn resyncs(&self) -> Vec<super::Resync> {
        self.writer_stats
            .as_ref()
            .map(|w| w.recent_resyncs.lock().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// What the periodic reconciles found, when a writer is wired.
    pub fn reconciled(&self) -> Option<super::Reconciled> {
        self.writer_stats
            .as_ref()
            .map(|w| w.reconcile.lock().clone())
    }

    /// Reads that can also watch what the writer applies.
    pub fn with_feed(mut self, feed: Feed) -> Self {
        self.feed = feed;
        self
    }

    /// The feed of what the writer applies.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Watches the changes that reach the cache from now on.
    pub fn watch(&self) -> Watcher {
        self.feed.watch()
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// REST reads done since start.
    pub fn rest_reads(&self) -> u64 {
        self.rest_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cached state, if held (no fallback).
    pub fn cached(&self, id: &str) -> Option<EntityState> {
        let mut out = None;
        self.store.read(&mut |ix| {
            if self.sees_in(ix, id) {
                out = ix.get(id).cloned().flatten();
            }
        });
        out
    }

    /// One entity; a miss is answered by HA's REST API and fills the cache.
    pub async fn get(&self, id: &str) -> Result<EntityState, StateError> {
        if !super::valid_entity_id(id) {
            return Err(StateError::BadEntityId(id.to_string()));
        }
        // `cached` answers through the scope; only a miss asks it again,
        // so an entity outside it is never read from REST.
        if let Some(s) = self.cached(id) {
            metrics::counter!("ha_cache_hits_total").increment(1);
            return Ok(s);
        }
        if !self.sees(id) {
            return Err(StateError::NotFound(id.to_string()));
        }
        metrics::counter!("ha_cache_misses_total").increment(1);
        self.refill(id)
            .await?
            .ok_or_else(|| StateError::NotFound(id.to_string()))
    }

    async fn refill(&self, id: &str) -> Result<Option<EntityState>, StateError> {
        let Some(fb) = &self.fallback else {
            return Ok(None);
        };
        self.rest_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(entity_id = %id, "Cache miss, reading from REST");
        match fb.fetch_state(id).await? {
            Some(s) if *s.entity_id != *id => {
                metrics::counter!("ha_rest_wrong_entity_total").increment(1);
                let e = FallbackError::WrongEntity {
                    asked: id.to_string(),
                    got: s.entity_id.to_string(),
                };
                tracing::warn!(error = %e, "Refused a REST answer");
                Err(e.into())
            }
            Some(s) if s.from_the_future() => {
                metrics::counter!("ha_states_future_refused_total").increment(1);
                Err(FallbackError::Invalid(format!(
                    "{id}: last_updated is more than {} s ahead of this host's clock; refused, not cached",
                    super::MAX_FUTURE.as_secs()
                ))
                .into())
            }
            Some(s) => {
                if let Err(e) = self.store.upsert(vec![s.clone()]).await {
                    tracing::warn!(entity_id = %id, error = %e, "Could not store a state read from REST");
                }
                Ok(Some(s))
            }
            None => {
                // HA has no such entity: forget it, or every listing would ask again.
                let now = (now_secs() * 1e6) as i64;
                if let Err(e) = self.store.remove(&[(Arc::from(id), now)]).await {
                    tracing::warn!(entity_id = %id, error = %e, "Could not drop an entity HA no longer has");
                }
                Ok(None)
            }
        }
    }

    /// States matching a query, sorted by entity id; invalidated ones are refilled.
    pub async fn list(&self, q: &Query) -> Result<Vec<EntityState>, StateError> {
        let (mut found, missing) = self.scan(q);
        for id in missing {
            if let Some(s) = self.refill(&id).await? {
                if matches_query(&s, q) {
                    found.push(s);
                }
            }
        }
        found.sort_by(|a, b| a.entity_id.cmp(&b.entity_id));
        Ok(found)
    }

    /// The cached matches and the ids whose state must be refilled first.
    pub fn scan(&self, q: &Query) -> (Vec<EntityState>, Vec<Arc<str>>) {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let selective = q.domain.is_none() && (q.state.is_some() || q.pattern.is_some());
        self.store.read(&mut |ix| {
            let mut visit = |id: &Arc<str>, entry: Option<(&Slot, bool)>| match entry {
                Some((_, exposed)) if !self.sees_entry(ix, id, exposed) => {}
                Some((Some(s), _)) if matches_query(s, q) => found.push(s.clone()),
                Some((None, _)) => missing.push(id.clone()),
                _ => {}
            };
            match &q.domain {
                Some(d) => ix.domain_ids(d).for_each(|id| visit(id, ix.entry(id))),
                // A filter over the whole house keeps few states: walking the
                // slots in map order and sorting what matched skips a lookup per id.
                None if selective => ix.slots().for_each(|(id, s, e)| visit(id, Some((s, e)))),
                None => ix.ids().for_each(|id| visit(id, ix.entry(id))),
            }
        });
        if selective {
            found.sort_unstable_by(|a, b| a.entity_id.cmp(&b.entity_id));
            missing.sort_unstable();
        }
        (found, missing)
    }

    /// Entity ids in an area, by area id or name; `None` when no such area is known.
    pub fn area_entities(&self, area: &str) -> Option<std::collections::HashSet<String>> {
        let mut out = None;
        self.store.read(&mut |ix| {
            let reg = ix.registries();
            if reg.area_id(area).is_some() {
                let seen = reg.area_entities(area).into_iter();
                out = Some(seen.filter(|id| self.sees_in(ix, id)).collect());
            }
        });
        out
    }

    /// Whether HA exposes `id` to Assist (see [`super::Registries::exposed`]).
    pub fn exposed(&self, id: &str) -> bool {
        let mut out = false;
        self.store
            .read(&mut |ix| out = self.sees_in(ix, id) && ix.exposed(id));
        out
    }

    /// The entities HA exposes to Assist, sorted; `None` until HA has said.
    pub fn exposed_ids(&self) -> Option<Vec<String>> {
        let mut out = None;
        self.store.read(&mut |ix| {
            out = ix.registries().exposed_ids().map(|mut ids| {
                ids.retain(|id| self.sees_in(ix, id));
                ids
            })
        });
        out
    }

    /// The area name of each of `ids` (an entity's own area, else its device's).
    pub fn area_names(&self, ids: &[&str]) -> Vec<Option<String>> {
        let mut out = Vec::with_capacity(ids.len());
        self.store.read(&mut |ix| {
            let reg = ix.registries();
            out.extend(ids.iter().map(|id| {
                reg.area_of(id)
                    .and_then(|a| reg.area_name(a))
                    .map(str::to_string)
            }));
        });
        out
    }

    /// Counts per domain with a state breakdown.
    pub fn domains(&self) -> Vec<DomainCount> {
        let mut out = Vec::new();
        self.store.read(&mut |ix| {
            // Borrowed keys: one allocation per distinct state, not per entity;
            // one pass over the slots, sorted by domain only at the end.
            type Fast<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
            type Counts<'a> = (usize, Fast<&'a str, usize>);
            let mut counts: Fast<&str, Counts<'_>> = Fast::default();
            for (id, slot, _) in ix.slots().filter(|(id, _, e)| self.sees_entry(ix, id, *e)) {
                let e = counts.entry(super::domain_of(id)).or_default();
                e.0 += 1;
                let st = slot.as_ref().map_or("unknown", |s| &*s.state);
                *e.1.entry(st).or_default() += 1;
            }
            let counts: BTreeMap<&str, Counts<'_>> = counts.into_iter().collect();
            out = counts
                .into_iter()
                .map(|(d, (count, states))| DomainCount {
                    domain: d.to_string(),
                    count,
                    states: states
                        .into_iter()
                        .map(|(k, n)| (k.to_string(), n))
                        .collect(),
                })
                .collect();
        });
        out
    }

    /// The link facts.
    pub fn meta(&self) -> Meta {
        self.store.meta()
    }

    /// Cache health and statistics.
    pub fn summary(&self) -> Summary {
        let meta = self.meta();
        let mut domains = BTreeMap::new();
        let mut n = 0;
        self.store.read(&mut |ix| {
            if self.scope.is_some() {
                for (id, _, _) in ix.slots().filter(|(id, _, e)| self.sees_entry(ix, id, *e)) {
                    n += 1;
                    *domains.entry(super::domain_of(id).to_string()).or_default() += 1;
                }
                return;
            }
            n = ix.len();
            for (d, c) in ix.domains() {
                domains.insert(d.to_string(), c);
            }
        });
        let now = now_secs();
        Summary {
            entity_count: n,
            domain_count: domains.len(),
            domains,
            connected: meta.connected,
            ha_version: meta.ha_version,
            last_event_age_secs: meta.last_event_at.map(|t| (now - t).max(0.0)),
            last_resync_age_secs: meta.last_resync_at.map(|t| (now - t).max(0.0)),
            reconnects: meta.reconnects,
            store: self.store.kind(),
        }
    }

    /// Change counter of a domain (or of everything with `None`).
    pub fn generation(&self, domain: Option<&str>) -> u64 {
        let mut g = 0;
        self.store.read(&mut |ix| {
            g = match domain {
                Some(d) => ix.domain_generation(d),
                None => ix.generation(),
            }
        });
        g
    }
}

fn matches_query(s: &EntityState, q: &Query) -> bool {
    if let Some(d) = &q.domain {
        if s.domain() != d {
            return false;
        }
    }
    if let Some(st) = &q.state {
        if &*s.state != st {
            return false;
        }
    }
    if let Some(g) = &q.pattern {
        let name_hit = s.friendly_name.as_deref().is_some_and(|n| g.matches(n));
        if !g.matches(&s.entity_id) && !name_hit {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryStore, Store};

    fn state(id: &str, st: &str, name: &str) -> EntityState {
        EntityState::from_raw(&format!(
            r#"{{"entity_id":"{id}","state":"{st}","attributes":{{"friendly_name":"{name}"}}}}"#
        ))
        .unwrap()
    }

    /// Filters over the whole house walk the slots in map order; what they
    /// return must still come sorted by id, like every other listing.
    #[tokio::test]
    async fn whole_house_filters_come_sorted_by_id() {
        let store = Arc::new(MemoryStore::new());
        let ids = ["switch.b", "light.z", "a_b.x", "light.a", "a.y", "sensor.m"];
        let states = ids.iter().map(|id| state(id, "on", "X")).collect();
        store.replace_all(states).await.unwrap();
        let sm = StateManager::new(store, None);
        let q = Query {
            state: Some("on".into()),
            ..Default::default()
        };
        let got: Vec<String> = sm
            .list(&q)
            .await
            .unwrap()
            .iter()
            .map(|s| s.entity_id.to_string())
            .collect();
        let all: Vec<String> = sm
            .list(&Query::default())
            .await
            .unwrap()
            .iter()
            .map(|s| s.entity_id.to_string())
            .collect();
        assert_eq!(got, all, "same order with and without a filter");
        assert_eq!(
            got,
            ["a.y", "a_b.x", "light.a", "light.z", "sensor.m", "switch.b"]
        );
    }
}
