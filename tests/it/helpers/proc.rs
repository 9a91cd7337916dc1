//! What `/proc` says about a process: memory figures for the tests that
//! bound growth.

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), if readable.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// VmRSS of this process in KiB (0 when unreadable).
pub fn rss_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS:").unwrap_or(0)
}

/// The API address `ha-fetchers demo` prints on `stdout` (`API: http://…`),
/// read until it says it serves; `None` if it exits first.
pub fn demo_address(stdout: std::process::ChildStdout) -> Option<String> {
    use std::io::BufRead;
    let mut base = None;
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        if let Some(b) = line.strip_prefix("API: ") {
            base = Some(b.to_string());
        }
        if line.contains("Serving until Ctrl-C") {
            break;
        }
    }
    base
}
