//! The result cache: keyed by fetcher name and params, fresh while its TTL
//! lasts AND every domain generation it read is unchanged. So a cached result
//! never outlives a state change that could alter it; TTL is only a ceiling.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::sources::Read;
use crate::state::StateManager;

/// The most entries kept; params come from callers, so the key space is open.
pub const MAX_ENTRIES: usize = 1024;

/// One cached result.
struct Entry {
    /// The result, shared with every caller it is served to.
    value: Arc<Value>,
    /// What it read, with generations.
    reads: Vec<Read>,
    /// The TTL ceiling.
    expires: Instant,
    /// The definitions revision it was computed under.
    revision: u64,
}

/// Results by `(name, canonical params)`.
#[derive(Default)]
pub struct ResultCache {
    /// The entries.
    map: Mutex<HashMap<(String, String), Entry>>,
}

/// The cache key: serde_json maps are sorted, so the text is canonical.
fn key(name: &str, params: &Map<String, Value>) -> (String, String) {
    (name.to_string(), Value::Object(params.clone()).to_string())
}

impl ResultCache {
    /// A fresh cached value, if any.
    pub fn get(
        &self,
        name: &str,
        params: &Map<String, Value>,
        revision: u64,
        states: &StateManager,
    ) -> Option<Arc<Value>> {
        let k = key(name, params);
        let mut map = self.map.lock();
        let e = map.get(&k)?;
        let fresh = e.revision == revision
            && Instant::now() < e.expires
            && e.reads.iter().all(|r| r.is_current(states));
        if fresh {
            Some(e.value.clone())
        } else {
            map.remove(&k);
            None
        }
    }

    /// Stores a result; a zero TTL stores nothing.
    pub fn put(
        &self,
        name: &str,
        params: &Map<String, Value>,
        revision: u64,
        ttl: Duration,
        value: Arc<Value>,
        reads: Vec<Read>,
    ) {
        if ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock();
        if map.len() >= MAX_ENTRIES {
            let now = Instant::now();
            map.retain(|_, e| e.expires > now && e.revision == revision);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            key(name, params),
            Entry {
                value,
                reads,
                expires: Instant::now() + ttl,
                revision,
            },
        );
    }
}
