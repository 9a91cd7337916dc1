//! Per-request limits: load shedding past a number of requests in flight, a
//! deadline for each request, and the settings behind them and the listener's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::server::{Busy, Conn};
use super::ApiError;
use crate::config::Settings;

/// Routes under this prefix bypass load shedding: probes must keep answering
/// while the API is saturated, or an orchestrator restarts a busy service.
const HEALTH_PREFIX: &str = "/api/health";
/// The Prometheus route, which bypasses load shedding too.
const METRICS: &str = "/metrics";

/// The HTTP limits, from settings (or defaults, for router tests).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most (the listener stops accepting at this many).
    pub max_connections: usize,
    /// Requests handled at once; more are answered 503 at once, never queued.
    pub max_concurrent_requests: usize,
    /// Time one request may take before it is answered 504.
    pub request_timeout: Duration,
    /// Time a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// The `Host` names (and `Origin` hosts) every route answers to; empty: any.
    pub allowed_hosts: Vec<String>,
    /// Home Assistant's ingress proxy, whose requests skip the Host check
    /// and the token ([`super::ingress`]).
    pub ingress_proxy: Option<std::net::IpAddr>,
}

impl Default for Limits {
    /// The settings' defaults.
    fn default() -> Self {
        Self::from_settings(&Settings::embedded())
    }
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            max_connections: s.max_connections as usize,
            max_concurrent_requests: s.max_concurrent_requests as usize,
            request_timeout: s.request_timeout,
            header_read_timeout: s.header_read_timeout,
            max_body_bytes: s.max_body_bytes,
            allowed_hosts: super::hosts::allowed_hosts(s),
            ingress_proxy: s.ingress_proxy,
        }
    }
}

/// What the guard holds: the in-flight count and the deadline.
pub(super) struct Guard {
    /// Requests in flight (health probes not counted).
    in_flight: AtomicUsize,
    /// The most in flight; one more is shed.
    max: usize,
    /// A request's deadline.
    timeout: Duration,
    /// The names requests may come under ([`super::hosts`]).
    hosts: Vec<String>,
    /// HA's ingress proxy: it sends HA's own host name.
    ingress: Option<std::net::IpAddr>,
    /// How long a body may take to arrive.
    body_timeout: Duration,
    /// The largest body.
    max_body: usize,
}

impl Guard {
    pub(super) fn layer(limits: &Limits) -> GuardLayer {
        GuardLayer(Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max: limits.max_concurrent_requests,
            timeout: limits.request_timeout,
            hosts: limits.allowed_hosts.clone(),
            ingress: limits.ingress_proxy,
            body_timeout: limits.header_read_timeout,
            max_body: limits.max_body_bytes,
        }))
    }

    /// A slot, or `None` when every one is taken.
    pub(super) fn enter(self: &Arc<Self>) -> Option<Slot> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// One request's place among those in flight, given back when it is dropped.
pub(super) struct Slot(Arc<Guard>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a request to `path` may be shed (answered 503 `overloaded`):
/// every route but the health probes and `/metrics`, which must answer while
/// the API is saturated. The OpenAPI document asks this too.
pub(super) fn sheddable(path: &str) -> bool {
    let health = path
        .strip_prefix(HEALTH_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    !health && path != METRICS
}

/// Whether `req` sends a body: then its slot is taken only once the body has
/// arrived ([`body_first`]), so slow bodies cannot hold every slot.
fn has_body(req: &Request) -> bool {
    req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A request whose slot waits for its body: what [`body_first`] needs.
#[derive(Clone)]
pub(super) struct Deferred {
    /// The slots.
    guard: Arc<Guard>,
    /// How long the body may take.
    body_timeout: Duration,
    /// How large it may be.
    max_body: usize,
}

/// Reads a deferred request's body (within `HEADER_READ_TIMEOUT` and
/// `MAX_BODY_BYTES`), then takes its slot and marks its connection busy.
/// Before that, a slow body holds neither, and its connection is among the
/// first closed when the server needs room.
pub(super) async fn body_first(mut req: Request, next: Next) -> Response {
    let Some(d) = req.extensions_mut().remove::<Deferred>() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(d.body_timeout, axum::body::to_bytes(body, d.max_body)).await {
            Err(_) => return ApiError::SlowBody(d.body_timeout).into_response(),
            Ok(Err(_)) => {
                return ApiError::Rejected {
                    status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!("the body exceeds {} bytes (MAX_BODY_BYTES)", d.max_body),
                }
                .into_response()
            }
            Ok(Ok(b)) => b,
        };
    let Some(_slot) = d.guard.enter() else {
        metrics::counter!("ha_http_shed_total").increment(1);
        return ApiError::Overloaded.into_response();
    };
    let _busy = parts.extensions.get::<Arc<Conn>>().map(Busy::new);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Refuses a request under a name not in `ALLOWED_HOSTS` (403), sheds one
/// when every slot is taken (health excepted), and answers
/// 504 when the handler outlives the deadline (the handler is dropped).
///
/// A tower layer with its own future rather than `middleware::from_fn`: every
/// request passes here, and `from_fn` boxes the inner service and the future
/// per request, while the deadline's timer is armed only if the handler
/// waits at all. A cached `GET` answers on its first poll and never touches
/// the timer wheel. Together with the header-read timer these cost the `GET`
/// figure about a fifth of its throughput before (BENCHMARKS.md, "2026-11-30 04:59–06:33 UTC").
#[derive(Clone)]
pub(super) struct GuardLayer(Arc<Guard>);

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.0.clone(),
        }
    }
}

/// [`GuardLayer`] around one route.
#[derive(Clone)]
pub(super) struct GuardService<S> {
    /// The route.
    inner: S,
    /// Shared by every route.
    guard: Arc<Guard>,
}

impl<S> Service<Request> for GuardService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let refused = || match super::ingress::from_proxy(self.guard.ingress, &req) {
            true => None,
            false => super::hosts::refused(&self.guard.hosts, &req),
        };
        if let Some(why) = refused() {
            metrics::counter!("ha_http_wrong_host_total").increment(1);
            return Guarded::Refused { why: Some(why) };
        }
        let mut req = req;
        let shed = sheddable(req.uri().path());
        if shed && has_body(&req) {
            let deferred = Deferred {
                guard: self.guard.clone(),
                body_timeout: self.guard.body_timeout,
                max_body: self.guard.max_body,
            };
            req.extensions_mut().insert(deferred);
            return Guarded::Running {
                inner: self.inner.call(req),
                timeout: self.guard.timeout,
                timer: None,
                _slot: None,
                busy: None,
            };
        }
        let slot = if shed {
            match self.guard.enter() {
                Some(s) => Some(s),
                None => {
                    metrics::counter!("ha_http_shed_total").increment(1);
                    return Guarded::Refused { why: None };
                }
            }
        } else {
            None
        };
        let busy = req.extensions().get::<Arc<Conn>>().map(Busy::new);
        Guarded::Running {
            inner: self.inner.call(req),
            timeout: self.guard.timeout,
            timer: None,
            _slot: slot,
            busy,
        }
    }
}

pin_project_lite::pin_project! {
    /// A guarded request: shed at once, or running with its slot and a
    /// deadline timer made on its first wait.
    #[project = GuardedProj]
    pub(super) enum Guarded<F> {
        // Shed (`why` empty: every slot taken), or under a name not allowed.
        Refused { why: Option<String> },
        Running {
            #[pin]
            inner: F,
            timeout: Duration,
            timer: Option<Pin<Box<tokio::time::Sleep>>>,
            _slot: Option<Slot>,
            // The connection is busy until the answer is made, or, for a
            // stream, until its body ends.
            busy: Option<Busy>,
        },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Guarded<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Refused { why } => Poll::Ready(Ok(match why.take() {
                Some(why) => ApiError::Forbidden(why),
                None => ApiError::Overloaded,
            }
            .into_response())),
            GuardedProj::Running {
                inner,
                timeout,
                timer,
                busy,
                ..
            } => {
                if let Poll::Ready(r) = inner.poll(cx) {
                    return Poll::Ready(r.map(|resp| keep_busy(resp, busy.take())));
                }
                let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        metrics::counter!("ha_http_timeouts_total").increment(1);
                        Poll::Ready(Ok(ApiError::Timeout(*timeout).into_response()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// A streamed answer (`text/event-stream`) keeps its connection busy for as
/// long as its body runs; any other is done once made.
fn keep_busy(resp: Response, busy: Option<Busy>) -> Response {
    let streams = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    match busy {
        Some(busy) if streams => resp.map(|body| {
            Body::new(Holding {
                inner: body,
                _busy: busy,
            })
        }),
        _ => resp,
    }
}

pin_project_lite::pin_project! {
    /// A body that holds its connection's [`Busy`] until it is dropped.
    struct Holding {
        #[pin]
        inner: Body,
        _busy: Busy,
    }
}

impl hyper::body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
