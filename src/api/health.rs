//! `/api/health` and its parts.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::fetchers::BackendKind;

/// The WebSocket link as health sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebsocketHealth {
    /// Whether HA_URL and HA_TOKEN (or an add-on's SUPERVISOR_TOKEN) are set.
    pub configured: bool,
    /// Over TLS: `verified`, or `unverified` when `HA_TLS_VERIFY=false`
    /// (anyone on the path can read the token); absent over plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<&'static str>,
    /// Authenticated and subscribed.
    pub connected: bool,
    /// Something (event or pong) came from HA within CACHE_MAX_AGE.
    pub fresh: bool,
    /// HA's version.
    pub ha_version: Option<String>,
    /// Seconds since HA last sent an event or pong.
    pub last_event_age_secs: Option<f64>,
    /// Reconnects since start.
    pub reconnects: u64,
    /// The last connection error.
    pub last_error: Option<String>,
    /// Entities in the cache.
    pub entity_count: usize,
    /// What the periodic reconciles (`RECONCILE_INTERVAL`) repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<crate::state::Reconciled>,
}

/// A backing service as health sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceHealth {
    /// Whether the service is in use at all.
    pub configured: bool,
    /// Whether it answered.
    pub ok: bool,
    /// What is in use (`redis`, `memory`, `mysql`, `files`).
    pub backend: &'static str,
    /// Why it is not ok.
    pub error: Option<String>,
    /// Rewrites of Redis from the in-process index (Redis only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<crate::state::Rewrites>,
}

impl WebsocketHealth {
    pub fn ok(&self) -> bool {
        self.configured && self.connected && self.fresh
    }
}

pub fn websocket(app: &AppState) -> WebsocketHealth {
    let s = app.engine.states().summary();
    let meta = app.engine.states().meta();
    let fresh = s
        .last_event_age_secs
        .is_some_and(|a| a <= app.engine.link().cache_max_age.as_secs_f64());
    WebsocketHealth {
        configured: app.engine.link().configured,
        tls: app.engine.link().tls,
        connected: meta.connected,
        fresh,
        ha_version: meta.ha_version,
        last_event_age_secs: s.last_event_age_secs,
        reconnects: meta.reconnects,
        last_error: meta.last_error,
        entity_count: s.entity_count,
        reconcile: app.engine.states().reconciled(),
    }
}

pub async fn redis(app: &AppState) -> ServiceHealth {
    let store = app.engine.states().store();
    let configured = store.kind() == "redis";
    let res = tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await;
    let error = match res {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("redis did not answer within 2s".into()),
    };
    ServiceHealth {
        configured,
        ok: error.is_none(),
        backend: store.kind(),
        error,
        rewrites: configured.then(|| store.rewrites()),
    }
}

fn status(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The body of `/api/health`.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// The store.
    pub redis: ServiceHealth,
    /// `ok` when the link to HA is up and fresh and the store answers, else `degraded`.
    pub status: HealthStatus,
    /// The WebSocket link.
    pub websocket: WebsocketHealth,
}

/// The verdict of `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// Overall health; open (no token) so load balancers can probe it.
#[utoipa::path(
    get,
    path = "/api/health",
    operation_id = "health",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Degraded (same body)", body = Health),
    )
)]
pub async fn overall(State(app): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    let websocket = websocket(&app);
    let redis = redis(&app).await;
    let ok = websocket.ok() && redis.ok;
    let body = Health {
        redis,
        status: if ok {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        websocket,
    };
    (status(ok), Json(body))
}

/// The WebSocket link to HA.
#[utoipa::path(
    get,
    path = "/api/health/websocket",
    operation_id = "health_websocket",
    tag = "health",
    responses(
        (status = 200, description = "Connected and fresh", body = WebsocketHealth),
        (status = 503, description = "Not configured, not connected or stale (same body)", body = WebsocketHealth),
    )
)]
pub async fn websocket_route(
    State(app): State<Arc<AppState>>,
) -> (StatusCode, Json<WebsocketHealth>) {
    let ws = websocket(&app);
    (status(ws.ok()), Json(ws))
}

/// The state store (Redis, or the in-memory store).
#[utoipa::path(
    get,
    path = "/api/health/redis",
    operation_id = "health_redis",
    tag = "health",
    responses(
        (status = 200, description = "The store answers", body = ServiceHealth),
        (status = 503, description = "The store does not answer (same body)", body = ServiceHealth),
    )
)]
pub async fn redis_route(State(app): State<Arc<AppState>>) -> (StatusCode, Json<ServiceHealth>) {
    let r = redis(&app).await;
    (status(r.ok), Json(r))
}

/// How long the health probe waits for MySQL.
const MYSQL_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of the MySQL health route.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub struct MysqlHealth {
    /// `mysql`, `files` or `rows`.
    backend: BackendKind,
    /// Whether definitions come from MySQL at all.
    configured: bool,
    /// Why it is not ok.
    error: Option<String>,
    /// Definitions loaded.
    fetchers: usize,
    /// Unix seconds of the last successful load.
    last_ok_at: Option<f64>,
    /// Whether it answered and the last load worked.
    ok: bool,
    /// Rows that did not load.
    problems: usize,
}

/// Where fetcher definitions come from, and whether MySQL answers.
#[utoipa::path(
    get,
    path = "/api/health/mysql",
    operation_id = "health_mysql",
    tag = "health",
    responses(
        (status = 200, description = "Healthy (or definitions come from files)", body = MysqlHealth),
        (status = 503, description = "MySQL does not answer or the last load failed (same body)", body = MysqlHealth),
    )
)]
pub async fn mysql_health(State(app): State<Arc<AppState>>) -> (StatusCode, Json<MysqlHealth>) {
    let body = mysql(app.engine.fetchers()).await;
    (status(body.ok), Json(body))
}

/// Where definitions come from, and whether MySQL answers, as `reg` sees
/// it: through a scope, the counts are the scope's fetchers and no row's
/// problems.
pub async fn mysql(reg: &crate::fetchers::Runner) -> MysqlHealth {
    let status = reg.load_status();
    let configured = status.backend == BackendKind::Mysql;
    let ping = match tokio::time::timeout(MYSQL_PING_TIMEOUT, reg.ping()).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "mysql did not answer within {MYSQL_PING_TIMEOUT:?}"
        )),
    };
    let error = ping.err().or(status.error.clone());
    let ok = error.is_none();
    let loaded = reg.loaded();
    MysqlHealth {
        backend: status.backend,
        configured,
        error,
        fetchers: loaded.defs.len(),
        last_ok_at: status.last_ok_at,
        ok,
        problems: loaded.problems.len(),
    }
}
