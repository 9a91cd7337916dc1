//! Diagnostic (`--only parse`): the session's per-frame parsing on its own,
//! against a one-pass alternative, over the same frames the ingest figure sends.
//!
//! The ingest profile is dominated by serde_json scanning the same bytes
//! again and again (frame → message → event → data → state). This measures
//! how much a single typed, borrowed pass down to `new_state` would save,
//! so the fix proposed in BENCHMARKS.md rests on a number.

use std::borrow::Cow;
use std::time::Instant;

use ha_fetchers::ha::protocol::{self, Event};
use ha_fetchers::state::{Change, EntityState};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::house::House;
use super::report::Row;

/// One message, typed down to the state we keep.
#[derive(Deserialize)]
struct Msg<'a> {
    /// `event`, `result`, …
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// The event body, typed rather than captured as raw text.
    #[serde(borrow, default)]
    event: Option<Ev<'a>>,
}

#[derive(Deserialize)]
struct Ev<'a> {
    /// Only `state_changed` matters here.
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    /// All-optional, so it fits any event's data.
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    /// Checked against the state's own id.
    #[serde(borrow, default)]
    entity_id: Option<Cow<'a, str>>,
    /// The only part kept as text; `old_state` is skipped once.
    #[serde(borrow, default)]
    new_state: Option<&'a RawValue>,
}

/// The session's path today: the one-pass `state_changes_fast`, else
/// `parse_frame`, then `parse_event` per message.
fn current(frame: &str, out: &mut Vec<Change>) {
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

/// One pass over the frame down to `new_state`, then `from_raw` on it.
/// (A bad element fails the whole array here; a real version would fall
/// back to the per-element path only when the fast pass fails.)
fn one_pass(frame: &str, out: &mut Vec<Change>) {
    let Ok(msgs) = serde_json::from_str::<Vec<Msg<'_>>>(frame) else {
        return;
    };
    for m in msgs {
        let Some(Ev {
            event_type,
            data: Some(d),
        }) = m.event
        else {
            continue;
        };
        if m.kind != "event" || event_type != "state_changed" {
            continue;
        }
        if let (Some(id), Some(ns)) = (d.entity_id, d.new_state) {
            if let Ok(s) = EntityState::from_raw(ns.get()) {
                if *s.entity_id == *id {
                    out.push(Change::Upsert(s));
                }
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
            "today: parse_frame + parse_event",
            current as fn(&str, &mut Vec<Change>),
        ),
        ("one typed pass to new_state", one_pass),
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
                &format!("diagnostic: session parse only, {name}, one core"),
                format!("{rate:.0} events/s"),
                "–",
                true,
            )
            .info(),
        );
    }
    if let (Some(a), Some(b), Some(last)) = (rates.first(), rates.get(1), rows.pop()) {
        rows.push(
            last.with_ref(format!("today's path: {a:.0} events/s"), b / a)
                .info(),
        );
    }
    rows
}
