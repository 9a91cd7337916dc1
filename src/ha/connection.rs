//! One WebSocket connection: frames in, text out.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use super::HaError;

/// A connected socket to HA.
pub struct Connection {
    /// The framed stream; tungstenite answers WebSocket-level pings itself.
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Connection {
    /// Opens the socket; frames up to `max_frame` bytes are accepted. A
    /// `wss://` URL is checked against `tls` (the platform's roots when `None`).
    pub async fn connect(
        url: &Url,
        max_frame: usize,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, HaError> {
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(max_frame))
            .max_frame_size(Some(max_frame));
        let connector = tls.map(Connector::Rustls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(cfg),
            false,
            connector,
        )
        .await
        .map_err(|e| match crate::tls::describe(&e) {
            Some(why) => HaError::Tls(why),
            None => HaError::WebSocket(e),
        })?;
        Ok(Self { ws })
    }

    /// The next text frame; `None` means HA closed the connection cleanly.
    /// The text stays in tungstenite's buffer: a 20 MB snapshot is not copied.
    pub async fn read_frame(&mut self) -> Result<Option<Utf8Bytes>, HaError> {
        while let Some(msg) = self.ws.next().await {
            match msg? {
                Message::Text(t) => return Ok(Some(t)),
                Message::Close(_) => return Ok(None),
                Message::Binary(b) => {
                    tracing::warn!(
                        bytes = b.len(),
                        "Skipping a binary frame from Home Assistant"
                    )
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        Ok(None)
    }

    /// Sends one text frame.
    pub async fn send(&mut self, text: String) -> Result<(), HaError> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// Says goodbye; errors are moot at this point.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.ws.close(None)).await;
    }
}
