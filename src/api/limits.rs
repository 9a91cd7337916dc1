//! Per-request limits: load shedding past a number of requests in flight, a
//! deadline for each request, and the settings behind them and the listener's.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

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
        }
    }
}

/// What the guard middleware holds: the in-flight slots and the deadline.
pub(super) struct Guard {
    /// One permit per request in flight.
    in_flight: Arc<Semaphore>,
    /// A request's deadline.
    timeout: Duration,
}

impl Guard {
    pub(super) fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            timeout: limits.request_timeout,
        })
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

/// Sheds a request when every slot is taken (health excepted), and answers
/// 504 when the handler outlives the deadline (the handler is dropped).
pub(super) async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let _slot = if !sheddable(req.uri().path()) {
        None
    } else {
        match g.in_flight.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                metrics::counter!("ha_http_shed_total").increment(1);
                return ApiError::Overloaded.into_response();
            }
        }
    };
    match tokio::time::timeout(g.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            metrics::counter!("ha_http_timeouts_total").increment(1);
            ApiError::Timeout(g.timeout).into_response()
        }
    }
}
