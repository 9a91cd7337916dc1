//! The change feed: what reached the cache, for whoever watches live
//! (Model Context Protocol subscriptions, the change stream). The writer
//! publishes once per applied batch, so a burst costs one send, not one per
//! event; a watcher that falls behind is told to re-read everything.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::EntityState;

/// Batches a watcher may fall behind by before it is told [`Changed::Everything`].
pub const FEED_CAPACITY: usize = 1024;

/// One entity's applied change. Every field is shared, not copied: a batch
/// costs a reference count per entity.
#[derive(Debug, Clone)]
pub struct Update {
    /// Which entity.
    pub entity_id: Arc<str>,
    /// Its state string before, when one was cached.
    pub old_state: Option<Arc<str>>,
    /// The state now; `None` when the entity was removed.
    pub new: Option<EntityState>,
}

impl Update {
    /// A removal.
    pub fn removed(entity_id: Arc<str>) -> Self {
        Self {
            entity_id,
            old_state: None,
            new: None,
        }
    }
}

/// One applied write.
#[derive(Debug, Clone)]
pub enum Changed {
    /// These entities were written or removed.
    Entities(Arc<[Update]>),
    /// Anything may have changed: a snapshot replaced the cache, or the
    /// watcher lagged and lost batches.
    Everything,
}

impl Changed {
    /// Whether `entity_id` may be among the changes.
    pub fn touches(&self, entity_id: &str) -> bool {
        match self {
            Self::Entities(us) => us.iter().any(|u| &*u.entity_id == entity_id),
            Self::Everything => true,
        }
    }

    /// Whether an entity of `domain` that `seen` accepts may be among the changes.
    pub fn touches_domain_where(&self, domain: &str, seen: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Self::Entities(us) => us
                .iter()
                .any(|u| super::domain_of(&u.entity_id) == domain && seen(&u.entity_id)),
            Self::Everything => true,
        }
    }
}

/// The publishing side, cloned into the writer and every reader.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Sends to every watcher; sending with none costs a lock and nothing else.
    tx: broadcast::Sender<Changed>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Feed {
    /// Announces a change; nobody listening is fine.
    pub fn publish(&self, c: Changed) {
        let _ = self.tx.send(c);
    }

    /// Whether anyone watches: the writer builds a batch's id list only then.
    pub fn is_watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A new watcher, seeing changes from now on.
    pub fn watch(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
        }
    }
}

/// One watcher's end of the feed.
pub struct Watcher {
    /// Its queue of batches.
    rx: broadcast::Receiver<Changed>,
}

impl Watcher {
    /// The next change; `None` once the writer is gone. A lag becomes
    /// [`Changed::Everything`], so nothing is missed, only coarsened.
    pub async fn next(&mut self) -> Option<Changed> {
        match self.rx.recv().await {
            Ok(c) => Some(c),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Changed::Everything),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_watcher_is_told_everything() {
        let feed = Feed::default();
        let mut w = feed.watch();
        for _ in 0..FEED_CAPACITY + 1 {
            feed.publish(Changed::Entities(Arc::from(vec![Update::removed(
                "light.a".into(),
            )])));
        }
        assert!(matches!(w.next().await, Some(Changed::Everything)));
        let c = Changed::Entities(Arc::from(vec![Update::removed("light.a".into())]));
        assert!(c.touches("light.a") && !c.touches("light.b"));
        let all = |_: &str| true;
        assert!(c.touches_domain_where("light", &all) && !c.touches_domain_where("switch", &all));
        assert!(!c.touches_domain_where("light", &|id| id != "light.a"));
    }
}
