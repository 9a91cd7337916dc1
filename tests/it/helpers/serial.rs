//! One at a time: the tests that assert on wall time, CPU or memory, and the
//! one that loads the machine for minutes (restarting a real Home Assistant).
//!
//! As separate binaries, cargo ran these one file after the other, so the
//! restarts never overlapped a measurement. In one binary they would, and a
//! deadline would include another test's load. The rest of the suite still
//! runs beside whichever of them holds the lock.

use tokio::sync::{Mutex, MutexGuard};

static MEASURING: Mutex<()> = Mutex::const_new(());

/// Waits until no other measuring or loading test runs; hold the guard for
/// the whole test.
pub async fn alone() -> MutexGuard<'static, ()> {
    MEASURING.lock().await
}
