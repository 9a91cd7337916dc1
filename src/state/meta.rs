//! Facts about the link to HA, mirrored into the store's meta hash.

use serde::Serialize;

/// The meta hash: what `/api/health/websocket` and other readers of Redis see.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Meta {
    /// Whether the WebSocket session is authenticated and subscribed.
    pub connected: bool,
    /// HA's version from `auth_ok`.
    pub ha_version: Option<String>,
    /// Unix seconds of the last event or pong from HA.
    pub last_event_at: Option<f64>,
    /// Unix seconds of the last completed snapshot.
    pub last_resync_at: Option<f64>,
    /// Entities in the cache.
    pub entity_count: usize,
    /// Reconnects since start.
    pub reconnects: u64,
    /// The last connection error, for health.
    pub last_error: Option<String>,
}

impl Meta {
    /// Field pairs for a Redis `HSET`; absent values are written empty.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
        vec![
            ("connected", u8::from(self.connected).to_string()),
            ("ha_version", self.ha_version.clone().unwrap_or_default()),
            ("last_event_at", opt(&self.last_event_at)),
            ("last_resync_at", opt(&self.last_resync_at)),
            ("entity_count", self.entity_count.to_string()),
            ("reconnects", self.reconnects.to_string()),
            ("last_error", self.last_error.clone().unwrap_or_default()),
        ]
    }
}
