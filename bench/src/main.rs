//! The benchmark suite of BENCHMARKS.md: `cargo run --release -p bench [-- --quick]`
//! (or `scripts/bench.sh`). A workspace member of its own, never published,
//! so `cargo install` ships only `ha-fetchers`.
//!
//! Every figure is printed next to a reference measured in the same run,
//! because these machines are noisy. Needs Redis on 127.0.0.1:6379 and
//! `redis-benchmark`; compares with the real Home Assistant that
//! `scripts/ha/start.sh` provides. See BENCHMARKS.md for the last full run.

mod app;
mod child;
mod figures;
mod history;
mod house;
mod http;
mod parse;
mod pin;
mod reconcile;
mod refs;
mod report;
mod scoped;
mod soak;
mod stream;

use std::path::PathBuf;
use std::time::Duration;

use report::Row;

/// Sizes of one run: full or `--quick`.
pub struct Sizes {
    /// Entities in the synthetic house.
    pub entities: usize,
    /// Events in the ingest blast.
    pub events: usize,
    /// Timed probes in the visibility figure.
    pub probes: usize,
    /// Duration of each HTTP load run.
    pub load: Duration,
    /// Repetitions of in-process and sequential HTTP queries.
    pub reps: usize,
    /// Repetitions against the real HA (slow).
    pub ha_reps: usize,
    /// Uncached history summaries, each beside HA's own call (slower still).
    pub past_reps: usize,
    /// Entities of the large cold start.
    pub big: usize,
    /// Requests per redis-benchmark test.
    pub redis_n: usize,
}

impl Sizes {
    fn full() -> Self {
        Self {
            entities: 10_000,
            events: 200_000,
            probes: 1_000,
            load: Duration::from_secs(5),
            reps: 1_000,
            ha_reps: 50,
            past_reps: 21,
            big: 100_000,
            redis_n: 300_000,
        }
    }
    fn quick() -> Self {
        Self {
            entities: 1_000,
            events: 20_000,
            probes: 100,
            load: Duration::from_millis(500),
            reps: 100,
            ha_reps: 5,
            past_reps: 7,
            big: 5_000,
            redis_n: 100_000,
        }
    }
}

/// The figures `--only` can pick.
const FIGURES: [&str; 10] = [
    "ingest", "visible", "get", "lights", "prompt", "parse", "scoped", "cold", "rss", "history",
];

/// The benchmark suite, or with `--soak` the soak.
#[derive(clap::Parser, Debug)]
#[command(
    name = "bench",
    about = "The benchmark suite (BENCHMARKS.md), or with --soak the soak (RELIABILITY.md), or with --stream the change stream's figures",
    after_help = "Environment: RUST_LOG sets the app's log level (default info, as in \
                  production); the app's logs go to target/bench/app.log."
)]
struct Args {
    /// Small sizes, a few seconds (CI smoke); does not start Home Assistant.
    #[arg(long)]
    quick: bool,
    /// Skip the Home Assistant references.
    #[arg(long)]
    no_ha: bool,
    /// Only these figures (e.g. to profile one with perf).
    #[arg(
        long,
        value_name = "FIGURE,...",
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(FIGURES)
    )]
    only: Option<Vec<String>>,
    /// The soak instead: `serve` at 1,000 events/s and 5,000 reads/s for
    /// --minutes; exits non-zero when a check fails.
    #[arg(long, conflicts_with_all = ["quick", "no_ha", "only"])]
    soak: bool,
    /// The change stream's figures instead (BENCHMARKS.md's change-stream runs): 100
    /// SSE subscribers at 1,000 events/s, one stalled subscriber, ingest with
    /// and without subscribers.
    #[arg(long, conflicts_with_all = ["quick", "no_ha", "only", "soak"])]
    stream: bool,
    /// What one anti-entropy pass costs at 10,000 entities instead: bytes,
    /// CPU per pass, GET latency while passes run (BENCHMARKS.md).
    #[arg(long, conflicts_with_all = ["quick", "no_ha", "only", "soak", "stream"])]
    reconcile: bool,
    /// Internal: figure 3's subscribers, in a process of their own (run by `--stream`).
    #[arg(long, hide = true, value_name = "ADDR")]
    stream_clients: Option<std::net::SocketAddr>,
    /// Internal: how many subscribers `--stream-clients` opens.
    #[arg(long, hide = true, default_value_t = 100)]
    clients: usize,
    /// Length of the soak.
    #[arg(long, value_name = "N", default_value_t = 10.0, requires = "soak", value_parser = positive)]
    minutes: f64,
}

/// A positive number of minutes.
fn positive(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(m) if m > 0.0 && m.is_finite() => Ok(m),
        _ => Err("needs a positive number".into()),
    }
}

/// Finds `ha-fetchers` next to this binary, building it when run by cargo.
pub fn serve_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("ha-fetchers");
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = me.parent().is_some_and(|d| d.ends_with("release"));
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "ha-fetchers",
            "--bin",
            "ha-fetchers",
        ]);
        if release {
            cmd.arg("--release");
        }
        anyhow::ensure!(cmd.status()?.success(), "could not build ha-fetchers");
    }
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run scripts/bench.sh or cargo build --release --workspace --bins",
        bin.display()
    );
    Ok(bin)
}

/// Sends the app's logs to a file, at the production default level.
fn init_logs() -> anyhow::Result<()> {
    std::fs::create_dir_all("target/bench")?;
    let file = std::fs::File::create("target/bench/app.log")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}

/// Runs a figure, turning a failure into a row that says so.
fn or_failed(fig: &str, target: &str, r: anyhow::Result<Vec<Row>>) -> Vec<Row> {
    r.unwrap_or_else(|e| {
        eprintln!("  {fig} failed: {e:#}");
        let mut row = Row::skipped(fig, target, format!("failed: {e}"));
        row.value = "failed".into();
        vec![row]
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    if let Some(addr) = args.stream_clients {
        return match stream::clients_main(addr, args.clients).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stream clients failed: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.soak {
        if let Err(e) = init_logs() {
            eprintln!("bench failed: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
        return match soak::run(args.minutes).await {
            Ok(true) => std::process::ExitCode::SUCCESS,
            Ok(false) => std::process::ExitCode::FAILURE,
            Err(e) => {
                eprintln!("soak failed: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.stream || args.reconcile {
        let r = match init_logs() {
            Ok(()) if args.stream => stream::run().await,
            Ok(()) => reconcile::run().await,
            Err(e) => Err(e),
        };
        return match r {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench failed: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut mode = vec![if args.quick { "quick" } else { "full" }.to_string()];
    if let Some(only) = &args.only {
        mode.push(format!("--only {}", only.join(",")));
    }
    if args.no_ha {
        mode.push("--no-ha".into());
    }
    let stamp = report::Stamp::now(mode.join(", "));
    let only = args.only;
    let want = move |f: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == f));
    match run(stamp, args.quick, args.no_ha, &want).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(
    stamp: report::Stamp,
    quick: bool,
    no_ha: bool,
    want: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    init_logs()?;
    let sz = if quick { Sizes::quick() } else { Sizes::full() };
    println!(
        "bench ({}) at {}, commit {}, load average {}",
        stamp.mode,
        stamp.started,
        stamp.commit,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    println!("building a house of {} entities…", sz.entities);
    let mut house = house::House::new(sz.entities);
    let payload = house.mean_state_bytes();

    println!("references: redis-benchmark, payload {payload} bytes…");
    let n = sz.redis_n.to_string();
    let d = payload.to_string();
    let r = sz.entities.to_string();
    // The pipelined SET swings ~2× between runs here: its median of three is the reference.
    let mut sets = Vec::new();
    for _ in 0..figures::RUNS {
        match refs::redis_benchmark("set", &["-P", "64", "-d", &d, "-n", &n, "-r", &r]) {
            Ok((v, cmd)) => {
                println!("  {cmd}: {:.0}/s", v.rps);
                sets.push(v);
            }
            Err(e) => eprintln!("  {e}"),
        }
    }
    sets.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let set_ref = (!sets.is_empty()).then(|| sets.swap_remove(sets.len() / 2));
    let get_ref = match refs::redis_benchmark("get", &["-c", "8", "-d", &d, "-n", &n, "-r", &r]) {
        Ok((v, cmd)) => {
            println!("  {cmd}: {:.0}/s, p99 {:.3} ms", v.rps, v.p99_ms);
            Some(v)
        }
        Err(e) => {
            eprintln!("  {e}");
            None
        }
    };
    refs::redis_cleanup_reference().await;
    let ha = if no_ha {
        Err("--no-ha".to_string())
    } else {
        println!("references: real Home Assistant via scripts/ha/start.sh…");
        refs::real_ha(!quick)
    };
    if let Err(e) = &ha {
        eprintln!("  no HA reference: {e}");
    }
    let ha_ref = ha.as_ref().map_err(|e| e.as_str());

    println!("starting the app against the simulated HA (ha_fetchers::sim)…");
    let fake = app::fake_ha(&house.snapshot_json()).await?;
    let app = app::Running::start(&fake, "main").await?;
    app.wait_resync(1).await?;

    let mut rows = Vec::new();
    if want("ingest") {
        println!("1. ingest…");
        let r = figures::ingest(&app, &fake, &mut house, &sz, set_ref).await;
        rows.extend(or_failed("ingest", "≥ 100k events/s", r));
    }
    if want("visible") {
        println!("2. event → visible…");
        let r = figures::visibility(&app, &fake, &mut house, &sz).await;
        rows.extend(or_failed("event → visible", "p99 ≤ 2 ms", r));
    }
    if want("get") {
        println!("3. GET one state, {} connections…", figures::CONNECTIONS);
        let r = figures::get_one(&app, &house, &sz, ha_ref, get_ref).await;
        rows.extend(or_failed("GET one state", "≥ 10× HA; p99 ≤ 1 ms", r));
    }
    if want("lights") {
        println!("4. lights that are on…");
        let r = figures::lights_on(&app, &house, &sz, ha_ref).await;
        rows.extend(or_failed("lights on", "p50 ≤ 1 ms; ≥ 20×", r));
    }
    if want("prompt") {
        println!("5. prompt…");
        rows.extend(figures::prompt(&app, &sz).await);
    }
    if want("parse") {
        println!("diagnostic: session parsing alone…");
        rows.extend(parse::compare(sz.events, &mut house));
    }
    let rest = figures::rest_calls(&app, &fake);
    app.stop().await;
    // An app of its own on the same simulated HA and house, with `API_TOKEN`
    // and scoped tokens: the figures above run with no token.
    if want("scoped") {
        println!(
            "scoped tokens against the admin token: GET, {} connections, and live_context over MCP…",
            figures::CONNECTIONS
        );
        let r = scoped::run(&fake, &house, &sz).await;
        rows.extend(or_failed(
            "scoped tokens vs the admin token",
            "≤ 10 % slower",
            r,
        ));
    }
    fake.stop();

    if want("cold") {
        println!("6. cold start…");
        for (n, limit) in [(sz.entities, 300.0), (sz.big, 3000.0)] {
            let r = figures::cold_start(n, limit).await.map(|r| vec![r]);
            rows.extend(or_failed("cold start", "auth_ok → complete", r));
        }
    }
    if want("rss") {
        println!("7. RSS…");
        let r = figures::rss(sz.entities, &sz).await.map(|r| vec![r]);
        rows.extend(or_failed("RSS", "≤ 64 MiB", r));
    }
    rows.push(rest);
    // Last: it posts 10,000 states into the real HA when its recorder lacks
    // them, and runs an app of its own against that HA.
    if want("history") {
        println!("8. history over the live link, against HA's own call…");
        let r = history::run(ha_ref, &sz).await;
        rows.extend(or_failed(
            "history",
            "≤ 0.1× HA's bytes; ≤ 1.5× HA's time; cached ≥ 50×",
            r,
        ));
    }

    let block = report::block(&stamp, report::load1(), &rows);
    println!(
        "\nResults ({} entities; load generator: hyper's HTTP/1.1 client connections, kept alive, {} connections, {:?} per run):\n",
        sz.entities,
        figures::CONNECTIONS,
        sz.load
    );
    println!("{block}");
    std::fs::write("target/bench/results.md", &block)?;
    std::fs::write("target/bench/current.md", &block)?;
    println!(
        "(also in target/bench/results.md and target/bench/current.md, which `scripts/bench.sh --write` puts into BENCHMARKS.md; the app's logs are in target/bench/app.log)"
    );
    Ok(())
}
