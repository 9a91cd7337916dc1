//! Bounds on untrusted renders: memory and wall time.
//!
//! Templates come from whoever can post a preview or insert a row, and fuel
//! bounds their steps, not what a step costs: one `s + s` copies the whole
//! string. [`run`] gives a render a [`Budget`] on its thread; minijinja (with
//! the guard patch in `vendor/minijinja`) asks [`guard`] before every
//! instruction and before each allocation that grows with its data, and stops
//! the render once the thread holds more than its budget or the deadline has
//! passed. What the thread holds comes from the counting allocator in
//! [`crate::memory`]. A stopped render unwinds normally: nothing is left
//! running and its memory is freed.
//!
//! Two totals sit above the one render's thread:
//!
//! - An [`Account`] per render, shared by every thread that renders for it:
//!   a template fetcher it calls runs on a thread of its own, under the
//!   caller's account (carried by a task-local into the engine), so 64
//!   fetchers in one render share its budget instead of having 64 each.
//! - The process's total (`RENDER_MEMORY_TOTAL`, [`set_total`]): all renders
//!   together. A render starting while it is spent waits up to [`ADMIT_WAIT`],
//!   then is refused ([`Stop::Total`], a 503); one growing past it is stopped.
//!
//! Threads report what they hold to both in steps of [`REPORT_STEP`], so the
//! shared counters are touched every quarter MiB, not every instruction.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

mod guard;

use guard::{coarse_now_ns, guard};

/// How much one render may grow the process by default (`RENDER_MEMORY_LIMIT`).
pub const DEFAULT_MEMORY: usize = crate::config::DEFAULT_RENDER_MEMORY;
/// How much all renders together may grow the process by default (`RENDER_MEMORY_TOTAL`).
pub const DEFAULT_TOTAL: usize = crate::config::DEFAULT_RENDER_TOTAL;
/// How long a render starting while the total is spent waits for room
/// before it is refused.
pub const ADMIT_WAIT: Duration = Duration::from_millis(250);
/// How far a thread's holding may move before it is reported to its account
/// and the total.
const REPORT_STEP: usize = 256 * 1024;
/// How long one prompt render may take by default (`RENDER_TIMEOUT`),
/// fetchers included; a fetcher's own timeout bounds its template.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits every render of one kind gets (settings `RENDER_MEMORY_LIMIT`
/// and `RENDER_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one render may grow the process by.
    pub memory: usize,
    /// Wall time of one render.
    pub timeout: Duration,
}

impl Limits {
    /// The limits every render gets under `settings`.
    pub fn of(settings: &crate::config::Settings) -> Self {
        Self {
            memory: settings.render_memory_limit,
            timeout: settings.render_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Limits {
    /// A budget that starts now.
    pub fn budget(&self) -> Budget {
        Budget::new(self.memory, self.timeout)
    }
}

/// What one render may use.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes the render's thread may hold beyond what it held at the start.
    pub memory: usize,
    /// When the render must have finished.
    pub deadline: Instant,
    /// The time it was given, for the error.
    pub timeout: Duration,
}

impl Budget {
    /// `memory` bytes, and `timeout` from now.
    pub fn new(memory: usize, timeout: Duration) -> Self {
        Self {
            memory,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }
}

/// Why a render was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error("it needed more than its memory limit of {} MiB", .0 / (1024 * 1024))]
    Memory(usize),
    #[error("it ran past its time limit of {} ms", .0.as_millis())]
    Deadline(Duration),
    /// The renders running together hold the process's whole render memory.
    #[error("the renders running at once hold all of RENDER_MEMORY_TOTAL ({} MiB); retry shortly", .0 / (1024 * 1024))]
    Total(usize),
    /// The template engine panicked: a bug, logged where it happened.
    #[error("it failed inside the template engine (a bug; the log has the panic)")]
    Panicked,
}

/// What all renders together may hold (`RENDER_MEMORY_TOTAL`). The unit
/// tests run in parallel in one process, each render up to 64 MiB, so a
/// shared 256 MiB refused whichever came last on a busy machine; they run
/// without it, and the total is tested end to end in `tests/it/render_bounds`.
static TOTAL_LIMIT: AtomicUsize = AtomicUsize::new(if cfg!(test) {
    usize::MAX / 2
} else {
    DEFAULT_TOTAL
});
/// What all renders together report holding.
static TOTAL_HELD: AtomicUsize = AtomicUsize::new(0);

/// Sets what all renders together may hold (`RENDER_MEMORY_TOTAL`).
pub fn set_total(bytes: usize) {
    TOTAL_LIMIT.store(bytes.max(1), Ordering::Relaxed);
}

/// What all renders together hold now, as reported.
pub fn total_held() -> usize {
    TOTAL_HELD.load(Ordering::Relaxed)
}

/// One render's memory, shared by the threads rendering for it.
#[derive(Debug)]
pub struct Account {
    /// Its budget in bytes.
    limit: usize,
    /// What its threads report holding.
    held: AtomicUsize,
}

impl Account {
    /// A fresh account of `limit` bytes, holding nothing.
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicUsize::new(0),
        })
    }
}

tokio::task_local! {
    /// The account of the render a fetch runs for: set around the fetches a
    /// render waits on, read by the template source before its own thread.
    static CALLER: Arc<Account>;
}

/// The account of the render on this thread, for the fetches it starts.
pub fn account() -> Option<Arc<Account>> {
    ACCOUNT.with(|a| a.take().inspect(|acct| a.set(Some(acct.clone()))))
}

/// Runs `fut` (fetches a render waits on) with `account` as their caller's.
pub async fn for_caller<F: std::future::Future>(
    account: Option<Arc<Account>>,
    fut: F,
) -> F::Output {
    match account {
        Some(a) => CALLER.scope(a, fut).await,
        None => fut.await,
    }
}

/// The account of the render whose fetch runs in this task, if any.
pub fn caller() -> Option<Arc<Account>> {
    CALLER.try_with(Arc::clone).ok()
}

/// The budget of the render running on this thread.
#[derive(Clone, Copy)]
struct Active {
    /// The thread's allocation balance when the render started.
    base: isize,
    /// What this thread last reported to its account and the total.
    reported: usize,
    /// The deadline on the coarse clock, in nanoseconds.
    deadline_ns: u64,
    /// The budget's length, for the error.
    timeout: Duration,
    /// Set once the render is stopped; every later check fails too.
    stopped: Option<Stop>,
}

thread_local! {
    static ACTIVE: Cell<Option<Active>> = const { Cell::new(None) };
    /// The account `ACTIVE` reports to (apart, since `Active` is copied on every check).
    static ACCOUNT: Cell<Option<Arc<Account>>> = const { Cell::new(None) };
}

/// Runs `f` under `budget`, on an account of its own. Nested runs (a template
/// fetcher inside a render on the same thread) get their own budget and
/// restore the outer one.
pub fn run<T>(budget: Budget, f: impl FnOnce() -> T) -> Result<T, Stop> {
    run_for(None, budget, f)
}

/// [`run`] on an account of its own that never waits for the total: for a
/// compile, whose guarded steps are constant folds, each refused (and left
/// to the render) rather than waited for.
pub fn run_alone<T>(budget: Budget, f: impl FnOnce() -> T) -> Result<T, Stop> {
    run_for(Some(Account::new(budget.memory)), budget, f)
}

/// [`run`], for the render that owns `caller` when given: this thread's
/// holding counts against that render's budget, not a budget of its own.
pub fn run_for<T>(
    caller: Option<Arc<Account>>,
    budget: Budget,
    f: impl FnOnce() -> T,
) -> Result<T, Stop> {
    quiet_stopped_panics();
    let account = match caller {
        Some(a) => a,
        None => {
            admit(budget.deadline)?;
            Account::new(budget.memory)
        }
    };
    let left = budget.deadline.saturating_duration_since(Instant::now());
    let active = Active {
        base: crate::memory::thread_balance(),
        reported: 0,
        deadline_ns: coarse_now_ns().saturating_add(left.as_nanos() as u64),
        timeout: budget.timeout,
        stopped: None,
    };
    let outer = ACTIVE.with(|a| a.replace(Some(active)));
    let outer_account = ACCOUNT.with(|a| a.replace(Some(account.clone())));
    let outer_guard = minijinja::guard::set_guard(Some(guard));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let ended = ACTIVE.with(|a| a.replace(outer));
    ACCOUNT.with(|a| a.replace(outer_account));
    minijinja::guard::set_guard(outer_guard);
    // What this thread reported is handed back: its values are dropped by now.
    if let Some(a) = ended {
        account.held.fetch_sub(a.reported, Ordering::Relaxed);
        TOTAL_HELD.fetch_sub(a.reported, Ordering::Relaxed);
    }
    match (result, ended.and_then(|a| a.stopped)) {
        (_, Some(stop)) => Err(stop),
        (Ok(v), None) => Ok(v),
        (Err(panic), None) => panic::resume_unwind(panic),
    }
}

/// The one way a render runs, a prompt's or a template fetcher's: on a
/// blocking thread, since it is synchronous and may wait on fetches, under
/// `budget`, which stops it at the deadline or the memory limit so no thread
/// is left running. It counts against the account of the render that asked
/// for it (a template fetcher inside a prompt), else one of its own.
pub async fn spawn<T: Send + 'static>(
    budget: Budget,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stop> {
    let caller = caller();
    match tokio::task::spawn_blocking(move || run_for(caller, budget, f)).await {
        Ok(ran) => ran,
        // The panic hook has logged it; the caller answers with an error.
        Err(e) if e.is_panic() => Err(Stop::Panicked),
        // The runtime is shutting down.
        Err(_) => Err(Stop::Deadline(budget.timeout)),
    }
}

/// Waits (up to [`ADMIT_WAIT`], and never past `deadline`) until the renders
/// running hold less than the total, else refuses.
fn admit(deadline: Instant) -> Result<(), Stop> {
    let limit = TOTAL_LIMIT.load(Ordering::Relaxed);
    let until = (Instant::now() + ADMIT_WAIT).min(deadline);
    while TOTAL_HELD.load(Ordering::Relaxed) >= limit {
        if Instant::now() >= until {
            metrics::counter!("render_memory_total_refused_total").increment(1);
            return Err(Stop::Total(limit));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Time left for the render on this thread, if one runs.
pub fn remaining() -> Option<Duration> {
    let a = ACTIVE.with(Cell::get)?;
    Some(Duration::from_nanos(
        a.deadline_ns.saturating_sub(coarse_now_ns()),
    ))
}

/// Stops the render on this thread (a wait inside it ran out of time).
pub fn stop_for_deadline() {
    ACTIVE.with(|cell| {
        if let Some(mut a) = cell.get() {
            a.stopped.get_or_insert(Stop::Deadline(a.timeout));
            cell.set(Some(a));
        }
    });
}

/// A render stopped while formatting a value unwinds with a panic (`Display`
/// cannot return the guard's error); that is an expected outcome, not a bug,
/// so it is not printed. Every other panic still is.
fn quiet_stopped_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let stopped = ACTIVE.with(Cell::get).is_some_and(|a| a.stopped.is_some());
            if !stopped {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Error;

    fn render(src: &str, memory: usize, timeout: Duration) -> Result<Result<String, Error>, Stop> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(100_000_000));
        run(Budget::new(memory, timeout), || env.render_str(src, ()))
    }

    const MIB: usize = 1024 * 1024;

    #[test]
    fn doubling_strings_stop_at_the_memory_budget() {
        for op in ["+", "~"] {
            let double = format!("{{% set s = s {op} s %}}").repeat(40);
            let src = format!("{{% set s = 'a' * 1000000 %}}{double}{{{{ s | length }}}}");
            assert_eq!(
                render(&src, 16 * MIB, Duration::from_secs(10)).unwrap_err(),
                Stop::Memory(16 * MIB),
                "{op}"
            );
        }
    }

    #[test]
    fn amplifying_filters_stop_at_the_memory_budget() {
        let cases = [
            "{{ ('a' * 1000000) | replace('a', 'bbbbbbbbbb') | length }}",
            "{{ (['a' * 1000000] * 1000) | join | length }}",
            "{{ (['a' * 1000000] * 1000) | string | length }}",
            "{{ '' ~ (['a' * 1000000] * 1000) }}",
            "{{ (['a' * 1000000] * 1000) | tojson | length }}",
            "{{ ('a' * 1000000) | list | length }}",
            "{{ ('x\n' * 1000000) | indent(1000) | length }}",
            "{{ '%100000000s' | format('a') | length }}",
            "{{ ([1] * 100000000) | list | length }}",
            "{{ ('a ' * 5000000) | split | length }}",
        ];
        for src in cases {
            assert_eq!(
                render(src, 16 * MIB, Duration::from_secs(10)).unwrap_err(),
                Stop::Memory(16 * MIB),
                "{src}"
            );
        }
    }

    #[test]
    fn a_slow_loop_stops_at_its_deadline() {
        let src = "{% set s = 'a' * 1000000 %}{% for i in range(100000) %}{% set n = s ~ 'b' %}{% endfor %}";
        let started = Instant::now();
        let stop = render(src, 64 * MIB, Duration::from_millis(300)).unwrap_err();
        assert_eq!(stop, Stop::Deadline(Duration::from_millis(300)));
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
    }

    /// Every nesting shape a template can make, each grown in a loop far past
    /// any stack: each ends in a clear error (or a bounded value), on a thread
    /// with tokio's default 2 MiB stack, and printing, serialising, comparing,
    /// sorting and dropping what was built never overflows it.
    #[test]
    fn deep_values_are_refused_where_they_are_built() {
        let grow = |body: &str, tail: &str| {
            format!(
                "{{% set ns = namespace(v=[]) %}}{{% for i in range(20000) %}}{body}{{% endfor %}}{tail}"
            )
        };
        let too_deep = "nested more than 64 levels deep";
        let cases = [
            (grow("{% set ns.v = [ns.v] %}", "{{ ns.v }}"), too_deep),
            (
                grow("{% set ns.v = {'a': ns.v} %}", "{{ ns.v | tojson }}"),
                too_deep,
            ),
            (
                grow("{% set ns.v = dict(a=ns.v) %}", "{{ ns.v | string }}"),
                too_deep,
            ),
            (
                grow("{% set ns.v = [ns.v] + [1] %}", "{{ ns.v | pprint }}"),
                too_deep,
            ),
            (
                grow("{% set ns.v = [ns.v] | batch(1) | list %}", ""),
                too_deep,
            ),
            (
                grow("{% set ns.v = {'a': ns.v} | items | list %}", ""),
                too_deep,
            ),
            (
                grow("{% set ns.v = {'a': ns.v} | dictsort %}", ""),
                too_deep,
            ),
            (
                grow("{% set ns.v = [ns.v] %}{% set c = ns.v == ns.v %}", ""),
                too_deep,
            ),
            (
                grow("{% set ns.v = [ns.v] | unique | list %}", ""),
                too_deep,
            ),
            (grow("{% set ns.v = [ns.v] | sort %}", ""), too_deep),
            (
                grow("{% set ns.v = [ns.v] | map('list') | list %}", ""),
                too_deep,
            ),
            (
                grow("{% set ns.v = namespace(a=ns.v) %}", ""),
                "cannot hold another namespace",
            ),
            (
                grow("{% set ns.v = [ns] %}", ""),
                "cannot hold another namespace",
            ),
            (
                grow("{% set ns.v = {'x': [ns]} %}", ""),
                "cannot hold another namespace",
            ),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                for (src, expected) in cases {
                    let err = render(&src, 64 * MIB, Duration::from_secs(10))
                        .unwrap_or_else(|stop| panic!("{src}: stopped: {stop}"))
                        .expect_err(&src);
                    assert!(err.to_string().contains(expected), "{src}: {err}");
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    /// The deepest values a template can still make (64 levels built, a
    /// namespace inside holding 64 more, and macros chained through a
    /// namespace) print, serialise, compare, sort and drop on a 2 MiB stack.
    #[test]
    fn the_deepest_allowed_values_print_and_drop_on_a_small_stack() {
        let wrap = "{% set ns.v = [ns.v] %}";
        let srcs = [
            // 62 lists around a namespace, then 62 more inside it: printed,
            // serialised and compared; building around it is refused.
            format!(
                "{{% set ns = namespace(v=1) %}}{{% set outer = {open}ns{close} %}}\
                 {{% for i in range(62) %}}{wrap}{{% endfor %}}\
                 {{{{ outer | length }}}}{{{{ outer | tojson | length }}}}{{{{ outer | string | length }}}}\
                 {{{{ outer | pprint | length }}}}{{{{ outer == outer }}}}{{{{ outer < outer }}}}\
                 {{% set refused = [outer] %}}",
                open = "[".repeat(62),
                close = "]".repeat(62),
            ),
            // A chain of 20,000 macros, each holding the one before: drop only.
            "{% set ns = namespace(v=1) %}{% for i in range(20000) %}{% set prev = ns.v %}\
             {% macro m() %}{{ prev }}{% endmacro %}{% set ns.v = m %}{% endfor %}done"
                .to_string(),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let [deep, macros] = srcs;
                let out = render(&deep, 64 * MIB, Duration::from_secs(10)).unwrap();
                let err = out.expect_err("wrapping it is refused").to_string();
                assert!(err.contains("nested more than 64"), "{err}");
                let out = render(&macros, 64 * MIB, Duration::from_secs(10)).unwrap();
                assert_eq!(out.unwrap(), "done");
            })
            .unwrap();
        handle.join().unwrap();
    }

    /// A value shared many times over (`[v, v]`, doubling) is walked within
    /// the render's deadline, not for 2^depth steps.
    #[test]
    fn walking_a_shared_value_stops_at_the_deadline() {
        let src = "{% set ns = namespace(v=1) %}{% for i in range(60) %}{% set ns.v = [ns.v, ns.v] %}{% endfor %}{{ [ns.v] | length }}";
        let started = Instant::now();
        let out = render(src, 64 * MIB, Duration::from_millis(300));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(out.is_err() || out.unwrap().is_err());
    }

    #[test]
    fn small_renders_pass_and_budgets_nest() {
        let ok = render("{{ 'a' ~ 'b' }}", MIB, Duration::from_secs(1));
        assert_eq!(ok.unwrap().unwrap(), "ab");
        let outer = run(Budget::new(MIB, Duration::from_secs(1)), || {
            let inner = render("{{ 'x' * 10000000 }}", MIB, Duration::from_secs(1));
            assert!(matches!(inner, Err(Stop::Memory(_))));
            remaining().is_some()
        });
        assert_eq!(outer, Ok(true));
        assert!(remaining().is_none());
    }
}
