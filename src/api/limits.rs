//! Per-request limits: load shedding past a number of requests in flight, a
//! deadline for each request, and the settings behind them and the listener's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::ApiError;
use crate::config::Settings;

/// Routes under this prefix bypass load shedding: probes must keep answering
/// while the API is saturated, or an orchestrator restarts a busy service.
const HEALTH_PREFIX: &str = "/api/health";

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
}

impl Guard {
    pub(super) fn layer(limits: &Limits) -> GuardLayer {
        GuardLayer(Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            max: limits.max_concurrent_requests,
            timeout: limits.request_timeout,
            hosts: limits.allowed_hosts.clone(),
        }))
    }

    /// A slot, or `None` when every one is taken.
    fn enter(self: &Arc<Self>) -> Option<Slot> {
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
/// every route but the health probes. The OpenAPI document asks this too.
pub(super) fn sheddable(path: &str) -> bool {
    let health = path
        .strip_prefix(HEALTH_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    !health
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
/// figure about a fifth of its throughput before (BENCHMARKS.md, fifth session).
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
        if let Some(why) = super::hosts::refused(&self.guard.hosts, &req) {
            metrics::counter!("ha_http_wrong_host_total").increment(1);
            return Guarded::Refused { why: Some(why) };
        }
        let slot = if sheddable(req.uri().path()) {
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
        Guarded::Running {
            inner: self.inner.call(req),
            timeout: self.guard.timeout,
            timer: None,
            _slot: slot,
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
                ..
            } => {
                if let Poll::Ready(r) = inner.poll(cx) {
                    return Poll::Ready(r);
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
