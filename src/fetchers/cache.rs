//! The result cache: keyed by fetcher name and params, fresh while its TTL
//! lasts AND every domain generation it read is unchanged. So a cached result
//! never outlives a state change that could alter it; TTL is only a ceiling.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

// tokio's clock, so a test can pause it and see a TTL pass without waiting.
use tokio::time::Instant;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::state::Read;
use crate::state::StateManager;

/// The most entries kept; params come from callers, so the key space is open.
pub const MAX_ENTRIES: usize = 1024;

/// The most bytes kept, results (as JSON text), keys and the domains they read
/// together:
/// counting entries alone let 200 distinct 1.9 MB params hold +400 MB.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// The largest single entry cached; a bigger result is served but not kept,
/// so one answer cannot evict everything else.
pub const MAX_ENTRY_BYTES: usize = MAX_BYTES / 8;

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
    /// Its size as counted against [`MAX_BYTES`], measured once at put.
    bytes: usize,
}

/// The entries and their total size, under one lock.
#[derive(Default)]
struct Inner {
    /// The entries.
    map: HashMap<Key, Entry>,
    /// The sum of the entries' `bytes`.
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, k: &Key) {
        if let Some(e) = self.map.remove(k) {
            self.bytes -= e.bytes;
        }
    }

    /// Drops stale entries, then the soonest to expire, until `need` more
    /// bytes and one more entry fit.
    fn make_room(&mut self, need: usize, revision: u64) {
        let fits = |c: &Self| c.map.len() < MAX_ENTRIES && c.bytes + need <= MAX_BYTES;
        if fits(self) {
            return;
        }
        let now = Instant::now();
        self.map
            .retain(|_, e| e.expires > now && e.revision == revision);
        self.bytes = self.map.values().map(|e| e.bytes).sum();
        if fits(self) {
            return;
        }
        let mut by_expiry: Vec<_> = self
            .map
            .iter()
            .map(|(k, e)| (e.expires, k.clone()))
            .collect();
        by_expiry.sort_unstable_by_key(|(t, _)| *t);
        for (_, k) in by_expiry {
            self.remove(&k);
            if fits(self) {
                break;
            }
        }
    }
}

/// Results by `(name, canonical params)`.
#[derive(Default)]
pub struct ResultCache {
    /// The entries and their size.
    inner: Mutex<Inner>,
}

/// Counts the bytes written, and fails past `limit` so a huge value is not walked to its end.
struct Counter {
    /// Bytes so far.
    n: usize,
    /// Where counting gives up.
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n += buf.len();
        if self.n > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON length of `v`, or `None` when it exceeds `limit`.
pub fn json_len(v: &Value, limit: usize) -> Option<usize> {
    let mut c = Counter { n: 0, limit };
    serde_json::to_writer(&mut c, v).ok().map(|_| c.n)
}

/// A cache key: the fetcher's name and a SHA-256 of its params' JSON text
/// (serde_json maps are sorted, so the text is canonical). A digest rather
/// than the text: params come from callers and may be megabytes, which every
/// entry kept and every lookup hashed.
type Key = (String, [u8; 32]);

fn key(name: &str, params: &Map<String, Value>) -> Key {
    // `Value`'s own `to_string`, not `to_writer` into a hashing writer: that
    // is generic, compiled in this crate at opt-level 0, and made the abuse
    // test of 200 distinct 1.9 MB params take 26 s instead of 1.4 s.
    let text = Value::Object(params.clone()).to_string();
    (name.to_string(), Sha256::digest(text.as_bytes()).into())
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
        let mut inner = self.inner.lock();
        let e = inner.map.get(&k)?;
        let fresh = e.revision == revision
            && Instant::now() < e.expires
            && e.reads.iter().all(|r| r.is_current(states));
        if fresh {
            Some(e.value.clone())
        } else {
            inner.remove(&k);
            None
        }
    }

    /// Stores a result; a zero TTL stores nothing, nor does a result (with its
    /// key) over [`MAX_ENTRY_BYTES`].
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
        let k = key(name, params);
        // What the entry holds besides the value: its key and the domains it read
        // (a `domain` param is kept there, whatever its length).
        let key_bytes = k.0.len()
            + k.1.len()
            + reads
                .iter()
                .filter_map(|r| r.domain.as_ref())
                .map(|d| d.len())
                .sum::<usize>();
        // Measured outside the lock: a large value takes a while to walk.
        let Some(bytes) = MAX_ENTRY_BYTES
            .checked_sub(key_bytes)
            .and_then(|room| json_len(&value, room))
            .map(|n| n + key_bytes)
        else {
            return;
        };
        let mut inner = self.inner.lock();
        inner.remove(&k);
        inner.make_room(bytes, revision);
        inner.bytes += bytes;
        inner.map.insert(
            k,
            Entry {
                value,
                reads,
                expires: Instant::now() + ttl,
                revision,
                bytes,
            },
        );
    }

    /// Bytes held, as counted against [`MAX_BYTES`].
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(cache: &ResultCache, params: &str, value: Value) {
        let mut p = Map::new();
        p.insert("p".into(), params.into());
        let ttl = Duration::from_secs(60);
        cache.put("f", &p, 1, ttl, Arc::new(value), Vec::new());
    }

    #[test]
    fn a_result_over_the_entry_limit_is_not_kept() {
        let cache = ResultCache::default();
        put(&cache, "a", Value::String("x".repeat(MAX_ENTRY_BYTES)));
        assert_eq!(cache.bytes(), 0);
        put(&cache, "b", Value::String("x".repeat(1000)));
        assert!(cache.bytes() > 1000 && cache.bytes() < 1100);
    }

    #[test]
    fn replacing_a_key_counts_its_bytes_once() {
        // Filling to the cap is tests/it/abuse.rs's (it takes 64 MiB of results).
        let cache = ResultCache::default();
        put(&cache, "a", Value::String("x".repeat(1000)));
        let one = cache.bytes();
        put(&cache, "a", Value::String("x".repeat(1000)));
        assert_eq!(cache.bytes(), one);
        put(&cache, "b", Value::String("x".repeat(1000)));
        assert_eq!(cache.bytes(), 2 * one);
    }
}
