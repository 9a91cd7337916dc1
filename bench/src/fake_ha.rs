//! A fast fake Home Assistant on loopback: just enough of the WebSocket API
//! (auth, supported_features, subscribe_events, get_states, registry lists,
//! ping) to feed the real session, then it writes whatever frames the bench
//! hands it as fast as the socket takes them. Any plain HTTP request is counted as a
//! REST call and refused: in steady state there must be none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// The token the fake accepts.
pub const TOKEN: &str = "bench-token";

/// What the bench asks the fake to send once the snapshot is out.
pub enum Cmd {
    /// Write these frames back to back, flushing once at the end.
    Frames(Vec<String>),
    /// Write one frame now and report the instant just before the write.
    Probe(String, oneshot::Sender<Instant>),
}

/// Shared facts the fake records.
#[derive(Default)]
pub struct Seen {
    /// Plain HTTP (REST) requests received.
    pub rest_calls: AtomicU64,
    /// When `auth_ok` was last written.
    pub auth_ok_at: Mutex<Option<Instant>>,
    /// When the `get_states` result was last written.
    pub snapshot_sent_at: Mutex<Option<Instant>>,
}

/// A running fake.
pub struct FakeHa {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Counters and instants.
    pub seen: Arc<Seen>,
    /// Commands for the (first) connected session.
    pub cmd: mpsc::UnboundedSender<Cmd>,
}

impl FakeHa {
    /// Listens on a free loopback port; `snapshot` is the JSON array `get_states` returns.
    pub async fn start(snapshot: Arc<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Seen::default());
        let (cmd, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, snapshot.clone(), s.clone(), rx.clone()));
            }
        });
        Ok(Self { url, seen, cmd })
    }

    pub fn rest_calls(&self) -> u64 {
        self.seen.rest_calls.load(Ordering::Relaxed)
    }
}

type CmdRx = Arc<Mutex<Option<mpsc::UnboundedReceiver<Cmd>>>>;

/// Serves one connection; the command channel goes back to the shared slot
/// when it ends, so a reconnected session gets it again.
async fn serve(stream: TcpStream, snapshot: Arc<String>, seen: Arc<Seen>, rx: CmdRx) {
    let mut cmds = None;
    serve_on(stream, snapshot, seen, rx.clone(), &mut cmds).await;
    if let Some(c) = cmds {
        *rx.lock() = Some(c);
    }
}

async fn serve_on(
    mut stream: TcpStream,
    snapshot: Arc<String>,
    seen: Arc<Seen>,
    rx: CmdRx,
    cmds: &mut Option<mpsc::UnboundedReceiver<Cmd>>,
) {
    let mut head = [0u8; 64];
    let n = stream.peek(&mut head).await.unwrap_or(0);
    if !head[..n].starts_with(b"GET /api/websocket") {
        seen.rest_calls.fetch_add(1, Ordering::Relaxed);
        let _ = stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let text = |v: serde_json::Value| Message::text(v.to_string());
    if ws
        .send(text(
            serde_json::json!({"type":"auth_required","ha_version":"2025.4.4"}),
        ))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(Message::Text(t))) = msg else { return };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else { return };
                let id = v["id"].as_u64().unwrap_or(0);
                let reply = match v["type"].as_str().unwrap_or("") {
                    "auth" => {
                        if v["access_token"] != TOKEN {
                            let _ = ws.send(text(serde_json::json!({"type":"auth_invalid","message":"bad token"}))).await;
                            return;
                        }
                        let r = ws.send(text(serde_json::json!({"type":"auth_ok","ha_version":"2025.4.4"}))).await;
                        *seen.auth_ok_at.lock() = Some(Instant::now());
                        if r.is_err() { return }
                        continue;
                    }
                    "get_states" => {
                        let body = format!(r#"{{"id":{id},"type":"result","success":true,"result":{snapshot}}}"#);
                        if ws.send(Message::text(body)).await.is_err() { return }
                        *seen.snapshot_sent_at.lock() = Some(Instant::now());
                        // A re-snapshot on the same link keeps the channel it has.
                        if cmds.is_none() {
                            *cmds = rx.lock().take();
                        }
                        continue;
                    }
                    "ping" => serde_json::json!({"id":id,"type":"pong"}),
                    // No areas, entities or devices registered, in the shapes HA uses.
                    "config/entity_registry/list_for_display" => serde_json::json!({"id":id,"type":"result","success":true,"result":{"entity_categories":{},"entities":[]}}),
                    t if t.ends_with("_registry/list") => serde_json::json!({"id":id,"type":"result","success":true,"result":[]}),
                    _ => serde_json::json!({"id":id,"type":"result","success":true,"result":null}),
                };
                if ws.send(text(reply)).await.is_err() { return }
            }
            cmd = async { match cmds.as_mut() { Some(c) => c.recv().await, None => std::future::pending().await } } => {
                match cmd {
                    Some(Cmd::Frames(frames)) => {
                        for f in frames {
                            if ws.feed(Message::text(f)).await.is_err() { return }
                        }
                        if ws.flush().await.is_err() { return }
                    }
                    Some(Cmd::Probe(f, at)) => {
                        let t = Instant::now();
                        if ws.send(Message::text(f)).await.is_err() { return }
                        let _ = at.send(t);
                    }
                    None => *cmds = None,
                }
            }
        }
    }
}
