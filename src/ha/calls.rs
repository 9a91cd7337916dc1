//! Requests over the live link: a fetcher asks Home Assistant something (its
//! history, statistics, logbook) on the socket the mirror already holds,
//! multiplexed with the subscription by message id. No connection per call.
//!
//! The session task owns the socket; a call is queued to it with a one-shot
//! reply. A call made while the link is down fails at once, and one in flight
//! when it drops fails then: a fetcher never waits for a reconnect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::protocol::Incoming;

/// Calls waiting for the session task to send them; past it a call is
/// refused as busy rather than queued without end.
pub const MAX_QUEUED: usize = 64;

/// Calls sent and not yet answered. HA runs each command as a task of its own;
/// more in flight than this only adds load to its recorder.
pub const MAX_IN_FLIGHT: usize = 16;

/// With [`MAX_IN_FLIGHT`] calls unanswered, how often the session looks for
/// one whose caller gave up, so a waiting call is sent within this of a place
/// freeing even when nothing else arrives on the link.
pub const FULL_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a call has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No link now, or it dropped while the call was in flight.
    #[error("the link to Home Assistant is down")]
    Down,
    /// [`MAX_QUEUED`] calls are already waiting.
    #[error("too many requests to Home Assistant are waiting; try again")]
    Busy,
    /// HA answered `success: false`.
    #[error("Home Assistant refused {command}: {message} ({code})")]
    Refused {
        /// The command's `type`.
        command: String,
        /// HA's error code (`unknown_command`, `invalid_format`, …).
        code: String,
        /// HA's message.
        message: String,
    },
}

/// Where a call's answer goes; dropped unanswered when the link drops.
type Reply = oneshot::Sender<Result<Box<RawValue>, CallError>>;

/// One queued call.
pub(super) struct Call {
    /// The command without its id, which the session assigns.
    pub body: Map<String, Value>,
    /// Where the answer goes.
    pub reply: Reply,
}

/// The session's end of the queue.
pub(super) type Inbox = mpsc::Receiver<Call>;

/// A handle fetchers call Home Assistant through; cheap to clone.
#[derive(Clone)]
pub struct Calls {
    /// To the session task; `None` when there is no Home Assistant at all.
    tx: Option<mpsc::Sender<Call>>,
    /// Whether a connection is authenticated now.
    up: Arc<AtomicBool>,
    /// HA's time zone (`get_config`), asked once per connection.
    time_zone: Arc<Mutex<Option<chrono_tz::Tz>>>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").field("up", &self.is_up()).finish()
    }
}

impl Calls {
    /// A handle and the session's inbox for it.
    pub(super) fn channel() -> (Self, Inbox) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let calls = Self {
            tx: Some(tx),
            up: Arc::default(),
            time_zone: Arc::default(),
        };
        (calls, rx)
    }

    /// A handle with no Home Assistant behind it: every call is `Down`.
    pub fn none() -> Self {
        Self {
            tx: None,
            up: Arc::default(),
            time_zone: Arc::default(),
        }
    }

    /// Whether a connection is authenticated now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Set by the session as connections come and go.
    pub(super) fn set_up(&self, up: bool) {
        if up {
            *self.time_zone.lock() = None;
        }
        self.up.store(up, Ordering::Release);
    }

    /// Sends `body` (a command object without `id`) and waits for its result.
    pub async fn call(&self, body: Value) -> Result<Box<RawValue>, CallError> {
        let Value::Object(body) = body else {
            unreachable!("commands are objects")
        };
        let command = body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let tx = self.tx.as_ref().ok_or(CallError::Down)?;
        if !self.is_up() {
            return Err(CallError::Down);
        }
        let (reply, answer) = oneshot::channel();
        tx.try_send(Call { body, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CallError::Busy,
            mpsc::error::TrySendError::Closed(_) => CallError::Down,
        })?;
        match answer.await {
            Ok(Err(CallError::Refused { code, message, .. })) => Err(CallError::Refused {
                command,
                code,
                message,
            }),
            Ok(r) => r,
            Err(_) => Err(CallError::Down),
        }
    }

    /// HA's time zone, asked with `get_config` once per connection.
    pub async fn time_zone(&self) -> Result<chrono_tz::Tz, CallError> {
        if let Some(tz) = *self.time_zone.lock() {
            return Ok(tz);
        }
        let raw = self.call(serde_json::json!({"type": "get_config"})).await?;
        #[derive(serde::Deserialize)]
        struct Config {
            time_zone: String,
        }
        let name = serde_json::from_str::<Config>(raw.get())
            .map(|c| c.time_zone)
            .unwrap_or_default();
        // A zone this build does not know is read as UTC, and said once.
        let tz = name.parse().unwrap_or_else(|_| {
            tracing::warn!(time_zone = %name, "Unknown Home Assistant time zone; using UTC");
            chrono_tz::UTC
        });
        *self.time_zone.lock() = Some(tz);
        Ok(tz)
    }
}

/// Calls sent and unanswered, by command id; dropping it (with the link)
/// fails them.
#[derive(Default)]
pub(super) struct InFlight(HashMap<u64, Reply>);

impl InFlight {
    /// Whether another call may be sent now. A call whose caller gave up
    /// (its fetcher timed out) stops counting: a command HA is slow to answer
    /// cannot hold the link's calls shut until the next reconnect.
    pub fn has_room(&mut self) -> bool {
        if self.0.len() >= MAX_IN_FLIGHT {
            self.0.retain(|_, reply| !reply.is_closed());
        }
        self.0.len() < MAX_IN_FLIGHT
    }

    /// Whether `id` is a call's.
    pub fn holds(&self, id: Option<u64>) -> bool {
        id.is_some_and(|id| self.0.contains_key(&id))
    }

    /// Takes `call` as command `id` and gives the frame to send; `None` when
    /// its caller gave up (its fetcher timed out), so HA is not asked.
    pub fn send(&mut self, call: Call, id: u64) -> Option<String> {
        if call.reply.is_closed() {
            return None;
        }
        let mut body = call.body;
        body.insert("id".into(), id.into());
        self.0.insert(id, call.reply);
        Some(Value::Object(body).to_string())
    }

    /// Hands a call its `result` message.
    pub fn answer(&mut self, m: Incoming<'_>) {
        let Some(reply) = m.id.and_then(|id| self.0.remove(&id)) else {
            return;
        };
        let answer = match (m.success, m.result, m.error) {
            (Some(true), Some(raw), _) => Ok(raw.to_owned()),
            (Some(true), None, _) => Ok(RawValue::NULL.to_owned()),
            (_, _, e) => Err(CallError::Refused {
                command: String::new(),
                code: e.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
                message: e.map(|e| e.message).unwrap_or_default(),
            }),
        };
        let _ = reply.send(answer);
    }
}

/// Fails every call still queued: the link they were waiting for is gone.
pub(super) fn fail_queued(inbox: &mut Inbox) {
    while let Ok(call) = inbox.try_recv() {
        let _ = call.reply.send(Err(CallError::Down));
    }
}
