//! Anti-entropy: what a periodic `get_states` finds wrong in the cache.
//! Events are the cache's only input while the link is up; one that never
//! came (HA does not send `last_reported` moves, and a frame can be lost)
//! stays wrong until something compares.

use serde_json::{Map, Value};

/// The fields of a state object a repair names; anything else is `other`.
const FIELDS: &[&str] = &[
    "state",
    "attributes",
    "last_changed",
    "last_reported",
    "last_updated",
    "context",
];

/// The fields in which `cached` and `fresh` (two state objects as HA's JSON
/// text) differ. Empty when they differ only in spelling (key order,
/// spaces), which needs no repair worth counting.
pub fn differing(cached: &str, fresh: &str) -> Vec<&'static str> {
    if cached == fresh {
        return Vec::new();
    }
    let parse = |t: &str| serde_json::from_str::<Map<String, Value>>(t).ok();
    let (Some(a), Some(b)) = (parse(cached), parse(fresh)) else {
        return vec!["other"];
    };
    let mut out: Vec<&'static str> = FIELDS
        .iter()
        .copied()
        .filter(|f| a.get(*f) != b.get(*f))
        .collect();
    let other = a
        .keys()
        .chain(b.keys())
        .any(|k| !FIELDS.contains(&k.as_str()) && a.get(k) != b.get(k));
    if other {
        out.push("other");
    }
    out
}

/// Whether a repair means an event was missed: anything but `last_reported`,
/// which HA moves without telling WebSocket subscribers.
pub fn missed_an_event(fields: &[&str]) -> bool {
    fields.iter().any(|f| *f != "last_reported")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_fields_that_differ_and_ignores_spelling() {
        let a = r#"{"entity_id":"light.a","state":"on","attributes":{"b":1},"last_reported":"1","last_updated":"1"}"#;
        let respelled = r#"{ "state": "on", "entity_id": "light.a", "attributes": {"b": 1}, "last_reported": "1", "last_updated": "1" }"#;
        assert!(differing(a, respelled).is_empty());
        let reported = a.replace(r#""last_reported":"1""#, r#""last_reported":"2""#);
        assert_eq!(differing(a, &reported), ["last_reported"]);
        assert!(!missed_an_event(&differing(a, &reported)));
        let changed = a.replace(r#""state":"on""#, r#""state":"off""#);
        assert_eq!(differing(a, &changed), ["state"]);
        assert!(missed_an_event(&["state"]));
        assert_eq!(differing(a, "not json"), ["other"]);
    }
}
