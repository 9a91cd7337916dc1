//! Handing freed memory back to the OS.
//!
//! glibc's malloc keeps freed pages in its per-thread arenas: a snapshot's
//! buffers or a burst's queue stay in RSS long after they are dropped. In the
//! soak, trimming took RSS after warm-up from 41 to 38 MiB at 10,000
//! entities. `malloc_trim` returns such pages; elsewhere (musl, other
//! allocators) this is a no-op.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often freed memory is handed back; a trim takes a few milliseconds.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Returns free pages of every malloc arena to the OS.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc already considers free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_EVERY`] until shutdown.
pub fn spawn_trimmer(shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let _ = tokio::task::spawn_blocking(trim).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    })
}
