//! Home Assistant: protocol types, the WebSocket session, the REST fallback.

mod calls;
mod connection;
pub mod protocol;
mod rest;
mod session;

pub use calls::{CallError, Calls, MAX_IN_FLIGHT, MAX_QUEUED};
pub use connection::Connection;
pub use rest::HaRest;
pub use session::{Session, SessionConfig};

/// Failures of one connection attempt. Each ends that attempt; the session
/// then backs off and reconnects.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The handshake failed: a certificate not trusted, expired or for
    /// another name (`HA_CA_FILE`, `HA_TLS_VERIFY`); retried, as it may be fixed.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("auth_invalid: {0}")]
    AuthInvalid(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("no pong within {0:?}: link is dead")]
    HeartbeatTimeout(std::time::Duration),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection closed by Home Assistant")]
    Closed,
}
