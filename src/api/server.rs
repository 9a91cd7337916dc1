//! The accept loop. `axum::serve` has no header-read timeout, no connection
//! cap and no shutdown deadline, so connections are served here with hyper's
//! HTTP/1 builder: slow-loris clients are cut after `HEADER_READ_TIMEOUT`, at
//! most `MAX_CONNECTIONS` are open (the rest wait in the kernel's backlog, so
//! file descriptors are never exhausted), and shutdown stops accepting, lets
//! requests in flight finish, then closes whatever is left.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
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
    let hard_stop = CancellationToken::new();
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
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
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits.header_read_timeout,
            shutdown.clone(),
            hard_stop.clone(),
            slot,
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

/// One connection, holding its slot until it ends.
async fn connection(
    stream: TcpStream,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(Peer);
    let service = tower::ServiceExt::map_request(
        router,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(p) = peer {
                req.extensions_mut().insert(p);
            }
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
            _ = tick.tick() => {}
        }
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = hard_stop.cancelled() => return,
            }
        }
    };
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
