//! A path-prefix proxy, as Home Assistant's ingress is: a request under
//! [`PREFIX`] goes to the service with the prefix taken off, `X-Ingress-Path`
//! set and HA's own host name in `Host`, from its own source address
//! ([`PROXY_ADDRESS`], the service's `INGRESS_PROXY`). Any other path is
//! answered here, 404, and never reaches the service.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header::HOST, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

/// The prefix HA's ingress serves an add-on under.
pub const PREFIX: &str = "/api/hassio_ingress/test-ingress-token";
/// Where the proxy's requests come from (the Supervisor's is 172.30.32.2).
pub const PROXY_ADDRESS: &str = "127.0.0.2";

/// A running proxy, stopped on drop.
pub struct Ingress {
    /// `http://127.0.0.1:PORT`, the address a browser opens.
    pub base: String,
    /// The server task.
    task: JoinHandle<()>,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a proxy in front of `upstream`.
pub async fn start(upstream: SocketAddr) -> Ingress {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(move |req: Request| forward(upstream, req));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Ingress { base, task }
}

async fn forward(upstream: SocketAddr, mut req: Request) -> Response {
    let asked = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(rest) = asked.strip_prefix(PREFIX) else {
        return (StatusCode::NOT_FOUND, "outside the ingress prefix").into_response();
    };
    let rest = match rest.chars().next() {
        None => return Redirect::permanent(&format!("{PREFIX}/")).into_response(),
        Some('/') => rest.to_string(),
        Some('?') => format!("/{rest}"),
        Some(_) => return (StatusCode::NOT_FOUND, "outside the ingress prefix").into_response(),
    };
    *req.uri_mut() = rest.parse().unwrap();
    let headers = req.headers_mut();
    headers.insert("x-ingress-path", HeaderValue::from_static(PREFIX));
    headers.insert(HOST, HeaderValue::from_static("homeassistant.local:8123"));

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{PROXY_ADDRESS}:0").parse().unwrap())
        .unwrap();
    let Ok(stream) = socket.connect(upstream).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    match sender.send_request(req).await {
        // Streamed through: the change stream (SSE) stays live.
        Ok(resp) => resp.map(Body::new).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
