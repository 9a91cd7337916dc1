//! `ha-fetchers serve` as a child process mirroring a fake HA, so its memory
//! can be read from `/proc` apart from the load generator's.

use std::time::{Duration, Instant};

use ha_fetchers::sim::Sim;

use super::app::{fresh_prefix, REDIS_URL, TOKEN};
use super::http::{Conn, Target};

/// How often the child's readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long `ha-fetchers serve` may take to mirror the house.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// A running `ha-fetchers serve`.
pub struct ServeChild {
    /// The process; killed on drop.
    child: tokio::process::Child,
    /// Its pid, for `/proc/PID/status`.
    pub pid: u32,
    /// Where its API listens.
    pub target: Target,
    /// Its Redis key prefix, removed at the end.
    prefix: String,
    /// Where its logs go, to count warnings afterwards.
    pub log: std::path::PathBuf,
}

impl ServeChild {
    /// Starts `serve` on Redis against `fake` and waits until it mirrors `n` entities.
    pub async fn start(fake: &Sim, n: usize, tag: &str) -> anyhow::Result<Self> {
        let bin = super::serve_binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let prefix = fresh_prefix(tag);
        std::fs::create_dir_all("target/bench")?;
        let log = std::path::PathBuf::from(format!("target/bench/serve-{tag}.log"));
        let child = tokio::process::Command::new(&bin)
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("API_TOKEN")
            .env("HA_URL", fake.url().as_str())
            .env("HA_TOKEN", TOKEN)
            .env("REDIS_URL", REDIS_URL)
            .env("REDIS_PREFIX", &prefix)
            .env("BIND", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
        let target = Target::parse(&format!("http://127.0.0.1:{port}"), None)?;
        let me = Self {
            child,
            pid,
            target,
            prefix,
            log,
        };
        let deadline = Instant::now() + READY_LIMIT;
        while Instant::now() < deadline {
            tokio::time::sleep(READY_POLL).await;
            if me.entity_count().await == Some(n as u64) {
                return Ok(me);
            }
        }
        anyhow::bail!(
            "serve did not mirror {n} entities in time; see {}",
            me.log.display()
        )
    }

    /// The entity count `/api/v1/summary` reports.
    pub async fn entity_count(&self) -> Option<u64> {
        let mut c = Conn::open(&self.target).await.ok()?;
        match c.get("/api/v1/summary").await {
            Ok((200, body)) => {
                serde_json::from_slice::<serde_json::Value>(&body).ok()?["entity_count"].as_u64()
            }
            _ => None,
        }
    }

    /// Resident and peak memory in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib = |k: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
    }

    /// Log lines at WARN or ERROR so far.
    pub fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(str::to_string)
            .collect()
    }

    /// Kills the child and removes its keys.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = super::refs::delete_prefix(REDIS_URL, &self.prefix).await;
    }
}
