//! A simulated Home Assistant for the demo and the tests.
//!
//! It speaks the real protocol on a listener of the caller's choosing: the
//! WebSocket API at `/api/websocket` (auth, `supported_features`,
//! `subscribe_events`, `get_states`, `ping`) and REST `GET /api/states` and
//! `GET /api/states/{entity_id}`. It is seeded with the recorded demo house.
//!
//! [`Sim`] is also the control handle: tests change the house and inject
//! faults through it (malformed frames, dropped or blackholed links, a held
//! snapshot, late events, rejected auth). The bench (bench/) drives it too:
//! prebuilt event frames pushed back to back at full speed
//! ([`Sim::send_frames`]) and the instants of the protocol's milestones
//! ([`Sim::marks`]).

mod exposure;
mod house;
mod recorder;
mod rest;
mod ws;

pub use house::{state_changed, House, SeedError, DEMO_HA_VERSION, DEMO_HOUSE};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use parking_lot::Mutex;
use rand::seq::IndexedRandom;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::state::EntityState;

/// Frames queued per connection before a slow client starts losing them.
const FRAME_QUEUE: usize = 4096;
/// How often the demo ticker changes the house.
pub const DEMO_TICK: Duration = Duration::from_secs(1);

/// What the simulator is asked to do to every open connection.
#[derive(Debug, Clone)]
pub(crate) enum Cmd {
    /// One `state_changed` event body, sent to subscribers.
    Event(Arc<str>),
    /// One `entity_registry_updated` event body, sent to its subscribers.
    RegistryEvent(Arc<str>),
    /// Several event bodies, sent to subscribers as one coalesced array frame.
    Events(Arc<[String]>),
    /// A text frame sent as it is, subscribed or not.
    Raw(Arc<str>),
    /// Prebuilt text frames, sent as they are to subscribers, back to back
    /// with one flush at the end.
    Frames(Arc<[Utf8Bytes]>),
    /// Close every connection.
    Drop,
    /// Stop reading and writing, but keep the TCP connection open.
    Blackhole,
}

/// Counters the tests read.
#[derive(Debug, Default)]
pub struct SimCounters {
    /// WebSocket connections accepted.
    pub connections: AtomicU64,
    /// Auth attempts that got `auth_ok`.
    pub auth_ok: AtomicU64,
    /// Auth attempts that got `auth_invalid`.
    pub auth_invalid: AtomicU64,
    /// `get_states` commands received.
    pub get_states: AtomicU64,
    /// `ping` commands received.
    pub pings: AtomicU64,
    /// REST requests received (any status).
    pub rest_calls: AtomicU64,
}

/// When the protocol's milestones last happened, on any connection.
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    /// Just after an `auth_ok` was written.
    pub auth_ok: Option<Instant>,
    /// Just after a `get_states` answer was written.
    pub states_sent: Option<Instant>,
    /// Just before the first frame of a [`Sim::send_frames`] batch was written.
    pub frames_sent: Option<Instant>,
}

/// Shared by the server's handlers and the control handle.
pub(crate) struct Inner {
    /// The house: what `get_states` and REST answer.
    house: Mutex<House>,
    /// The access token a client must present.
    token: String,
    /// When set, every auth attempt gets `auth_invalid`.
    reject_auth: AtomicBool,
    /// Sent in `auth_required` and `auth_ok`.
    ha_version: String,
    /// Fan-out of commands to every open connection.
    tx: broadcast::Sender<Cmd>,
    /// While true, `get_states` answers are held back (the snapshot is taken on arrival).
    hold_snapshot: watch::Sender<bool>,
    /// While true, history, logbook and statistics commands are unknown, as
    /// in an HA without the recorder.
    no_recorder: AtomicBool,
    /// What the house exposes to Assist, as changed by the client.
    exposure: Mutex<exposure::Exposure>,
    /// While true, the recorder's commands get no answer at all, as from a
    /// recorder stuck on a long query.
    stall_recorder: AtomicBool,
    /// What the tests count.
    counters: SimCounters,
    /// When things happened.
    marks: Mutex<Marks>,
    /// Stops the server and its connections.
    shutdown: CancellationToken,
}

/// A running simulated Home Assistant, and the handle that controls it.
#[derive(Clone)]
pub struct Sim {
    /// Shared with the server.
    inner: Arc<Inner>,
    /// Where it listens.
    addr: SocketAddr,
}

impl Sim {
    /// Serves `house` on `listener`; clients must present `token`.
    pub fn start(listener: TcpListener, house: House, token: &str) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, _) = broadcast::channel(FRAME_QUEUE);
        let inner = Arc::new(Inner {
            house: Mutex::new(house),
            token: token.to_string(),
            reject_auth: AtomicBool::new(false),
            ha_version: DEMO_HA_VERSION.to_string(),
            tx,
            hold_snapshot: watch::channel(false).0,
            no_recorder: AtomicBool::new(false),
            stall_recorder: AtomicBool::new(false),
            exposure: Mutex::default(),
            counters: SimCounters::default(),
            marks: Mutex::new(Marks::default()),
            shutdown: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/api/websocket", get(ws::upgrade))
            .route("/api/states", get(rest::all))
            .route("/api/states/{entity_id}", get(rest::one))
            .with_state(inner.clone());
        let stop = inner.shutdown.clone();
        // No Nagle delay on small frames, as HA's aiohttp server does: without
        // it a lone event written while an earlier write awaits its ACK waits
        // for the peer's delayed ACK (~40 ms on loopback).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "Simulated Home Assistant failed");
            }
        });
        Ok(Self { inner, addr })
    }

    /// Binds a free port on loopback and serves the demo house.
    pub async fn start_demo(token: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::start(listener, House::demo(), token)
    }

    /// `http://127.0.0.1:{port}`, for `HA_URL`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("a socket address is a valid host")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and closes every connection.
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// The counters.
    pub fn counters(&self) -> &SimCounters {
        &self.inner.counters
    }

    /// When the protocol's milestones last happened.
    pub fn marks(&self) -> Marks {
        *self.inner.marks.lock()
    }

    /// REST requests received so far.
    pub fn rest_calls(&self) -> u64 {
        self.inner.counters.rest_calls.load(Ordering::SeqCst)
    }

    /// One state's JSON text as the sim holds it.
    pub fn state(&self, id: &str) -> Option<String> {
        self.inner.house.lock().get(id).map(str::to_string)
    }

    /// Every state, as `GET /api/states` answers.
    pub fn states_json(&self) -> String {
        self.inner.house.lock().states_json()
    }

    /// Every entity id, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.inner.house.lock().ids().map(str::to_string).collect()
    }

    /// Sets a state and fires `state_changed`; returns the new state's JSON text.
    pub fn set(&self, id: &str, state: &str) -> String {
        self.set_with(id, state, None)
    }

    /// As [`set`](Self::set), merging `attributes` into the entity's attributes.
    pub fn set_with(
        &self,
        id: &str,
        state: &str,
        attributes: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> String {
        let mut house = self.inner.house.lock();
        let ev = house.set(id, state, attributes);
        // Sent under the lock, so events leave in timestamp order.
        self.broadcast(Cmd::Event(ev.into()));
        house.get(id).unwrap_or_default().to_string()
    }

    /// Changes a state and sends no event: an event lost on the way, or a
    /// change HA does not announce (a `last_reported` move).
    pub fn set_silently(&self, id: &str, state: &str) {
        let _ = self.inner.house.lock().set(id, state, None);
    }

    /// Applies several changes and sends their events as one coalesced array frame.
    pub fn set_many(&self, changes: &[(&str, &str)]) {
        let mut house = self.inner.house.lock();
        let evs: Vec<String> = changes
            .iter()
            .map(|(id, st)| house.set(id, st, None))
            .collect();
        self.broadcast(Cmd::Events(evs.into()));
    }

    /// Removes an entity and fires `state_changed` with `new_state: null`.
    pub fn remove(&self, id: &str) -> bool {
        let mut house = self.inner.house.lock();
        match house.remove(id) {
            Some(ev) => {
                self.broadcast(Cmd::Event(ev.into()));
                true
            }
            None => false,
        }
    }

    /// Sends an event carrying `state` stamped `by` earlier than the current
    /// state, as a late delivery would; the house keeps its current state.
    pub fn send_older(&self, id: &str, state: &str, by: Duration) -> bool {
        self.send_shifted(id, state, -(by.as_micros() as i64))
    }

    /// Sends a `state_changed` for `id` stamped `by` in the future, without
    /// changing the house (whose state stays the truth a snapshot reports).
    pub fn send_future(&self, id: &str, state: &str, by: Duration) -> bool {
        self.send_shifted(id, state, by.as_micros() as i64)
    }

    /// An event for `id` stamped `delta` microseconds from its current state.
    fn send_shifted(&self, id: &str, state: &str, delta: i64) -> bool {
        let mut house = self.inner.house.lock();
        match house.shifted_event(id, state, delta) {
            Some(ev) => {
                self.broadcast(Cmd::Event(ev.into()));
                true
            }
            None => false,
        }
    }

    /// Sends a raw text frame (malformed, truncated, wrong shape) to every connection.
    pub fn send_raw(&self, text: &str) {
        self.broadcast(Cmd::Raw(text.into()));
    }

    /// Sends prebuilt text frames (event messages, or arrays of them, carrying
    /// the subscription's id) to subscribers as they are: back to back, one
    /// flush at the end, nothing built per frame, as HA does when its queue
    /// backs up. The house is not changed. Returns how many connections they
    /// were queued for (0: no client connected).
    pub fn send_frames(&self, frames: Vec<String>) -> usize {
        let frames: Arc<[Utf8Bytes]> = frames.into_iter().map(Utf8Bytes::from).collect();
        self.inner.tx.send(Cmd::Frames(frames)).unwrap_or(0)
    }

    /// Closes every open connection; clients may reconnect.
    pub fn drop_connections(&self) {
        self.broadcast(Cmd::Drop);
    }

    /// Makes every open connection go silent: no reads, no writes, no pongs, TCP kept open.
    /// Connections made later behave normally.
    pub fn blackhole(&self) {
        self.broadcast(Cmd::Blackhole);
    }

    /// While `true`, `get_states` answers are held back. The snapshot is taken
    /// when the command arrives; events fired meanwhile are sent before it.
    pub fn hold_snapshot(&self, hold: bool) {
        self.inner.hold_snapshot.send_replace(hold);
    }

    /// While `true`, the recorder's commands answer `unknown_command`, as an
    /// HA without `recorder:`, `history:` and `logbook:` does.
    pub fn without_recorder(&self, off: bool) {
        self.inner.no_recorder.store(off, Ordering::SeqCst);
    }

    /// Exposes `id` to Assist or not, as the owner would in HA's UI: the
    /// setting changes and `entity_registry_updated` is fired.
    pub fn expose(&self, id: &str, on: bool) {
        let cmd = serde_json::json!({"type": "homeassistant/expose_entity",
            "assistants": ["conversation"], "entity_ids": [id], "should_expose": on});
        let house = self.inner.house.lock();
        let mut states = house.ids().filter_map(|id| Some((id, house.get(id)?)));
        self.inner.exposure.lock().answer(&cmd, &mut states);
        let body = serde_json::json!({"event_type": "entity_registry_updated",
            "data": {"action": "update", "entity_id": id, "changes": {"options": {}}},
            "origin": "LOCAL", "time_fired": chrono::Utc::now().to_rfc3339()});
        self.broadcast(Cmd::RegistryEvent(body.to_string().into()));
    }

    /// While `true`, the recorder's commands are never answered (pings are).
    pub fn stall_recorder(&self, stall: bool) {
        self.inner.stall_recorder.store(stall, Ordering::SeqCst);
    }

    /// While `true`, every auth attempt gets `auth_invalid`.
    pub fn reject_auth(&self, reject: bool) {
        self.inner.reject_auth.store(reject, Ordering::SeqCst);
    }

    /// Replaces the whole house without firing events, as changes made while a
    /// client was away; the client sees them at its next resync.
    pub fn replace_house(&self, house: House) {
        let mut cur = self.inner.house.lock();
        let last = cur.last_ts();
        *cur = house;
        cur.bump_ts(last);
    }

    fn broadcast(&self, cmd: Cmd) {
        // No receivers just means no client is connected.
        let _ = self.inner.tx.send(cmd);
    }
}

/// Changes a few states every `every` until `stop`: lights and switches
/// toggle, a power sensor drifts. Keeps the demo's prompts moving.
pub async fn demo_changes(sim: Sim, every: Duration, stop: CancellationToken) {
    const TOGGLES: &[&str] = &[
        "light.bed_light",
        "light.kitchen_lights",
        "light.ceiling_lights",
        "switch.decorative_lights",
        "switch.ac",
    ];
    const POWER: &str = "sensor.power_consumption";
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let pick = *TOGGLES.choose(&mut rand::rng()).unwrap_or(&TOGGLES[0]);
        if let Some(cur) = sim.state(pick).and_then(|s| EntityState::from_raw(&s).ok()) {
            let on = &*cur.state == "on";
            sim.set(pick, if on { "off" } else { "on" });
        }
        let watts = 80 + rand::random_range(0..60u32);
        sim.set(POWER, &watts.to_string());
    }
}

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn next(ws: &mut Ws) -> serde_json::Value {
        loop {
            if let Message::Text(t) = ws.next().await.expect("open").expect("frame") {
                return serde_json::from_str(t.as_str()).expect("JSON");
            }
        }
    }

    async fn send(ws: &mut Ws, v: serde_json::Value) {
        ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Frames reach subscribers as they are, in order; the milestones are
    /// marked; the registry lists answer empty.
    #[tokio::test]
    async fn frames_marks_and_registry_lists() {
        let sim = Sim::start_demo("t").await.unwrap();
        assert_eq!(sim.send_frames(vec!["x".into()]), 0, "nobody connected");
        let url = format!("ws://{}/api/websocket", sim.addr());
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        next(&mut ws).await;
        send(
            &mut ws,
            serde_json::json!({"type": "auth", "access_token": "t"}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "auth_ok");
        assert!(sim.marks().auth_ok.is_some());
        send(
            &mut ws,
            serde_json::json!({"id": 1, "type": "config/entity_registry/list_for_display"}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await["result"]["entities"],
            serde_json::json!([])
        );
        send(
            &mut ws,
            serde_json::json!({"id": 2, "type": "config/area_registry/list"}),
        )
        .await;
        assert_eq!(next(&mut ws).await["result"], serde_json::json!([]));
        send(&mut ws, serde_json::json!({"id": 3, "type": "get_states"})).await;
        let states = next(&mut ws).await;
        assert_eq!(states["id"], 3);
        assert_eq!(
            states["result"].as_array().map(Vec::len),
            Some(sim.ids().len())
        );
        assert!(sim.marks().states_sent.is_some());
        // Not subscribed yet: frames are not for this connection.
        sim.send_frames(vec![r#"{"skipped":true}"#.into()]);
        send(
            &mut ws,
            serde_json::json!({"id": 4, "type": "subscribe_events", "event_type": "state_changed"}),
        )
        .await;
        assert_eq!(next(&mut ws).await["id"], 4);
        let before = std::time::Instant::now();
        let frames = vec![r#"{"n":1}"#.to_string(), r#"[{"n":2},{"n":3}]"#.to_string()];
        assert_eq!(sim.send_frames(frames), 1);
        assert_eq!(next(&mut ws).await, serde_json::json!({"n": 1}));
        assert_eq!(next(&mut ws).await, serde_json::json!([{"n": 2}, {"n": 3}]));
        assert!(sim.marks().frames_sent.is_some_and(|t| t >= before));
        sim.stop();
    }
}
