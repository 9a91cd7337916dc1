//! The one periodic-task loop: run a job every period until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs `job` every `period`, the first time one period from now, until
/// `stop` is cancelled. A slow run delays the next instead of bunching them.
pub fn every<F, Fut>(period: Duration, stop: CancellationToken, mut job: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => job().await,
                _ = stop.cancelled() => break,
            }
        }
    })
}

/// [`every`] for a synchronous job, run off the async workers.
pub fn every_blocking(period: Duration, stop: CancellationToken, job: fn()) -> JoinHandle<()> {
    every(period, stop, move || async move {
        let _ = tokio::task::spawn_blocking(job).await;
    })
}
