//! The in-memory store: the embedded default, the demo, and fast unit tests.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{EntityState, Index, Meta, RegistryKind, Store, StoreError, Upserted};

/// A store that lives only in this process.
#[derive(Default)]
pub struct MemoryStore {
    /// The states; also the read path.
    index: RwLock<Index>,
    /// The last meta written, for parity with Redis.
    meta: RwLock<Meta>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn index(&self) -> &RwLock<Index> {
        &self.index
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn read(&self, f: &mut dyn FnMut(&Index)) {
        f(&self.index.read())
    }

    async fn upsert(
        &self,
        states: Vec<EntityState>,
    ) -> Result<Vec<(EntityState, Upserted)>, StoreError> {
        let mut ix = self.index.write();
        Ok(states
            .into_iter()
            .map(|s| {
                let r = ix.upsert(s.clone());
                (s, r)
            })
            .collect())
    }

    async fn remove(&self, ids: &[(Arc<str>, i64)]) -> Result<(), StoreError> {
        let mut ix = self.index.write();
        for (id, at) in ids {
            ix.remove(id, *at);
        }
        Ok(())
    }

    async fn invalidate(&self, ids: &[Arc<str>]) -> Result<(), StoreError> {
        let mut ix = self.index.write();
        for id in ids {
            ix.invalidate(id);
        }
        Ok(())
    }

    async fn replace_all(&self, snapshot: Vec<EntityState>) -> Result<Vec<Arc<str>>, StoreError> {
        Ok(self.index.write().replace_all(snapshot))
    }

    async fn set_registry(&self, kind: RegistryKind, raw: Arc<str>) -> Result<(), StoreError> {
        self.index
            .write()
            .set_registry(kind, raw)
            .map_err(|e| StoreError::Rejected(e.to_string()))
    }

    fn meta(&self) -> Meta {
        self.meta.read().clone()
    }

    async fn set_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        *self.meta.write() = meta.clone();
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
