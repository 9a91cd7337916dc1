//! The `scoped` figure: what a scoped API token costs against the admin
//! token, in one run. An app like the other figures' (`Running`, Redis store,
//! the simulated HA with the bench's house), started with `API_TOKEN` set and
//! a tokens file holding two scoped tokens: one for `domain:light` and
//! `domain:switch`, one for what HA exposes to Assist (the sim answers
//! `homeassistant/expose_entity/list` with HA's default rules, which expose
//! every light and switch). Its own app, because the figures before it run
//! with no token at all.
//!
//! Both doors are measured for the three tokens on the same entities (the
//! house's lights and switches, inside both scopes), interleaved, each token
//! going first in turn: `GET /api/v1/states/{id}` under the GET figure's load
//! ([`CONNECTIONS`] connections; throughput pooled over [`ROUNDS`] short
//! rounds, and the bench process's CPU per request beside it, which a busy
//! machine disturbs less), and `live_context` for the lights over `/mcp`,
//! sequential, each token in a session of its own. Last, a context row: the
//! scoped path's own steps timed in-process on one thread.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ha_fetchers::sim::Sim;
use ha_fetchers::state::{Entities, ScopeSpec};
use ha_fetchers::tokens::{self, Backend, Stored};
use secrecy::SecretString;
use serde_json::{json, Value};

use super::app::Running;
use super::figures::{CONNECTIONS, RUNS};
use super::house::House;
use super::http::{run_load, Conn, Latencies, Load, Target};
use super::reconcile::process_cpu;
use super::report::Row;
use super::Sizes;

/// The admin token (`API_TOKEN`): not `hf_`-prefixed, as an admin's usually is not.
const ADMIN: &str = "bench-admin-token";
/// The first scope's selectors.
const ONLY: [&str; 2] = ["domain:light", "domain:switch"];
/// How long the app may take to hear HA's exposure list.
const EXPOSURE_LIMIT: Duration = Duration::from_secs(30);
/// How often that is polled.
const EXPOSURE_POLL: Duration = Duration::from_millis(20);
/// Unmeasured `live_context` calls per token before the clock starts.
const MCP_WARMUP: usize = 20;
/// The MCP protocol version the bench speaks.
const MCP_VERSION: &str = "2025-06-18";
/// What `/mcp` wants a client to accept.
const MCP_ACCEPT: &str = "application/json, text/event-stream";
/// GET rounds: each token goes first in a third of them. Each token gets
/// [`RUNS`] × the load duration in all, cut into short rounds, so each
/// round's three runs are close in time on a shared machine.
const ROUNDS: usize = 3 * RUNS;
/// In-process calls timed for the breakdown row.
const CALLS: usize = 200_000;
/// In-process listings of the lights timed for the listing row.
const LIST_CALLS: usize = 2_000;
/// The targets: the "≤ 10 % slower".
const TARGET_GET: &str = "≤ 10 % slower (≥ 0.9× the admin's req/s)";
const TARGET_MCP: &str = "≤ 10 % slower (p50 ≤ 1.1× the admin's)";

/// One token the figure measures.
struct Token {
    /// How rows name it.
    label: String,
    /// The secret, as a client sends it.
    secret: String,
}

/// The figure's rows.
pub async fn run(fake: &Sim, house: &House, sz: &Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("bench-scoped-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("tokens.json");
    let _ = std::fs::remove_file(&file);
    let r = run_in(fake, house, sz, file).await;
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Writes one scoped token into `file`; returns its secret.
async fn create(file: &std::path::Path, name: &str, entities: Entities) -> anyhow::Result<String> {
    let (secret, hash) = tokens::mint();
    let row = Stored {
        name: name.into(),
        hash,
        scope: ScopeSpec {
            entities,
            fetchers: vec![],
            prompts: vec![],
        },
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    Backend::File(file.to_path_buf()).create(row).await?;
    Ok(secret)
}

async fn run_in(fake: &Sim, house: &House, sz: &Sizes, file: PathBuf) -> anyhow::Result<Vec<Row>> {
    let only = create(
        &file,
        "bench-lights",
        Entities::Only(ONLY.iter().map(|s| s.to_string()).collect()),
    )
    .await?;
    let assist = create(&file, "bench-assist", Entities::Assist).await?;
    let app = Running::start_with(fake, "scoped", |s| {
        s.api_token = Some(SecretString::from(ADMIN));
        s.tokens_file = file.clone();
    })
    .await?;
    let r = async {
        app.wait_resync(1).await?;
        let t0 = Instant::now();
        let exposed = loop {
            if let Some(ids) = app.engine.states().exposed_ids() {
                break ids;
            }
            anyhow::ensure!(
                t0.elapsed() < EXPOSURE_LIMIT,
                "the app did not hear HA's exposure list in {EXPOSURE_LIMIT:?}"
            );
            tokio::time::sleep(EXPOSURE_POLL).await;
        };
        let tokens = [
            Token {
                label: "admin".into(),
                secret: ADMIN.into(),
            },
            Token {
                label: format!("scoped to `{}`", ONLY.join(",")),
                secret: only,
            },
            Token {
                label: "scoped to `assist`".into(),
                secret: assist,
            },
        ];
        measure(&app, house, sz, &tokens, &exposed, &file).await
    }
    .await;
    app.stop().await;
    r
}

/// A load run's sums over rounds.
#[derive(Default)]
struct Sum {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    lat: Latencies,
    /// req/s of each round, in round order.
    rounds: Vec<f64>,
    /// The bench process's CPU time (app, sim and load client) over the runs.
    cpu: Duration,
}

impl Sum {
    fn add(&mut self, l: &Load, cpu: Duration) {
        self.cpu += cpu;
        self.ok += l.ok;
        self.errors += l.errors;
        self.elapsed += l.elapsed;
        self.lat.merge(&l.lat);
        self.rounds.push(l.rps());
    }
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    /// The bench process's CPU per answered request, in µs.
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.ok.max(1) as f64
    }
}

/// The median of `v`.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn measure(
    app: &Running,
    house: &House,
    sz: &Sizes,
    tokens: &[Token; 3],
    exposed: &[String],
    file: &std::path::Path,
) -> anyhow::Result<Vec<Row>> {
    let url = format!("http://127.0.0.1:{}", app.port);
    let target = |t: &Token| Target::parse(&url, Some(format!("Bearer {}", t.secret)));
    let exposed_set: BTreeSet<&str> = exposed.iter().map(String::as_str).collect();
    let mut ids = house.ids_of("light");
    ids.extend(house.ids_of("switch"));
    let in_scope = ids.len();
    let hidden = ids
        .iter()
        .filter(|id| !exposed_set.contains(id.as_str()))
        .count();
    anyhow::ensure!(
        hidden == 0,
        "{hidden} of the house's {in_scope} lights and switches are not exposed to Assist: the two scopes would not see the same entities"
    );
    let exposed_n = exposed.len();
    println!(
        "  the sim exposes {exposed_n} of {} entities to Assist (HA's default rules), every one of the {in_scope} lights and switches among them",
        house.entities.len()
    );

    // Each token sees its entities, and only the admin sees one outside both scopes.
    let outside = house
        .entities
        .iter()
        .map(|e| e.id.as_str())
        .find(|id| {
            !exposed_set.contains(id) && !id.starts_with("light.") && !id.starts_with("switch.")
        })
        .ok_or_else(|| anyhow::anyhow!("the house has no entity outside both scopes"))?;
    for (i, t) in tokens.iter().enumerate() {
        let mut c = Conn::open(&target(t)?).await?;
        let (inside, _) = c.get(&format!("/api/v1/states/{}", ids[0])).await?;
        let (out, _) = c.get(&format!("/api/v1/states/{outside}")).await?;
        let want_out = if i == 0 { 200 } else { 404 };
        anyhow::ensure!(
            inside == 200 && out == want_out,
            "{}: {} answered {inside}, {outside} answered {out} (expected 200 and {want_out})",
            t.label,
            ids[0]
        );
    }
    let open = Target::parse(&url, None)?;
    let (status, _) = Conn::open(&open)
        .await?
        .get(&format!("/api/v1/states/{}", ids[0]))
        .await?;
    anyhow::ensure!(status == 401, "a request without a token answered {status}");

    // GET: a warm-up per token, then ROUNDS rounds, each token first in turn.
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/v1/states/{id}"))
        .collect();
    let warm = sz.load / 5;
    for t in tokens {
        let (tg, p) = (target(t)?, paths.clone());
        tokio::task::spawn_blocking(move || run_load(tg, p, CONNECTIONS, warm)).await?;
    }
    let mut sums: [Sum; 3] = Default::default();
    let dur = sz.load * RUNS as u32 / ROUNDS as u32;
    for round in 0..ROUNDS {
        for k in 0..tokens.len() {
            let i = (round + k) % tokens.len();
            let (tg, p) = (target(&tokens[i])?, paths.clone());
            let cpu0 = process_cpu();
            let l = tokio::task::spawn_blocking(move || run_load(tg, p, CONNECTIONS, dur)).await?;
            sums[i].add(&l, process_cpu() - cpu0);
        }
    }
    for (t, s) in tokens.iter().zip(&sums) {
        println!(
            "  GET, {}: {:.0} req/s (rounds {}), p50 {:.3} ms, p99 {:.3} ms, bench process CPU {:.1} µs/request, errors {}",
            t.label,
            s.rps(),
            s.rounds
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.lat.ms(50.0),
            s.lat.ms(99.0),
            s.cpu_us(),
            s.errors
        );
        anyhow::ensure!(
            s.errors == 0 && s.ok > 0,
            "GET with the {} token: {} errors, {} answered",
            t.label,
            s.errors,
            s.ok
        );
    }

    // live_context over MCP, sequential, a session per token.
    let mut mcps = Vec::new();
    for t in tokens {
        mcps.push(Mcp::open(&target(t)?).await?);
    }
    let args = json!({"name": "live_context", "arguments": {"domain": "light"}});
    let mut answers = Vec::new();
    for m in &mut mcps {
        for _ in 0..MCP_WARMUP {
            m.call("tools/call", args.clone()).await?;
        }
        answers.push(m.call("tools/call", args.clone()).await?.0);
    }
    let text = |v: &Value| {
        v["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_string)
    };
    let first =
        text(&answers[0]).ok_or_else(|| anyhow::anyhow!("live_context answered {}", answers[0]))?;
    for (t, a) in tokens.iter().zip(&answers) {
        anyhow::ensure!(
            a["result"]["isError"] != true && text(a).as_deref() == Some(first.as_str()),
            "live_context with the {} token answered otherwise than with the admin's: {a}",
            t.label
        );
    }
    let lines = first.lines().filter(|l| l.starts_with("- ")).count();
    anyhow::ensure!(
        lines > 0 && first.contains("light."),
        "live_context listed no light: {first}"
    );
    let bytes = first.len();
    let reps = sz.reps.max(1);
    let mut lat: [Latencies; 3] = Default::default();
    for round in 0..reps {
        for k in 0..tokens.len() {
            let i = (round + k) % tokens.len();
            let (_, took) = mcps[i].call("tools/call", args.clone()).await?;
            lat[i].record(took);
        }
    }
    for (t, l) in tokens.iter().zip(&lat) {
        println!(
            "  live_context (light), {}: p50 {:.3} ms, p99 {:.3} ms ({lines} lines, {bytes} bytes)",
            t.label,
            l.ms(50.0),
            l.ms(99.0)
        );
    }

    let b = Breakdown::measure(app, file, &tokens[1].secret, &tokens[2].secret, &ids).await?;
    println!(
        "  in-process, one thread, per call: Tokens::scope_of {:.3} µs, Engine::scoped {:.3} µs, StateManager::get {:.3} µs through `{}`, {:.3} µs through `assist`, {:.3} µs whole; listing the lights {:.1} µs through `{}`, {:.1} µs through `assist`, {:.1} µs whole",
        b.lookup, b.view, b.get_only, ONLY.join(","), b.get_assist, b.get_whole,
        b.list[1], ONLY.join(","), b.list[2], b.list[0]
    );

    let admin = &sums[0];
    let mut rows = Vec::new();
    let scope_of = |i: usize| match i {
        1 => format!("`{}`", ONLY.join(",")),
        _ => format!(
            "`assist`, what the sim exposes by HA's default rules: {exposed_n} of {} entities",
            house.entities.len()
        ),
    };
    for (i, s) in sums.iter().enumerate().skip(1) {
        let ratio = s.rps() / admin.rps();
        let per_round = median(
            s.rounds
                .iter()
                .zip(&admin.rounds)
                .map(|(a, b)| a / b)
                .collect(),
        );
        rows.push(
            Row::new(
                &format!(
                    "`GET /api/v1/states/{{id}}` with a token scoped to {}, {CONNECTIONS} connections, the house's {in_scope} lights and switches (inside the scope), throughput (p50 {:.3} ms, p99 {:.3} ms; bench process CPU {:.1} µs per request, the admin's {:.1} µs; {ROUNDS} rounds of {:.0} ms per token, the three tokens interleaved, each first in a third of them; median of the rounds' ratios {per_round:.2}×)",
                    scope_of(i),
                    s.lat.ms(50.0),
                    s.lat.ms(99.0),
                    s.cpu_us(),
                    admin.cpu_us(),
                    dur.as_secs_f64() * 1000.0
                ),
                format!("{:.0} req/s", s.rps()),
                TARGET_GET,
                ratio >= 0.9,
            )
            .with_ref(
                format!(
                    "admin token (`API_TOKEN`), same paths, same run: {:.0} req/s (p50 {:.3} ms, p99 {:.3} ms)",
                    admin.rps(),
                    admin.lat.ms(50.0),
                    admin.lat.ms(99.0)
                ),
                ratio,
            ),
        );
    }
    for i in 1..3 {
        let (p50, admin_p50) = (lat[i].ms(50.0), lat[0].ms(50.0));
        rows.push(
            Row::new(
                &format!(
                    "`live_context` {{\"domain\": \"light\"}} over MCP (`POST /mcp` `tools/call`, a session per token) with a token scoped to {}, p50 of {reps} (p99 {:.3} ms; sequential, the three tokens interleaved, each first in turn; the same answer for all three: {lines} lines, {bytes} bytes)",
                    scope_of(i),
                    lat[i].ms(99.0)
                ),
                format!("{p50:.3} ms"),
                TARGET_MCP,
                p50 <= 1.1 * admin_p50,
            )
            .with_ref(
                format!(
                    "admin token, same run: p50 {admin_p50:.3} ms (p99 {:.3} ms)",
                    lat[0].ms(99.0)
                ),
                admin_p50 / p50,
            ),
        );
    }
    rows.push(
        Row::new(
            &format!(
                "`StateManager::list` of the lights, what `live_context` {{\"domain\": \"light\"}} walks before it prints, timed in-process on one thread ({LIST_CALLS} calls each): through `{}` {:.1} µs, through `assist` {:.1} µs, whole {:.1} µs",
                ONLY.join(","),
                b.list[1],
                b.list[2],
                b.list[0]
            ),
            format!(
                "{:+.1} µs (`{}`), {:+.1} µs (`assist`) per call",
                b.list[1] - b.list[0],
                ONLY.join(","),
                b.list[2] - b.list[0]
            ),
            "–",
            true,
        )
        .with_ref(format!("whole: {:.1} µs", b.list[0]), b.list[0] / b.list[2])
        .info(),
    );
    let extra = |get: f64| b.lookup + b.view + get - b.get_whole;
    rows.push(
        Row::new(
            &format!(
                "what a scoped `GET` adds in the app, timed in-process on one thread ({CALLS} calls each, in-scope ids): `Tokens::scope_of` (SHA-256 of the presented token, hex, map lookup) {:.3} µs + `Engine::scoped` {:.3} µs + `StateManager::get` through the scope, {:.3} µs for `{}` and {:.3} µs for `assist`, instead of {:.3} µs whole",
                b.lookup,
                b.view,
                b.get_only,
                ONLY.join(","),
                b.get_assist,
                b.get_whole
            ),
            format!(
                "+{:.2} µs (`{}`), +{:.2} µs (`assist`) per request",
                extra(b.get_only),
                ONLY.join(","),
                extra(b.get_assist)
            ),
            "–",
            true,
        )
        .with_ref(
            format!(
                "bench process CPU per `GET` with the admin token, same run: {:.1} µs (app, sim and load client)",
                admin.cpu_us()
            ),
            f64::NAN,
        )
        .info(),
    );
    Ok(rows)
}

/// In-process costs of the scoped path, per call, in µs.
struct Breakdown {
    /// `Tokens::scope_of` of a scoped token: what the token check adds.
    lookup: f64,
    /// `Engine::scoped`: what the `Seen` extractor adds.
    view: f64,
    /// `StateManager::get` through the engine scoped to [`ONLY`].
    get_only: f64,
    /// `StateManager::get` through the engine scoped to `assist`.
    get_assist: f64,
    /// `StateManager::get` through the whole engine.
    get_whole: f64,
    /// `StateManager::list` of the lights (what `live_context` walks): whole,
    /// through [`ONLY`], through `assist`.
    list: [f64; 3],
}

impl Breakdown {
    async fn measure(
        app: &Running,
        file: &std::path::Path,
        only: &str,
        assist: &str,
        ids: &[String],
    ) -> anyhow::Result<Self> {
        use std::hint::black_box;
        let per = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / CALLS as f64;
        let set = tokens::Tokens::default();
        set.replace(Backend::File(file.to_path_buf()).load().await?);
        let scope_of = |secret: &str| {
            set.scope_of(secret)
                .ok_or_else(|| anyhow::anyhow!("the tokens file lacks a scoped token"))
        };
        let (scope, assist) = (scope_of(only)?, scope_of(assist)?);
        let t = Instant::now();
        for _ in 0..CALLS {
            black_box(set.scope_of(black_box(only)));
        }
        let lookup = per(t);
        // These scopes are not the app's `Arc`s: the first call builds a
        // view for each, outside the clock.
        let scoped = app.engine.scoped(scope.clone());
        let assisted = app.engine.scoped(assist);
        let t = Instant::now();
        for _ in 0..CALLS {
            black_box(app.engine.scoped(scope.clone()));
        }
        let view = per(t);
        let get = |engine: &ha_fetchers::engine::Engine| {
            let engine = engine.clone();
            async move {
                let t = Instant::now();
                for i in 0..CALLS {
                    black_box(engine.states().get(&ids[i % ids.len()]).await?);
                }
                anyhow::Ok(per(t))
            }
        };
        let get_whole = get(&app.engine).await?;
        let get_only = get(&scoped).await?;
        let get_assist = get(&assisted).await?;
        let lights = ha_fetchers::state::Query {
            domain: Some("light".into()),
            state: None,
            pattern: None,
        };
        let mut list = [0.0; 3];
        for (slot, engine) in list.iter_mut().zip([&app.engine, &scoped, &assisted]) {
            let t = Instant::now();
            for _ in 0..LIST_CALLS {
                black_box(engine.states().list(&lights).await?);
            }
            *slot = t.elapsed().as_secs_f64() * 1e6 / LIST_CALLS as f64;
        }
        Ok(Self {
            lookup,
            view,
            get_only,
            get_assist,
            get_whole,
            list,
        })
    }
}

/// An MCP session over one kept-alive connection of one token.
struct Mcp {
    conn: Conn,
    session: String,
    next: u64,
}

impl Mcp {
    /// `initialize`, then `notifications/initialized`.
    async fn open(t: &Target) -> anyhow::Result<Self> {
        let mut conn = Conn::open(t).await?;
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": MCP_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}
        }});
        let (status, headers, body) = conn
            .post_with("/mcp", &init.to_string(), &[("accept", MCP_ACCEPT)])
            .await?;
        anyhow::ensure!(
            status == 200,
            "/mcp initialize answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("/mcp initialize named no session"))?
            .to_string();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, _, _) = conn
            .post_with(
                "/mcp",
                &note.to_string(),
                &[
                    ("accept", MCP_ACCEPT),
                    ("mcp-session-id", &session),
                    ("mcp-protocol-version", MCP_VERSION),
                ],
            )
            .await?;
        anyhow::ensure!(
            status < 300,
            "/mcp notifications/initialized answered {status}"
        );
        Ok(Self {
            conn,
            session,
            next: 1,
        })
    }

    /// One request in the session: the answer, and the time from sending it
    /// to having all of it.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<(Value, Duration)> {
        let id = self.next;
        self.next += 1;
        let body =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let t0 = Instant::now();
        let (status, _, answer) = self
            .conn
            .post_with(
                "/mcp",
                &body,
                &[
                    ("accept", MCP_ACCEPT),
                    ("mcp-session-id", &self.session),
                    ("mcp-protocol-version", MCP_VERSION),
                ],
            )
            .await?;
        let took = t0.elapsed();
        anyhow::ensure!(
            status == 200,
            "/mcp {method} answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        let v: Value = serde_json::from_slice(&answer)?;
        anyhow::ensure!(v["error"].is_null(), "/mcp {method}: {}", v["error"]);
        Ok((v, took))
    }
}
