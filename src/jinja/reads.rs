//! Which domains a render read. A template fetcher's result is cached until
//! something it read changes, so the HA functions note each domain they
//! touch (before reading it) while [`recording`] runs on the thread.

use std::cell::RefCell;

use crate::state::{domain_of, Read, StateManager};

thread_local! {
    static READS: RefCell<Option<Vec<Read>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns what it read; nests by restoring the outer record.
pub fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<Read>) {
    let outer = READS.with(|r| r.replace(Some(Vec::new())));
    let out = f();
    let reads = READS.with(|r| r.replace(outer)).unwrap_or_default();
    (out, reads)
}

/// Notes a read of `domain` (`None`: everything, e.g. the area registry).
pub(crate) fn note(states: &StateManager, domain: Option<&str>) {
    READS.with(|r| {
        if let Some(reads) = r.borrow_mut().as_mut() {
            if !reads.iter().any(|x| x.domain.as_deref() == domain) {
                reads.push(Read::of(states, domain));
            }
        }
    });
}

/// Notes a read of the domain of entity `id`.
pub(crate) fn note_entity(states: &StateManager, id: &str) {
    note(states, Some(domain_of(id)));
}
