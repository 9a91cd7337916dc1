//! Console logins: `API_TOKEN` exchanged for a session cookie (HttpOnly,
//! SameSite=Strict), so the browser never keeps the token and no token ever
//! goes in a URL (an `EventSource` cannot send a header). The API still
//! takes the bearer header.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::extract::Json as JsonBody;
use super::server::Peer;
use super::{ApiError, AppState};
use crate::door::ErrorBody;

/// The cookie's name.
pub const SESSION_COOKIE: &str = "hf_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Logins kept at once; the oldest goes first, so a login loop cannot grow memory.
const MAX_SESSIONS: usize = 1024;

/// Failed logins one peer may make per [`FAILURE_WINDOW`]; past them it gets
/// 429 with `Retry-After` until the window ends.
const MAX_FAILURES: u32 = 5;
/// The window [`MAX_FAILURES`] counts over.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Peers whose failures are remembered at once; the oldest is forgotten first.
const MAX_PEERS: usize = 4096;

/// One login.
#[derive(Debug)]
struct Live {
    /// When it ends.
    expires: Instant,
    /// Cancelled when it ends (logout, expiry, eviction): streams opened with
    /// its cookie end with it.
    ended: CancellationToken,
    /// The scope of the token it logged in with; `None` for the admin's.
    scope: Option<Arc<crate::state::Scope>>,
}

/// One peer's recent failed logins.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// How many in the window.
    count: u32,
    /// When the window began.
    since: Instant,
}

/// Live console sessions, and the failed logins of each peer.
#[derive(Debug, Default)]
pub struct Sessions {
    /// By id (64 hex digits of randomness).
    live: Mutex<HashMap<String, Live>>,
    /// By peer address (`None`: a request that came with none, in-process).
    failures: Mutex<HashMap<Option<IpAddr>, Failures>>,
}

impl Sessions {
    /// A new session's id, for a login with a token of `scope`.
    fn create(&self, scope: Option<Arc<crate::state::Scope>>) -> String {
        let id: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|_, l| {
            let keep = l.expires > now;
            if !keep {
                l.ended.cancel();
            }
            keep
        });
        if live.len() >= MAX_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, l)| l.expires)
                .map(|(k, _)| k.clone());
            if let Some(l) = oldest.and_then(|k| live.remove(&k)) {
                l.ended.cancel();
            }
        }
        live.insert(
            id.clone(),
            Live {
                expires: now + SESSION_TTL,
                ended: CancellationToken::new(),
                scope,
            },
        );
        id
    }

    /// Whether the request carries a live session's cookie.
    pub fn valid(&self, headers: &HeaderMap) -> bool {
        self.lease(headers).is_some()
    }

    /// The scope of the live session the request's cookie names: `None`
    /// without one, `Some(None)` for an admin's login.
    pub fn scope(&self, headers: &HeaderMap) -> Option<Option<Arc<crate::state::Scope>>> {
        let id = cookie(headers)?;
        let live = self.live.lock();
        let l = live.get(id).filter(|l| l.expires > Instant::now())?;
        Some(l.scope.clone())
    }

    /// The live session the request's cookie names: when it expires, and a
    /// token cancelled when it ends sooner.
    pub fn lease(&self, headers: &HeaderMap) -> Option<(Instant, CancellationToken)> {
        let id = cookie(headers)?;
        let live = self.live.lock();
        let l = live.get(id).filter(|l| l.expires > Instant::now())?;
        Some((l.expires, l.ended.clone()))
    }

    fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            if let Some(l) = self.live.lock().remove(id) {
                l.ended.cancel();
            }
        }
    }

    /// Seconds until `peer` may try again, if it has failed too often.
    fn locked_out(&self, peer: Option<IpAddr>) -> Option<u64> {
        let f = *self.failures.lock().get(&peer)?;
        let left = FAILURE_WINDOW.saturating_sub(f.since.elapsed());
        (f.count >= MAX_FAILURES && !left.is_zero()).then(|| left.as_secs().max(1))
    }

    /// Counts a failed login of `peer`; says whether this one locked it out.
    fn failed(&self, peer: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_PEERS && !failures.contains_key(&peer) {
            failures.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
            if failures.len() >= MAX_PEERS {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    failures.remove(&k);
                }
            }
        }
        let f = failures.entry(peer).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(f.since) >= FAILURE_WINDOW {
            *f = Failures {
                count: 0,
                since: now,
            };
        }
        f.count += 1;
        f.count == MAX_FAILURES
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
    /// What a scoped token's login sees (`token list`'s words); absent for
    /// the admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
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
pub async fn get(
    State(app): State<Arc<AppState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Json<SessionView> {
    let proxy = app.limits.ingress_proxy;
    // HA's ingress proxy has authenticated the person already.
    let via_ingress = super::ingress::is_proxy(proxy, peer.as_ref().map(|Extension(p)| p));
    let open = app.api_token.is_none() && proxy.is_none();
    let scope = super::caller_scope(&app, &headers);
    let authenticated = via_ingress
        || open
        || scope.is_some()
        || app.sessions.valid(&headers)
        || super::bearer_ok(&app, &headers);
    Json(SessionView {
        auth_required: !via_ingress && !open,
        authenticated,
        error: None,
        scope: scope.map(|s| s.describe()),
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
        (status = 429, description = "Too many wrong tokens from this address (5 a minute); `Retry-After` says when to try again", body = ErrorBody),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "JSON, but not a login", body = ErrorBody),
    )
)]
pub async fn login(
    State(app): State<Arc<AppState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let peer = peer.map(|Extension(Peer(a))| a.ip());
    if let Some(secs) = app.sessions.locked_out(peer) {
        metrics::counter!("api_login_failures_total").increment(1);
        return Err(ApiError::TooManyRequests(secs));
    }
    let scope = app.tokens.scope_of(&login.token);
    let Some(want) = app.api_token.as_ref().filter(|_| scope.is_none()) else {
        let id = scope.as_ref().map(|_| app.sessions.create(scope.clone()));
        return Ok(logged_in(&headers, id, scope.map(|s| s.describe())));
    };
    if !bool::from(
        login
            .token
            .as_bytes()
            .ct_eq(want.expose_secret().as_bytes()),
    ) {
        metrics::counter!("api_login_failures_total").increment(1);
        // A count, not a line per guess: one line when a peer is locked out.
        if app.sessions.failed(peer) {
            tracing::warn!(
                peer = ?peer,
                failures = MAX_FAILURES,
                "Console logins from this address refused for {} s after repeated wrong tokens (api_login_failures_total counts them)",
                FAILURE_WINDOW.as_secs()
            );
        }
        return Ok(Json(SessionView {
            auth_required: true,
            authenticated: false,
            error: Some("wrong token".into()),
            scope: None,
        })
        .into_response());
    }
    let id = app.sessions.create(None);
    Ok(logged_in(&headers, Some(id), None))
}

/// The answer to a good login: the session's cookie (none when no login is
/// needed), and what it sees.
fn logged_in(headers: &HeaderMap, id: Option<String>, scope: Option<String>) -> Response {
    let view = SessionView {
        auth_required: id.is_some(),
        authenticated: true,
        error: None,
        scope,
    };
    let Some(id) = id else {
        return Json(view).into_response();
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path={}; HttpOnly; SameSite=Strict; Max-Age={}",
        super::ingress::cookie_path(headers),
        SESSION_TTL.as_secs()
    );
    (
        [(SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"))],
        Json(view),
    )
        .into_response()
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
    let clear = format!(
        "{SESSION_COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        super::ingress::cookie_path(&headers)
    );
    let view = SessionView {
        auth_required: app.api_token.is_some(),
        authenticated: app.api_token.is_none(),
        error: None,
        scope: None,
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
        let id = s.create(None);
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

    #[test]
    fn logout_ends_the_lease_and_failures_lock_a_peer_out() {
        let s = Sessions::default();
        let id = s.create(None);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{SESSION_COOKIE}={id}")).unwrap(),
        );
        let (_, ended) = s.lease(&h).unwrap();
        assert!(!ended.is_cancelled());
        s.remove(&h);
        assert!(ended.is_cancelled(), "streams on this cookie end");

        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for n in 1..=MAX_FAILURES {
            assert_eq!(s.locked_out(a), None);
            assert_eq!(s.failed(a), n == MAX_FAILURES);
        }
        assert!(s.locked_out(a).is_some_and(|secs| (1..=60).contains(&secs)));
        assert_eq!(s.locked_out(b), None, "per peer");
    }
}
