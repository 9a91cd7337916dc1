//! A resource guard the embedder installs per thread.
//!
//! Fuel bounds the number of instructions a template runs, but not the memory
//! or the wall time it takes: a single `s + s` or `x | replace(a, b)` can copy
//! hundreds of megabytes. An embedder that renders untrusted templates installs
//! a guard on the rendering thread with [`set_guard`]. The engine calls it:
//!
//! - before every instruction, with `0`;
//! - before an operation whose allocation grows with its data (string and
//!   sequence concatenation and repetition, `replace`, `join`, `center`,
//!   `indent`, `format`, `tojson`, `urlencode`, `escape`, `list`), with the
//!   number of bytes it is about to allocate;
//! - for every item while a sequence or map is formatted as text;
//! - for every item a `ValueIter` yields: a filter walking a long sequence is
//!   one instruction, so it is checked per item (a stop ends the walk, and
//!   the next instruction reports it); the same while two sequences or maps
//!   are compared;
//! - after every comparison a sort makes (`sort` here).
//!
//! The guard decides (it may read a clock, or an allocation counter); an
//! `Err` stops the render with that error. While a value is formatted through
//! `Display` there is no way to return the error, so formatting fails with
//! `fmt::Error` instead; `to_string()` and `format!` turn that into a panic,
//! which the embedder catches. Without a guard every check is a no-op.

use std::cell::Cell;

use crate::error::Error;

/// The deepest a value a template builds may nest (see `value::depth`).
pub use crate::value::depth::MAX_DEPTH;

/// The check: `bytes` is what the caller is about to allocate (0: none).
pub type Guard = fn(bytes: usize) -> Result<(), Error>;

thread_local! {
    static GUARD: Cell<Option<Guard>> = const { Cell::new(None) };
}

/// Installs `guard` on this thread and returns the one it replaces, so nested
/// renders can restore it.
pub fn set_guard(guard: Option<Guard>) -> Option<Guard> {
    GUARD.with(|g| g.replace(guard))
}

/// Whether a guard is installed on this thread.
#[inline]
pub(crate) fn installed() -> bool {
    GUARD.with(Cell::get).is_some()
}

/// Yields `it`'s items while the guard allows: comparing two long sequences
/// is one instruction, however long it takes. A stop ends the walk there;
/// the guard's stop is sticky, so the next instruction reports it.
pub(crate) fn walk<I: Iterator>(it: I) -> impl Iterator<Item = I::Item> {
    it.take_while(|_| check(0).is_ok())
}

/// A stable sort of `seq` by `f` that asks the guard after every
/// comparison, and stops with its error. A comparison is one instruction
/// however long it takes: `sort` over 100,000 references to a 1 MB string
/// compared for ~60 s past a 1 s deadline. A merge sort of indices (the
/// standard sort cannot be stopped part way), then the permutation applied.
pub(crate) fn sort<T, F>(seq: &mut [T], mut f: F) -> Result<(), Error>
where
    F: FnMut(&T, &T) -> std::cmp::Ordering,
{
    let n = seq.len();
    check(n.saturating_mul(2 * std::mem::size_of::<usize>()))?;
    let mut order: Vec<usize> = (0..n).collect();
    let mut next = vec![0; n];
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut l, mut r) = (start, mid);
            for slot in &mut next[start..end] {
                // Equal keeps the left one first: stable.
                let take_right = l == mid
                    || (r < end && {
                        let less = f(&seq[order[r]], &seq[order[l]]).is_lt();
                        check(0)?;
                        less
                    });
                if take_right {
                    *slot = order[r];
                    r += 1;
                } else {
                    *slot = order[l];
                    l += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut order, &mut next);
        width = width.saturating_mul(2);
    }
    // `order[k]` is the index of the item that goes to `k`; `to[i]` is where
    // item `i` goes. Each swap puts one item where it belongs.
    let mut to = next;
    for (k, &i) in order.iter().enumerate() {
        to[i] = k;
    }
    for i in 0..n {
        while to[i] != i {
            let j = to[i];
            seq.swap(i, j);
            to.swap(i, j);
        }
    }
    Ok(())
}

/// Asks the guard whether `bytes` more may be allocated.
#[inline]
pub(crate) fn check(bytes: usize) -> Result<(), Error> {
    match GUARD.with(Cell::get) {
        Some(guard) => guard(bytes),
        None => Ok(()),
    }
}

/// Asks the guard before building a string of `len` bytes: it is built, then
/// copied into the value's shared buffer, so both are held for a moment.
#[inline]
pub(crate) fn check_string(len: usize) -> Result<(), Error> {
    check(len.saturating_mul(2))
}

/// The bytes `n` values take in a sequence.
#[inline]
pub(crate) fn values(n: usize) -> usize {
    n.saturating_mul(std::mem::size_of::<crate::value::Value>())
}

/// Formats `value` into a new string; a formatting error (which only the guard
/// causes) becomes the guard's error instead of a panic.
pub(crate) fn format(value: std::fmt::Arguments<'_>) -> Result<String, Error> {
    let mut rv = String::new();
    match std::fmt::Write::write_fmt(&mut rv, value) {
        // The caller copies it into a value.
        Ok(()) => check(rv.len()).map(|_| rv),
        Err(_) => Err(check(0).err().unwrap_or_else(|| {
            Error::new(crate::ErrorKind::InvalidOperation, "formatting failed")
        })),
    }
}

/// Collects `iter`, asking the guard before each growth of the list.
pub(crate) fn collect(
    iter: impl Iterator<Item = crate::value::Value>,
) -> Result<Vec<crate::value::Value>, Error> {
    let mut rv = Vec::new();
    for item in iter {
        if rv.len() == rv.capacity() {
            check(values(rv.capacity().max(4)))?;
        }
        rv.push(item);
    }
    Ok(rv)
}

/// A byte buffer that asks the guard before it grows (for serializers).
#[derive(Default)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl std::io::Write for Bytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > self.0.capacity() {
            check(self.0.capacity().max(buf.len())).map_err(std::io::Error::other)?;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
