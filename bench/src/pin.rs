//! CPU pinning for the figures where a load generator must not take the
//! measured side's CPU: the app (with the fake HA and Redis) on one core, the
//! clients on the other. Linux only (`sched_setaffinity`).

/// A set of CPUs: `CPU_SET(cpu)` alone.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (the callers pass 0 or 1).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

/// Sets the CPUs of one task (thread or process id; 0 = the calling thread).
fn set(pid: i32, mask: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: a valid mask of the size given.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), mask) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPUs of one task.
fn get(pid: i32) -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: as in `only`.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, writable mask of the size given.
    let rc =
        unsafe { libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) };
    if rc == 0 {
        Ok(mask)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every thread of this process, now and (by inheritance) later, on `cpu`.
/// Returns what to restore.
pub fn this_process(cpu: usize) -> std::io::Result<Restore> {
    let mut before = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = task?.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that ended since the listing is no matter.
        if let Ok(mask) = get(tid) {
            if set(tid, &only(cpu)).is_ok() {
                before.push((tid, mask));
            }
        }
    }
    Ok(Restore(before))
}

/// Another process (all its threads) on `cpu`, e.g. Redis.
pub fn process(pid: u32, cpu: usize) -> std::io::Result<Restore> {
    let mut before = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Some(tid) = task?.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let mask = get(tid)?;
        set(tid, &only(cpu))?;
        before.push((tid, mask));
    }
    Ok(Restore(before))
}

/// The masks tasks had before pinning; put back on drop.
pub struct Restore(Vec<(i32, libc::cpu_set_t)>);

impl Drop for Restore {
    fn drop(&mut self) {
        for (tid, mask) in &self.0 {
            let _ = set(*tid, mask);
        }
    }
}

/// How many CPUs this process may use.
pub fn cpus() -> usize {
    get(0).map_or(1, |m| {
        // SAFETY: a valid mask.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &m) })
            .count()
    })
}
