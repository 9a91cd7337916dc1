//! References measured in the same run: `redis-benchmark` and the real Home
//! Assistant started by the project's `scripts/ha/start.sh`.

use std::process::Command;

/// Redis database the reference writes into, apart from the app's keys in db 0.
pub const REDIS_BENCH_DB: &str = "15";

/// What `redis-benchmark --csv` reported for one test.
#[derive(Debug, Clone, Copy)]
pub struct RedisRef {
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency in ms.
    pub p99_ms: f64,
}

/// Runs `redis-benchmark` with `args` (plus host, db and `--csv`) and parses its line for `test`.
pub fn redis_benchmark(test: &str, args: &[&str]) -> Result<(RedisRef, String), String> {
    let mut all = vec![
        "-h",
        "127.0.0.1",
        "-p",
        "6379",
        "--dbnum",
        REDIS_BENCH_DB,
        "-t",
        test,
    ];
    all.extend_from_slice(args);
    all.push("--csv");
    let cmdline = format!("redis-benchmark {}", all.join(" "));
    let out = Command::new("redis-benchmark")
        .args(&all)
        .output()
        .map_err(|e| format!("redis-benchmark not runnable ({e}); install redis-tools"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with('"'));
    let header: Vec<String> = lines
        .next()
        .ok_or("redis-benchmark printed nothing")?
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    let want = format!("\"{}\"", test.to_uppercase());
    let row: Vec<String> = lines
        .find(|l| l.starts_with(&want))
        .ok_or_else(|| format!("no {want} line in redis-benchmark output"))?
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    let col = |name: &str| -> f64 {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((
        RedisRef {
            rps: col("rps"),
            p99_ms: col("p99_latency_ms"),
        },
        cmdline,
    ))
}

/// Removes the reference's `key:*` keys from its database.
pub async fn redis_cleanup_reference() {
    let url = format!("redis://127.0.0.1:6379/{REDIS_BENCH_DB}");
    let _ = delete_prefix(&url, "key:").await;
}

/// UNLINKs every key under `prefix`.
pub async fn delete_prefix(url: &str, prefix: &str) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A real Home Assistant to compare with.
pub struct RealHa {
    /// `http://127.0.0.1:8123`.
    pub url: String,
    /// Long-lived token.
    pub token: String,
}

/// Asks `scripts/ha/start.sh` for HA (it is a no-op when HA is up). With
/// `start = false` only an HA that already answers is used.
pub fn real_ha(start: bool) -> Result<RealHa, String> {
    if !start {
        let up = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://127.0.0.1:8123/api/",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        if up == "000" || up.is_empty() {
            return Err(
                "no Home Assistant on 127.0.0.1:8123 (quick mode does not start one)".into(),
            );
        }
    }
    let out = Command::new("scripts/ha/start.sh")
        .output()
        .map_err(|e| format!("scripts/ha/start.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/ha/start.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_string)
    };
    match (get("HA_URL="), get("HA_TOKEN=")) {
        (Some(url), Some(token)) if !token.is_empty() => Ok(RealHa { url, token }),
        _ => Err("scripts/ha/start.sh printed no HA_URL/HA_TOKEN".into()),
    }
}
