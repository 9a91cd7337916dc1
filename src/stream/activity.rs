//! What the console's status view charts: events per second over the last
//! minutes and the recent resyncs. Sampled from the writer's counters once a
//! second, so it costs nothing per event and runs whether or not anyone
//! subscribes to the stream.

use std::collections::VecDeque;

use serde::Serialize;
use utoipa::ToSchema;

/// Seconds of events-per-second history kept (five minutes).
pub const ACTIVITY_SECONDS: usize = 300;
/// Resyncs remembered.
const RESYNCS_KEPT: usize = 20;

/// One resync, as the status view lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResyncRecord {
    /// Unix seconds.
    pub at: f64,
    /// `snapshot`: a fresh snapshot from Home Assistant replaced the cache.
    pub reason: &'static str,
    /// Entities in the cache after it.
    pub entities: usize,
}

/// The history.
#[derive(Debug, Default)]
pub struct Activity {
    /// Events received per second, oldest first.
    per_second: VecDeque<u32>,
    /// The counter's value at the last sample.
    last_count: Option<u64>,
    /// Resyncs counted at the last sample (from zero, so the first snapshot is listed).
    last_resyncs: u64,
    /// Recent resyncs, oldest first.
    resyncs: VecDeque<ResyncRecord>,
}

impl Activity {
    /// Takes one sample: `events` and `resyncs` are the writer's running
    /// totals; a grown resync count is recorded with `entities` and `at`.
    pub fn sample(&mut self, events: u64, resyncs: u64, entities: usize, at: f64) {
        if let Some(last) = self.last_count {
            let n = events.saturating_sub(last);
            if self.per_second.len() == ACTIVITY_SECONDS {
                self.per_second.pop_front();
            }
            self.per_second
                .push_back(u32::try_from(n).unwrap_or(u32::MAX));
        }
        self.last_count = Some(events);
        if resyncs > self.last_resyncs {
            if self.resyncs.len() == RESYNCS_KEPT {
                self.resyncs.pop_front();
            }
            self.resyncs.push_back(ResyncRecord {
                at,
                reason: "snapshot",
                entities,
            });
        }
        self.last_resyncs = resyncs;
    }

    /// Events per second, oldest first.
    pub fn per_second(&self) -> Vec<u32> {
        self.per_second.iter().copied().collect()
    }

    /// Recent resyncs, oldest first.
    pub fn resyncs(&self) -> Vec<ResyncRecord> {
        self.resyncs.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_rates_and_grown_resync_counts_become_records() {
        let mut a = Activity::default();
        a.sample(100, 1, 5, 1.0);
        a.sample(130, 1, 5, 2.0);
        a.sample(130, 2, 6, 3.0);
        assert_eq!(a.per_second(), vec![30, 0]);
        let r = a.resyncs();
        assert_eq!(r.len(), 2, "the first snapshot is listed too");
        assert_eq!((r[1].at, r[1].entities), (3.0, 6));
        for i in 0..ACTIVITY_SECONDS as u64 + 10 {
            a.sample(200 + i, 2, 6, 4.0);
        }
        assert_eq!(a.per_second().len(), ACTIVITY_SECONDS);
    }
}
