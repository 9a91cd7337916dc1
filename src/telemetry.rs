//! Logging: readable text by default, JSON with `LOG_FORMAT=json`, level from `RUST_LOG`.

use std::fmt;

use tracing_subscriber::EnvFilter;

/// Crates held at `info` whatever `RUST_LOG` says, unless it names them: at
/// `debug`/`trace` they log frames, headers and statements, and tungstenite's
/// frames include the `auth` message with `HA_TOKEN` in it.
const PINNED_CRATES: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "sqlx",
    "redis",
    "mio",
];

/// The level [`PINNED_CRATES`] are held at.
const PINNED_LEVEL: &str = "info";

/// The filter for a `RUST_LOG` spec: the spec, then [`PINNED_CRATES`] at
/// [`PINNED_LEVEL`] unless the spec names them (`RUST_LOG=trace,tungstenite=trace`
/// is taken at its word). An invalid spec falls back to `info`.
pub fn env_filter(spec: &str) -> EnvFilter {
    let named = |krate: &str| {
        spec.split(',').any(|d| {
            let target = d.trim().trim_start_matches('[');
            target
                .strip_prefix(krate)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['=', ':', '[']))
        })
    };
    let mut full = if spec.trim().is_empty() {
        "info".to_string()
    } else {
        spec.to_string()
    };
    for krate in PINNED_CRATES.iter().filter(|k| !named(k)) {
        full.push_str(&format!(",{krate}={PINNED_LEVEL}"));
    }
    EnvFilter::try_new(&full).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Shows a value from a request in a text log with control characters escaped
/// (`\n`, `\u{1b}`), so a caller cannot forge log lines or send terminal codes.
/// Log such values as `field = %Escaped(&value)`.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.to_string().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Installs the global subscriber once; later calls are no-ops.
pub fn init() {
    let filter = env_filter(&std::env::var("RUST_LOG").unwrap_or_default());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Colour codes only for a terminal; log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(OneLine { ansi });
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Writes each log event as one line on stderr, with the control characters
/// inside it escaped (`\n` as `\\n`): every value a client sent (a `fetch()`
/// param name, a header, a template) reaches the log escaped, whether or not
/// the code that logged it remembered [`Escaped`]. The formatter hands over
/// each event whole, ending in its newline. With colours on (a terminal),
/// ESC is the formatter's own and is kept.
#[derive(Clone, Copy)]
struct OneLine {
    /// Whether the formatter writes colour codes.
    ansi: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLine {
    type Writer = OneLine;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl std::io::Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut err = std::io::stderr().lock();
        if !body.iter().any(|&b| escape_in_log(b, self.ansi)) {
            err.write_all(buf)?;
            return Ok(buf.len());
        }
        err.write_all(&escape_line(body, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Whether `b` is escaped in a log line: control bytes but tab (and ESC when
/// the formatter writes colour codes itself).
fn escape_in_log(b: u8, ansi: bool) -> bool {
    (b < 0x20 && b != b'\t' && !(ansi && b == 0x1b)) || b == 0x7f
}

/// `body` as one line ending in a newline, control bytes escaped.
fn escape_line(body: &[u8], ansi: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if escape_in_log(b, ansi) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.push(b'\n');
    out
}

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds: sub-millisecond reads up to slow fetchers.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counters without labels, published at zero before their first event.
const ZEROED_COUNTERS: &[&str] = &[
    "ha_events_received_total",
    "ha_events_applied_total",
    "ha_events_stale_total",
    "ha_cache_hits_total",
    "ha_cache_misses_total",
    "ha_cache_updates_total",
    "ha_cache_invalidations_total",
    "ha_cache_update_fallbacks_total",
    "ha_rest_fallbacks_total",
    "ha_reconnects_total",
    "ha_resyncs_total",
    "ha_http_shed_total",
    "ha_http_timeouts_total",
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets (the crate's own default).
pub const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram samples into buckets. Run every
/// [`METRICS_UPKEEP_EVERY`]: without it every sample is kept until `/metrics`
/// is scraped; the soak, which never scrapes, grew 4 MiB every few minutes at
/// 5,000 requests/s.
pub fn metrics_upkeep() {
    prometheus().run_upkeep();
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("A metrics recorder was already installed; /metrics will be empty");
        }
        // Series exist from the start, so dashboards and alerts see zeros, not gaps.
        for name in ZEROED_COUNTERS {
            metrics::counter!(*name).increment(0);
        }
        metrics::gauge!("ha_entities").set(0.0);
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_keeps_to_one_line() {
        let line = escape_line(b"fetch param a\nFAKE 2026 INFO forged\r\x1b[31m", false);
        assert_eq!(line, b"fetch param a\\nFAKE 2026 INFO forged\\r\\x1b[31m\n");
        assert!(!escape_in_log(b'\t', false));
        assert!(!escape_in_log(0x1b, true));
        assert!(escape_in_log(0x1b, false));
    }
}
