//! Console logins: `API_TOKEN` exchanged for a session cookie (HttpOnly,
//! SameSite=Strict), so the browser never keeps the token and no token ever
//! goes in a URL (an `EventSource` cannot send a header). The API still
//! takes the bearer header.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::extract::Json as JsonBody;
use super::{ApiError, AppState};

/// The cookie's name.
pub const SESSION_COOKIE: &str = "hf_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Logins kept at once; the oldest goes first, so a login loop cannot grow memory.
const MAX_SESSIONS: usize = 1024;

/// Live console sessions: random ids and when each expires.
#[derive(Debug, Default)]
pub struct Sessions {
    /// By id (64 hex digits of randomness).
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// A new session's id.
    fn create(&self) -> String {
        let id: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|_, exp| *exp > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), now + SESSION_TTL);
        id
    }

    /// Whether the request carries a live session's cookie.
    pub fn valid(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers) else {
            return false;
        };
        self.live
            .lock()
            .get(id)
            .is_some_and(|exp| *exp > Instant::now())
    }

    fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.live.lock().remove(id);
        }
    }
}

/// The session cookie's value, if sent.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

/// Whether a login is needed and present.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Whether `API_TOKEN` is set.
    auth_required: bool,
    /// Whether this request may use the API (a live session, a bearer token,
    /// or no token needed).
    authenticated: bool,
    /// Why a login was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A login.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    /// `API_TOKEN`.
    token: String,
}

/// Whether this browser is logged in; open, so the console can ask before
/// anything else.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    operation_id = "get_session",
    tag = "console",
    security(()),
    responses((status = 200, description = "The session", body = SessionView))
)]
pub async fn get(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Json<SessionView> {
    let authenticated =
        app.api_token.is_none() || app.sessions.valid(&headers) || super::bearer_ok(&app, &headers);
    Json(SessionView {
        auth_required: app.api_token.is_some(),
        authenticated,
        error: None,
    })
}

/// Logs in: the token for a session cookie. A wrong token answers 200 with
/// `authenticated: false` and an `error`: a browser logs every 401 as a
/// console error, and the view is what the console shows.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    operation_id = "login",
    tag = "console",
    security(()),
    request_body(content = Login, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in (with `Set-Cookie`), or refused (`authenticated: false` and `error`)", body = SessionView),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON, but not a login", body = ErrorBody),
    )
)]
pub async fn login(
    State(app): State<Arc<AppState>>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let Some(want) = &app.api_token else {
        return Ok(Json(SessionView {
            auth_required: false,
            authenticated: true,
            error: None,
        })
        .into_response());
    };
    if !bool::from(
        login
            .token
            .as_bytes()
            .ct_eq(want.expose_secret().as_bytes()),
    ) {
        metrics::counter!("api_login_failures_total").increment(1);
        tracing::info!("Console login refused: wrong token");
        return Ok(Json(SessionView {
            auth_required: true,
            authenticated: false,
            error: Some("wrong token".into()),
        })
        .into_response());
    }
    let id = app.sessions.create();
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let view = SessionView {
        auth_required: true,
        authenticated: true,
        error: None,
    };
    Ok((
        [(SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"))],
        Json(view),
    )
        .into_response())
}

/// Logs out: the session ends and the cookie is cleared.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    operation_id = "logout",
    tag = "console",
    security(()),
    responses((status = 200, description = "Logged out", body = SessionView))
)]
pub async fn logout(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    app.sessions.remove(&headers);
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let view = SessionView {
        auth_required: app.api_token.is_some(),
        authenticated: app.api_token.is_none(),
        error: None,
    };
    (
        [(SET_COOKIE, HeaderValue::from_str(&clear).expect("ascii"))],
        Json(view),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_among_others() {
        let s = Sessions::default();
        let id = s.create();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; {SESSION_COOKIE}={id}; c=d")).unwrap(),
        );
        assert!(s.valid(&h));
        s.remove(&h);
        assert!(!s.valid(&h));
        let mut other = HeaderMap::new();
        other.insert(COOKIE, HeaderValue::from_static("hf_session=nope"));
        assert!(!s.valid(&other));
    }
}
