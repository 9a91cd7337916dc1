//! `bench --reconcile`: what one anti-entropy pass (`RECONCILE_INTERVAL`)
//! costs at 10,000 entities: the bytes of its `get_states`, the process's CPU
//! per pass, and the API's GET latency while passes run, each beside the same
//! app with reconciling off, in the same run.

use std::time::Duration;

use super::app::{fake_ha, Running};
use super::house::House;
use super::http::{run_load, Target};

/// Entities in the house, as in the other figures.
const ENTITIES: usize = 10_000;
/// A pass this often while measuring: far more often than the 15-minute
/// default, so a few seconds hold many passes.
const EVERY: Duration = Duration::from_secs(1);
/// How long each idle window lasts.
const IDLE: Duration = Duration::from_secs(10);
/// How long each GET load lasts.
const LOAD: Duration = Duration::from_secs(5);
/// Connections of the GET load (as in the GET figure).
const CONNECTIONS: usize = 8;

/// CPU time of this whole process (app, fake HA, load client) so far.
pub fn process_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One app, reconciling every `every` (or never): process CPU over an idle
/// window, passes done in it, then a GET load's p50/p99 and rate.
async fn measure(
    house: &House,
    every: Option<Duration>,
) -> anyhow::Result<(Duration, u64, [f64; 3])> {
    let fake = fake_ha(&house.snapshot_json()).await?;
    let app = Running::start_with(&fake, "reconcile", |s| {
        s.reconcile_interval = every.unwrap_or(Duration::ZERO);
    })
    .await?;
    app.wait_resync(1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = || app.engine.states().reconciled().map_or(0, |r| r.runs);
    let (cpu0, runs0) = (process_cpu(), runs());
    tokio::time::sleep(IDLE).await;
    let (cpu, passes) = (process_cpu() - cpu0, runs() - runs0);
    let target = Target::parse(&format!("http://127.0.0.1:{}", app.port), None)?;
    let paths = house.state_paths();
    let load =
        tokio::task::spawn_blocking(move || run_load(target, paths, CONNECTIONS, LOAD)).await?;
    let get = [load.pct_ms(50.0), load.pct_ms(99.0), load.rps()];
    app.stop().await;
    fake.stop();
    Ok((cpu, passes, get))
}

pub async fn run() -> anyhow::Result<()> {
    println!(
        "bench --reconcile at {}, load average {}; {ENTITIES} entities, Redis store, a pass every {EVERY:?}; idle windows of {IDLE:?}, GET load {CONNECTIONS} connections × {LOAD:?}; nothing pinned (2 cores)",
        chrono::Utc::now(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let house = House::new(ENTITIES);
    let bytes = house.snapshot_json().len();
    let (off_cpu, _, off_get) = measure(&house, None).await?;
    let (on_cpu, passes, on_get) = measure(&house, Some(EVERY)).await?;
    let (off2_cpu, _, off2_get) = measure(&house, None).await?;
    let idle_cpu = (off_cpu + off2_cpu) / 2;
    let per_pass = on_cpu.saturating_sub(idle_cpu).as_secs_f64() * 1000.0 / passes.max(1) as f64;
    println!(
        "  get_states result: {bytes} bytes ({:.1} MB) per pass",
        bytes as f64 / 1e6
    );
    println!(
        "  idle {IDLE:?}: process CPU {:.0} ms off, {:.0} ms with {passes} passes, {:.0} ms off again → {per_pass:.1} ms of CPU per pass (app and fake HA together)",
        off_cpu.as_secs_f64() * 1000.0,
        on_cpu.as_secs_f64() * 1000.0,
        off2_cpu.as_secs_f64() * 1000.0,
    );
    for (what, g) in [
        ("off", off_get),
        ("a pass every second", on_get),
        ("off again", off2_get),
    ] {
        println!(
            "  GET while {what}: p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s",
            g[0], g[1], g[2]
        );
    }
    Ok(())
}
