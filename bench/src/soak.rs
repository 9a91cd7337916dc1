//! The soak (RELIABILITY.md): `bench --soak [--minutes N]` (or `scripts/soak.sh`).
//!
//! `ha-fetchers serve` runs as a child on Redis, mirroring a fake HA with a
//! 10,000-entity house that changes at a steady rate while paced clients
//! read states, run a fetcher and render the shipped prompt. It passes when
//! RSS grows less than the limit after warm-up, no request fails, the app
//! logs no warning, HA sees no REST call, and the cache ends equal to the
//! house.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::app::fake_ha;
use super::child::ServeChild;
use super::house::House;
use super::http::{Conn, Latencies, Target};

/// Entities in the soaked house.
const ENTITIES: usize = 10_000;
/// `state_changed` events per second.
const EVENTS_PER_S: u64 = 1_000;
/// Requests per second, all kinds together.
const READS_PER_S: u64 = 5_000;
/// Client connections sharing the reads.
const CONNECTIONS: u64 = 8;
/// Every this many requests one renders the shipped prompt…
const PROMPT_EVERY: u64 = 500;
/// …and every this many runs the `ha_lights_on` fetcher; the rest GET one state.
const FETCHER_EVERY: u64 = 100;
/// How often the events due so far are sent.
const EVENT_TICK: Duration = Duration::from_millis(10);
/// How often a progress line is printed and RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// RSS is compared as the mean over this many seconds at each end.
const RSS_WINDOW: f64 = 60.0;
/// Memory may grow at most this much after warm-up.
const MAX_GROWTH: f64 = 0.05;
/// Time for the last events to land before the final comparison.
const SETTLE: Duration = Duration::from_secs(2);
/// Failed requests whose reasons are printed.
const SHOWN_ERRORS: usize = 5;

/// What the paced clients saw.
#[derive(Default)]
struct Reads {
    /// Answered with 200.
    ok: AtomicU64,
    /// Anything else, transport errors included.
    errors: AtomicU64,
    /// The first few failures, for the report.
    first_errors: Mutex<Vec<String>>,
    /// Latencies of state GETs and fetcher runs.
    get: Mutex<Latencies>,
    /// Latencies of prompt renders.
    render: Mutex<Latencies>,
}

impl Reads {
    fn fail(&self, why: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock();
        if first.len() < SHOWN_ERRORS {
            first.push(why);
        }
    }
}

/// Runs the soak for `minutes`; `Ok(true)` when every check passed.
pub async fn run(minutes: f64) -> anyhow::Result<bool> {
    let total = Duration::from_secs_f64(minutes * 60.0);
    // A tenth of the run, at least 30 s and at most 60 s: caches fill, pools open.
    let warmup = total.mul_f64(0.1).clamp(
        Duration::from_secs(30).min(total / 2),
        Duration::from_secs(60),
    );
    println!(
        "soak: {minutes} min, {ENTITIES} entities, {EVENTS_PER_S} events/s, {READS_PER_S} reads/s \
         over {CONNECTIONS} connections (1/{PROMPT_EVERY} prompt renders, 1/{FETCHER_EVERY} fetcher runs), \
         warm-up {warmup:?}"
    );
    let mut house = House::new(ENTITIES);
    let fake = fake_ha(&house.snapshot_json()).await?;
    let child = ServeChild::start(&fake, ENTITIES, "soak").await?;
    let ids: Arc<Vec<String>> = Arc::new(house.entities.iter().map(|e| e.id.clone()).collect());

    let reads = Arc::new(Reads::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(
        child.target.clone(),
        ids.clone(),
        reads.clone(),
        stop.clone(),
    );

    let started = Instant::now();
    let mut sent = 0u64;
    let mut next_sample = started + SAMPLE_EVERY;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut tick = tokio::time::interval(EVENT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while started.elapsed() < total {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * EVENTS_PER_S as f64) as u64;
        if due > sent {
            let n = (due - sent) as usize;
            anyhow::ensure!(
                fake.send_frames(house.event_frames(n, 1)) > 0,
                "the fake HA's session is gone"
            );
            sent += n as u64;
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let (rss, _) = child.rss_mib()?;
            let t = started.elapsed().as_secs_f64();
            samples.push((t, rss));
            println!(
                "  {t:>5.0} s  RSS {rss:>5.1} MiB  events {sent:>7}  reads {:>8}  errors {}",
                reads.ok.load(Ordering::Relaxed),
                reads.errors.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(SETTLE).await;

    let (_, hwm) = child.rss_mib()?;
    // A minute's mean on each side, so one sample taken mid-render does not decide.
    let window = |from: f64, to: f64| {
        let w: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|s| s.1)
            .collect();
        w.iter().sum::<f64>() / w.len().max(1) as f64
    };
    let (w, end) = (warmup.as_secs_f64(), elapsed.as_secs_f64());
    let baseline = window(w, w + RSS_WINDOW);
    let rss_end = window(end - RSS_WINDOW, end);
    let growth = (rss_end - baseline) / baseline;
    let stale = compare(&child.target, &house).await?;
    let count = child.entity_count().await;
    let warnings = child.warnings();
    let rest = fake.rest_calls();
    child.stop().await;
    fake.stop();

    let ok = reads.ok.load(Ordering::Relaxed);
    let errors = reads.errors.load(Ordering::Relaxed);
    let get = std::mem::take(&mut *reads.get.lock());
    let render = std::mem::take(&mut *reads.render.lock());
    let secs = elapsed.as_secs_f64();
    let checks = [
        (
            format!(
                "RSS, mean of the minute after warm-up {baseline:.1} MiB → of the last minute {rss_end:.1} MiB (peak {hwm:.1})"
            ),
            format!("{:+.1} %", growth * 100.0),
            growth < MAX_GROWTH,
        ),
        (
            format!(
                "requests: {ok} ok in {secs:.0} s ({:.0}/s); GET p50 {:.2} ms p99 {:.2} ms; \
                 render p50 {:.1} ms p99 {:.1} ms",
                ok as f64 / secs,
                get.ms(50.0),
                get.ms(99.0),
                render.ms(50.0),
                render.ms(99.0),
            ),
            format!("{errors} failed"),
            errors == 0,
        ),
        (
            format!("events sent {sent} ({:.0}/s); entities mirrored {count:?}", sent as f64 / secs),
            format!("{stale} differ from HA at the end"),
            stale == 0 && count == Some(ENTITIES as u64),
        ),
        (
            "warnings and errors in the app's log".to_string(),
            warnings.len().to_string(),
            warnings.is_empty(),
        ),
        (
            "REST calls to HA".to_string(),
            rest.to_string(),
            rest == 0,
        ),
    ];
    println!("\nSoak result ({}):", chrono::Utc::now());
    for (what, value, pass) in &checks {
        println!(
            "  [{}] {value:>12}  {what}",
            if *pass { "ok" } else { "FAIL" }
        );
    }
    for e in reads.first_errors.lock().iter() {
        println!("  failed request: {e}");
    }
    for w in warnings.iter().take(SHOWN_ERRORS) {
        println!("  log: {w}");
    }
    let table: String = samples
        .iter()
        .map(|(t, r)| format!("{t:.0}\t{r:.1}\n"))
        .collect();
    std::fs::write(
        "target/bench/soak-rss.tsv",
        format!("seconds\trss_mib\n{table}"),
    )?;
    println!("  (RSS samples in target/bench/soak-rss.tsv; the app's log in target/bench/serve-soak.log)");
    Ok(checks.iter().all(|c| c.2))
}

/// Paced client connections on a runtime of their own, so they do not share
/// a scheduler with the fake HA.
fn spawn_clients(
    t: Target,
    ids: Arc<Vec<String>>,
    reads: Arc<Reads>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let per_conn = READS_PER_S as f64 / CONNECTIONS as f64;
    (0..CONNECTIONS)
        .map(|c| {
            let (t, ids, reads, stop) = (t.clone(), ids.clone(), reads.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime");
                rt.block_on(client(c, per_conn, t, ids, reads, stop));
            })
        })
        .collect()
}

async fn client(
    c: u64,
    rate: f64,
    t: Target,
    ids: Arc<Vec<String>>,
    reads: Arc<Reads>,
    stop: Arc<AtomicBool>,
) {
    let started = Instant::now();
    let mut conn: Option<Conn> = None;
    let mut done = 0u64;
    let mut get = Latencies::default();
    let mut render = Latencies::default();
    while !stop.load(Ordering::Relaxed) {
        if done as f64 >= started.elapsed().as_secs_f64() * rate {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let i = done * CONNECTIONS + c;
        done += 1;
        if conn.is_none() {
            match Conn::open(&t).await {
                Ok(x) => conn = Some(x),
                Err(e) => {
                    reads.fail(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let Some(cx) = conn.as_mut() else { continue };
        let t0 = Instant::now();
        let (res, lat) = if i % PROMPT_EVERY == 0 {
            let r = cx.post("/api/v1/prompts/home_status/render", "{}").await;
            (r, &mut render)
        } else if i % FETCHER_EVERY == 1 {
            (
                cx.post("/api/v1/fetchers/ha_lights_on/run", "{}").await,
                &mut get,
            )
        } else {
            let id = &ids[(i as usize).wrapping_mul(7919) % ids.len()];
            (cx.get(&format!("/api/v1/states/{id}")).await, &mut get)
        };
        match res {
            Ok((200, _)) => {
                lat.record(t0.elapsed());
                reads.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => reads.fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Err(e) => {
                reads.fail(format!("transport: {e}"));
                conn = None;
            }
        }
    }
    reads.get.lock().merge(&get);
    reads.render.lock().merge(&render);
}

/// Entities whose cached state differs from the house's last state.
async fn compare(t: &Target, house: &House) -> anyhow::Result<usize> {
    let mut conn = Conn::open(t).await?;
    let mut stale = 0;
    for e in &house.entities {
        let (status, body) = conn.get(&format!("/api/v1/states/{}", e.id)).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if status != 200 || v["state"].as_str() != Some(e.state.as_str()) {
            stale += 1;
        }
    }
    Ok(stale)
}
