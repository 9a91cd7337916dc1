//! The sessions `/mcp` keeps: at most `MCP_MAX_SESSIONS`, the least recently
//! used closed to make room, and any idle for [`SESSION_IDLE`] closed.
//!
//! rmcp's session manager has no cap: 20,000 `initialize` calls held 1.41 GB.
//! A client whose session was closed gets 404 and, as the protocol says,
//! starts a new one, so closing the least recently used costs a real client
//! one round trip, where refusing new sessions would lock every client out
//! for as long as a flood's sessions lived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A session with no request for this long is closed. A subscriber that only
/// listens is quiet while the house is; when its session is closed it gets
/// 404 on its next request and starts again.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// How often idle sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The live sessions and when each was last used.
pub struct Sessions {
    /// rmcp's sessions, which this closes.
    manager: Arc<LocalSessionManager>,
    /// When each session id was last seen in a request.
    seen: Mutex<HashMap<Arc<str>, Instant>>,
    /// The most kept (`MCP_MAX_SESSIONS`).
    max: usize,
    /// `initialize` calls that made room and are not answered yet: counted
    /// against the cap, or concurrent ones all pass it (260 of 256 were kept).
    opening: AtomicUsize,
}

impl Sessions {
    /// Tracks `manager`'s sessions, closing idle ones until `stop`.
    pub fn new(
        manager: Arc<LocalSessionManager>,
        max: usize,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            manager,
            seen: Mutex::default(),
            max: max.max(1),
            opening: AtomicUsize::new(0),
        });
        let sweeper = Arc::downgrade(&this);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => match sweeper.upgrade() {
                        Some(s) => s.sweep(SESSION_IDLE).await,
                        None => break,
                    },
                }
            }
        });
        this
    }

    /// A request named session `id`.
    pub fn touch(&self, id: &str) {
        if let Some(at) = self.seen.lock().get_mut(id) {
            *at = Instant::now();
        }
    }

    /// A session was opened (its id came back on an `initialize`).
    pub fn opened(&self, id: &str) {
        self.seen.lock().insert(id.into(), Instant::now());
        metrics::gauge!("mcp_sessions").set(self.seen.lock().len() as f64);
    }

    /// A session was closed by its client.
    pub fn closed(&self, id: &str) {
        self.seen.lock().remove(id);
        metrics::gauge!("mcp_sessions").set(self.seen.lock().len() as f64);
    }

    /// Before a new session: holds a place for it until the returned
    /// [`Place`] is dropped (the `initialize` answered or abandoned), and
    /// closes the least recently used while the sessions and the places
    /// held pass the cap.
    pub async fn make_room(self: &Arc<Self>) -> Place {
        let opening = self.opening.fetch_add(1, Ordering::AcqRel) + 1;
        let place = Place(self.clone());
        loop {
            let victim = {
                let mut seen = self.seen.lock();
                if seen.len() + opening <= self.max {
                    return place;
                }
                let oldest = seen
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(id, _)| id.clone());
                let Some(oldest) = oldest else { return place };
                seen.remove(&oldest);
                oldest
            };
            metrics::counter!("mcp_sessions_evicted_total").increment(1);
            tracing::debug!(session = %victim, "Closing the least recently used MCP session to make room");
            let _ = self.manager.close_session(&victim).await;
        }
    }

    /// Closes sessions idle for `idle`, and forgets those rmcp already closed.
    async fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        let live: Vec<Arc<str>> = self.manager.sessions.read().await.keys().cloned().collect();
        let stale: Vec<Arc<str>> = {
            let mut seen = self.seen.lock();
            // Sessions opened where no id was seen (an error answer) count from now.
            for id in &live {
                seen.entry(id.clone()).or_insert(now);
            }
            let live: std::collections::HashSet<&Arc<str>> = live.iter().collect();
            seen.retain(|id, _| live.contains(id));
            seen.iter()
                .filter(|(_, at)| now.duration_since(**at) >= idle)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in stale {
            self.seen.lock().remove(&id);
            let _ = self.manager.close_session(&id).await;
        }
        metrics::gauge!("mcp_sessions").set(self.seen.lock().len() as f64);
    }
}

/// A place held for a session being opened; given back when dropped.
pub struct Place(Arc<Sessions>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::AcqRel);
    }
}
