//! Diagnostic (`--only parse`): the ingest path's parsing on one core, over
//! the same frames the ingest figure sends, split the way the app splits it.
//!
//! The session makes one typed pass down to `new_state` and copies its text
//! out; the writer parses the indexed fields (`EntityState::from_shared`).
//! Until that split the session did both, and that one task was the ingest
//! bottleneck. These rows show how the work divides, so the claim in
//! BENCHMARKS.md rests on a number.

use std::time::Instant;

use ha_fetchers::ha::protocol::{self, Event};
use ha_fetchers::state::{Change, EntityState};

use super::house::House;
use super::report::Row;

/// The session's share: the one-pass `state_changes_fast`, else the general
/// `parse_frame` + `parse_event` path.
fn session(frame: &str, out: &mut Vec<Change>) {
    if let Some(changes) = protocol::state_changes_fast(frame) {
        out.extend(changes);
        return;
    }
    for m in protocol::parse_frame(frame).into_iter().flatten().flatten() {
        if m.kind == "event" {
            if let Some(Ok(Event::StateChanged(c))) = m.event.map(protocol::parse_event) {
                out.push(c);
            }
        }
    }
}

/// Both shares on one task: what the session alone did before the split.
fn session_and_writer(frame: &str, out: &mut Vec<Change>) {
    let start = out.len();
    session(frame, out);
    for c in &mut out[start..] {
        if let Change::Unparsed { entity_id, raw } = c {
            if let Ok(s) = EntityState::from_shared(raw.clone(), Some(entity_id.clone())) {
                *c = Change::Upsert(s);
            }
        }
    }
}

/// Parses `n` events both ways on this thread; returns the context rows.
pub fn compare(n: usize, house: &mut House) -> Vec<Row> {
    let frames = house.event_frames(n, super::figures::EVENTS_PER_FRAME);
    let mb = frames.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for (name, f) in [
        (
            "session's share (one pass, new_state copied out)",
            session as fn(&str, &mut Vec<Change>),
        ),
        (
            "session + writer's share (also from_shared per state)",
            session_and_writer,
        ),
    ] {
        let mut out = Vec::with_capacity(n);
        let t0 = Instant::now();
        for fr in &frames {
            f(fr, &mut out);
        }
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(out.len(), n, "{name} parsed {} of {n}", out.len());
        let rate = n as f64 / dt;
        println!("  parse {name}: {rate:.0} events/s ({:.0} MB/s)", mb / dt);
        rates.push(rate);
        rows.push(
            Row::new(
                &format!("diagnostic: parse only, {name}, one core"),
                format!("{rate:.0} events/s"),
                "–",
                true,
            )
            .info(),
        );
    }
    if let (Some(a), Some(b)) = (rates.first(), rates.get(1)) {
        let first = rows.remove(0);
        rows.insert(
            0,
            first.with_ref(format!("both shares on one task: {b:.0} events/s"), a / b),
        );
    }
    rows
}
