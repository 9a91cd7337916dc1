//! The header-read deadline as hyper's timer, without the timer wheel.
//!
//! hyper arms its header-read timer anew for every request on a connection:
//! with tokio's timer that is a boxed `Sleep` registered and removed each
//! time, about a tenth of a cached `GET`'s throughput (BENCHMARKS.md,
//! "2026-11-30 04:59–06:33 UTC"). Here a deadline is only an instant compared with the clock when
//! hyper polls it; the connection's task polls hyper again every
//! [`CHECK_EVERY`], so a client that stalls mid-headers is cut within that
//! much of its deadline, and a request costs no timer registration at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// How often a connection's task re-polls hyper so expired deadlines are seen:
/// the slack on `HEADER_READ_TIMEOUT`.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// hyper's timer for one connection: deadlines checked when polled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Polled;

impl Timer for Polled {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline(deadline))
    }
}

/// Ready once the clock has passed it. It never registers a wake-up: the
/// connection's task polls on [`CHECK_EVERY`].
struct Deadline(Instant);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for Deadline {}
