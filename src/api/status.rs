//! `GET /api/v1/status`: everything the console's status view shows, in one
//! answer that is always 200 (health routes answer 503 when degraded, which a
//! browser logs as an error on every refresh).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::health::{mysql, MysqlHealth};
use super::health::{redis, websocket, ServiceHealth, WebsocketHealth};
use super::AppState;
use crate::state::Resync;
use crate::stream::StreamStats;

/// The body of `/api/v1/status`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// The WebSocket link to Home Assistant.
    websocket: WebsocketHealth,
    /// The state store.
    redis: ServiceHealth,
    /// Where fetcher definitions come from.
    mysql: MysqlHealth,
    /// Entities mirrored.
    entities: usize,
    /// Domains among them.
    domains: usize,
    /// Events received from Home Assistant per second, oldest first, over the
    /// last five minutes (shorter right after start); empty for a scoped caller.
    events_per_second: Vec<u32>,
    /// Recent snapshots applied, oldest first (at most 20); none for a scoped caller.
    resyncs: Vec<Resync>,
    /// The change stream.
    stream: StreamStats,
}

/// The console's status view: link, stores, counts, activity.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    operation_id = "status",
    tag = "health",
    responses((status = 200, description = "The status, healthy or not", body = Status))
)]
pub async fn status(
    State(app): State<Arc<AppState>>,
    super::extract::Seen(engine): super::extract::Seen,
) -> Json<Status> {
    // Counts are the caller's scope's, the link's too. A snapshot's and a
    // reconcile's counts and the event rate are the house's (a rate of
    // motion at night says someone is home): a scoped caller gets none.
    let summary = engine.states().summary();
    let (resyncs, events_per_second) = match engine.scope() {
        None => (
            app.engine.states().resyncs(),
            app.engine.stream().events_per_second(),
        ),
        Some(_) => (Vec::new(), Vec::new()),
    };
    let (redis, mysql) = tokio::join!(redis(&app), mysql(engine.fetchers()));
    let mut websocket = websocket(&app);
    if engine.scope().is_some() {
        websocket.entity_count = summary.entity_count;
        websocket.reconcile = None;
    }
    Json(Status {
        websocket,
        redis,
        mysql,
        entities: summary.entity_count,
        domains: summary.domain_count,
        events_per_second,
        resyncs,
        stream: app.engine.stream().stats(),
    })
}
