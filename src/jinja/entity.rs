//! One entity as the output filters print it: name, state with unit, area
//! and the attributes Home Assistant's LLM API exposes, nothing else. The
//! attributes of a stored state are parsed once per state change and kept.

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::state::EntityState;

/// The attributes Home Assistant's LLM API shows an assistant
/// (`homeassistant/helpers/llm.py`, `_get_exposed_entities`).
pub const EXPOSED_ATTRIBUTES: [&str; 13] = [
    "temperature",
    "current_temperature",
    "temperature_unit",
    "brightness",
    "humidity",
    "unit_of_measurement",
    "device_class",
    "current_position",
    "percentage",
    "volume_level",
    "media_title",
    "media_artist",
    "media_album_name",
];

/// The parts of one entity the filters print.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// `light.bed_light`.
    pub entity_id: String,
    /// Friendly name, else the id.
    pub name: String,
    /// The state string.
    pub state: String,
    /// Area name, when the registries place it.
    pub area: Option<String>,
    /// The allowlisted attributes, in allowlist order.
    pub attributes: Attrs,
}

/// An entity's allowlisted attributes, shared with [`AttrCache`].
pub type Attrs = Arc<[(String, serde_json::Value)]>;

/// The allowlisted attributes of a stored state, parsing only those.
fn exposed(s: &EntityState) -> Attrs {
    let mut picked = s.attributes_where(&|k| EXPOSED_ATTRIBUTES.contains(&k));
    picked.retain(|(_, v)| !v.is_null());
    picked.sort_by_key(|(k, _)| EXPOSED_ATTRIBUTES.iter().position(|e| e == k));
    picked.into()
}

/// The allowlisted attributes of the states filters printed, per entity, with
/// the identity of the state they came from. A warm render prints mostly
/// states it printed before, and walking their JSON again was most of its
/// cost (the "home status" prompt at 10,000 entities). One entry per entity
/// id, replaced when its state changes, so it is bounded by the house.
#[derive(Default)]
pub struct AttrCache(parking_lot::Mutex<crate::state::Ids<(StateKey, Attrs)>>);

/// Which state an entry was parsed from: its `last_updated` and a hash of its text.
type StateKey = (i64, u64);

impl AttrCache {
    fn get(&self, s: &EntityState) -> Attrs {
        // Fixed seed: the key only has to tell this state's text from the next one's.
        let key = (
            s.last_updated,
            foldhash::fast::FixedState::with_seed(0).hash_one(&*s.raw),
        );
        if let Some((k, a)) = self.0.lock().get(&s.entity_id) {
            if *k == key {
                return a.clone();
            }
        }
        let attrs = exposed(s);
        self.0
            .lock()
            .insert(s.entity_id.clone(), (key, attrs.clone()));
        attrs
    }
}

impl Entity {
    /// From a stored state, parsing its allowlisted attributes now: for
    /// callers outside a render (the Model Context Protocol's tools), so an
    /// entity reads the same in a tool result as in a prompt.
    pub fn of(s: &EntityState, area: Option<String>) -> Self {
        Self::with_attributes(s, area, exposed(s))
    }

    /// From a stored state; its attributes come from `cache`.
    pub(super) fn from_state(s: &EntityState, area: Option<String>, cache: &AttrCache) -> Self {
        Self::with_attributes(s, area, cache.get(s))
    }

    fn with_attributes(s: &EntityState, area: Option<String>, attributes: Attrs) -> Self {
        Self {
            entity_id: s.entity_id.to_string(),
            name: s.name().to_string(),
            state: s.state.to_string(),
            area,
            attributes,
        }
    }

    pub(super) fn from_parts(
        id: &str,
        name: &str,
        state: &str,
        area: Option<String>,
        attrs: &serde_json::Value,
    ) -> Self {
        let attributes = EXPOSED_ATTRIBUTES
            .iter()
            .filter_map(|k| Some((k.to_string(), attrs.get(*k)?.clone())))
            .filter(|(_, v)| !v.is_null())
            .collect::<Vec<_>>()
            .into();
        Self {
            entity_id: id.to_string(),
            name: name.to_string(),
            state: state.to_string(),
            area,
            attributes,
        }
    }

    /// From an entity a fetcher's result already shaped (`entity_id`,
    /// `name`, `state`, `area` and the attributes it chose), keeping every
    /// attribute it gave: how a fetcher's result reads as text, line for
    /// line as `compact` prints a state.
    pub fn from_result(m: &serde_json::Map<String, serde_json::Value>) -> Self {
        use serde_json::Value;
        let text = |k: &str| match m.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(v) => Some(v.to_string()),
        };
        let entity_id = text("entity_id").unwrap_or_default();
        let attributes = m
            .iter()
            .filter(|(k, v)| {
                !v.is_null() && !matches!(k.as_str(), "entity_id" | "name" | "state" | "area")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
            .into();
        Self {
            name: text("name").unwrap_or_else(|| entity_id.clone()),
            state: text("state").unwrap_or_default(),
            area: text("area"),
            entity_id,
            attributes,
        }
    }

    fn attr(&self, k: &str) -> Option<&serde_json::Value> {
        self.attributes.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    /// One line: `Bed Light (Bedroom): on, brightness 180`.
    pub fn compact_line(&self, with_id: bool) -> String {
        let mut line = String::with_capacity(64);
        self.write_line(&mut line, with_id);
        line
    }

    /// Appends the line to `out`: a listing of hundreds of entities is one
    /// buffer, not a string per line and per attribute.
    ///
    /// With ids, a name that only respells the id (`Bed Light`,
    /// `light.bed_light`) is left out: the id says it, in fewer tokens.
    pub(super) fn write_line(&self, out: &mut String, with_id: bool) {
        use std::fmt::Write;
        match with_id {
            true if name_in_id(&self.name, &self.entity_id) => out.push_str(&self.entity_id),
            true => {
                let _ = write!(out, "{} [{}]", self.name, self.entity_id);
            }
            false => out.push_str(&self.name),
        }
        if let Some(a) = &self.area {
            let _ = write!(out, " ({a})");
        }
        out.push_str(": ");
        out.push_str(&self.state);
        if let Some(u) = self.attr("unit_of_measurement") {
            out.push(' ');
            write_plain(out, u);
        }
        let temp_unit = self.attr("temperature_unit");
        let has_unit = self.attr("unit_of_measurement").is_some();
        for (k, v) in self.attributes.iter() {
            // The unit already follows the value it belongs to, and says what
            // a device class would (`15.6 °C` is a temperature).
            if k == "unit_of_measurement"
                || k == "temperature_unit"
                || (has_unit && k == "device_class")
            {
                continue;
            }
            out.push_str(", ");
            out.extend(k.chars().map(|c| if c == '_' { ' ' } else { c }));
            out.push(' ');
            write_plain(out, v);
            if let (Some(u), true) = (temp_unit, k.ends_with("temperature")) {
                out.push(' ');
                write_plain(out, u);
            }
        }
    }
}

/// Whether `name` is `id`'s object id respelt: the same letters and digits,
/// any case, spaces and punctuation aside.
pub fn name_in_id(name: &str, id: &str) -> bool {
    let object = id.split_once('.').map_or(id, |(_, o)| o);
    let letters = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    letters(name) == letters(object)
}

/// A JSON value as bare text: strings unquoted, the rest as compact JSON.
pub(super) fn plain(v: &serde_json::Value) -> String {
    let mut s = String::new();
    write_plain(&mut s, v);
    s
}

fn write_plain(out: &mut String, v: &serde_json::Value) {
    use std::fmt::Write;
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_cache_follows_the_state_text() {
        let state = |raw: &str| EntityState::from_raw(raw).unwrap();
        let cache = AttrCache::default();
        let a = state(
            r#"{"entity_id":"light.a","state":"on","attributes":{"brightness":10},"last_updated":"2026-01-01T00:00:00+00:00"}"#,
        );
        assert_eq!(cache.get(&a)[0].1, serde_json::json!(10));
        // Same text again (a fresh copy): served from the cache.
        let again = state(&a.raw);
        assert!(Arc::ptr_eq(&cache.get(&a), &cache.get(&again)));
        // Same last_updated, other attributes: the text differs, so parsed again.
        let b = state(
            r#"{"entity_id":"light.a","state":"on","attributes":{"brightness":99},"last_updated":"2026-01-01T00:00:00+00:00"}"#,
        );
        assert_eq!(cache.get(&b)[0].1, serde_json::json!(99));
        assert_eq!(cache.0.lock().len(), 1, "one entry per entity");
    }
}
