//! What a computation read: a domain's generation counter before the read,
//! so a cached result can tell whether anything it covers changed since.

use std::sync::Arc;

use super::StateManager;

/// A domain (or everything, `None`) a run read, with its generation before the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The domain, or `None` for "all states".
    pub domain: Option<Arc<str>>,
    /// Its generation counter when read.
    pub generation: u64,
}

impl Read {
    /// Snapshots the generation now, before reading.
    pub fn of(states: &StateManager, domain: Option<&str>) -> Self {
        Self {
            domain: domain.map(Arc::from),
            generation: states.generation(domain),
        }
    }

    /// Whether nothing it covers changed since.
    pub fn is_current(&self, states: &StateManager) -> bool {
        states.generation(self.domain.as_deref()) == self.generation
    }
}
