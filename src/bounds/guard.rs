//! The check minijinja runs before every instruction and before each
//! allocation that grows with its data: the render's memory against its
//! account and the process's total, and its deadline, on a clock cheap
//! enough to read that often.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Duration;

use minijinja::{Error, ErrorKind};

use super::{Account, Stop, ACCOUNT, ACTIVE, ADMIT_WAIT, REPORT_STEP, TOTAL_HELD, TOTAL_LIMIT};

/// The check minijinja calls: `bytes` is what it is about to allocate. With
/// nothing announced, the render may hold half its budget, since the step
/// after may double what it holds (a string or list growing); an announced
/// allocation must fit the whole budget. The same holds for the total.
pub(super) fn guard(bytes: usize) -> Result<(), Error> {
    ACTIVE.with(|cell| {
        let Some(mut a) = cell.get() else {
            return Ok(());
        };
        if a.stopped.is_none() {
            let held = crate::memory::thread_balance()
                .saturating_sub(a.base)
                .max(0) as usize;
            let total_limit = TOTAL_LIMIT.load(Ordering::Relaxed);
            // Taken out and put back, not cloned: this runs before every instruction.
            let account = ACCOUNT.with(Cell::take);
            let (render_held, limit, total_held) = match &account {
                Some(account) => {
                    // An announced allocation is reserved before it is made,
                    // so renders checking at once cannot all pass on the same
                    // room; drift is reported a step at a time.
                    let target = held.saturating_add(bytes);
                    if (bytes > 0 && target > a.reported)
                        || held.abs_diff(a.reported) >= REPORT_STEP
                    {
                        report(account, a.reported, target);
                        a.reported = target;
                    }
                    if bytes > 0 && TOTAL_HELD.load(Ordering::Relaxed) > total_limit {
                        a.reported = wait_for_room(account, a.reported, held, a.deadline_ns);
                    }
                    (
                        account.held.load(Ordering::Relaxed),
                        account.limit,
                        TOTAL_HELD.load(Ordering::Relaxed),
                    )
                }
                None => (held.saturating_add(bytes), usize::MAX, 0),
            };
            ACCOUNT.with(|acct| acct.set(account));
            let over = match bytes {
                0 => render_held > limit / 2,
                _ => render_held > limit,
            };
            if over {
                a.stopped = Some(Stop::Memory(limit));
            } else if total_held > total_limit {
                metrics::counter!("render_memory_total_stops_total").increment(1);
                a.stopped = Some(Stop::Total(total_limit));
            } else if coarse_now_ns() >= a.deadline_ns {
                a.stopped = Some(Stop::Deadline(a.timeout));
            }
            cell.set(Some(a));
        }
        match a.stopped {
            None => Ok(()),
            Some(stop) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("render stopped: {stop}"),
            )),
        }
    })
}

/// An allocation of `reserved - held` bytes found the total spent: gives the
/// reservation back and waits (up to [`ADMIT_WAIT`], never past the
/// deadline) for other renders to end, then reserves again. Returns what is
/// reported now; the caller stops the render if the total is still spent.
fn wait_for_room(account: &Account, reserved: usize, held: usize, deadline_ns: u64) -> usize {
    let limit = TOTAL_LIMIT.load(Ordering::Relaxed);
    let bytes = reserved - held.min(reserved);
    report(account, reserved, held);
    let until = coarse_now_ns()
        .saturating_add(ADMIT_WAIT.as_nanos() as u64)
        .min(deadline_ns);
    while TOTAL_HELD.load(Ordering::Relaxed).saturating_add(bytes) > limit
        && coarse_now_ns() < until
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    report(account, held, reserved);
    reserved
}

/// Moves this thread's share of `account` and the total from `before` to `now`.
fn report(account: &Account, before: usize, now: usize) {
    if now >= before {
        account.held.fetch_add(now - before, Ordering::Relaxed);
        TOTAL_HELD.fetch_add(now - before, Ordering::Relaxed);
    } else {
        account.held.fetch_sub(before - now, Ordering::Relaxed);
        TOTAL_HELD.fetch_sub(before - now, Ordering::Relaxed);
    }
}

/// A monotonic clock at tick resolution (a few ms), about five times cheaper
/// than `Instant::now()`: it is read before every template instruction.
pub(super) fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
