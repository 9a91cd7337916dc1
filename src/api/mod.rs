//! The HTTP API (axum): states, health, fetchers, prompts, metrics and the
//! OpenAPI document, behind the limits in [`limits`] and the accept loop in [`server`].

mod deadline;
mod events;
mod extract;
mod fetchers;
mod health;
mod hosts;
mod ingress;
mod limits;
mod openapi;
mod prompts;
mod server;
mod session;
mod states;
mod status;

pub use crate::door::MAX_RESPONSE_BYTES;
pub use crate::door::{ApiError, RETRY_AFTER_SECS};
pub use events::{HEARTBEAT, RETRY_MS};
pub use fetchers::outcome_json;
pub use fetchers::MAX_BATCH;
pub use hosts::allowed_hosts;
pub use limits::Limits;
pub use openapi::{ApiDoc, BEARER};
pub use server::serve;
pub use session::{Sessions, SESSION_COOKIE, SESSION_TTL};
pub use states::HaState;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::engine::Engine;

/// What every handler can reach: the engine, and the HTTP matters of this door.
#[derive(Clone)]
pub struct AppState {
    /// States, fetchers, templates and the change stream.
    pub engine: Engine,
    /// When set, the bearer token every route but `/api/health` needs.
    pub api_token: Option<Arc<SecretString>>,
    /// Connection and request limits.
    pub limits: Limits,
    /// Console logins.
    pub sessions: Arc<Sessions>,
    /// Scoped tokens in force (`ha-fetchers token create`).
    pub tokens: Arc<crate::tokens::Tokens>,
}

impl AppState {
    /// This door over `engine`, with no token and the default limits: what
    /// router tests start from before setting the fields they need.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            api_token: None,
            limits: Limits::default(),
            sessions: Arc::default(),
            tokens: Arc::default(),
        }
    }
}

/// All routes. The state goes behind one `Arc`: axum clones it for every
/// request (twice, with the token check), and cloning each field's own `Arc`
/// was a measurable part of a cached `GET`. Without a token there is no
/// token check at all, rather than one that lets everything through.
/// Outermost, every request passes the guard: load shedding and the deadline.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with other front doors (the Model Context Protocol's `/mcp`)
/// beside the REST routes, behind the same token check and guard.
pub fn router_with(state: AppState, doors: Router) -> Router {
    let guard = limits::Guard::layer(&state.limits);
    // Only routes that read a body get the limit: it is an extension inserted
    // per request, which a cached GET need not pay for.
    let body_limit = DefaultBodyLimit::max(state.limits.max_body_bytes);
    let state = Arc::new(state);
    let routes = Router::new()
        .route("/api/health", get(health::overall))
        .route("/api/v1/states", get(states::list))
        .route("/api/v1/states/{entity_id}", get(states::one))
        .route("/api/v1/domains", get(states::domains))
        .route("/api/v1/summary", get(states::summary))
        .route("/api/v1/prompts", get(prompts::list))
        .route("/api/v1/prompts/{name}", get(prompts::one))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/status", get(status::status))
        .route(
            "/api/v1/session",
            get(session::get)
                .post(session::login)
                .delete(session::logout)
                .layer(body_limit),
        )
        .route(
            "/api/v1/prompts/{name}/render",
            post(prompts::render).layer(body_limit),
        )
        .route(
            "/api/v1/render",
            post(prompts::render_inline).layer(body_limit),
        )
        .route("/api/health/websocket", get(health::websocket_route))
        .route("/api/health/redis", get(health::redis_route))
        .route("/metrics", get(metrics))
        .route("/api/v1/fetchers", get(fetchers::list))
        .route(
            "/api/v1/fetchers/run",
            post(fetchers::run_many).layer(body_limit),
        )
        .route("/api/v1/fetchers/{name}", get(fetchers::one))
        .route(
            "/api/v1/fetchers/{name}/run",
            post(fetchers::run_one).layer(body_limit),
        )
        .route("/api/health/mysql", get(health::mysql_health))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .merge(doors);
    // Always in place: scoped tokens may be created while the service runs.
    let routes = routes.layer(middleware::from_fn_with_state(state.clone(), require_token));
    routes
        .layer(middleware::from_fn(limits::body_first))
        .layer(guard)
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
    )
)]
async fn metrics() -> String {
    crate::telemetry::prometheus().render()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Routes that answer without a token: health, so load balancers can probe
/// it; the console's page and assets and its login, so a browser can log in.
fn is_open(path: &str) -> bool {
    matches!(path, "/api/health" | "/api/v1/session" | "/") || path.starts_with("/console/")
}

/// Whether the request carries the bearer token.
fn bearer_ok(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(want) = &app.api_token else {
        return false;
    };
    let got = bearer(headers).unwrap_or("");
    bool::from(got.as_bytes().ct_eq(want.expose_secret().as_bytes()))
}

/// The token of the `Authorization: Bearer` header, if sent.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The routes a scoped token reaches: the reads its scope filters, the
/// console's status and `/mcp`. The rest (metrics, the health of each store)
/// needs the admin's.
fn scoped_may(path: &str) -> bool {
    matches!(
        path,
        "/api/health"
            | "/api/openapi.json"
            | "/api/v1/render"
            | "/api/v1/events"
            | "/api/v1/status"
            | "/mcp"
    ) || [
        "/api/v1/states",
        "/api/v1/domains",
        "/api/v1/summary",
        "/api/v1/fetchers",
        "/api/v1/prompts",
    ]
    .iter()
    .any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The caller's scope: a scoped token's in the bearer header, else that of
/// the scoped console login its cookie names; `None` for the admin and for
/// a caller with neither.
pub(super) fn caller_scope(
    app: &AppState,
    headers: &HeaderMap,
) -> Option<Arc<crate::state::Scope>> {
    let bearer = bearer(headers).and_then(|t| app.tokens.scope_of(t));
    bearer.or_else(|| app.sessions.scope(headers).flatten())
}

/// The bearer header, a console session's cookie, or HA's ingress proxy;
/// never a token in a URL. A scoped token's scope goes on the request, for
/// [`extract::Seen`] to give its handler the engine as the scope sees it.
async fn require_token(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = req.uri().path();
    if let Some(scope) = caller_scope(&app, req.headers()) {
        // The console's page, assets and login stay open to a scoped login.
        if !scoped_may(path) && !is_open(path) {
            return Err(ApiError::Forbidden(format!(
                "the token {:?} is scoped ({}); {path} needs the admin token",
                &*scope.name,
                scope.describe()
            )));
        }
        req.extensions_mut().insert(scope);
        return Ok(next.run(req).await);
    }
    // Nothing set: the API is open (loopback by default), as it always was.
    let open = app.api_token.is_none() && app.limits.ingress_proxy.is_none();
    if !open
        && !is_open(path)
        && !ingress::from_proxy(app.limits.ingress_proxy, &req)
        && !bearer_ok(&app, req.headers())
        && !app.sessions.valid(req.headers())
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}
