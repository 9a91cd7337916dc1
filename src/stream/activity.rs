//! Events per second over the last minutes, for the console's status view.
//! Sampled from the writer's counter once a second, so it costs nothing per
//! event and runs whether or not anyone subscribes to the stream.

use std::collections::VecDeque;

/// Seconds of events-per-second history kept (five minutes).
pub const ACTIVITY_SECONDS: usize = 300;

/// The history.
#[derive(Debug, Default)]
pub struct Activity {
    /// Events received per second, oldest first.
    per_second: VecDeque<u32>,
    /// The counter's value at the last sample.
    last_count: Option<u64>,
}

impl Activity {
    /// Takes one sample of `events`, the writer's running total.
    pub fn sample(&mut self, events: u64) {
        if let Some(last) = self.last_count {
            let n = events.saturating_sub(last);
            if self.per_second.len() == ACTIVITY_SECONDS {
                self.per_second.pop_front();
            }
            self.per_second
                .push_back(u32::try_from(n).unwrap_or(u32::MAX));
        }
        self.last_count = Some(events);
    }

    /// Events per second, oldest first.
    pub fn per_second(&self) -> Vec<u32> {
        self.per_second.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_rates_over_a_bounded_window() {
        let mut a = Activity::default();
        a.sample(100);
        a.sample(130);
        a.sample(130);
        assert_eq!(a.per_second(), vec![30, 0]);
        for i in 0..ACTIVITY_SECONDS as u64 + 10 {
            a.sample(200 + i);
        }
        assert_eq!(a.per_second().len(), ACTIVITY_SECONDS);
    }
}
