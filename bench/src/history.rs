//! The `history` figure: the `history` source (the shipped `ha_history_today`
//! fetcher) over the app's live link, against Home Assistant's own
//! `history/history_during_period` on a WebSocket of the bench's own, on the
//! real HA whose recorder holds at least [`MIN_ROWS`] state rows over
//! [`ENTITIES`] lights (posted here through REST when it does not yet).
//!
//! Paced: one request at a time, never two in flight, because HA, the app and
//! this client share the machine's two cores. Each round asks HA once for the
//! whole window, replays the app's slicing against HA on the bench's socket,
//! and runs the fetcher with a fresh cache key, the three taking turns at
//! going first: the three medians are taken over the same rounds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ha_fetchers::engine::Engine;
use ha_fetchers::fetchers::sources::past::{self, Slices, Window, SLICE_BYTES, SLICE_GROWTH};
use ha_fetchers::fetchers::{lean, FetchRequest};
use ha_fetchers::ha::Connection;
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::http::{Conn, Target};
use super::refs::RealHa;
use super::report::Row;
use super::Sizes;

/// Lights whose history is measured.
pub const ENTITIES: usize = 50;
/// State changes posted per light when seeding: 10,050 rows in all.
pub const CHANGES: usize = 201;
/// The fewest state rows HA's recorder must hold for them in the window.
pub const MIN_ROWS: usize = 10_000;
/// Connections the seed is posted over.
const SEEDERS: usize = 8;
/// Their entity ids: `light.bench_history_00` … `_49`, used by nothing else.
const PREFIX: &str = "light.bench_history_";
/// The fetcher measured, shipped in fetchers/.
const FETCHER: &str = "ha_history_today";
/// The window asked: "how long was each light on in the last 24 h".
const WINDOW: &str = "24h";
/// The same window in seconds, for HA's own call.
const WINDOW_SECS: i64 = 86_400;
/// The widest window a call may ask (`HISTORY_MAX_WINDOW`'s default): it reads
/// every row the recorder holds for the lights.
const WIDEST: &str = "31d";
/// The same in seconds.
const WIDEST_SECS: i64 = 31 * 86_400;
/// How long the recorder may take to commit the seed.
const COMMIT_LIMIT: Duration = Duration::from_secs(180);
/// How often its row count is asked meanwhile.
const COMMIT_POLL: Duration = Duration::from_secs(1);
/// How long the app may take to connect and mirror the lights.
const MIRROR_LIMIT: Duration = Duration::from_secs(60);
/// How often that is polled.
const MIRROR_POLL: Duration = Duration::from_millis(50);
/// The largest frame the bench's socket accepts, as the app's link.
const MAX_FRAME: usize = 64 << 20;
/// How often the memory sampler reads `VmRSS` when `VmHWM` cannot be reset.
const RSS_POLL: Duration = Duration::from_millis(1);
/// How long the app may take to stop.
const STOP_LIMIT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// The lights' entity ids.
fn ids() -> Vec<String> {
    (0..ENTITIES).map(|i| format!("{PREFIX}{i:02}")).collect()
}

/// The figure's rows, or one skipped row when there is no HA.
pub async fn run(ha: Result<&RealHa, &str>, sz: &Sizes) -> anyhow::Result<Vec<Row>> {
    let ha = match ha {
        Ok(ha) => ha,
        Err(why) => {
            return Ok(vec![Row::skipped(
                &format!("`{FETCHER}`, {ENTITIES} lights, {WINDOW}: size, latency, cache, memory"),
                "≤ 0.1× HA's bytes; ≤ 1.5× HA's time; cached ≥ 50×",
                format!("no HA reference: {why}"),
            )])
        }
    };
    let ids = ids();
    let mut ws = HaWs::open(ha).await?;
    let seed = seed(ha, &mut ws, &ids).await?;
    println!("  {}", seed.describe());

    let app = App::start(ha, &ids).await?;
    let r = measure(&app.engine, &mut ws, &ids, sz, &seed).await;
    app.stop().await;
    r
}

/// The bench's own WebSocket to HA: the app's own socket class
/// (`ha_fetchers::ha::Connection`, tokio-tungstenite), authenticated, one
/// command at a time.
struct HaWs {
    conn: Connection,
    next: u64,
}

/// One answer of HA's: its `result`'s JSON text and the time from sending
/// the command to having the whole answer.
struct Answer {
    result: String,
    took: Duration,
}

impl HaWs {
    async fn open(ha: &RealHa) -> anyhow::Result<Self> {
        let url: url::Url =
            format!("{}/api/websocket", ha.url.replacen("http", "ws", 1)).parse()?;
        let mut conn = Connection::connect(&url, MAX_FRAME, None).await?;
        let hello = Self::frame(&mut conn).await?;
        anyhow::ensure!(hello["type"] == "auth_required", "HA said {hello}");
        conn.send(json!({"type": "auth", "access_token": ha.token}).to_string())
            .await?;
        let ok = Self::frame(&mut conn).await?;
        anyhow::ensure!(ok["type"] == "auth_ok", "HA refused the token: {ok}");
        Ok(Self { conn, next: 1 })
    }

    async fn frame(conn: &mut Connection) -> anyhow::Result<Value> {
        let f = conn
            .read_frame()
            .await?
            .ok_or_else(|| anyhow::anyhow!("HA closed the WebSocket"))?;
        Ok(serde_json::from_str(f.as_str())?)
    }

    /// Sends `body` with the next id and waits for its result.
    async fn call(&mut self, mut body: Value) -> anyhow::Result<Answer> {
        let id = self.next;
        self.next += 1;
        body["id"] = id.into();
        let text = body.to_string();
        let t0 = Instant::now();
        self.conn.send(text).await?;
        loop {
            let frame = self
                .conn
                .read_frame()
                .await?
                .ok_or_else(|| anyhow::anyhow!("HA closed the WebSocket"))?;
            let took = t0.elapsed();
            let msg: BTreeMap<&str, &RawValue> = serde_json::from_str(frame.as_str())?;
            if msg.get("id").map(|v| v.get()) != Some(id.to_string().as_str()) {
                continue;
            }
            anyhow::ensure!(
                msg.get("success").map(|v| v.get()) == Some("true"),
                "HA refused {}: {}",
                body["type"],
                msg.get("error").map_or("?", |v| v.get())
            );
            let result = msg
                .get("result")
                .ok_or_else(|| anyhow::anyhow!("HA's result has no `result`"))?;
            return Ok(Answer {
                result: result.get().to_string(),
                took,
            });
        }
    }

    /// HA's smallest history answer for `ids` over `start`..`end`: the
    /// command the `history` source sends for each slice.
    async fn history(
        &mut self,
        ids: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> anyhow::Result<Answer> {
        self.call(json!({
            "type": "history/history_during_period",
            "start_time": past::wire(start),
            "end_time": past::wire(end),
            "entity_ids": ids,
            "include_start_time_state": true,
            "significant_changes_only": true,
            "minimal_response": true,
            "no_attributes": true,
        }))
        .await
    }
}

/// What a history answer holds: rows, and transitions per entity (a row
/// whose state differs from the row before it).
struct Counted {
    rows: usize,
    changes: BTreeMap<String, u64>,
}

fn count(result: &str) -> anyhow::Result<Counted> {
    let by_id: BTreeMap<String, Vec<Value>> = serde_json::from_str(result)?;
    let mut rows = 0;
    let mut changes = BTreeMap::new();
    for (id, list) in by_id {
        rows += list.len();
        let n = list.windows(2).filter(|w| w[0]["s"] != w[1]["s"]).count();
        changes.insert(id, n as u64);
    }
    Ok(Counted { rows, changes })
}

/// The last `secs` seconds, ending now.
fn last(secs: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    (now - chrono::Duration::seconds(secs), now)
}

/// What seeding found and did.
struct Seed {
    /// Rows HA held for the lights over the last 24 h before seeding.
    before: usize,
    /// State changes posted now (0 when HA already held enough).
    posted: usize,
    /// Lights posted again because HA had forgotten them (a restart).
    restored: usize,
    /// How long posting took.
    post_time: Duration,
    /// From the last post until HA's history held every row.
    commit_time: Duration,
    /// Rows HA holds for the lights over the last 24 h now.
    rows: usize,
}

impl Seed {
    fn describe(&self) -> String {
        if self.posted == 0 {
            format!(
                "seed: HA's recorder already holds {} rows for the {ENTITIES} lights in the last 24 h; not posted again{}",
                self.rows,
                if self.restored > 0 {
                    format!(" ({} lights re-posted: HA had restarted)", self.restored)
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "seed: {} state changes posted over {SEEDERS} connections in {:.1} s ({:.0}/s), all in HA's history {:.1} s after the last; {} rows in the last 24 h ({} before)",
                self.posted,
                self.post_time.as_secs_f64(),
                self.posted as f64 / self.post_time.as_secs_f64(),
                self.commit_time.as_secs_f64(),
                self.rows,
                self.before
            )
        }
    }
}

/// Makes HA's recorder hold at least [`MIN_ROWS`] rows for `ids` in the last
/// 24 h: [`CHANGES`] on/off changes per light through `POST /api/states`
/// unless one history call finds them already, then waits for the commit.
async fn seed(ha: &RealHa, ws: &mut HaWs, ids: &[String]) -> anyhow::Result<Seed> {
    let (s, e) = last(WINDOW_SECS);
    let before = count(&ws.history(ids, s, e).await?.result)?.rows;
    let t = Target::parse(&ha.url, Some(format!("Bearer {}", ha.token)))?;
    let mut c = Conn::open(&t).await?;
    let mut current = Vec::with_capacity(ids.len());
    for id in ids {
        let (status, body) = c.get(&format!("/api/states/{id}")).await?;
        current.push(match status {
            200 => serde_json::from_slice::<Value>(&body)?["state"]
                .as_str()
                .map(str::to_string),
            404 => None,
            other => anyhow::bail!("HA answered {other} to GET /api/states/{id}"),
        });
    }
    let body = |i: usize, state: &str| {
        json!({"state": state, "attributes": {"friendly_name": format!("Bench History {i:02}")}})
            .to_string()
    };
    if before >= MIN_ROWS {
        // HA forgets posted states when it restarts; its recorder does not.
        let mut restored = 0;
        for (i, (id, cur)) in ids.iter().zip(&current).enumerate() {
            if cur.is_none() {
                let (status, _) = c
                    .post(&format!("/api/states/{id}"), &body(i, "off"))
                    .await?;
                anyhow::ensure!(matches!(status, 200 | 201), "HA answered {status} to {id}");
                restored += 1;
            }
        }
        return Ok(Seed {
            before,
            posted: 0,
            restored,
            post_time: Duration::ZERO,
            commit_time: Duration::ZERO,
            rows: before,
        });
    }
    // Each light starts from the opposite of its state, so every post is a
    // change and a row. Light i is posted by connection i % SEEDERS, round by
    // round, so its changes stay in order.
    let first_on: Vec<bool> = current.iter().map(|c| c.as_deref() != Some("on")).collect();
    let plan: Arc<Vec<(String, bool)>> = Arc::new(ids.iter().cloned().zip(first_on).collect());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..SEEDERS {
        let (t, plan) = (t.clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&t).await?;
            for round in 0..CHANGES {
                for (i, (id, first_on)) in plan.iter().enumerate().skip(k).step_by(SEEDERS) {
                    let on = *first_on == (round % 2 == 0);
                    let state = if on { "on" } else { "off" };
                    let (status, _) = c
                        .post(&format!("/api/states/{id}"), &body(i, state))
                        .await?;
                    anyhow::ensure!(matches!(status, 200 | 201), "HA answered {status} to {id}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let post_time = t0.elapsed();
    let posted = ENTITIES * CHANGES;
    let want = before + posted;
    let t1 = Instant::now();
    let rows = loop {
        let (s, e) = last(WINDOW_SECS);
        let rows = count(&ws.history(ids, s, e).await?.result)?.rows;
        if rows >= want {
            break rows;
        }
        anyhow::ensure!(
            t1.elapsed() < COMMIT_LIMIT,
            "HA's history holds {rows} rows for the lights {:.0} s after seeding, expected {want}",
            COMMIT_LIMIT.as_secs_f64()
        );
        tokio::time::sleep(COMMIT_POLL).await;
    };
    Ok(Seed {
        before,
        posted,
        restored: 0,
        post_time,
        commit_time: t1.elapsed(),
        rows,
    })
}

/// The app in this process on the real HA, with the in-memory store and the
/// shipped fetchers, as tests/it/real_ha_history.rs starts it.
struct App {
    engine: Engine,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start(ha: &RealHa, ids: &[String]) -> anyhow::Result<Self> {
        let mut s = Settings::embedded();
        s.ha_url = Some(ha.url.parse()?);
        s.ha_token = Some(SecretString::from(ha.token.clone()));
        let app = Application::build(s).await?;
        let engine = app.engine().clone();
        let stop = app.shutdown_token();
        let task = tokio::spawn(async move {
            if let Err(e) = app.run_until_stopped().await {
                eprintln!("app on the real HA failed: {e:#}");
            }
        });
        let me = Self { engine, stop, task };
        let deadline = Instant::now() + MIRROR_LIMIT;
        loop {
            let states = me.engine.states();
            if states.summary().connected && ids.iter().all(|id| states.cached(id).is_some()) {
                return Ok(me);
            }
            if Instant::now() >= deadline {
                me.stop().await;
                anyhow::bail!("the app did not mirror the {ENTITIES} lights in time");
            }
            tokio::time::sleep(MIRROR_POLL).await;
        }
    }

    async fn stop(self) {
        let Self { engine, stop, task } = self;
        drop(engine);
        stop.cancel();
        let _ = tokio::time::timeout(STOP_LIMIT, task).await;
    }
}

/// The fetcher for the lights over `since`; `limit` (unused by a summary)
/// gives each uncached run a cache key of its own.
fn ours(ids: &[String], since: &str, limit: usize) -> FetchRequest {
    FetchRequest::new(FETCHER)
        .param("entity_id", json!(ids))
        .param("since", since)
        .param("limit", limit)
}

/// One run of the fetcher: its value, whether the cache answered, the wall time.
async fn fetch(engine: &Engine, req: FetchRequest) -> anyhow::Result<(Arc<Value>, bool, Duration)> {
    let t0 = Instant::now();
    let out = engine.run(req).await;
    let took = t0.elapsed();
    let v = out.result.map_err(|e| anyhow::anyhow!("{FETCHER}: {e}"))?;
    Ok((v, out.cached, took))
}

/// Transitions per entity in our summary.
fn our_changes(v: &Value) -> BTreeMap<String, u64> {
    v["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["entity_id"].as_str()?.to_string(), e["changes"].as_u64()?)))
        .collect()
}

/// The app's slicing of one window replayed on the bench's socket: what
/// each slice's answer weighed, held and cost HA.
struct Replay {
    /// (slice length, bytes, rows, HA's time) per slice, in the order the
    /// app asks them: newest first.
    slices: Vec<(chrono::Duration, usize, usize, Duration)>,
}

impl Replay {
    async fn run(ws: &mut HaWs, ids: &[String], secs: i64) -> anyhow::Result<Self> {
        let (start, end) = last(secs);
        let w = Window {
            start,
            end,
            ends_now: true,
        };
        let mut s = Slices::new(&w);
        let mut slices = Vec::new();
        while let Some(slice) = s.next_slice() {
            let a = ws.history(ids, slice.0, slice.1).await?;
            s.learn(slice, a.result.len());
            let rows = count(&a.result)?.rows;
            slices.push((slice.1 - slice.0, a.result.len(), rows, a.took));
        }
        Ok(Self { slices })
    }
    fn total(&self) -> Duration {
        self.slices.iter().map(|s| s.3).sum()
    }
    fn rows(&self) -> usize {
        self.slices.iter().map(|s| s.2).sum()
    }
    fn largest(&self) -> usize {
        self.slices.iter().map(|s| s.1).max().unwrap_or(0)
    }
    /// "slice 1 of 5 (1 h, the newest) carried 10050 of the 10050 rows":
    /// the slice with the most rows.
    fn heaviest(&self) -> String {
        let most = self.slices.iter().enumerate().max_by_key(|(_, s)| s.2);
        let Some((i, (len, _, rows, _))) = most else {
            return "no slice".into();
        };
        let which = match i {
            0 => ", the newest",
            _ if i + 1 == self.slices.len() => ", the oldest",
            _ => "",
        };
        format!(
            "slice {} of {} ({:.0} h{which}) carried {rows} of the {} rows",
            i + 1,
            self.slices.len(),
            len.num_seconds() as f64 / 3600.0,
            self.rows()
        )
    }
    /// "1 h: 301.2 KiB, 8 h: 2 B, 15 h: 2 B", in the order asked.
    fn describe(&self) -> String {
        self.slices
            .iter()
            .map(|(len, bytes, _, _)| {
                let h = len.num_seconds() as f64 / 3600.0;
                let b = if *bytes < 1024 {
                    format!("{bytes} B")
                } else {
                    kib(*bytes)
                };
                format!("{h:.0} h: {b}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resident and peak-resident memory of this process, in KiB.
fn status_kib(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn measure(
    engine: &Engine,
    ws: &mut HaWs,
    ids: &[String],
    sz: &Sizes,
    seed: &Seed,
) -> anyhow::Result<Vec<Row>> {
    let n = sz.past_reps.max(1);
    // Warm-up: HA's caches and ours (time zone, page cache), not measured.
    let (s, e) = last(WINDOW_SECS);
    ws.history(ids, s, e).await?;
    Replay::run(ws, ids, WINDOW_SECS).await?;
    fetch(engine, ours(ids, WINDOW, 0)).await?;

    let (mut ha_t, mut sliced_t, mut our_t) = (Vec::new(), Vec::new(), Vec::new());
    let mut ha_bytes = 0;
    let mut ha_count = None;
    let mut replay = None;
    let mut value = None;
    for i in 1..=n {
        // HA's call, the replay and ours take turns at going first.
        for step in 0..3 {
            match (i + step) % 3 {
                0 => {
                    let (s, e) = last(WINDOW_SECS);
                    let a = ws.history(ids, s, e).await?;
                    ha_t.push(a.took);
                    ha_bytes = a.result.len();
                    if i == n {
                        ha_count = Some(count(&a.result)?);
                    }
                }
                1 => {
                    let r = Replay::run(ws, ids, WINDOW_SECS).await?;
                    sliced_t.push(r.total());
                    replay = Some(r);
                }
                _ => {
                    let (v, cached, took) = fetch(engine, ours(ids, WINDOW, i)).await?;
                    anyhow::ensure!(
                        !cached,
                        "run {i} with a fresh cache key came from the cache"
                    );
                    our_t.push(took);
                    value = Some(v);
                }
            }
        }
    }
    let (ha_p50, sliced_p50, our_p50) = (median(ha_t), median(sliced_t), median(our_t));
    let value = value.expect("n ≥ 1");
    let replay = replay.expect("n ≥ 1");
    let ha_count = ha_count.expect("n ≥ 1");

    // Our summary must count what HA's rows hold, light by light.
    let mine = our_changes(&value);
    anyhow::ensure!(
        mine == ha_count.changes,
        "our summary's changes differ from HA's rows: ours {} in all, HA's {}",
        mine.values().sum::<u64>(),
        ha_count.changes.values().sum::<u64>()
    );
    let changes: u64 = mine.values().sum();
    let json_bytes = serde_json::to_string(&*value)?.len();
    let lean_bytes = lean::text(&value).len();

    // Cached: the identical request again and again.
    let mut cached_t = Vec::with_capacity(sz.reps);
    for _ in 0..sz.reps {
        let (_, cached, took) = fetch(engine, ours(ids, WINDOW, n)).await?;
        if cached {
            cached_t.push(took);
        }
    }
    let hits = cached_t.len();
    anyhow::ensure!(hits > 0, "no repeat of the identical request was cached");
    let cached_p50 = median(cached_t);

    println!(
        "  history 24 h, {ENTITIES} lights: HA's own call p50 {:.2} ms ({} rows, {ha_bytes} bytes); its {} slices on our socket p50 {:.2} ms (newest first: {}); ours uncached p50 {:.2} ms, cached p50 {:.4} ms ({hits} of {} cached); ours {json_bytes} bytes JSON, {lean_bytes} bytes lean, {changes} changes",
        ms(ha_p50),
        ha_count.rows,
        replay.slices.len(),
        ms(sliced_p50),
        replay.describe(),
        ms(our_p50),
        ms(cached_p50),
        sz.reps
    );

    // Memory: the widest window, every row the recorder holds for the lights.
    let (growth, hwm_reset, widest_changes) = {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(status_kib("VmRSS:").unwrap_or(0), Ordering::Relaxed);
                    std::thread::sleep(RSS_POLL);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        ha_fetchers::memory::trim();
        let before = status_kib("VmRSS:").unwrap_or(0);
        // "5" resets VmHWM to the current RSS (Linux ≥ 4.0).
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        peak.store(before, Ordering::Relaxed);
        let (v, cached, _) = fetch(engine, ours(ids, WIDEST, 0)).await?;
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        anyhow::ensure!(!cached, "the {WIDEST} summary came from the cache");
        let mut top = peak.load(Ordering::Relaxed);
        if hwm_reset {
            top = top.max(status_kib("VmHWM:").unwrap_or(0));
        }
        let changes: u64 = our_changes(&v).values().sum();
        (
            top.saturating_sub(before) as f64 / 1024.0,
            hwm_reset,
            changes,
        )
    };
    let widest = Replay::run(ws, ids, WIDEST_SECS).await?;
    println!(
        "  history {WIDEST}: peak RSS growth {growth:.2} MiB ({}); HA holds {} rows for the lights, read in {} slices (newest first: {}), the largest answer {}; our summary counts {widest_changes} changes",
        if hwm_reset { "VmHWM reset, and VmRSS sampled each ms" } else { "VmRSS sampled each ms" },
        widest.rows(),
        widest.slices.len(),
        widest.describe(),
        kib(widest.largest())
    );

    let pacing = "sequential, one request in flight, HA, app and client sharing 2 cores";
    let seeded = if seed.posted > 0 {
        format!("{} changes posted through REST this run", seed.posted)
    } else {
        "seeded through REST by an earlier run".into()
    };
    let ha_ref = format!(
        "HA 2025.4.4 `history/history_during_period` (minimal_response, no_attributes, significant_changes_only), same ids and window, own WebSocket: p50 {:.2} ms",
        ms(ha_p50)
    );
    let mut rows = Vec::new();
    let size_ratio = ha_bytes as f64 / json_bytes as f64;
    rows.push(
        Row::new(
            &format!(
                "`{FETCHER}`, {ENTITIES} lights over {WINDOW} ({} rows in HA's answer, {seeded}): bytes of our summary's JSON (lean text {lean_bytes} bytes, {:.3}× HA's)",
                ha_count.rows,
                lean_bytes as f64 / ha_bytes as f64
            ),
            format!("{json_bytes} bytes ({:.3}× HA's)", json_bytes as f64 / ha_bytes as f64),
            "≤ 0.1× HA's bytes",
            (json_bytes as f64) <= 0.1 * ha_bytes as f64,
        )
        .with_ref(
            format!(
                "HA's own answer for the same ids and window (minimal_response, no_attributes, significant_changes_only: the least HA sends): {ha_bytes} bytes"
            ),
            size_ratio,
        ),
    );
    rows.push(
        Row::new(
            &format!(
                "`{FETCHER}`, {ENTITIES} lights over {WINDOW}, uncached, p50 of {n} (a fresh cache key each; {} requests to HA per summary, newest first: {}; {pacing}; HA's call, the replayed slices and ours take turns at going first)",
                replay.slices.len(),
                replay.describe()
            ),
            format!("{:.2} ms", ms(our_p50)),
            "≤ 1.5× HA's time",
            ms(our_p50) <= 1.5 * ms(ha_p50),
        )
        .with_ref(ha_ref, ha_p50.as_secs_f64() / our_p50.as_secs_f64()),
    );
    rows.push(
        Row::new(
            &format!(
                "HA's time for the {} slices a {WINDOW} summary asks, replayed on the bench's socket, p50 of {n}",
                replay.slices.len()
            ),
            format!("{:.2} ms", ms(sliced_p50)),
            "–",
            true,
        )
        .with_ref(
            format!("HA's one call for the whole window: p50 {:.2} ms", ms(ha_p50)),
            ha_p50.as_secs_f64() / sliced_p50.as_secs_f64(),
        )
        .info(),
    );
    rows.push(
        Row::new(
            &format!(
                "`{FETCHER}`, {ENTITIES} lights over {WINDOW}, cached repeat of the identical request, p50 of {hits} ({hits} of {} answered by the cache; {pacing})",
                sz.reps
            ),
            format!("{:.4} ms", ms(cached_p50)),
            "≥ 50× faster than uncached",
            our_p50.as_secs_f64() / cached_p50.as_secs_f64() >= 50.0,
        )
        .with_ref(
            format!("ours uncached, same run: p50 {:.2} ms", ms(our_p50)),
            our_p50.as_secs_f64() / cached_p50.as_secs_f64(),
        ),
    );
    rows.push(
        Row::new(
            &format!(
                "bench process's peak RSS growth (the app is in it) while summarising the widest window ({WIDEST}: every row the recorder holds for the {ENTITIES} lights, {} rows in {} slices, newest first: {}). Not the largest allowed answer: the slicing grows a slice at most {SLICE_GROWTH}× in length and sizes it toward {} MiB from the bytes per second of the one read before it, which keeps an answer under {SLICE_GROWTH} × {} MiB = {} MiB only while the rate grows less than {SLICE_GROWTH}× from slice to slice; here {}",
                widest.rows(),
                widest.slices.len(),
                widest.describe(),
                SLICE_BYTES >> 20,
                SLICE_BYTES >> 20,
                (SLICE_BYTES * SLICE_GROWTH as usize) >> 20,
                widest.heaviest()
            ),
            format!("{growth:.2} MiB"),
            "–",
            true,
        )
        .info(),
    );
    Ok(rows)
}
