//! The WebSocket session: authenticate, subscribe, snapshot, stream events,
//! keep the link honest with a heartbeat, and reconnect with backoff.
//!
//! One task owns the socket and never awaits the store: changes go to the
//! writer over a channel, so a slow cache cannot make HA drop us.

use std::time::Duration;

use backon::BackoffBuilder;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::calls::{self, Calls, Inbox};
use super::protocol::{self, out, Event, Incoming};
use super::{Connection, HaError};
use crate::state::{Change, RegistryKind, WriterHandle, WriterMsg};

/// How long connecting and the auth handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

const ID_FEATURES: u64 = 1;
const ID_SUBSCRIBE: u64 = 2;
const ID_STATES: u64 = 3;
/// Ids 4..=6 subscribe to registry update events, then 7..=10 list the
/// registries and the Assist exposure (HA wants ids to increase, and
/// subscribing first loses no change).
const ID_REGISTRY_EVENTS: u64 = 4;
/// Ids above this are pings, later snapshots, re-lists and fetchers' calls.
const FIRST_FREE_ID: u64 = 16;

/// How often the Assist exposure is listed again: an entity outside HA's
/// registry (a state set over REST) is exposed with no event fired.
pub const EXPOSURE_POLL: Duration = Duration::from_secs(10);

/// What the session needs to know.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// `ws(s)://…/api/websocket`.
    pub url: Url,
    /// The access token; never logged.
    pub token: SecretString,
    /// What a `wss://` URL's certificate is checked against.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Ping interval and pong timeout; `None` turns the heartbeat off.
    pub heartbeat: Option<(Duration, Duration)>,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay, and the wait after `auth_invalid`.
    pub reconnect_max: Duration,
    /// How often a fresh `get_states` repairs the cache (anti-entropy); `None`: never.
    pub reconcile: Option<Duration>,
}

/// How a connection ended without an error.
enum Ended {
    /// We are shutting down.
    Shutdown,
    /// HA closed the socket.
    Closed,
}

/// The long-lived session task.
pub struct Session {
    /// Settings.
    cfg: SessionConfig,
    /// Where changes go.
    writer: WriterHandle,
    /// Cancelled once, at shutdown.
    shutdown: CancellationToken,
    /// The fetchers' end of the call queue, told when the link is up.
    calls: Calls,
    /// The session's end: calls waiting to be sent.
    inbox: Inbox,
}

impl Session {
    pub fn new(cfg: SessionConfig, writer: WriterHandle, shutdown: CancellationToken) -> Self {
        let (calls, inbox) = Calls::channel();
        Self {
            cfg,
            writer,
            shutdown,
            calls,
            inbox,
        }
    }

    /// A handle for calls over this session's link.
    pub fn calls(&self) -> Calls {
        self.calls.clone()
    }

    fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.cfg.reconnect_min)
            .with_max_delay(self.cfg.reconnect_max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// Runs until shutdown, reconnecting as needed.
    pub async fn run(mut self) {
        let mut backoff = self.backoff();
        let mut inbox = std::mem::replace(&mut self.inbox, mpsc_closed());
        loop {
            let started = Instant::now();
            let res = self.connect_once(&mut inbox).await;
            self.calls.set_up(false);
            calls::fail_queued(&mut inbox);
            let delay = match &res {
                Ok(Ended::Shutdown) => break,
                Err(HaError::AuthInvalid(msg)) => {
                    tracing::error!(message = %msg, "Home Assistant rejected the token (auth_invalid); check HA_TOKEN");
                    self.cfg.reconnect_max
                }
                _ => {
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = self.backoff();
                    }
                    // Full jitter: anywhere between zero and the exponential step.
                    let step = backoff.next().unwrap_or(self.cfg.reconnect_max);
                    step.mul_f64(rand::random::<f64>())
                }
            };
            let error = match res {
                Ok(_) => Some("connection closed by Home Assistant".to_string()),
                Err(e) => Some(e.to_string()),
            };
            tracing::warn!(
                error = error.as_deref(),
                retry_in_ms = delay.as_millis() as u64,
                "WebSocket disconnected, reconnecting"
            );
            self.writer.send(WriterMsg::Disconnected { error });
            tokio::select! {
                _ = sleep(delay) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        self.writer.send(WriterMsg::Disconnected { error: None });
    }

    async fn handshake(&self) -> Result<(Connection, String), HaError> {
        let mut conn =
            Connection::connect(&self.cfg.url, self.cfg.max_frame, self.cfg.tls.clone()).await?;
        let first = conn.read_frame().await?.ok_or(HaError::Closed)?;
        expect_kind(&first, "auth_required")?;
        conn.send(out::auth(self.cfg.token.expose_secret())).await?;
        let reply = conn.read_frame().await?.ok_or(HaError::Closed)?;
        let msgs = protocol::parse_frame(&reply).map_err(|e| HaError::Protocol(e.to_string()))?;
        let msg = msgs
            .into_iter()
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| HaError::Protocol("empty auth reply".into()))?;
        match msg.kind.as_ref() {
            "auth_ok" => Ok((conn, msg.ha_version.unwrap_or_default())),
            "auth_invalid" => Err(HaError::AuthInvalid(msg.message.unwrap_or_default())),
            other => Err(HaError::Protocol(format!("expected auth_ok, got {other}"))),
        }
    }

    /// One connection from handshake to its end: subscribe, snapshot, then
    /// the event loop. Long because the order of those steps is the protocol,
    /// and reads best in one place.
    async fn connect_once(&self, inbox: &mut Inbox) -> Result<Ended, HaError> {
        let (mut conn, version) = tokio::select! {
            r = timeout(HANDSHAKE_TIMEOUT, self.handshake()) => r.map_err(|_| HaError::Timeout("the auth handshake"))??,
            _ = self.shutdown.cancelled() => return Ok(Ended::Shutdown),
        };
        tracing::info!(ha_version = %version, url = %crate::config::redacted(&self.cfg.url), "WebSocket authenticated");
        // Subscribe before the snapshot so no change falls between the two.
        conn.send(out::supported_features(ID_FEATURES)).await?;
        conn.send(out::subscribe(ID_SUBSCRIBE, "state_changed"))
            .await?;
        conn.send(out::command(ID_STATES, "get_states")).await?;
        self.writer.send(WriterMsg::Connected {
            ha_version: version,
        });
        self.calls.set_up(true);

        let mut link = Link::default();
        let mut next_id = FIRST_FREE_ID;
        for (i, event) in (0..).zip(RegistryKind::EVENTS) {
            conn.send(out::subscribe(ID_REGISTRY_EVENTS + i, event))
                .await?;
        }
        link.registry_stale.extend(RegistryKind::ALL);
        let mut first = ID_REGISTRY_EVENTS + RegistryKind::EVENTS.len() as u64 - 1;
        request_registries(&mut conn, &mut link, &mut first).await?;
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let mut next_ping = self
            .cfg
            .heartbeat
            .map_or(far, |(every, _)| Instant::now() + every);
        let mut next_exposure = Instant::now() + EXPOSURE_POLL;
        let mut next_reconcile = self
            .cfg
            .reconcile
            .map_or(far, |every| Instant::now() + every);
        loop {
            let pong_deadline = link.pong_deadline.unwrap_or(far);
            let room = link.calls.has_room();
            tokio::select! {
                frame = conn.read_frame() => {
                    let Some(text) = frame? else { return Ok(Ended::Closed) };
                    if let (Some(_), Some((_, wait))) = (link.pong_deadline, self.cfg.heartbeat) {
                        // Data flowing proves the link alive even if the pong is queued behind it.
                        link.pong_deadline = Some(Instant::now() + wait);
                    }
                    self.handle_frame(&text, &mut link);
                    request_registries(&mut conn, &mut link, &mut next_id).await?;
                }
                _ = tokio::time::sleep_until(next_ping) => {
                    let (every, wait) = self.cfg.heartbeat.expect("ping timer only runs with a heartbeat");
                    next_id += 1;
                    link.ping_id = Some(next_id);
                    link.pong_deadline.get_or_insert(Instant::now() + wait);
                    conn.send(out::command(next_id, "ping")).await?;
                    next_ping = Instant::now() + every;
                }
                _ = tokio::time::sleep_until(pong_deadline) => {
                    let wait = self.cfg.heartbeat.map_or(Duration::ZERO, |(_, w)| w);
                    return Err(HaError::HeartbeatTimeout(wait));
                }
                _ = tokio::time::sleep_until(next_reconcile) => {
                    next_reconcile = self.cfg.reconcile.map_or(far, |every| Instant::now() + every);
                    // A snapshot still on its way already does the job.
                    if link.buffer.is_none() {
                        next_id += 1;
                        link.snapshot_id = next_id;
                        link.reconcile = true;
                        link.buffer = Some(Vec::new());
                        tracing::debug!("Reconciling the cache with a fresh get_states");
                        conn.send(out::command(next_id, "get_states")).await?;
                    }
                }
                // Full: look again soon, as callers that gave up free their place.
                _ = sleep(calls::FULL_RECHECK), if !room => {}
                Some(call) = inbox.recv(), if room => {
                    if let Some(frame) = link.calls.send(call, next_id + 1) {
                        next_id += 1;
                        conn.send(frame).await?;
                    }
                }
                _ = tokio::time::sleep_until(next_exposure) => {
                    next_exposure = Instant::now() + EXPOSURE_POLL;
                    link.registry_stale.insert(RegistryKind::Exposed);
                    request_registries(&mut conn, &mut link, &mut next_id).await?;
                }
                _ = self.writer.resync_wanted() => {
                    next_id += 1;
                    link.snapshot_id = next_id;
                    link.buffer.get_or_insert_with(Vec::new);
                    tracing::info!("Taking a fresh snapshot after the store recovered");
                    conn.send(out::command(next_id, "get_states")).await?;
                }
                _ = self.shutdown.cancelled() => {
                    conn.close().await;
                    return Ok(Ended::Shutdown);
                }
            }
        }
    }

    /// Handles every message of a frame; a bad one is logged and skipped.
    fn handle_frame(&self, text: &str, link: &mut Link) {
        if let Some(changes) = protocol::state_changes_fast(text) {
            match &mut link.buffer {
                Some(buf) => buf.extend(changes),
                None => self.writer.send(WriterMsg::Changes(changes)),
            }
            return;
        }
        let msgs = match protocol::parse_frame(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, bytes = text.len(), "Skipping a malformed frame");
                return;
            }
        };
        let mut changes = Vec::new();
        for msg in msgs {
            match msg {
                Ok(m) => self.handle_message(m, link, &mut changes),
                Err(e) => tracing::warn!(error = %e, "Skipping a malformed message"),
            }
        }
        if changes.is_empty() {
            return;
        }
        match &mut link.buffer {
            Some(buf) => buf.extend(changes),
            None => self.writer.send(WriterMsg::Changes(changes)),
        }
    }

    fn handle_message(&self, m: Incoming<'_>, link: &mut Link, changes: &mut Vec<Change>) {
        match m.kind.as_ref() {
            "event" => match m.event.map(protocol::parse_event) {
                Some(Ok(Event::StateChanged(c))) => changes.push(c),
                Some(Ok(Event::RegistryUpdated(kind))) => {
                    tracing::debug!(kind, "Registry changed");
                    link.registry_stale.extend(RegistryKind::from_event(&kind));
                }
                Some(Ok(Event::Other(kind))) => tracing::debug!(kind, "Ignoring an event"),
                Some(Err(e)) => tracing::warn!(error = %e, "Skipping a malformed event"),
                None => tracing::warn!("Skipping an event message without a body"),
            },
            "result" if m.id == Some(link.snapshot_id) => self.apply_snapshot(m, link),
            "result"
                if m.id
                    .is_some_and(|id| link.registry_pending.contains_key(&id)) =>
            {
                let kind = m.id.and_then(|id| link.registry_pending.remove(&id));
                match (kind, m.success, m.result) {
                    (Some(kind), Some(true), Some(raw)) => self.writer.send(WriterMsg::Registry {
                        kind,
                        raw: raw.get().into(),
                    }),
                    (Some(RegistryKind::Exposed), _, _) => tracing::warn!(
                        error = m.error.map(|e| e.message),
                        "Home Assistant refused to list what it exposes to Assist; the exposure stays as it was (none before HA first answers)"
                    ),
                    (kind, _, _) => tracing::warn!(
                        registry = kind.map(RegistryKind::name),
                        error = m.error.map(|e| e.message),
                        "Home Assistant refused a registry list; areas stay as they were"
                    ),
                }
            }
            "result" if link.calls.holds(m.id) => link.calls.answer(m),
            "result" if m.success == Some(false) => {
                let e = m.error.unwrap_or(protocol::ErrorBody {
                    code: String::new(),
                    message: String::new(),
                });
                tracing::warn!(id = m.id, code = %e.code, message = %e.message, "Home Assistant refused a command");
            }
            "result" => {}
            "pong" => {
                if m.id == link.ping_id {
                    link.pong_deadline = None;
                }
                self.writer.send(WriterMsg::Alive);
            }
            other => tracing::warn!(kind = other, "Skipping a message of unknown type"),
        }
    }

    fn apply_snapshot(&self, m: Incoming<'_>, link: &mut Link) {
        let buffered = link.buffer.take().unwrap_or_default();
        let parsed = match (m.success, m.result) {
            (Some(true), Some(raw)) => protocol::parse_states(raw).map_err(|e| e.to_string()),
            _ => Err(m
                .error
                .map(|e| e.message)
                .unwrap_or_else(|| "no result".into())),
        };
        match parsed {
            Ok((states, bad)) => {
                for e in bad {
                    tracing::warn!(error = %e, "Skipping a bad state in get_states");
                }
                tracing::info!(
                    entities = states.len(),
                    buffered = buffered.len(),
                    "Snapshot received"
                );
                self.writer.send(match std::mem::take(&mut link.reconcile) {
                    true => WriterMsg::Reconcile(states),
                    false => WriterMsg::Snapshot(states),
                });
            }
            Err(e) => tracing::error!(error = %e, "get_states failed; keeping the cache as it is"),
        }
        if !buffered.is_empty() {
            self.writer.send(WriterMsg::Changes(buffered));
        }
    }
}

/// Per-connection state.
struct Link {
    /// Events held back until the snapshot lands; `None` once it has.
    buffer: Option<Vec<Change>>,
    /// The id of the ping awaiting its pong.
    ping_id: Option<u64>,
    /// When the link counts as dead if no pong has come.
    pong_deadline: Option<Instant>,
    /// The id of the `get_states` whose result is the snapshot.
    snapshot_id: u64,
    /// Whether that `get_states` is a periodic reconcile, not a resync.
    reconcile: bool,
    /// Registry lists asked for and not yet answered, by command id.
    registry_pending: std::collections::HashMap<u64, RegistryKind>,
    /// Registries that changed since they were last asked for.
    registry_stale: std::collections::BTreeSet<RegistryKind>,
    /// Fetchers' calls sent and unanswered, by command id; dropped with the
    /// link, which fails them.
    calls: calls::InFlight,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            buffer: Some(Vec::new()),
            ping_id: None,
            pong_deadline: None,
            snapshot_id: ID_STATES,
            reconcile: false,
            registry_pending: Default::default(),
            registry_stale: Default::default(),
            calls: Default::default(),
        }
    }
}

/// Asks again for every stale registry that is not already on its way.
///
/// One still in flight stays stale, so a change made while HA was answering
/// is fetched once more when that answer lands.
async fn request_registries(
    conn: &mut Connection,
    link: &mut Link,
    last_id: &mut u64,
) -> Result<(), HaError> {
    let due: Vec<RegistryKind> = link
        .registry_stale
        .iter()
        .copied()
        .filter(|k| !link.registry_pending.values().any(|p| p == k))
        .collect();
    for kind in due {
        *last_id += 1;
        let id = *last_id;
        conn.send(out::command(id, kind.command())).await?;
        link.registry_pending.insert(id, kind);
        link.registry_stale.remove(&kind);
    }
    Ok(())
}

/// An inbox nothing sends to, left in the session while `run` owns the real one.
fn mpsc_closed() -> Inbox {
    tokio::sync::mpsc::channel(1).1
}

fn expect_kind(text: &str, kind: &str) -> Result<(), HaError> {
    let msgs = protocol::parse_frame(text).map_err(|e| HaError::Protocol(e.to_string()))?;
    match msgs.into_iter().next() {
        Some(Ok(m)) if m.kind == kind => Ok(()),
        Some(Ok(m)) => Err(HaError::Protocol(format!(
            "expected {kind}, got {}",
            m.kind
        ))),
        _ => Err(HaError::Protocol(format!("expected {kind}"))),
    }
}
