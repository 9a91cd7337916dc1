//! Property tests (bounded fuzzing) for frame parsing and applying state events.
//! Case counts are fixed so CI time stays bounded; raise PROPTEST_CASES to dig deeper.

use std::collections::HashMap;

use ha_fetchers::ha::protocol::{
    parse_event, parse_frame, parse_states, state_changes_fast, Event,
};
use ha_fetchers::state::{Change, EntityState, Index};
use proptest::prelude::*;

/// Real frames recorded from Home Assistant 2025.4.4, one per line.
fn recorded_frames() -> &'static [String] {
    static FRAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        include_str!("../fixtures/home-assistant-2025.4.4/ws-session.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["dir"] == "in")
            .map(|v| v["msg"].to_string())
            .collect()
    })
}

/// Parses a frame the way the session does, touching every part.
fn consume(text: &str) {
    let _ = state_changes_fast(text);
    if let Ok(msgs) = parse_frame(text) {
        for m in msgs.into_iter().flatten() {
            if let Some(ev) = m.event {
                let _ = parse_event(ev);
            }
            if let Some(r) = m.result {
                let _ = parse_states(r);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}") {
        consume(&s);
    }

    #[test]
    fn mutated_real_frames_never_panic(idx in 0usize..64, cut in 0usize..4000, byte in any::<u8>(), at in 0usize..4000) {
        let frames = recorded_frames();
        let f = &frames[idx % frames.len()];
        // Truncated at any byte boundary.
        let end = f.char_indices().map(|(i, _)| i).nth(cut % f.len().max(1)).unwrap_or(f.len());
        consume(&f[..end]);
        // One byte replaced.
        let mut bytes = f.as_bytes().to_vec();
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        if let Ok(s) = String::from_utf8(bytes) {
            consume(&s);
        }
    }

    #[test]
    fn json_of_the_wrong_shape_is_an_error_not_a_panic(v in arb_json()) {
        consume(&v.to_string());
        consume(&serde_json::json!({"type": "event", "event": v.clone()}).to_string());
        consume(&serde_json::json!({"type": "event", "event": {"event_type": "state_changed", "data": v}}).to_string());
    }

    /// Applying upserts in any order leaves each entity at its newest state,
    /// and the domain index agrees with the id index.
    #[test]
    fn newest_state_wins_in_any_order(events in prop::collection::vec((0u8..6, 0i64..50, 0u8..3), 1..80)) {
        let mut ix = Index::default();
        let mut newest: HashMap<String, i64> = HashMap::new();
        for (e, ts, st) in &events {
            let id = format!("{}.e{e}", if e % 2 == 0 { "light" } else { "switch" });
            let s = state(&id, &format!("s{st}"), *ts);
            ix.upsert(s);
            let n = newest.entry(id).or_insert(*ts);
            *n = (*n).max(*ts);
        }
        for (id, ts) in &newest {
            let got = ix.get(id).and_then(|s| s.clone()).expect("entity present");
            prop_assert_eq!(got.last_updated, ts * 1_000_000);
        }
        prop_assert_eq!(ix.ids().count(), newest.len());
    }

    /// A snapshot leaves exactly its own entities, whatever was there before.
    #[test]
    fn replace_all_leaves_exactly_the_snapshot(before in prop::collection::btree_set(0u8..20, 0..15), after in prop::collection::btree_set(0u8..20, 0..15)) {
        let mut ix = Index::default();
        for e in &before {
            ix.upsert(state(&format!("sensor.e{e}"), "1", 1));
        }
        let snap: Vec<EntityState> = after.iter().map(|e| state(&format!("sensor.e{e}"), "2", 2)).collect();
        ix.replace_all(snap);
        let ids: Vec<String> = ix.ids().map(|s| s.to_string()).collect();
        let want: Vec<String> = after.iter().map(|e| format!("sensor.e{e}")).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        prop_assert_eq!(ids, want);
    }
}

fn state(id: &str, st: &str, secs: i64) -> EntityState {
    let ts = chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339();
    EntityState::from_raw(&format!(
        r#"{{"entity_id":"{id}","state":"{st}","attributes":{{}},"last_changed":"{ts}","last_updated":"{ts}","context":{{"id":"x"}}}}"#
    ))
    .unwrap()
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z_.]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::hash_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn recorded_events_parse() {
    let mut changes = 0;
    for f in recorded_frames() {
        for m in parse_frame(f).unwrap().into_iter().flatten() {
            if let Some(Ok(Event::StateChanged(c))) = m.event.map(parse_event) {
                changes += 1;
                if let Change::Upsert(s) = c {
                    assert!(s.last_updated > 0);
                }
            }
        }
    }
    assert!(changes >= 4, "fixture has state_changed events");
}
