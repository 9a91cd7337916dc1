//! Requests that used to crash, stall or exhaust the server, one test per
//! abuse: slow-loris, too many connections, saturation, slow clients at
//! shutdown, huge bodies and batches, a multibyte HA error, a cache fed
//! distinct huge params, and what logs show. Each prints its figures (run
//! with `--nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_fetchers::fetchers::{FetchError, FetchRequest, Registry, Row, Runner};
use ha_fetchers::ha::HaRest;
use ha_fetchers::sim::Sim;
use ha_fetchers::state::{Fallback, FallbackError, MemoryStore, StateManager};
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers;
use crate::helpers::proc::rss_kib;
use crate::helpers::serial;
use crate::helpers::{Harness, Kind, Logs, TestStore, TOKEN};

/// A request whose headers never end: what a slow-loris client sends.
const HALF_HEADER: &[u8] = b"GET /api/v1/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

/// A request whose body never arrives in full. Its request slot is taken
/// only once the body is in, so it holds none; its connection is idle, and
/// among the first closed when the server needs room.
const HALF_BODY: &[u8] = b"POST /api/v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\n\
content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"body\": \"";

/// The app serving on a free port, and how to stop it.
struct Running {
    port: u16,
    stop: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

impl Running {
    async fn start(settings: Settings) -> Self {
        Self::serve(Application::build(settings).await.expect("builds"))
    }

    fn serve(app: Application) -> Self {
        let port = app.port();
        let stop = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            port,
            stop,
            server,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("answers")
    }

    /// Cancels and waits; returns how long stopping took.
    async fn stop(self) -> Duration {
        let t = Instant::now();
        self.stop.cancel();
        self.server.await.expect("joins").expect("stops cleanly");
        t.elapsed()
    }
}

/// Settings with no services and the shipped fetchers.
fn settings() -> Settings {
    let mut s = Settings::embedded();
    s.fetchers_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fetchers");
    s
}

/// A connection that has sent `bytes` and nothing more.
async fn partial(port: u16, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    s.write_all(bytes).await.expect("writes");
    s
}

/// Reads until the server closes `s`; `None` if it is still open after `within`.
async fn closed_within(mut s: TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(got)
}

/// The `error.code` of an API error body.
async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("a JSON error body");
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// Connections the server on `port` has accepted: established sockets on that
/// local port that have a file (inode). Ones waiting in the kernel's backlog
/// have none yet, so they cost no file descriptor.
fn accepted(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1).and_then(|a| a.rsplit(':').next());
            local.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && f.get(3) == Some(&"01")
                && f.get(9).is_some_and(|inode| *inode != "0")
        })
        .count()
}

#[tokio::test]
async fn slow_loris_connections_are_closed_while_health_answers() {
    let _alone = serial::alone().await;
    assert_eq!(
        Settings::embedded().header_read_timeout,
        Duration::from_secs(10),
        "the default the README promises"
    );
    let mut s = settings();
    let timeout = Duration::from_secs(1);
    s.header_read_timeout = timeout;
    let app = Running::start(s).await;

    let started = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..300 {
        conns.push(partial(app.port, HALF_HEADER).await);
    }
    // One that sends nothing, one that idles after a complete request.
    conns.push(partial(app.port, b"").await);
    let mut keep_alive = partial(
        app.port,
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let mut buf = [0u8; 512];
    assert!(keep_alive.read(&mut buf).await.unwrap() > 0, "answered");
    conns.push(keep_alive);

    let t = Instant::now();
    let health = app.get("/api/health").await;
    let health_took = t.elapsed();
    assert!(matches!(health.status().as_u16(), 200 | 503));
    assert!(health.json::<Value>().await.is_ok());
    assert!(health_took < Duration::from_millis(500), "{health_took:?}");

    let closed = futures::future::join_all(conns.into_iter().map(|c| async move {
        closed_within(c, timeout + Duration::from_secs(3))
            .await
            .map(|_| started.elapsed())
    }))
    .await;
    let open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "{open} slow connections still open");
    let last = closed.iter().flatten().max().unwrap();
    let first = closed.iter().flatten().min().unwrap();
    eprintln!(
        "slow-loris: 302 connections closed between {first:?} and {last:?} (header timeout {timeout:?}); /api/health answered in {health_took:?}"
    );
    assert!(*last < timeout + Duration::from_millis(1500), "{last:?}");
    // And the server still serves, on a new connection: the client's pooled
    // one from above idled past the header timeout too, and the server may be
    // closing it just as the client reuses it.
    let fresh = reqwest::get(app.url("/api/health")).await.expect("answers");
    assert!(matches!(fresh.status().as_u16(), 200 | 503));
    app.stop().await;
}

/// Past `MAX_CONNECTIONS`, a new connection closes the oldest one with
/// nothing running: the server never holds more than the cap.
#[tokio::test]
async fn connections_beyond_the_cap_wait_in_the_backlog() {
    let mut s = settings();
    s.max_connections = 8;
    let app = Running::start(s).await;
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(partial(app.port, HALF_HEADER).await);
    }
    crate::helpers::wait_for("the server to take its 8", || accepted(app.port) >= 8).await;
    let held = accepted(app.port);
    eprintln!("connection cap 8: 100 clients connected, the server holds {held}");
    assert_eq!(held, 8);
    // Clients that go give their slots back; the server serves again.
    drop(conns);
    let t = Instant::now();
    assert!(matches!(
        app.get("/api/health").await.status().as_u16(),
        200 | 503
    ));
    eprintln!(
        "connection cap: /api/health answered {:?} after the clients left",
        t.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn saturation_sheds_with_retry_after_while_health_answers() {
    let _alone = serial::alone().await;
    let mut s = settings();
    s.max_concurrent_requests = 4;
    let app = Running::start(s).await;
    // Four renders that spin until their deadline hold the four slots.
    let mut holders = Vec::new();
    for _ in 0..4 {
        let (http, url) = (app.http.clone(), app.url("/api/v1/render"));
        holders.push(tokio::spawn(async move {
            let body = json!({"body": "{% set s = \"a\" * 10000000 %}{% for i in range(100000) %}{% set n = s ~ \"b\" %}{% endfor %}"});
            let _ = http.post(url).json(&body).send().await;
        }));
    }
    helpers::wait_for_async("the slots to fill", || async {
        app.get("/api/v1/summary").await.status() == 503
    })
    .await;

    let t = Instant::now();
    let r = app.get("/api/v1/summary").await;
    let took = t.elapsed();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(r).await, "overloaded");
    assert!(took < Duration::from_millis(200), "shed at once: {took:?}");

    for path in ["/api/health", "/api/health/redis", "/api/health/websocket"] {
        let r = app.get(path).await;
        let v: Value = r.json().await.unwrap();
        assert!(
            v.pointer("/error/code").is_none(),
            "{path} answered while saturated: {v}"
        );
    }
    eprintln!("saturation: 4 of 4 slots held, a 5th request got 503 + Retry-After in {took:?}, /api/health* answered");

    for h in holders {
        h.abort();
    }
    helpers::wait_for_async("slots to free", || async {
        app.get("/api/v1/summary").await.status() == 200
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_request_past_the_timeout_is_answered_504() {
    let mut s = settings();
    s.request_timeout = Duration::from_millis(500);
    let app = Running::start(s).await;
    let t = Instant::now();
    let slow = partial(app.port, HALF_BODY).await;
    let answer = closed_within(slow, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    eprintln!("request timeout 500 ms: answered after {:?}", t.elapsed());
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_with_ten_slow_clients_keeps_its_deadline() {
    let _alone = serial::alone().await;
    let deadline = Duration::from_secs(2);
    assert_eq!(ha_fetchers::app::SHUTDOWN_DEADLINE, Duration::from_secs(10));
    let app = Application::build(settings())
        .await
        .unwrap()
        .with_shutdown_deadline(deadline);
    let app = Running::serve(app);
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(partial(app.port, HALF_BODY).await);
    }
    // One request in flight that completes during the drain gets its answer.
    let body = br#"{"body": "hello"}"#;
    let head = format!(
        "POST /api/v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut finishing = partial(app.port, head.as_bytes()).await;
    let idle = partial(app.port, b"").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let port = app.port;
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    finishing.write_all(body).await.unwrap();
    let answer = closed_within(finishing, Duration::from_secs(1)).await;
    let idle_closed = closed_within(idle, Duration::from_millis(100))
        .await
        .is_some();
    let refused = TcpStream::connect(("127.0.0.1", port)).await.is_err();
    let took = stopping.await.unwrap();
    let slow_closed = futures::future::join_all(
        slow.into_iter()
            .map(|c| closed_within(c, Duration::from_millis(500))),
    )
    .await;
    eprintln!("shutdown: deadline {deadline:?}, 10 slow clients, stopped in {took:?}");
    let answer = String::from_utf8_lossy(answer.as_deref().unwrap_or_default()).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "in-flight request finished: {answer}"
    );
    assert!(idle_closed, "an idle connection closes at once");
    assert!(refused, "no new connections once stopping");
    assert!(slow_closed.iter().all(Option::is_some), "slow clients cut");
    assert!(
        took >= deadline / 2,
        "slow clients were waited for: {took:?}"
    );
    assert!(took <= deadline + Duration::from_millis(500), "{took:?}");
}

/// The real binary, SIGTERM, default deadline: 10 slow clients cannot keep it
/// up past [`SHUTDOWN_DEADLINE`] (they kept it up 31 s before).
#[tokio::test]
async fn sigterm_with_ten_slow_clients_exits_within_10s() {
    let _alone = serial::alone().await;
    let (mut child, base) = demo(&[]).await;
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(partial(port, HALF_BODY).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    // SAFETY: kill only sends a signal to the child we started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = t.elapsed();
    eprintln!("SIGTERM with 10 slow clients: exited in {took:?} ({exit:?})");
    assert!(exit.success());
    assert!(took <= ha_fetchers::app::SHUTDOWN_DEADLINE + Duration::from_millis(500));
    drop(slow);
}

/// Starts `ha-fetchers demo` on a free port with `env`; returns it and its API base
/// once it serves. Its stderr goes to a file the caller can read after it ends.
async fn demo(env: &[(&str, &str)]) -> (std::process::Child, String) {
    demo_logging(env, std::process::Stdio::null()).await
}

async fn demo_logging(
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ha-fetchers"));
    cmd.args(["demo", "--bind", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || crate::helpers::proc::demo_address(stdout));
    let base = tokio::time::timeout(Duration::from_secs(30), base)
        .await
        .expect("the demo starts")
        .unwrap()
        .expect("the API address is printed");
    (child, base)
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    assert_eq!(Settings::embedded().max_body_bytes, 1024 * 1024);
    let app = Running::start(settings()).await;
    let big = format!(r#"{{"body": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    for path in [
        "/api/v1/render",
        "/api/v1/fetchers/run",
        "/api/v1/fetchers/ha_lights_on/run",
    ] {
        let r = app
            .http
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        assert_eq!(error_code(r).await, "payload_too_large");
    }
    // Chunked, so no content-length to refuse it by: cut at the limit while reading.
    let mut c = partial(
        app.port,
        b"POST /api/v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await;
    let (mut rd, mut wr) = c.split();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
    let write = async {
        for _ in 0..32 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let mut answer = vec![0u8; 4096];
    let (n, _) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), rd.read(&mut answer)),
        write
    );
    let n = n.expect("answered").unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    eprintln!("2 MiB bodies: 413 with content-length and chunked");
    app.stop().await;
}

/// A batch body: `n` runs of a shipped fetcher.
fn batch(n: usize) -> String {
    let items = vec![json!({"name": "ha_lights_on"}); n];
    json!({ "fetchers": items }).to_string()
}

#[tokio::test]
async fn a_batch_of_70000_is_refused_quickly() {
    let _alone = serial::alone().await;
    assert_eq!(ha_fetchers::api::MAX_BATCH, 32);
    // With the default body limit the body alone is too large...
    let app = Running::start(settings()).await;
    let post = |app: &Running, body: String| {
        app.http
            .post(app.url("/api/v1/fetchers/run"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let t = Instant::now();
    let r = post(&app, batch(70_000)).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "payload_too_large");
    eprintln!(
        "batch of 70,000 (1.7 MB): 413 in {:?} at the default body limit",
        t.elapsed()
    );
    app.stop().await;

    // ...and with a body limit that lets it through, the batch cap refuses it.
    let mut s = settings();
    s.max_body_bytes = 16 * 1024 * 1024;
    let app = Running::start(s).await;
    let t = Instant::now();
    let r = post(&app, batch(70_000)).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_large");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("at most 32") && message.contains("70000"),
        "{message}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    eprintln!("batch of 70,000 under a 16 MiB body limit: 413 in {took:?}: {message}");
    let r = post(&app, batch(33)).await.unwrap();
    assert_eq!(r.status(), 413);
    let r = post(&app, batch(32)).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 32);
    assert!(matches!(
        app.get("/api/health").await.status().as_u16(),
        200 | 503
    ));
    app.stop().await;
}

#[tokio::test]
async fn a_rest_error_with_multibyte_text_is_cut_not_panicked_on() {
    // Byte 200 falls inside an `é`: `String::truncate(200)` panicked here.
    let body = format!("a{}", "é".repeat(150));
    let served = body.clone();
    let fake = axum::Router::new().fallback(move || {
        let b = served.clone();
        async move { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, b) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: url::Url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, fake).await });

    let rest = HaRest::new(url.clone(), SecretString::from("t"), Duration::from_secs(2));
    match rest.fetch_state("light.kitchen").await {
        Err(FallbackError::Status { status, message }) => {
            assert_eq!(status, 500);
            assert!(message.len() <= 200 && body.starts_with(&message));
            assert_eq!(message.len(), 199);
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    // Through the API: a cache miss reads REST and answers 503, and the app lives on.
    let mut s = settings();
    s.ha_url = Some(url);
    s.ha_token = Some(SecretString::from("t"));
    let app = Running::start(s).await;
    let r = app.get("/api/v1/states/light.kitchen").await;
    assert_eq!(r.status(), 503);
    assert_eq!(error_code(r).await, "unavailable");
    assert!(matches!(
        app.get("/api/health").await.status().as_u16(),
        200 | 503
    ));
    eprintln!("HA REST 500 with a multibyte body: cut to 199 bytes, API answered 503");
    app.stop().await;
}

/// An engine over an empty house with one `entities` fetcher that caches for 5 minutes.
fn listing_engine() -> Runner {
    let row = Row {
        name: "listing".into(),
        description: "A listing.".into(),
        source: "entities".into(),
        params: "{}".into(),
        required_params: "[]".into(),
        template: None,
        ttl_seconds: 300,
        timeout_ms: 10_000,
        enabled: true,
    };
    Runner::new(
        Registry::from_rows(vec![row]),
        StateManager::new(Arc::new(MemoryStore::new()), None),
    )
}

#[tokio::test]
async fn distinct_huge_params_stay_within_the_cache_byte_cap() {
    let cap = ha_fetchers::fetchers::MAX_CACHED_BYTES;
    let engine = listing_engine();
    let rss_before = rss_kib();
    let filler = "x".repeat(1_900_000);
    let mut peak = 0;
    for i in 0..200 {
        let req = FetchRequest::new("listing").param("domain", format!("{i:03}{filler}"));
        let out = engine.run(req).await;
        assert!(out.result.is_ok(), "{:?}", out.result);
        peak = peak.max(engine.cache_bytes());
        assert!(
            engine.cache_bytes() <= cap,
            "{} > {cap}",
            engine.cache_bytes()
        );
    }
    assert!(peak > cap / 2, "it still caches: peak {peak}");
    // Printed, not asserted: sibling tests share the process and its RSS.
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!(
        "cache: 200 distinct 1.9 MB params, peak {:.1} MiB held (cap {} MiB), RSS +{} MiB",
        peak as f64 / 1048576.0,
        cap / 1048576,
        grown / 1024
    );
}

#[tokio::test]
async fn trace_filter_keeps_noisy_crates_quiet() {
    let _ = Logs::capture(); // pins callsite interest for this binary
    let run = |spec: &str| {
        let logs = Logs::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_env_filter(ha_fetchers::telemetry::env_filter(spec))
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::trace!(target: "tungstenite::protocol", "frame {{\"type\":\"auth\",\"access_token\":\"{TOKEN}\"}}");
            tracing::trace!(target: "tokio_tungstenite", "tt trace");
            tracing::info!(target: "tungstenite::protocol", "tungstenite info");
            tracing::trace!(target: "ha_fetchers::ha::session", "our trace");
        });
        logs.text()
    };
    let trace = run("trace");
    assert!(trace.contains("our trace"), "{trace}");
    assert!(trace.contains("tungstenite info"), "{trace}");
    assert!(
        !trace.contains(TOKEN) && !trace.contains("tt trace"),
        "{trace}"
    );
    // Named explicitly, it is taken at its word.
    let asked = run("info,tungstenite=trace");
    assert!(asked.contains(TOKEN), "{asked}");
}

/// The real binary at `RUST_LOG=trace`: the demo's HA token never shows.
#[tokio::test]
async fn trace_logs_of_the_binary_never_show_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr.log");
    let file = std::fs::File::create(&path).unwrap();
    let (mut child, base) = demo_logging(&[("RUST_LOG", "trace")], file.into()).await;
    let r = reqwest::get(format!("{base}/api/v1/states/light.bed_light"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SAFETY: kill only sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("TRACE"), "trace is on");
    assert!(text.contains("WebSocket authenticated"));
    assert!(!text.contains("demo-token"), "HA_TOKEN in the trace logs");
    eprintln!(
        "RUST_LOG=trace: {} log lines, the token in none",
        text.lines().count()
    );
}

#[tokio::test]
async fn url_credentials_never_reach_logs() {
    let (logs, _guard) = Logs::capture();
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let mut s = helpers::settings(&sim);
    let mut url = sim.url();
    url.set_username("ha-user").unwrap();
    url.set_password(Some("hunter2-password")).unwrap();
    s.ha_url = Some(url);
    let h = Harness::start_with(sim, s, TestStore::new(Kind::Memory).await).await;
    h.synced().await;
    let text = logs.text();
    assert!(
        !logs
            .lines_with(&["WebSocket authenticated", "***"])
            .is_empty(),
        "{text}"
    );
    assert!(
        !text.contains("hunter2-password") && !text.contains("ha-user"),
        "{text}"
    );
    h.finish().await;
}

#[tokio::test]
async fn request_values_are_escaped_in_text_logs() {
    let (logs, _guard) = Logs::capture();
    let engine = listing_engine();
    let forged = "x\nERROR forged line\u{1b}[2J";
    let out = engine
        .run(FetchRequest::new("listing").param(forged, 1))
        .await;
    assert!(matches!(out.result, Err(FetchError::BadParams(_))));
    let text = logs.text();
    assert_eq!(logs.lines_with(&["Fetcher failed"]).len(), 1, "{text}");
    assert!(!text.contains('\u{1b}'), "raw ESC in logs: {text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("ERROR forged")),
        "{text}"
    );
    assert!(text.contains(r"x\nERROR forged line\u{1b}[2J"), "{text}");
    eprintln!("escaped: {}", logs.lines_with(&["Fetcher failed"])[0]);
}

/// A flood of connections that trickle header bytes and reconnect when cut,
/// past `MAX_CONNECTIONS`, and slow bodies on every request slot: health and
/// `/metrics` answer at once, and so does a real request, since idle
/// connections make room for new ones and a slow body holds no slot.
#[tokio::test]
async fn a_connection_flood_and_slow_bodies_leave_health_answering() {
    let _alone = serial::alone().await;
    let mut s = settings();
    s.max_connections = 128;
    s.max_concurrent_requests = 8;
    let app = Running::start(s).await;
    let port = app.port;
    let stop = CancellationToken::new();
    // 512 flooders (4x the cap), each reconnecting the moment it is cut and
    // sending a header byte every 100 ms.
    let mut flood = Vec::new();
    for _ in 0..512 {
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                // A short pause before each reconnect keeps the churn from
                // taking both cores from the rest of the test run.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                let _ = c.write_all(&HALF_HEADER[..20]).await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    if c.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    // 64 slow bodies: more than the 8 request slots.
    let mut bodies = Vec::new();
    for _ in 0..64 {
        bodies.push(partial(port, HALF_BODY).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut worst = Duration::ZERO;
    for path in ["/api/health", "/metrics", "/api/v1/summary"] {
        for _ in 0..5 {
            let t = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                reqwest::Client::new().get(app.url(path)).send(),
            )
            .await
            .unwrap_or_else(|_| panic!("{path} unanswered for 5 s under the flood"))
            .expect("answers");
            let took = t.elapsed();
            worst = worst.max(took);
            assert!(
                matches!(r.status().as_u16(), 200 | 503),
                "{path}: {}",
                r.status()
            );
            if path == "/api/v1/summary" {
                assert_eq!(r.status(), 200, "a slow body holds no request slot");
            }
        }
    }
    eprintln!(
        "flood: 512 reconnecting slow-header clients on 128 connections and 64 slow bodies on 8 slots: health, /metrics and a GET answered within {worst:?}"
    );
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    stop.cancel();
    for f in flood {
        let _ = f.await;
    }
    drop(bodies);
    app.stop().await;
}
