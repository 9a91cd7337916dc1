//! The read side: lookups with a REST fallback on a miss, and the queries
//! that the API and the fetchers share.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;

use super::{EntityState, Glob, GlobError, Meta, SharedStore};

/// Why the fallback source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("Home Assistant is unreachable: {0}")]
    Unreachable(String),
    #[error("Home Assistant answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Home Assistant sent an unusable state: {0}")]
    Invalid(String),
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
}

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> f64 {
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
        }
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
        self.store
            .read(&mut |ix| out = ix.get(id).cloned().flatten());
        out
    }

    /// One entity; a miss is answered by HA's REST API and fills the cache.
    pub async fn get(&self, id: &str) -> Result<EntityState, StateError> {
        if !super::valid_entity_id(id) {
            return Err(StateError::BadEntityId(id.to_string()));
        }
        if let Some(s) = self.cached(id) {
            metrics::counter!("ha_cache_hits_total").increment(1);
            return Ok(s);
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
        self.store.read(&mut |ix| {
            let ids: Box<dyn Iterator<Item = &Arc<str>>> = match &q.domain {
                Some(d) => Box::new(ix.domain_ids(d)),
                None => Box::new(ix.ids()),
            };
            for id in ids {
                match ix.get(id) {
                    Some(Some(s)) if matches_query(s, q) => found.push(s.clone()),
                    Some(None) => missing.push(id.clone()),
                    _ => {}
                }
            }
        });
        (found, missing)
    }

    /// Entity ids in an area, by area id or name; `None` when no such area is known.
    pub fn area_entities(&self, area: &str) -> Option<std::collections::HashSet<String>> {
        let mut out = None;
        self.store.read(&mut |ix| {
            let reg = ix.registries();
            if reg.area_id(area).is_some() {
                out = Some(reg.area_entities(area).into_iter().collect());
            }
        });
        out
    }

    /// Counts per domain with a state breakdown.
    pub fn domains(&self) -> Vec<DomainCount> {
        let mut out = Vec::new();
        self.store.read(&mut |ix| {
            // Borrowed keys: one allocation per distinct state, not per entity.
            type Counts<'a> = (usize, HashMap<&'a str, usize>);
            let mut counts: BTreeMap<&str, Counts<'_>> = BTreeMap::new();
            for id in ix.ids() {
                let e = counts.entry(super::domain_of(id)).or_default();
                e.0 += 1;
                let st = match ix.get(id) {
                    Some(Some(s)) => &*s.state,
                    _ => "unknown",
                };
                *e.1.entry(st).or_default() += 1;
            }
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
