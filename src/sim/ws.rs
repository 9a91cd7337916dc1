//! One simulated WebSocket connection: the auth handshake, then commands in
//! and events out, with the faults the control handle asks for.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::SinkExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{Cmd, Inner};

/// How long a client may take to send its `auth` message.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn upgrade(ws: WebSocketUpgrade, State(sim): State<Arc<Inner>>) -> Response {
    ws.on_upgrade(move |socket| async move {
        let stop = sim.shutdown.clone();
        tokio::select! {
            _ = run(socket, sim) => {}
            _ = stop.cancelled() => {}
        }
    })
}

/// A command from the client; only the fields we act on.
#[derive(Deserialize)]
struct Command {
    /// The client's message id, echoed in the answer.
    #[serde(default)]
    id: Option<u64>,
    /// `auth`, `ping`, `get_states`, …
    #[serde(rename = "type")]
    kind: String,
    /// For `auth`.
    #[serde(default)]
    access_token: Option<String>,
    /// For `subscribe_events`.
    #[serde(default)]
    event_type: Option<String>,
}

/// What one connection remembers.
#[derive(Default)]
struct Conn {
    /// The id of the `state_changed` subscription; events go out under it.
    sub: Option<u64>,
    /// The id of the `entity_registry_updated` subscription.
    registry_sub: Option<u64>,
    /// A `get_states` answer held back while the snapshot is on hold.
    pending: Option<String>,
}

async fn send(ws: &mut WebSocket, text: String) -> bool {
    ws.send(Message::text(text)).await.is_ok()
}

async fn recv_text(ws: &mut WebSocket) -> Option<String> {
    loop {
        match ws.recv().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// One client's whole session, HA's order: `auth_required`, auth, then commands
/// and pushed events until either side closes. One function, long because
/// the handshake's steps and the fault switches tests flip (rejected auth,
/// dropped frames) read in the order a real HA performs them.
async fn run(mut ws: WebSocket, sim: Arc<Inner>) {
    // Subscribe before anything else, so no command sent after the accept is missed.
    let mut rx = sim.tx.subscribe();
    sim.counters.connections.fetch_add(1, Ordering::SeqCst);
    let hello = json!({"type": "auth_required", "ha_version": sim.ha_version}).to_string();
    if !send(&mut ws, hello).await {
        return;
    }
    let Ok(Some(auth)) = tokio::time::timeout(AUTH_TIMEOUT, recv_text(&mut ws)).await else {
        return;
    };
    let token = serde_json::from_str::<Command>(&auth)
        .ok()
        .filter(|c| c.kind == "auth")
        .and_then(|c| c.access_token);
    if sim.reject_auth.load(Ordering::SeqCst) || token.as_deref() != Some(sim.token.as_str()) {
        sim.counters.auth_invalid.fetch_add(1, Ordering::SeqCst);
        let no = json!({"type": "auth_invalid", "message": "Invalid access token or password"});
        let _ = send(&mut ws, no.to_string()).await;
        let _ = ws.send(Message::Close(None)).await;
        return;
    }
    sim.counters.auth_ok.fetch_add(1, Ordering::SeqCst);
    let ok = json!({"type": "auth_ok", "ha_version": sim.ha_version}).to_string();
    if !send(&mut ws, ok).await {
        return;
    }
    sim.marks.lock().auth_ok = Some(Instant::now());

    let mut conn = Conn::default();
    let mut hold = sim.hold_snapshot.subscribe();
    loop {
        tokio::select! {
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                for reply in answer(&sim, &mut conn, &text) {
                    let snapshot = reply.is_snapshot;
                    if !send(&mut ws, reply.text).await {
                        return;
                    }
                    if snapshot {
                        sim.marks.lock().states_sent = Some(Instant::now());
                    }
                }
            }
            cmd = rx.recv() => match outgoing(&conn, cmd) {
                Out::Send(text) => {
                    if !send(&mut ws, text).await {
                        return;
                    }
                }
                Out::Frames(frames) => {
                    if !send_all(&mut ws, &sim, &frames).await {
                        return;
                    }
                }
                Out::Nothing => {}
                Out::Close => return,
                Out::Silence => return silent(rx).await,
            },
            changed = hold.changed(), if conn.pending.is_some() => {
                let held = *hold.borrow_and_update();
                if changed.is_err() || held {
                    continue;
                }
                // Events fired while the snapshot was held go out first, as they would have.
                loop {
                    let cmd = match rx.try_recv() {
                        Ok(c) => Ok(c),
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => return,
                    };
                    match outgoing(&conn, cmd) {
                        Out::Send(text) => {
                            if !send(&mut ws, text).await {
                                return;
                            }
                        }
                        Out::Frames(frames) => {
                            if !send_all(&mut ws, &sim, &frames).await {
                                return;
                            }
                        }
                        Out::Nothing => {}
                        Out::Close => return,
                        Out::Silence => return silent(rx).await,
                    }
                }
                if let Some(text) = conn.pending.take() {
                    if !send(&mut ws, text).await {
                        return;
                    }
                    sim.marks.lock().states_sent = Some(Instant::now());
                }
            }
        }
    }
}

/// What to do with a command from the control handle.
enum Out {
    /// Send this frame.
    Send(String),
    /// Send these frames back to back.
    Frames(Arc<[Utf8Bytes]>),
    /// Nothing for this connection.
    Nothing,
    /// Close the connection.
    Close,
    /// Go silent (blackhole).
    Silence,
}

fn outgoing(conn: &Conn, cmd: Result<Cmd, RecvError>) -> Out {
    let text = match cmd {
        Ok(Cmd::Drop) | Err(RecvError::Closed) => return Out::Close,
        Ok(Cmd::Blackhole) => return Out::Silence,
        Ok(Cmd::Raw(t)) => Some(t.to_string()),
        Ok(Cmd::Frames(f)) => {
            return if conn.sub.is_some() {
                Out::Frames(f)
            } else {
                Out::Nothing
            }
        }
        Ok(Cmd::Event(body)) => conn.sub.map(|id| event(id, &body)),
        Ok(Cmd::RegistryEvent(body)) => conn.registry_sub.map(|id| event(id, &body)),
        Ok(Cmd::Events(bodies)) => conn.sub.map(|id| {
            let items: Vec<String> = bodies.iter().map(|b| event(id, b)).collect();
            format!("[{}]", items.join(","))
        }),
        Err(RecvError::Lagged(n)) => {
            tracing::warn!(missed = n, "Simulated HA connection fell behind");
            None
        }
    };
    text.map_or(Out::Nothing, Out::Send)
}

/// A blackholed link: keep the socket open, read nothing, write nothing,
/// until told to drop (or the sim stops, which drops the socket).
async fn silent(mut rx: tokio::sync::broadcast::Receiver<Cmd>) {
    loop {
        match rx.recv().await {
            Ok(Cmd::Drop) | Err(RecvError::Closed) => return,
            _ => {}
        }
    }
}

/// Writes `frames` back to back and flushes once; marks when it started.
async fn send_all(ws: &mut WebSocket, sim: &Inner, frames: &[Utf8Bytes]) -> bool {
    sim.marks.lock().frames_sent = Some(Instant::now());
    for f in frames {
        // A clone of the shared bytes, not of the text.
        if ws.feed(Message::Text(f.clone())).await.is_err() {
            return false;
        }
    }
    SinkExt::flush(ws).await.is_ok()
}

fn event(sub: u64, body: &str) -> String {
    format!(r#"{{"id":{sub},"type":"event","event":{body}}}"#)
}

fn result(id: Option<u64>, result: &str) -> String {
    let id = serde_json::to_string(&id).unwrap_or_else(|_| "null".into());
    format!(r#"{{"id":{id},"type":"result","success":true,"result":{result}}}"#)
}

/// The `get_states` answer, the house written straight into it (one copy of
/// every state, which matters at 100,000 entities).
fn states_result(id: Option<u64>, house: &super::House) -> String {
    let id = serde_json::to_string(&id).unwrap_or_else(|_| "null".into());
    let mut out = format!(r#"{{"id":{id},"type":"result","success":true,"result":"#);
    house.write_states_json(&mut out);
    out.push('}');
    out
}

/// One reply to a client message.
struct Reply {
    /// The frame.
    text: String,
    /// Whether it is a `get_states` answer (its instant is marked).
    is_snapshot: bool,
}

impl From<String> for Reply {
    fn from(text: String) -> Self {
        Self {
            text,
            is_snapshot: false,
        }
    }
}

fn failure(id: Option<u64>, code: &str, message: &str) -> String {
    json!({"id": id, "type": "result", "success": false, "error": {"code": code, "message": message}})
        .to_string()
}

/// Answers the commands about the house beyond its states (its past, what
/// it exposes to Assist), or `None` for the rest.
fn answer_house(sim: &Inner, kind: &str, id: Option<u64>, text: &str) -> Option<Vec<Reply>> {
    if !kind.starts_with("history/")
        && !kind.starts_with("logbook/")
        && !kind.starts_with("recorder/")
        && !kind.starts_with("homeassistant/expose")
    {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let house = sim.house.lock();
    let mut states = house.ids().filter_map(|id| Some((id, house.get(id)?)));
    if let Some(v) = sim.exposure.lock().answer(&value, &mut states) {
        return Some(vec![result(id, &v.to_string()).into()]);
    }
    if sim.no_recorder.load(Ordering::SeqCst) {
        return None;
    }
    let v = super::recorder::answer(&house.recorder, &value, &|id| {
        house.get(id).map(str::to_string)
    })?;
    match sim.stall_recorder.load(Ordering::SeqCst) {
        true => Some(Vec::new()),
        false => Some(vec![result(id, &v.to_string()).into()]),
    }
}

/// Answers one client message; most get one reply, a held snapshot none yet.
fn answer(sim: &Inner, conn: &mut Conn, text: &str) -> Vec<Reply> {
    let Ok(cmd) = serde_json::from_str::<Command>(text) else {
        return vec![failure(None, "invalid_format", "Message incorrectly formatted.").into()];
    };
    if let Some(reply) = answer_house(sim, &cmd.kind, cmd.id, text) {
        return reply;
    }
    let reply = match cmd.kind.as_str() {
        "supported_features" => result(cmd.id, "null"),
        "subscribe_events" => {
            match cmd.event_type.as_deref() {
                None | Some("state_changed") => conn.sub = cmd.id,
                Some("entity_registry_updated") => conn.registry_sub = cmd.id,
                Some(_) => {}
            }
            result(cmd.id, "null")
        }
        "get_states" => {
            sim.counters.get_states.fetch_add(1, Ordering::SeqCst);
            let body = states_result(cmd.id, &sim.house.lock());
            let held = *sim.hold_snapshot.borrow();
            if held {
                conn.pending = Some(body);
                return Vec::new();
            }
            return vec![Reply {
                text: body,
                is_snapshot: true,
            }];
        }
        "ping" => {
            sim.counters.pings.fetch_add(1, Ordering::SeqCst);
            json!({"id": cmd.id, "type": "pong"}).to_string()
        }
        "get_config" => result(
            cmd.id,
            &json!({"version": sim.ha_version, "location_name": "Home", "state": "RUNNING", "time_zone": "UTC"})
                .to_string(),
        ),
        // No areas, devices or entities registered, in the shapes HA answers with.
        "config/area_registry/list" | "config/device_registry/list" => result(cmd.id, "[]"),
        "config/entity_registry/list_for_display" => {
            result(cmd.id, r#"{"entity_categories":{},"entities":[]}"#)
        }
        _ => failure(cmd.id, "unknown_command", "Unknown command."),
    };
    vec![reply.into()]
}
