//! Memory: the counting allocator renders are bounded with, and handing
//! freed memory back to the OS.
//!
//! glibc's malloc keeps freed pages in its per-thread arenas: a snapshot's
//! buffers or a burst's queue stay in RSS long after they are dropped. In the
//! soak, trimming took RSS after warm-up from 41 to 38 MiB at 10,000
//! entities. `malloc_trim` returns such pages; elsewhere (musl, other
//! allocators) this is a no-op.

use std::time::Duration;

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

/// Allocations from this size up get pages of their own from the kernel,
/// handed back the moment they are freed.
const MMAP_THRESHOLD: i32 = 1024 * 1024;

/// Fixes malloc's mmap threshold at [`MMAP_THRESHOLD`]. glibc raises it to
/// the size of each mmapped block freed, so after the first 25 MB render
/// string later ones came from the threads' arenas and stayed in RSS when
/// freed: 24 renders under a 128 MiB render budget peaked at +335 MiB.
/// Call once at start, before threads allocate.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting what each thread allocates and frees, so a
/// render can be held to a memory budget ([`crate::bounds`]). The count costs
/// a thread-local add per call.
pub struct Counting;

thread_local! {
    /// Bytes this thread allocated minus bytes it freed (memory freed here but
    /// allocated elsewhere makes it smaller; only differences are used).
    static BALANCE: Cell<isize> = const { Cell::new(0) };
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// This thread's allocation balance; subtract two readings for what was
/// allocated in between.
pub fn thread_balance() -> isize {
    BALANCE.with(Cell::get)
}

fn count(bytes: isize) {
    // A const thread-local without a destructor is always accessible, even
    // while the thread is being torn down.
    BALANCE.with(|b| b.set(b.get().wrapping_add(bytes)));
}

// SAFETY: every call is forwarded to `System` unchanged; counting does not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}
