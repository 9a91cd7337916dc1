//! Bounded fuzzing of template rendering: arbitrary sources built from
//! template syntax fragments render or fail with an error, never panic or
//! hang, and never exceed the output cap. Fixed case count keeps CI bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_fetchers::prompt::{NoFetchers, Renderer};
use ha_fetchers::state::{EntityState, MemoryStore, StateManager, Store};
use proptest::prelude::*;

/// Pieces of template syntax, valid and not, that combine into odd programs.
/// Numbers stay small: `'x' * 9999999 * 9999999` would test the machine's
/// memory, not the renderer (see RELIABILITY.md on string growth).
const FRAGMENTS: &[&str] = &[
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "{# ",
    " #}",
    "for x in ",
    "range(50)",
    "endfor",
    "if ",
    "else",
    "endif",
    "set a = ",
    "a",
    "x",
    " ~ ",
    "states.light",
    "states('light.bed_light')",
    "| compact",
    "| names",
    "| count_by_state",
    "is_state('light.a', 'on')",
    "now()",
    "(",
    ")",
    "[",
    "]",
    "'",
    "\"",
    "loop.index",
    "macro m()",
    "endmacro",
    "m()",
    "include 'x'",
    " * ",
    "99",
    "fetch('nope')",
    "area_entities('kitchen')",
    "expand(states)",
    "| expand",
    "| tojson",
    "{",
    "}",
    ",",
    "state_attr('sun.sun', 'elevation')",
];

fn renderer() -> Arc<Renderer> {
    static R: std::sync::OnceLock<Arc<Renderer>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let store = Arc::new(MemoryStore::new());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let raw = r#"{"entity_id":"light.bed_light","state":"on","attributes":{"friendly_name":"Bed Light","brightness":180},"last_changed":"2026-01-01T00:00:00+00:00","last_updated":"2026-01-01T00:00:00+00:00","context":{"id":"x"}}"#;
        rt.block_on(store.upsert(vec![EntityState::from_raw(raw).unwrap()])).unwrap();
        Arc::new(Renderer::new(StateManager::new(store, None), Arc::new(NoFetchers)))
    })
    .clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_templates_render_or_fail_cleanly(parts in prop::collection::vec(0usize..FRAGMENTS.len(), 0..24)) {
        let body: String = parts.iter().map(|&i| FRAGMENTS[i]).collect();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let started = Instant::now();
        let res = rt.block_on(renderer().render_source("fuzz", &body, Default::default()));
        prop_assert!(started.elapsed() < Duration::from_secs(5), "{body:?} took {:?}", started.elapsed());
        if let Ok(r) = res {
            prop_assert!(r.text.len() <= 256 * 1024);
        }
    }
}
