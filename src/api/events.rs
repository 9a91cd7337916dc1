//! `GET /api/v1/events`: the change stream as Server-Sent Events.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;

use super::{ApiError, AppState};
use crate::door::ErrorBody;
use crate::engine::Engine;
use crate::state::Glob;
use crate::stream::{Chunk, Event, Kind, Lagged, Subscription};

/// A comment line this often keeps proxies and the client's own timeout from
/// taking an idle stream for a dead one.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The reconnect delay a client is told to use (the `retry:` hint).
pub const RETRY_MS: u64 = 2000;
/// Events taken off a client's queue at once at most; the rest wait there,
/// where an overflow is noticed.
const MAX_PER_CHUNK: usize = 256;

/// Streams open at once at most, as a share of `MAX_CONNECTIONS`: each holds a
/// connection for as long as it lasts, and requests need the rest.
pub fn max_streams(max_connections: usize) -> usize {
    (max_connections / 2).max(1)
}

/// Which events one client wants.
struct Filter {
    /// `domain=`, repeatable; empty: all.
    domains: HashSet<String>,
    /// `entity_id=` globs, repeatable; empty: all.
    globs: Vec<Glob>,
    /// `full=1`: the whole state object in `state` events.
    full: bool,
    /// A scoped caller's engine: events of entities it does not see are
    /// never sent, and a `reload` names only what it may use. `None` for
    /// the admin.
    scoped: Option<Engine>,
}

/// `domain=` and `entity_id=` filters one stream may give: each event is
/// matched against every glob, for as long as the stream lasts.
const MAX_FILTERS: usize = 64;

impl Filter {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut f = Self {
            domains: HashSet::new(),
            globs: Vec::new(),
            full: false,
            scoped: None,
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if f.domains.len() + f.globs.len() >= MAX_FILTERS {
                return Err(ApiError::BadRequest(format!(
                    "more than {MAX_FILTERS} domain= and entity_id= filters; use a glob"
                )));
            }
            match &*k {
                "domain" if is_domain(&v) => {
                    f.domains.insert(v.into_owned());
                }
                "domain" => {
                    return Err(ApiError::BadRequest(format!(
                        "domain={v:?} is not a domain (lowercase letters, digits and _)"
                    )))
                }
                "entity_id" => f.globs.push(
                    Glob::new(&v)
                        .map_err(|e| ApiError::BadRequest(format!("entity_id={v:?}: {e}")))?,
                ),
                "full" => {
                    f.full = match &*v {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(ApiError::BadRequest(format!("full={v:?}: use 1 or 0"))),
                    }
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {other:?}; known: domain, entity_id, full"
                    )))
                }
            }
        }
        Ok(f)
    }

    /// The event's text for this client: its shared text, but for a scoped
    /// client's `reload`, which counts only the fetchers and templates the
    /// scope may use and, as `/api/v1/fetchers` through a scope, names no
    /// row's problems (they name rows the scope may not use).
    fn text(&self, e: &Event) -> Bytes {
        match (&self.scoped, &e.kind) {
            (Some(engine), Kind::Reload { .. }) => {
                let data = serde_json::json!({
                    "fetchers": engine.fetchers().loaded().defs.len(),
                    "templates": engine.prompt_list().len(),
                    "problems": [],
                });
                crate::stream::frame(Some(e.id), "reload", &data.to_string())
            }
            _ => e.sse(self.full).clone(),
        }
    }

    fn passes(&self, e: &Event) -> bool {
        let Some(id) = e.entity_id() else {
            return true;
        };
        self.scoped.as_ref().is_none_or(|s| s.states().sees(id))
            && (self.domains.is_empty() || self.domains.contains(crate::state::domain_of(id)))
            && (self.globs.is_empty() || self.globs.iter().any(|g| g.matches(id)))
    }
}

/// HA's rule for a domain: lowercase letters, digits and underscores.
fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// State changes, removals, resyncs and reloads as they happen.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "events",
    tag = "states",
    params(
        ("domain" = Option<Vec<String>>, Query, description = "Only entities of these domains (repeatable)", example = "light"),
        ("entity_id" = Option<Vec<String>>, Query, description = "Only entities matching these globs (`*`, `?`; repeatable)", example = "light.*"),
        ("full" = Option<String>, Query, description = "`1`: `state` events carry the full state object as `new`"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event; one no longer buffered gets a `resync` event first"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`: events `state`, `removed`, `resync`, `reload`, each with an `id`; a comment every 15 s", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad domain, glob or parameter", body = ErrorBody),
        (status = 503, description = "Half of MAX_CONNECTIONS are streams already (`overloaded`)", body = ErrorBody),
    )
)]
pub async fn stream(
    State(app): State<Arc<AppState>>,
    super::extract::Seen(engine): super::extract::Seen,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut filter = Filter::parse(query.as_deref())?;
    // A scoped caller's stream carries its entities only, whatever it asked.
    filter.scoped = engine.scope().map(|_| engine.clone());
    if app.engine.stream().subscribers() >= max_streams(app.limits.max_connections) {
        return Err(ApiError::Overloaded);
    }
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let mut sub = engine.subscribe(last);
    let mut first = BytesMut::from(format!("retry: {RETRY_MS}\n\n").as_bytes());
    if let Some(id) = sub.expired {
        first.extend_from_slice(&crate::stream::frame(
            Some(id),
            "resync",
            r#"{"reason":"expired"}"#,
        ));
    }
    let backlog = std::mem::take(&mut sub.backlog);
    // Opened with a console cookie (not the bearer token): it ends with the
    // login, at logout or expiry.
    let login = match app.api_token {
        Some(_) if !super::bearer_ok(&app, &headers) => app.sessions.lease(&headers),
        _ => None,
    };
    let client = Client {
        login,
        closing: app.engine.stream().closing(),
        sub,
        filter,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT),
        first: Some(first),
        backlog: backlog.into_iter(),
        ready: Default::default(),
    };
    let body = Body::from_stream(futures::stream::unfold(client, Client::step));
    Ok((
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        // Reverse proxies (nginx) would otherwise buffer the stream.
        [("x-accel-buffering", "no")],
        body,
    )
        .into_response())
}

/// One connected client.
struct Client {
    /// The console login the stream was opened with: when it expires, and a
    /// token cancelled at logout. The stream ends with it.
    login: Option<(std::time::Instant, tokio_util::sync::CancellationToken)>,
    /// Cancelled at shutdown: the stream ends so the connection can close.
    closing: tokio_util::sync::CancellationToken,
    /// Its queue.
    sub: Subscription,
    /// What it asked for.
    filter: Filter,
    /// The comment timer.
    heartbeat: tokio::time::Interval,
    /// The `retry:` hint (and an `expired` resync), sent first.
    first: Option<BytesMut>,
    /// Buffered events of a resume, sent before live ones.
    backlog: std::vec::IntoIter<Arc<Event>>,
    /// Event texts taken off the queue, not yet handed to hyper.
    ready: std::collections::VecDeque<Bytes>,
}

impl Client {
    /// The next chunk to write; `None` ends the stream. Each event goes out as
    /// its shared text, not copied: a burst to a hundred clients costs a
    /// hundred reference counts per event, and hyper writes queued chunks
    /// with one vectored write.
    async fn step(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(mut buf) = self.first.take() {
            for e in self.backlog.by_ref() {
                if self.filter.passes(&e) {
                    buf.extend_from_slice(&self.filter.text(&e));
                }
            }
            return Some((Ok(buf.freeze()), self));
        }
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some((Ok(b), self));
            }
            let login_ends = async {
                match &self.login {
                    Some((expires, ended)) => {
                        let at = tokio::time::Instant::from_std(*expires);
                        tokio::select! {
                            _ = ended.cancelled() => {}
                            _ = tokio::time::sleep_until(at) => {}
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            let got = tokio::select! {
                biased;
                _ = self.closing.cancelled() => return None,
                _ = login_ends => return None,
                r = self.sub.recv() => r,
                _ = self.heartbeat.tick() => {
                    return Some((Ok(Bytes::from_static(b": ping\n\n")), self));
                }
            };
            self.drain(got);
        }
    }

    /// Queues `got` and whatever else is waiting, up to [`MAX_PER_CHUNK`],
    /// keeping the events this client wants. An overflow ends with `resync`.
    fn drain(&mut self, got: Result<Chunk, Lagged>) {
        let mut next = Some(got);
        let mut n = 0;
        while let Some(r) = next {
            match r {
                Ok(chunk) => {
                    for e in chunk.iter().filter(|e| self.filter.passes(e)) {
                        self.ready.push_back(self.filter.text(e));
                    }
                    n += chunk.len();
                }
                Err(Lagged) => {
                    let id = self.sub.restart();
                    self.ready.push_back(crate::stream::frame(
                        Some(id),
                        "resync",
                        r#"{"reason":"overflow"}"#,
                    ));
                    break;
                }
            }
            next = (n < MAX_PER_CHUNK).then(|| self.sub.try_recv()).flatten();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_capped() {
        let q = |n: usize| {
            (0..n)
                .map(|i| format!("entity_id=light.{i}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert!(Filter::parse(Some(&q(MAX_FILTERS))).is_ok());
        let err = Filter::parse(Some(&q(MAX_FILTERS + 1))).err().unwrap();
        assert!(err.to_string().contains("more than 64"), "{err}");
    }
}
