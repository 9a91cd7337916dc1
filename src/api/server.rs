//! The accept loop. `axum::serve` has no header-read timeout, no connection
//! cap and no shutdown deadline, so connections are served here with hyper's
//! HTTP/1 builder: slow-loris clients are cut after `HEADER_READ_TIMEOUT`, at
//! most `MAX_CONNECTIONS` are open (one more is accepted only by closing the
//! oldest connection with nothing running, else it waits; the rest wait in
//! the kernel's backlog, so file descriptors are never exhausted), and
//! shutdown stops accepting, lets requests in flight finish, then closes
//! whatever is left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::deadline::{Polled, CHECK_EVERY};
use super::Limits;

/// How long accepting pauses after an error such as EMFILE, which would
/// otherwise repeat at once in a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// File descriptors kept for everything but client connections (Redis, MySQL,
/// HA, logs, the binary's own files) when checking `MAX_CONNECTIONS` against
/// the process's limit.
const RESERVED_FDS: u64 = 64;

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains
/// for at most `drain`: connections that are idle or still sending headers
/// close at once, requests in flight finish, and at `drain` every connection
/// left is dropped. Returns when shutdown began.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: CancellationToken,
    drain: Duration,
) -> Instant {
    warn_if_over_fd_limit(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = Arc::new(Conns::default());
    let hard_stop = CancellationToken::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not accept a connection");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Full: the oldest connection with nothing running (a slow-loris
        // sending headers, a slow body, an idle keep-alive) makes room, so a
        // flood of them cannot keep a health probe out. If every one is busy,
        // the new one waits for one to end.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                conns.evict_oldest_idle();
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits.header_read_timeout,
            shutdown.clone(),
            hard_stop.clone(),
            (slot, conns.clone()),
        ));
    }
    let began = Instant::now();
    drop(listener);
    // Every connection gives its slot back when it ends: all slots free means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(
            open,
            "Closing connections still open at the shutdown deadline"
        );
        hard_stop.cancel();
    }
    began
}

/// The address a request's connection came from, in its extensions: what
/// per-peer limits (failed logins) count by.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// One open connection, as the accept loop sees it when it must make room.
#[derive(Debug)]
pub struct Conn {
    /// Requests running on it (headers and body in) and streams it serves;
    /// zero while it sends headers or a body, or idles between requests.
    running: AtomicUsize,
    /// When it was accepted: the oldest idle one is closed first.
    since: Instant,
    /// Cancelled to close it at once.
    evict: CancellationToken,
}

/// Marks its connection busy while it lives (a request running, a stream).
#[derive(Debug)]
pub struct Busy(Arc<Conn>);

impl Busy {
    pub fn new(conn: &Arc<Conn>) -> Self {
        conn.running.fetch_add(1, Ordering::AcqRel);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, so a new one can close the oldest idle one.
#[derive(Default)]
struct Conns {
    /// By id.
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// The next id.
    next: AtomicU64,
}

impl Conns {
    fn open(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            running: AtomicUsize::new(0),
            since: Instant::now(),
            evict: CancellationToken::new(),
        });
        self.open.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn close(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// Closes the oldest connection with nothing running; `false` if every
    /// one is busy (then the new connection waits for one to end).
    fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock();
        let oldest = open
            .values()
            .filter(|c| c.running.load(Ordering::Acquire) == 0 && !c.evict.is_cancelled())
            .min_by_key(|c| c.since);
        match oldest {
            Some(c) => {
                c.evict.cancel();
                metrics::counter!("ha_http_evicted_total").increment(1);
                true
            }
            None => false,
        }
    }
}

/// One connection, holding its slot until it ends.
async fn connection(
    stream: TcpStream,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    (_slot, conns): (OwnedSemaphorePermit, Arc<Conns>),
) {
    let _ = stream.set_nodelay(true);
    let (id, conn) = conns.open();
    let peer = stream.peer_addr().ok().map(Peer);
    let evict = conn.evict.clone();
    let service = tower::ServiceExt::map_request(
        router,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(p) = peer {
                req.extensions_mut().insert(p);
            }
            req.extensions_mut().insert(conn.clone());
            req
        },
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(Polled).header_read_timeout(header_read_timeout);
    let conn = http
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    // The header-read deadline is checked only when hyper is polled (see
    // `deadline`): the tick polls it while a client is silent.
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ended = loop {
        tokio::select! {
            r = conn.as_mut() => break Some(r),
            _ = shutdown.cancelled() => break None,
            _ = evict.cancelled() => {
                conns.close(id);
                return;
            }
            _ = tick.tick() => {}
        }
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = hard_stop.cancelled() => {
                    conns.close(id);
                    return;
                }
            }
        }
    };
    conns.close(id);
    if let Err(e) = result {
        // Timeouts, resets and malformed requests: the client's doing, not ours.
        tracing::debug!(error = %e, "Connection ended with an error");
    }
}

/// Warns when `MAX_CONNECTIONS` could use up the file descriptors the process
/// may open: accept would then fail and so would Redis, MySQL and HA.
fn warn_if_over_fd_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let wanted = max_connections as u64 + RESERVED_FDS;
    if lim.rlim_cur != libc::RLIM_INFINITY && wanted > lim.rlim_cur {
        tracing::warn!(
            max_connections,
            open_files_limit = lim.rlim_cur,
            "MAX_CONNECTIONS plus {RESERVED_FDS} exceeds the open-files limit; lower it or raise `ulimit -n`"
        );
    }
}
