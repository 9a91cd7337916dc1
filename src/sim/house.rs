//! The simulated house: entity states as Home Assistant renders them, and
//! the `state_changed` events a change produces.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The recorded demo house (Home Assistant 2025.4.4, demo integration): about 100 entities.
pub const DEMO_HOUSE: &str =
    include_str!("../../tests/fixtures/home-assistant-2025.4.4/rest-states.json");

/// The Home Assistant version the demo house was recorded from.
pub const DEMO_HA_VERSION: &str = "2025.4.4";

/// Why a seed could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed is not a JSON array of state objects: {0}")]
    Json(#[from] serde_json::Error),
}

/// A state object in HA's own key order, so our bytes look like HA's.
#[derive(Serialize, Deserialize)]
struct StateDoc {
    entity_id: String,
    state: String,
    attributes: Box<RawValue>,
    last_changed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_reported: Option<String>,
    last_updated: String,
    context: Box<RawValue>,
}

/// Entity states by id, as HA's JSON text.
#[derive(Debug, Clone, Default)]
pub struct House {
    /// id → the state object's JSON text.
    states: BTreeMap<String, String>,
    /// The last timestamp handed out (micros), so every change is strictly newer than the one before.
    last_ts: i64,
    /// Every change `set` made, for the history, logbook and statistics commands.
    pub recorder: super::recorder::Recorder,
}

/// The text of one `state_changed` event body (the `event` object of an `event` message).
pub type EventBody = String;

impl House {
    /// Loads a house from a REST `/api/states` (or `get_states` result) array.
    pub fn from_json(text: &str) -> Result<Self, SeedError> {
        #[derive(Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            entity_id: std::borrow::Cow<'a, str>,
        }
        let items: Vec<&RawValue> = serde_json::from_str(text)?;
        let mut states = BTreeMap::new();
        for item in items {
            let id: Id<'_> = serde_json::from_str(item.get())?;
            states.insert(id.entity_id.into_owned(), item.get().to_string());
        }
        Ok(Self {
            states,
            last_ts: 0,
            recorder: super::recorder::Recorder::starting_now(),
        })
    }

    /// The recorded demo house.
    pub fn demo() -> Self {
        Self::from_json(DEMO_HOUSE).expect("the embedded demo house is a valid state array")
    }

    /// One state's JSON text.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.states.get(id).map(String::as_str)
    }

    /// Every entity id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.states.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Every state as one JSON array, as `GET /api/states` and `get_states` send it.
    pub fn states_json(&self) -> String {
        let mut out = String::new();
        self.write_states_json(&mut out);
        out
    }

    /// [`states_json`](Self::states_json), appended to `out`.
    pub fn write_states_json(&self, out: &mut String) {
        out.reserve(self.states.values().map(|s| s.len() + 1).sum::<usize>() + 2);
        out.push('[');
        for (i, s) in self.states.values().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(s);
        }
        out.push(']');
    }

    /// Sets an entity's state (and merges `attributes` into its attributes),
    /// stamping fresh timestamps; creates the entity when it is new.
    /// Returns the `state_changed` event body.
    pub fn set(
        &mut self,
        id: &str,
        state: &str,
        attributes: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> EventBody {
        let now = self.next_ts();
        let old = self.states.get(id).cloned();
        let new = self.build(id, state, attributes, old.as_deref(), &now);
        self.recorder.record(id, old.as_deref(), &new, self.last_ts);
        self.states.insert(id.to_string(), new.clone());
        state_changed(id, old.as_deref(), Some(&new), &now)
    }

    /// Removes an entity; returns the event body, or `None` if there was no such entity.
    pub fn remove(&mut self, id: &str) -> Option<EventBody> {
        let now = self.next_ts();
        let old = self.states.remove(id)?;
        Some(state_changed(id, Some(&old), None, &now))
    }

    /// An event carrying `state` for `id` stamped `delta` microseconds from the
    /// current state: earlier, as a late delivery would; later, as a clock that
    /// jumped would. The house itself does not change.
    pub fn shifted_event(&mut self, id: &str, state: &str, delta: i64) -> Option<EventBody> {
        let cur = self.states.get(id)?.clone();
        let doc: StateDoc = serde_json::from_str(&cur).ok()?;
        let then = crate::state::parse_ts(&doc.last_updated)? + delta;
        let then = fmt_ts(then);
        let stale = StateDoc {
            state: state.to_string(),
            last_changed: then.clone(),
            last_reported: Some(then.clone()),
            last_updated: then.clone(),
            ..doc
        };
        let stale = serde_json::to_string(&stale).ok()?;
        Some(state_changed(id, Some(&cur), Some(&stale), &then))
    }

    fn build(
        &self,
        id: &str,
        state: &str,
        patch: Option<&serde_json::Map<String, serde_json::Value>>,
        old: Option<&str>,
        now: &str,
    ) -> String {
        let old: Option<StateDoc> = old.and_then(|o| serde_json::from_str(o).ok());
        let mut attrs: serde_json::Map<String, serde_json::Value> = old
            .as_ref()
            .and_then(|o| serde_json::from_str(o.attributes.get()).ok())
            .unwrap_or_default();
        let attributes = match patch {
            Some(p) => {
                attrs.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
                to_raw(&attrs)
            }
            None => match &old {
                Some(o) => o.attributes.clone(),
                None => to_raw(&attrs),
            },
        };
        let last_changed = match &old {
            Some(o) if o.state == state => o.last_changed.clone(),
            _ => now.to_string(),
        };
        let doc = StateDoc {
            entity_id: id.to_string(),
            state: state.to_string(),
            attributes,
            last_changed,
            last_reported: Some(now.to_string()),
            last_updated: now.to_string(),
            context: new_context(),
        };
        serde_json::to_string(&doc).expect("a state document always serialises")
    }

    /// The last timestamp handed out (micros).
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// Makes later timestamps come after `micros`.
    pub fn bump_ts(&mut self, micros: i64) {
        self.last_ts = self.last_ts.max(micros);
    }

    /// Now, as HA formats it, strictly after the last timestamp handed out.
    fn next_ts(&mut self) -> String {
        let now = chrono::Utc::now().timestamp_micros().max(self.last_ts + 1);
        self.last_ts = now;
        fmt_ts(now)
    }
}

fn to_raw(v: &serde_json::Map<String, serde_json::Value>) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("a JSON map always serialises")
}

/// `2026-11-21T14:43:09.616749+00:00`, HA's format.
fn fmt_ts(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// A context like HA's: a ULID-shaped id and no parent or user.
fn new_context() -> Box<RawValue> {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    let id: String = (0..26)
        .map(|_| CROCKFORD[rng.random_range(0..CROCKFORD.len())] as char)
        .collect();
    RawValue::from_string(format!(
        r#"{{"id":"{id}","parent_id":null,"user_id":null}}"#
    ))
    .expect("a literal context is valid JSON")
}

/// A `state_changed` event body carrying HA's bytes for both states.
pub fn state_changed(id: &str, old: Option<&str>, new: Option<&str>, fired: &str) -> EventBody {
    let id = serde_json::to_string(id).expect("a string always serialises");
    format!(
        r#"{{"event_type":"state_changed","data":{{"entity_id":{id},"old_state":{},"new_state":{}}},"origin":"LOCAL","time_fired":"{fired}","context":{}}}"#,
        old.unwrap_or("null"),
        new.unwrap_or("null"),
        new_context().get(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EntityState;

    #[test]
    fn demo_house_loads_and_changes_stamp_newer_times() {
        let mut h = House::demo();
        assert!(h.len() > 90);
        let before = EntityState::from_raw(h.get("light.bed_light").unwrap()).unwrap();
        let ev = h.set("light.bed_light", "off", None);
        let after = EntityState::from_raw(h.get("light.bed_light").unwrap()).unwrap();
        assert_eq!(&*after.state, "off");
        assert!(after.last_updated > before.last_updated);
        assert_eq!(after.friendly_name.as_deref(), Some("Bed Light"));
        assert!(ev.contains(r#""old_state":{"entity_id":"light.bed_light","state":"on""#));
        let gone = h.remove("light.bed_light").unwrap();
        assert!(gone.contains(r#""new_state":null"#));
        assert!(h.get("light.bed_light").is_none());
    }

    #[test]
    fn older_event_is_older() {
        let mut h = House::demo();
        h.set("switch.ac", "on", None);
        let cur = EntityState::from_raw(h.get("switch.ac").unwrap()).unwrap();
        let ev = h.shifted_event("switch.ac", "off", -5_000_000).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ev).unwrap();
        let stale = EntityState::from_raw(&v["data"]["new_state"].to_string()).unwrap();
        assert_eq!(cur.last_updated - stale.last_updated, 5_000_000);
        assert_eq!(
            &*EntityState::from_raw(h.get("switch.ac").unwrap())
                .unwrap()
                .state,
            "on"
        );
    }
}
