//! `bench --stream`: the change stream (`GET /api/v1/events`) under load.
//!
//! Three figures, in this order (the RSS peak is reset before the third, and
//! the ingest blasts, which build ~200 MB of frames, come last so they do not
//! set it):
//! 1. 100 subscribers at a paced 1,000 state changes/s: event → delivery.
//! 2. Stalled: 99 reading subscribers and one that never reads; the others'
//!    latency, the process's RSS, and whether the stalled one is told.
//! 3. Ingest blasts with no subscriber (fresh apps) against 100 subscribers.
//!
//! The app is the real `Application` on Redis (as in the other figures) in
//! this process, mirroring the simulated HA with a 10,000-entity house. The
//! subscribers are hyper HTTP/1.1 client connections on a thread and
//! current-thread runtime of their own; the driver and the app share the main
//! runtime; figures 1 and 2 pin nothing (on one core the app's p99 grew from
//! ~3 to ~10 ms). Figure 3 compares the app's ingest with and without
//! clients, so the clients must not take the app's CPU: there this process
//! (app, fake HA, driver) and Redis are pinned to CPU 0, the subscribers run
//! in a process of their own (`bench --stream-clients`) on CPU 1, and the
//! blasts of an app without subscribers and of one with them alternate, so
//! the machine's drift falls on both alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::app::{fake_ha, Running, REDIS_URL};
use super::figures::blast;
use super::house::House;
use super::http::Latencies;
use super::pin;
use super::report::{self, Row};

/// Entities in the house, as in the other figures.
const ENTITIES: usize = 10_000;
/// Subscribers of figures 1 and 3 (in 2, one of them is the stalled one).
const SUBSCRIBERS: usize = 100;
/// State changes per second the driver sends.
const RATE: f64 = 1_000.0;
/// How long the driver sends.
const DRIVE: Duration = Duration::from_secs(10);
/// Time for the last events to arrive after the driver stops.
const SETTLE: Duration = Duration::from_secs(1);
/// Rounds of figure 3: one blast of each app per round.
const ROUNDS: usize = 5;
/// Events per ingest blast, as in the ingest figure.
const BLAST: usize = 200_000;
/// The stalled subscriber's socket receive buffer.
const STALL_RECV_BUFFER: u32 = 4096;
/// How long the stalled subscriber may read before it must have seen its resync.
const STALL_READ_LIMIT: Duration = Duration::from_secs(60);
/// Its receive buffer once it reads: with 4 KiB, loopback moved ~100 KB/s
/// (each small window waits for an ACK), too slow to reach the resync.
const CATCH_UP_RECV_BUFFER: libc::c_int = 4 << 20;
/// The longest connecting the subscribers may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// The core the clients run on; the app, the fake HA, the driver and Redis
/// run on [`APP_CPU`].
const CLIENT_CPU: usize = 1;
/// The app side's core.
const APP_CPU: usize = 0;
/// Goal of figure 1.
const P99_GOAL_MS: f64 = 5.0;
/// Goal of the ingest figure: with subscribers ÷ without.
const INGEST_GOAL: f64 = 0.9;
/// "Unchanged" for the stalled run: the others' p99 within this factor of
/// figure 1's, or this many ms above it (a 2-core machine's noise).
const UNCHANGED_FACTOR: f64 = 1.5;
const UNCHANGED_SLACK_MS: f64 = 0.5;
/// "Bounded" for the stalled run: RSS may grow this much more than in figure 1
/// (a full queue is 4,096 shared events, plus the socket buffers).
const RSS_SLACK_MIB: f64 = 32.0;
/// The marker a state event's data carries before our sequence number.
const SEQ_MARK: &[u8] = br#""new_state":"s"#;

/// When each sequence number was handed to the sim.
struct Sent {
    /// The clock's origin, shared by the driver and the subscribers' thread.
    base: Instant,
    /// The first sequence number of this run (states are `s{seq}`).
    first: u64,
    /// Nanoseconds since `base`, plus one; 0: not sent yet.
    at: Vec<AtomicU64>,
    /// The first subscriber's arrival, the same way: what the fan-out to
    /// the other 99 and the client thread's turn-taking add shows against it.
    first_seen: Vec<AtomicU64>,
}

impl Sent {
    fn new(first: u64, n: usize) -> Self {
        Self {
            base: Instant::now(),
            first,
            at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            first_seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn mark(&self, i: usize) {
        let ns = self.base.elapsed().as_nanos() as u64 + 1;
        self.at[i].store(ns, Ordering::Release);
    }

    /// How long ago `seq` was sent, seen at `now`.
    fn age(&self, seq: u64, now: Instant) -> Option<Duration> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let ns = self.at.get(i)?.load(Ordering::Acquire);
        let seen = now.duration_since(self.base).as_nanos() as u64 + 1;
        let _ = self.first_seen[i].compare_exchange(0, seen, Ordering::AcqRel, Ordering::Relaxed);
        (ns > 0).then(|| now.duration_since(self.base + Duration::from_nanos(ns - 1)))
    }

    /// Event → its first delivery to any subscriber, for every event delivered.
    fn first_deliveries(&self) -> Latencies {
        let mut l = Latencies::default();
        for (at, seen) in self.at.iter().zip(&self.first_seen) {
            let (at, seen) = (at.load(Ordering::Acquire), seen.load(Ordering::Acquire));
            if at > 0 && seen >= at {
                l.record(Duration::from_nanos(seen - at));
            }
        }
        l
    }
}

/// What subscribers saw.
#[derive(Default)]
struct Tally {
    /// Event → delivery of our sequenced events.
    lat: Latencies,
    /// `state` events received.
    states: u64,
    /// `resync` events with reason `overflow`.
    overflows: u64,
    /// Connections that failed.
    failed: u64,
    /// CPU time of the subscribers' thread over its whole life: what the
    /// clients took from the two cores the app also runs on.
    cpu: Duration,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.lat.merge(&o.lat);
        self.states += o.states;
        self.overflows += o.overflows;
        self.failed += o.failed;
    }

    /// Reads the complete lines of `buf` (SSE frames are `field: value`
    /// lines), leaving a partial last line in it. `now` is when the chunk
    /// arrived: one clock read per chunk, not per event.
    fn scan(&mut self, buf: &mut Vec<u8>, now: Instant, sent: Option<&Sent>) {
        let mut start = 0;
        while let Some(n) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + n];
            start += n + 1;
            if line == b"event: state" {
                self.states += 1;
            } else if line == br#"data: {"reason":"overflow"}"# {
                self.overflows += 1;
            } else if let (Some(sent), Some(seq)) = (sent, seq_of(line)) {
                if let Some(age) = sent.age(seq, now) {
                    self.lat.record(age);
                }
            }
        }
        buf.drain(..start);
    }
}

/// The sequence number in a `data:` line of a state event set by the driver.
fn seq_of(line: &[u8]) -> Option<u64> {
    if !line.starts_with(b"data: ") {
        return None;
    }
    let at = line.windows(SEQ_MARK.len()).position(|w| w == SEQ_MARK)? + SEQ_MARK.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Subscribers on a thread and runtime of their own, until stopped.
struct Subscribers {
    stop: CancellationToken,
    /// Subscribers whose response headers have arrived (so the app subscribed them).
    connected: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Tally>,
}

impl Subscribers {
    fn spawn(addr: SocketAddr, n: usize, sent: Option<Arc<Sent>>) -> Self {
        let stop = CancellationToken::new();
        let connected = Arc::new(AtomicUsize::new(0));
        let (stop2, connected2) = (stop.clone(), connected.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("subscribers' runtime");
            rt.block_on(async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (sent, connected, stop) =
                            (sent.clone(), connected2.clone(), stop2.clone());
                        tokio::spawn(async move {
                            let mut t = Tally::default();
                            if subscribe(addr, sent.as_deref(), &connected, &stop, &mut t)
                                .await
                                .is_err()
                            {
                                t.failed += 1;
                            }
                            t
                        })
                    })
                    .collect();
                let mut all = Tally::default();
                for task in tasks {
                    if let Ok(t) = task.await {
                        all.merge(&t);
                    }
                }
                all.cpu = crate::http::thread_cpu();
                all
            })
        });
        Self {
            stop,
            connected,
            thread,
        }
    }

    /// Waits until all `n` are connected and the app counts at least `expect` subscribers.
    async fn wait(&self, app: &Running, n: usize, expect: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + CONNECT_LIMIT;
        while self.connected.load(Ordering::Acquire) < n
            || app.engine.stream().stats().subscribers < expect
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "subscribers did not connect in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn finish(self) -> Tally {
        self.stop.cancel();
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join().unwrap_or_default())
            .await
            .unwrap_or_default()
    }
}

/// One subscriber: `GET /api/v1/events`, its frames tallied until `stop`.
async fn subscribe(
    addr: SocketAddr,
    sent: Option<&Sent>,
    connected: &AtomicUsize,
    stop: &CancellationToken,
    t: &mut Tally,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/v1/events")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    connected.fetch_add(1, Ordering::AcqRel);
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            f = body.frame() => f,
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        if let Ok(data) = frame?.into_data() {
            let now = Instant::now();
            buf.extend_from_slice(&data);
            t.scan(&mut buf, now, sent);
        }
    }
}

/// The stalled subscriber: a tiny receive buffer, `?full=1` (bigger frames),
/// and no reads until [`read_until_overflow`].
async fn stalled(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(STALL_RECV_BUFFER)?;
    let mut s = sock.connect(addr).await?;
    s.write_all(format!("GET /api/v1/events?full=1 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    Ok(s)
}

/// Reads the stalled subscriber until it has been told it overflowed;
/// returns the bytes read and how long that took.
async fn read_until_overflow(s: &mut TcpStream) -> anyhow::Result<(usize, Duration)> {
    const MARK: &[u8] = br#""reason":"overflow""#;
    use std::os::fd::AsRawFd;
    let size = CATCH_UP_RECV_BUFFER;
    // SAFETY: a valid socket and a c_int option value of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let t0 = Instant::now();
    let mut total = 0;
    // The last bytes of the previous read, so a mark split between two reads is found.
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = STALL_READ_LIMIT.saturating_sub(t0.elapsed());
        let n = tokio::time::timeout(left, s.read(&mut chunk))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no overflow resync in {total} bytes read within {STALL_READ_LIMIT:?}"
                )
            })??;
        anyhow::ensure!(
            n > 0,
            "the stalled subscriber's stream ended without a resync"
        );
        total += n;
        window.extend_from_slice(&chunk[..n]);
        if window.windows(MARK.len()).any(|w| w == MARK) {
            return Ok((total, t0.elapsed()));
        }
        window.drain(..window.len().saturating_sub(MARK.len()));
    }
}

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Resets `VmHWM` to the current RSS, so the peak is the stalled run's own.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A paced run's result.
struct Paced {
    tally: Tally,
    sent: u64,
    rate: f64,
    /// The app's overflow count grew by this much during the run.
    overflows: u64,
    rss_before: f64,
    rss_end: f64,
    /// Event → first delivery among the subscribers.
    first: Latencies,
}

/// Figures 1 and 2: `n` reading subscribers (and `extra` others already
/// connected) while the driver sends 1,000 `sim.set`s per second for [`DRIVE`].
async fn paced(
    app: &Running,
    fake: &ha_fetchers::sim::Sim,
    ids: &[String],
    n: usize,
    extra: usize,
    first: u64,
) -> anyhow::Result<Paced> {
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    let total = (DRIVE.as_secs_f64() * RATE) as usize;
    let sent = Arc::new(Sent::new(first, total));
    let subs = Subscribers::spawn(addr, n, Some(sent.clone()));
    subs.wait(app, n, n + extra).await?;
    // The first subscriber started the recording; let the pump settle in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let overflows0 = app.engine.stream().stats().overflows;
    let rss_before = status_mib("VmRSS");

    // Paced by the clock, not by the tick count: a late tick sends what is
    // due, each change with its own send instant.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut i = 0usize;
    while i < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * RATE) as usize + 1).min(total);
        while i < due {
            // 7919 is prime to 10,000: every entity in turn, no two in a row alike.
            let id = &ids[i.wrapping_mul(7919) % ids.len()];
            sent.mark(i);
            fake.set(id, &format!("s{}", first + i as u64));
            i += 1;
        }
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let rss_end = status_mib("VmRSS");
    tokio::time::sleep(SETTLE).await;
    let overflows = app.engine.stream().stats().overflows - overflows0;
    let tally = subs.finish().await;
    Ok(Paced {
        tally,
        sent: total as u64,
        rate,
        overflows,
        rss_before,
        rss_end,
        first: sent.first_deliveries(),
    })
}

fn describe(what: &str, p: &Paced, subscribers: usize) {
    let l = &p.tally.lat;
    println!(
        "  {what}: sent {} at {:.0}/s; delivered {} of {} ({} state events); \
         p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; overflows {} (app) {} (clients); \
         failed connections {}; RSS {:.1} → {:.1} MiB; first delivery of each event p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        p.sent,
        p.rate,
        l.len(),
        p.sent * subscribers as u64,
        p.tally.states,
        l.ms(50.0),
        l.ms(99.0),
        l.ms(99.9),
        l.ms(100.0),
        p.overflows,
        p.tally.overflows,
        p.tally.failed,
        p.rss_before,
        p.rss_end,
        p.first.ms(50.0),
        p.first.ms(99.0),
        p.first.ms(100.0),
    );
}

/// `bench --stream-clients ADDR --clients N`: figure 3's subscribers in a
/// process of their own, pinned to CPU 1. Prints `ready` once all are
/// connected, reads until a line (or EOF) arrives on stdin, then prints what
/// they saw as one JSON line.
pub async fn clients_main(addr: SocketAddr, n: usize) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let _pinned = pin::this_process(CLIENT_CPU)?;
    let subs = Subscribers::spawn(addr, n, None);
    let deadline = Instant::now() + CONNECT_LIMIT;
    while subs.connected.load(Ordering::Acquire) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "subscribers did not connect in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("ready");
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    let t = subs.finish().await;
    println!(
        "{}",
        serde_json::json!({"states": t.states, "overflows": t.overflows, "failed": t.failed, "cpu_s": t.cpu.as_secs_f64()})
    );
    Ok(())
}

/// Figure 3's subscribers: `bench --stream-clients` as a child process.
struct ClientsChild {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl ClientsChild {
    /// Starts `n` subscribers on `addr`; returns once all are connected.
    async fn start(addr: SocketAddr, n: usize) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "--stream-clients",
                &addr.to_string(),
                "--clients",
                &n.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(out).lines();
        let first = tokio::time::timeout(CONNECT_LIMIT * 2, lines.next_line()).await??;
        anyhow::ensure!(first.as_deref() == Some("ready"), "clients said {first:?}");
        Ok(Self { child, lines })
    }

    /// Stops them and returns what they saw.
    async fn finish(mut self) -> anyhow::Result<Tally> {
        let mut stdin = self.child.stdin.take().expect("piped stdin");
        stdin.write_all(b"stop\n").await?;
        drop(stdin);
        let line = self.lines.next_line().await?.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&line)?;
        self.child.wait().await?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(Tally {
            states: n("states"),
            overflows: n("overflows"),
            failed: n("failed"),
            cpu: Duration::from_secs_f64(v["cpu_s"].as_f64().unwrap_or(0.0)),
            ..Tally::default()
        })
    }
}

/// Redis's process id (`INFO server`), when it runs on this machine.
async fn redis_pid() -> anyhow::Result<u32> {
    let client = redis::Client::open(REDIS_URL)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("INFO server has no process_id"))?;
    Ok(pid)
}

/// One of figure 3's apps: fresh, with its own fake HA, and (when asked)
/// subscribers in a pinned child process.
struct IngestApp {
    fake: ha_fetchers::sim::Sim,
    app: Running,
    subs: Option<ClientsChild>,
    /// Its blasts' rates.
    rates: Vec<f64>,
}

impl IngestApp {
    async fn start(house: &House, subscribers: usize, tag: &str) -> anyhow::Result<Self> {
        let fake = fake_ha(&house.snapshot_json()).await?;
        let app = Running::start(&fake, tag).await?;
        app.wait_resync(1).await?;
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
        let subs = match subscribers {
            0 => None,
            n => {
                let s = ClientsChild::start(addr, n).await?;
                let deadline = Instant::now() + CONNECT_LIMIT;
                while app.engine.stream().stats().subscribers < n {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "the app did not count the subscribers"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some(s)
            }
        };
        Ok(Self {
            fake,
            app,
            subs,
            rates: Vec::new(),
        })
    }

    async fn blast(&mut self, house: &mut House) -> anyhow::Result<()> {
        let r = blast(&self.app, &self.fake, house, BLAST).await?;
        self.rates.push(r);
        Ok(())
    }

    /// Stops it; what its subscribers saw and its overflow count.
    async fn stop(self) -> anyhow::Result<(Tally, u64)> {
        let tally = match self.subs {
            Some(s) => {
                tokio::time::sleep(SETTLE).await;
                s.finish().await?
            }
            None => Tally::default(),
        };
        let overflows = self.app.engine.stream().stats().overflows;
        self.app.stop().await;
        self.fake.stop();
        Ok((tally, overflows))
    }
}

/// Figure 3: an app without subscribers and one with `subscribers`, their
/// blasts alternating (the order swapped each round) for [`ROUNDS`] rounds.
async fn ingest_pairs(
    house: &mut House,
    subscribers: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Tally, u64)> {
    let mut none = IngestApp::start(house, 0, "stream-ingest-none").await?;
    let mut with = IngestApp::start(house, subscribers, "stream-ingest-with").await?;
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            none.blast(house).await?;
            with.blast(house).await?;
        } else {
            with.blast(house).await?;
            none.blast(house).await?;
        }
    }
    let (without, with_rates) = (none.rates.clone(), with.rates.clone());
    none.stop().await?;
    let (tally, overflows) = with.stop().await?;
    Ok((without, with_rates, tally, overflows))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{:.0}k", r / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the three figures and prints their table.
pub async fn run() -> anyhow::Result<()> {
    let started = chrono::Utc::now();
    println!(
        "bench --stream at {started}, load average {}; {ENTITIES} entities, Redis store, \
         {SUBSCRIBERS} subscribers (hyper HTTP/1.1, own thread + current-thread runtime), \
         driver at {RATE:.0} sim.set/s for {DRIVE:?} on the app's runtime",
        loadavg()
    );
    let mut house = House::new(ENTITIES);
    let ids: Vec<String> = house.entities.iter().map(|e| e.id.clone()).collect();
    let mut rows = Vec::new();

    println!("1. {SUBSCRIBERS} subscribers at {RATE:.0} events/s…");
    let fake = fake_ha(&house.snapshot_json()).await?;
    let app = Running::start(&fake, "stream").await?;
    app.wait_resync(1).await?;
    let one = paced(&app, &fake, &ids, SUBSCRIBERS, 0, 0).await?;
    describe("all reading", &one, SUBSCRIBERS);
    let expected = one.sent * SUBSCRIBERS as u64;
    let p99 = one.tally.lat.ms(99.0);
    rows.push(Row::new(
        &format!(
            "event → delivery, {SUBSCRIBERS} subscribers at {:.0} events/s, p99 (p50 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; delivered {} of {expected}; overflows {}; first delivery of each event p50 {:.3} / p99 {:.3} ms)",
            one.rate,
            one.tally.lat.ms(50.0),
            one.tally.lat.ms(99.9),
            one.tally.lat.ms(100.0),
            one.tally.lat.len(),
            one.overflows,
            one.first.ms(50.0),
            one.first.ms(99.0),
        ),
        format!("{p99:.3} ms"),
        "p99 ≤ 5 ms, all delivered, 0 overflows",
        p99 <= P99_GOAL_MS && one.tally.lat.len() == expected && one.overflows == 0,
    ));

    println!("2. {} reading subscribers and 1 stalled…", SUBSCRIBERS - 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    let peak_reset = reset_peak();
    let mut stall = stalled(addr).await?;
    let two = paced(&app, &fake, &ids, SUBSCRIBERS - 1, 1, one.sent).await?;
    // VmHWM is folded in lazily; the RSS read at the end may be a hair above it.
    let peak = status_mib("VmHWM").max(two.rss_end);
    describe("99 others", &two, SUBSCRIBERS - 1);
    let before_read = app.engine.stream().stats().overflows;
    let told = read_until_overflow(&mut stall).await;
    drop(stall);
    let after_read = app.engine.stream().stats().overflows;
    match &told {
        Ok((bytes, took)) => println!(
            "  stalled: read {bytes} bytes in {:.0} ms until its overflow resync; app overflows {before_read} before reading, {after_read} after",
            took.as_secs_f64() * 1000.0
        ),
        Err(e) => println!("  stalled: {e:#}; app overflows {after_read}"),
    }
    println!(
        "  RSS {:.1} MiB before, {:.1} at the end of the drive, peak {:.1} ({})",
        two.rss_before,
        two.rss_end,
        peak,
        if peak_reset {
            "VmHWM reset before the stalled run"
        } else {
            "VmHWM could not be reset: process peak"
        }
    );
    let p99b = two.tally.lat.ms(99.0);
    let expected_b = two.sent * (SUBSCRIBERS - 1) as u64;
    rows.push(
        Row::new(
            &format!(
                "stalled: the {} others' event → delivery p99 (p50 {:.3} ms vs {:.3}; delivered {} of {expected_b}; their overflows {})",
                SUBSCRIBERS - 1,
                two.tally.lat.ms(50.0),
                one.tally.lat.ms(50.0),
                two.tally.lat.len(),
                two.tally.overflows
            ),
            format!("{p99b:.3} ms"),
            "unchanged (≤ 1.5× or +0.5 ms of row 1's)",
            (p99b <= p99 * UNCHANGED_FACTOR || p99b <= p99 + UNCHANGED_SLACK_MS)
                && two.tally.overflows == 0,
        )
        .with_ref(format!("row 1: {p99:.3} ms"), p99 / p99b),
    );
    let growth = two.rss_end - two.rss_before;
    let growth_one = one.rss_end - one.rss_before;
    rows.push(Row::new(
        &format!(
            "stalled: process VmRSS before → end of drive (peak VmHWM {peak:.1} MiB; row 1 grew {growth_one:+.1} MiB)"
        ),
        format!("{:.1} → {:.1} MiB ({growth:+.1})", two.rss_before, two.rss_end),
        "bounded (growth ≤ row 1's + 32 MiB)",
        growth <= growth_one.max(0.0) + RSS_SLACK_MIB,
    ));
    rows.push(Row::new(
        "stalled: told once it reads (`resync` `overflow`); app's overflow count after",
        format!(
            "{} ; overflows {after_read}",
            if told.is_ok() { "told" } else { "not told" }
        ),
        "told",
        told.is_ok() && after_read >= 1,
    ));
    app.stop().await;
    fake.stop();

    println!(
        "3. ingest: two fresh apps, one with {SUBSCRIBERS} subscribers, their blasts alternating for {ROUNDS} rounds…"
    );
    // The app side (this process and Redis) on one core, the clients on the
    // other: what is compared is what the stream costs the app.
    let cpus = pin::cpus();
    anyhow::ensure!(
        cpus >= 2,
        "figure 3 pins the clients apart from the app: it needs 2 CPUs, not {cpus}"
    );
    let _me = pin::this_process(APP_CPU)?;
    let redis_pinned = match redis_pid().await {
        Ok(pid) => pin::process(pid, APP_CPU).map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let pinning = match &redis_pinned {
        Ok(_) => "this process (app, fake HA, driver) and Redis on CPU 0; the subscribers on CPU 1".to_string(),
        Err(e) => format!("this process (app, fake HA, driver) on CPU 0, Redis not pinned ({e}); the subscribers on CPU 1"),
    };
    println!("  pinned: {pinning}");
    let (without, with, seen, overflows) = ingest_pairs(&mut house, SUBSCRIBERS).await?;
    drop(redis_pinned);
    drop(_me);
    let (base, ours) = (median(&without), median(&with));
    let ratio = ours / base;
    let pairs: Vec<f64> = with.iter().zip(&without).map(|(w, n)| w / n).collect();
    println!(
        "  none: {}; with {SUBSCRIBERS}: {} ({} state events read, {} overflow resyncs, app overflows {overflows}; the subscribers' process used {:.2} s of CPU on CPU 1); round ratios {}",
        list(&without),
        list(&with),
        seen.states,
        seen.overflows,
        seen.cpu.as_secs_f64(),
        pairs.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
    );
    rows.push(
        Row::new(
            &format!(
                "ingest with {SUBSCRIBERS} subscribers reading (median of {ROUNDS}: {}; they read {} state events, {} overflow resyncs; {pinning}; blasts alternating with the other app's)",
                list(&with),
                seen.states,
                seen.overflows
            ),
            format!("{ours:.0} events/s"),
            "≥ 0.9× without",
            ratio >= INGEST_GOAL,
        )
        .with_ref(
            format!(
                "no subscribers, median of {ROUNDS}: {base:.0}/s ({})",
                list(&without)
            ),
            ratio,
        ),
    );

    let table = report::table(&rows);
    println!(
        "\nChange stream ({started}; load average at start above, at end {}):\n\n{table}",
        loadavg()
    );
    std::fs::write("target/bench/stream.md", &table)?;
    println!("(also in target/bench/stream.md; the app's logs are in target/bench/app.log)");
    Ok(())
}
