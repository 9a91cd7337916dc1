//! Settings: one typed struct, read from flags, the environment and `.env`.
//!
//! Every setting has an environment variable; `.env.example` lists them all.
//! Secrets are [`SecretString`]s and print as `[REDACTED]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

mod check;
mod trust;

pub use trust::{read_ca_file, TlsError, Trust};

/// What to do with a `state_changed` event's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Write the new state into the cache (`WEBSOCKET_UPDATE_CACHE=true`).
    Update,
    /// Delete the cached state; the next read refills it from REST.
    Invalidate,
}

/// Bytes one render may grow the process by, unless `RENDER_MEMORY_LIMIT`
/// says otherwise: far above any real prompt, far below the machine.
pub const DEFAULT_RENDER_MEMORY: usize = 64 * 1024 * 1024;
/// Bytes all renders together may grow the process by, unless
/// `RENDER_MEMORY_TOTAL` says otherwise: four renders at their limit.
pub const DEFAULT_RENDER_TOTAL: usize = 4 * DEFAULT_RENDER_MEMORY;

/// Parses `30s`, `500ms`, `5m`.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 500ms, 5m)"))
}

/// Everything the service needs to run.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Home Assistant's base URL (http or https); the WebSocket is derived from it.
    #[arg(long, env = "HA_URL")]
    pub ha_url: Option<Url>,
    /// A long-lived access token for Home Assistant.
    #[arg(long, env = "HA_TOKEN", hide_env_values = true)]
    pub ha_token: Option<SecretString>,
    /// The largest WebSocket frame accepted; real homes send get_states results of 4-23 MB.
    #[arg(long, env = "HA_MAX_FRAME_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub ha_max_frame_bytes: usize,
    /// Whether to ping HA to find dead links.
    #[arg(long, env = "HA_HEARTBEAT", default_value_t = true, action = clap::ArgAction::Set)]
    pub ha_heartbeat: bool,
    /// Time between pings.
    #[arg(long, env = "HA_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = duration)]
    pub ha_heartbeat_interval: Duration,
    /// How long a ping may wait for its pong before the link counts as dead.
    #[arg(long, env = "HA_HEARTBEAT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub ha_heartbeat_timeout: Duration,
    /// The first reconnect delay (full jitter below it).
    #[arg(long, env = "HA_RECONNECT_MIN", default_value = "1s", value_parser = duration)]
    pub ha_reconnect_min: Duration,
    /// The longest reconnect delay; also the wait after auth_invalid.
    #[arg(long, env = "HA_RECONNECT_MAX", default_value = "60s", value_parser = duration)]
    pub ha_reconnect_max: Duration,
    /// How often a fresh `get_states` over the live link repairs what events
    /// missed (anti-entropy); `0s` turns it off.
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "15m", value_parser = duration)]
    pub reconcile_interval: Duration,
    /// How long one REST call to HA may take.
    #[arg(long, env = "HA_REST_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub ha_rest_timeout: Duration,
    /// A PEM file of the CA that signed HA's certificate (a private CA, a
    /// self-signed HA), trusted instead of the platform's roots.
    #[arg(long, env = "HA_CA_FILE")]
    pub ha_ca_file: Option<PathBuf>,
    /// `false` takes any certificate from HA: an explicit opt-out, warned of at
    /// start and shown in `/api/health/websocket`.
    #[arg(long, env = "HA_TLS_VERIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub ha_tls_verify: bool,
    /// Set by the Supervisor inside a Home Assistant add-on: with `HA_URL`
    /// unset, HA is reached through `http://supervisor/core` with this token.
    #[arg(long, env = "SUPERVISOR_TOKEN", hide_env_values = true)]
    pub supervisor_token: Option<SecretString>,

    /// Redis URL; without it, states live in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,
    /// A PEM file of the CA that signed Redis's certificate (`rediss://`),
    /// trusted instead of the platform's roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// `false` takes any certificate from Redis (an explicit opt-out, warned of at start).
    #[arg(long, env = "REDIS_TLS_VERIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub redis_tls_verify: bool,
    /// Prefix of every Redis key, so several homes or test runs can share a Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "ha:")]
    pub redis_prefix: String,
    /// true: write new states from events into the cache; false: delete them and refill from REST.
    #[arg(long, env = "WEBSOCKET_UPDATE_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub websocket_update_cache: bool,
    /// With nothing (event or pong) from HA for this long, health reports the cache stale.
    #[arg(long, env = "CACHE_MAX_AGE", default_value = "300s", value_parser = duration)]
    pub cache_max_age: Duration,

    /// MySQL/MariaDB URL for fetcher and template rows; without it they come from files.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// MySQL/MariaDB URL that `sql` fetchers read through, e.g. as a read-only
    /// user; without it they use DATABASE_URL (on a pool of their own).
    #[arg(long, env = "FETCHERS_SQL_URL", hide_env_values = true)]
    pub fetchers_sql_url: Option<SecretString>,
    /// The repository folder of shipped fetcher and prompt definitions.
    #[arg(long, env = "FETCHERS_DIR", default_value = "fetchers")]
    pub fetchers_dir: PathBuf,
    /// How often definitions are reloaded from MySQL.
    #[arg(long, env = "RELOAD_INTERVAL", default_value = "2s", value_parser = duration)]
    pub reload_interval: Duration,
    /// Where scoped API tokens are kept when DATABASE_URL is not set (with
    /// it, in the `api_tokens` table): a JSON file of names, hashes and scopes.
    #[arg(long, env = "TOKENS_FILE", default_value = "tokens.json")]
    pub tokens_file: PathBuf,
    /// The longest window a `history`, `statistics` or `logbook` call may
    /// ask HA about; a longer one is refused with this limit named.
    #[arg(long, env = "HISTORY_MAX_WINDOW", default_value = "31d", value_parser = duration)]
    pub history_max_window: Duration,

    /// Wall time of one prompt render, fetchers included (template fetchers
    /// are held to their own `timeout_ms`).
    #[arg(long, env = "RENDER_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub render_timeout: Duration,
    /// Bytes one render (prompt or template fetcher) may grow the process by;
    /// past it the render stops with an error naming the limit.
    #[arg(long, env = "RENDER_MEMORY_LIMIT", default_value_t = DEFAULT_RENDER_MEMORY)]
    pub render_memory_limit: usize,
    /// Bytes all renders together (prompts and template fetchers, nested
    /// fetches counted against the render that called them) may grow the
    /// process by; a render starting while it is spent waits briefly, then 503.
    #[arg(long, env = "RENDER_MEMORY_TOTAL", default_value_t = DEFAULT_RENDER_TOTAL)]
    pub render_memory_total: usize,

    /// Address the HTTP API binds to.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// When set, every route but /api/health needs `Authorization: Bearer <token>`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<SecretString>,
    /// Open connections at most; further ones wait in the kernel's backlog, so
    /// file descriptors are never exhausted (the process's limit is often 1,024).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Requests handled at once (every route but /api/health*); more get 503 with Retry-After.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// How long one request may take before it is answered 504.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers before the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// The largest request body accepted; larger ones get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Events the change stream (`/api/v1/events`) keeps for clients that
    /// resume with `Last-Event-ID`; one older than these gets `resync`.
    #[arg(long, env = "EVENTS_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub events_buffer: u32,

    /// Host names every route answers to (comma-separated), checked against
    /// `Host` and `Origin`, against DNS rebinding: a web page on another site
    /// cannot reach a LAN or loopback server through its own name. Empty:
    /// `MCP_ALLOWED_HOSTS`, else loopback names and the `BIND` address. `*`: any host.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// The older name of `ALLOWED_HOSTS` (it once covered `/mcp` alone), read
    /// when `ALLOWED_HOSTS` is empty.
    #[arg(long, env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub mcp_allowed_hosts: Vec<String>,
    /// The address of Home Assistant's ingress proxy (in an add-on, the
    /// Supervisor's 172.30.32.2). Requests from it count as HA's
    /// authenticated user and may carry HA's host name; with it set, every
    /// other address needs `API_TOKEN` for all but health.
    #[arg(long, env = "INGRESS_PROXY")]
    pub ingress_proxy: Option<std::net::IpAddr>,
    /// `/mcp` sessions kept at once (each ~60 KiB); a new one past this closes
    /// the least recently used, whose client starts again on its next request.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub mcp_max_sessions: u32,
}

impl Settings {
    /// `ws(s)://host/api/websocket` from `HA_URL`.
    pub fn ws_url(&self) -> Option<Url> {
        self.home_assistant().ok().flatten().map(|l| l.ws)
    }

    /// Where Home Assistant is and how it is trusted: `HA_URL` and `HA_TOKEN`,
    /// else the Supervisor's proxy inside an add-on; `None` when neither.
    pub fn home_assistant(&self) -> anyhow::Result<Option<HaLink>> {
        let trust = Trust {
            ca_file: self.ha_ca_file.clone(),
            skip_verify: !self.ha_tls_verify,
        };
        match (&self.ha_url, &self.ha_token, &self.supervisor_token) {
            (Some(url), Some(token), _) => {
                anyhow::ensure!(
                    !token.expose_secret().is_empty(),
                    "HA_TOKEN is empty: set it to a long-lived access token (HA: your profile → Security)"
                );
                let ws = ws_url(url).map_err(anyhow::Error::msg)?;
                Ok(Some(HaLink {
                    rest: url.clone(),
                    ws,
                    token: token.clone(),
                    trust,
                    via: "HA_URL",
                }))
            }
            (Some(_), None, _) => anyhow::bail!(
                "HA_TOKEN is not set but HA_URL is: set HA_TOKEN to a long-lived access token (HA: your profile → Security)"
            ),
            (None, _, Some(token)) if !token.expose_secret().is_empty() => Ok(Some(HaLink {
                rest: Url::parse(SUPERVISOR_CORE).expect("a valid URL"),
                ws: Url::parse(SUPERVISOR_WS).expect("a valid URL"),
                token: token.clone(),
                trust,
                via: "SUPERVISOR_TOKEN",
            })),
            _ => Ok(None),
        }
    }

    pub fn cache_mode(&self) -> CacheMode {
        if self.websocket_update_cache {
            CacheMode::Update
        } else {
            CacheMode::Invalidate
        }
    }

    /// The URL of `sql` fetchers' MySQL and the setting it came from:
    /// `FETCHERS_SQL_URL`, else `DATABASE_URL`; `None` when neither is set.
    pub fn sql_url(&self) -> Option<(&'static str, &SecretString)> {
        match (&self.fetchers_sql_url, &self.database_url) {
            (Some(u), _) => Some(("FETCHERS_SQL_URL", u)),
            (None, Some(u)) => Some(("DATABASE_URL", u)),
            (None, None) => None,
        }
    }

    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_ref().map(|s| s.expose_secret())
    }

    /// These settings with no link to a service (HA, the Supervisor, Redis,
    /// MySQL) and their TLS settings at the defaults.
    pub fn without_links(mut self) -> Self {
        self.ha_url = None;
        self.ha_token = None;
        self.ha_ca_file = None;
        self.ha_tls_verify = true;
        self.supervisor_token = None;
        self.redis_url = None;
        self.redis_ca_file = None;
        self.redis_tls_verify = true;
        self.database_url = None;
        self.fetchers_sql_url = None;
        self
    }

    /// Settings with every default and no services, whatever the environment
    /// says (test runs export `DATABASE_URL` for sqlx): what tests and the demo start from.
    pub fn embedded() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            s: Settings,
        }
        let mut s = <Only as clap::Parser>::parse_from(["x"]).s.without_links();
        s.api_token = None;
        s.ingress_proxy = None;
        s.bind = ([127, 0, 0, 1], 0).into();
        s
    }
}

/// Home Assistant's API through the Supervisor, as an add-on reaches it.
pub const SUPERVISOR_CORE: &str = "http://supervisor/core";
/// Home Assistant's WebSocket through the Supervisor (the add-on docs' path).
pub const SUPERVISOR_WS: &str = "ws://supervisor/core/websocket";

/// How to reach Home Assistant.
#[derive(Clone, Debug)]
pub struct HaLink {
    /// The REST base (`https://ha.example:8123`).
    pub rest: Url,
    /// The WebSocket endpoint.
    pub ws: Url,
    /// The bearer for both.
    pub token: SecretString,
    /// What its certificate is checked against (https/wss only).
    pub trust: Trust,
    /// The setting it came from, for logs and errors.
    pub via: &'static str,
}

/// Maps an HA base URL to its WebSocket endpoint.
pub fn ws_url(base: &Url) -> Result<Url, String> {
    let mut u = base.clone();
    let scheme = match base.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "HA_URL must start with http:// or https://, not {other}:// (e.g. http://homeassistant.local:8123)"
            ))
        }
    };
    u.set_scheme(scheme)
        .map_err(|_| "HA_URL has an unusable scheme".to_string())?;
    let path = base.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/websocket").unwrap_or(path);
    u.set_path(&format!("{path}/api/websocket"));
    Ok(u)
}

/// What a URL's user name and password are replaced with where it is shown.
const REDACTED: &str = "***";

/// `url` as logs may show it: a user name and password (`http://user:pw@host`)
/// become `***`, so credentials in `HA_URL` never reach a log line.
pub fn redacted(url: &Url) -> Url {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some(REDACTED));
    }
    if !u.username().is_empty() {
        let _ = u.set_username(REDACTED);
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_maps_schemes_and_paths() {
        let u = |s: &str| ws_url(&Url::parse(s).unwrap()).unwrap().to_string();
        assert_eq!(
            u("http://ha.local:8123"),
            "ws://ha.local:8123/api/websocket"
        );
        assert_eq!(u("https://ha.example/"), "wss://ha.example/api/websocket");
        assert_eq!(
            u("http://x/prefix/api/websocket"),
            "ws://x/prefix/api/websocket"
        );
        assert!(ws_url(&Url::parse("ftp://x").unwrap()).is_err());
    }

    /// The docs name every setting: `.env.example` has a line for it and
    /// the README's table a row.
    #[test]
    fn every_setting_is_in_env_example_and_the_readme() {
        let example = include_str!("../../.env.example");
        let readme = include_str!("../../README.md");
        let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        for name in serve.get_arguments().filter_map(|a| a.get_env()) {
            let name = name.to_str().unwrap();
            assert!(
                example.lines().any(|l| l.starts_with(&format!("{name}="))),
                ".env.example lacks {name}="
            );
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "README's settings table lacks {name}"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let mut s = Settings::embedded();
        s.ha_token = Some(SecretString::from("very-secret-token"));
        s.api_token = Some(SecretString::from("api-secret"));
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("very-secret-token") && !dbg.contains("api-secret"));
    }

    #[test]
    fn redacted_hides_user_and_password() {
        let r = |s: &str| redacted(&Url::parse(s).unwrap()).to_string();
        let shown = r("http://user:pa%24%24word@ha.local:8123/x?y=1");
        assert_eq!(shown, "http://***:***@ha.local:8123/x?y=1");
        assert!(!shown.contains("pa") && !shown.contains("user"));
        assert_eq!(
            r("ws://:secret@h/api/websocket"),
            "ws://:***@h/api/websocket"
        );
        assert_eq!(r("http://user@h/"), "http://***@h/");
        assert_eq!(r("https://h:8123/"), "https://h:8123/");
        // What the session logs: the WebSocket URL derived from HA_URL.
        let ws = ws_url(&Url::parse("http://u:hunter2@h:8123").unwrap()).unwrap();
        assert!(!redacted(&ws).to_string().contains("hunter2"));
    }
}
