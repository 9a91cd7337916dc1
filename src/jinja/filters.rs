//! Token-lean output filters: a list of states in, short text out.
//!
//! Input may be state objects (`states.light`), fetcher results (lists of HA
//! state JSON, or objects with an `entities` list) or entity ids. Each entity
//! becomes one line with its name, state with unit, area and the attributes
//! Home Assistant's LLM API exposes — nothing else.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error};

use super::marker::Unavailable;
use super::states::{state_object, StateObject};
use crate::state::EntityState;
use crate::state::StateManager;

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
    fn from_state(s: &EntityState, area: Option<String>, cache: &AttrCache) -> Self {
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

    fn from_parts(
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
    fn write_line(&self, out: &mut String, with_id: bool) {
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
fn plain(v: &serde_json::Value) -> String {
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

/// One entity to print: a stored state, parsed only when its attributes are
/// printed, or an entity a fetcher described that the store does not hold.
enum Item {
    /// From the store, with its area name.
    Stored(EntityState, Option<String>),
    /// From a fetcher's JSON alone.
    Loose(Entity),
}

impl Item {
    fn state(&self) -> &str {
        match self {
            Self::Stored(s, _) => &s.state,
            Self::Loose(e) => &e.state,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Stored(s, _) => s.name(),
            Self::Loose(e) => &e.name,
        }
    }

    fn entity(self, cache: &AttrCache) -> Entity {
        match self {
            Self::Stored(s, area) => Entity::from_state(&s, area, cache),
            Self::Loose(e) => e,
        }
    }
}

/// Turns any accepted input into entities, in input order.
pub fn entities(sm: &StateManager, v: &Value, cache: &AttrCache) -> Vec<Entity> {
    items(sm, v).into_iter().map(|i| i.entity(cache)).collect()
}

fn items(sm: &StateManager, v: &Value) -> Vec<Item> {
    let mut out = Vec::new();
    collect(sm, v, &mut out);
    out
}

/// The store's state of `id` with its area name.
fn stored(sm: &StateManager, id: &str) -> Option<Item> {
    state_object(sm, id).map(|o| Item::Stored(o.state, o.area_name))
}

fn collect(sm: &StateManager, v: &Value, out: &mut Vec<Item>) {
    if let Some(o) = v.downcast_object_ref::<StateObject>() {
        out.push(Item::Stored(o.state.clone(), o.area_name.clone()));
        return;
    }
    match v.kind() {
        ValueKind::String => {
            if let Some(item) = v.as_str().and_then(|id| stored(sm, id)) {
                out.push(item);
            }
        }
        ValueKind::Map => {
            if let Ok(list) = v.get_attr("entities") {
                if !list.is_undefined() && !list.is_none() {
                    return collect(sm, &list, out);
                }
            }
            // Prefer the store's view: it has every attribute, units and areas.
            let id = v.get_attr("entity_id").ok();
            if let Some(item) = id
                .as_ref()
                .and_then(Value::as_str)
                .and_then(|id| stored(sm, id))
            {
                out.push(item);
                return;
            }
            if let Some(e) = loose(v) {
                out.push(Item::Loose(e));
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            if let Ok(items) = v.try_iter() {
                for item in items {
                    collect(sm, &item, out);
                }
            }
        }
        _ => {}
    }
}

/// An entity from a fetcher's JSON alone, when the store does not hold it.
fn loose(v: &Value) -> Option<Entity> {
    let json = serde_json::to_value(v).ok()?;
    let id = json.get("entity_id")?.as_str()?;
    // Fetchers give attributes either nested (HA's shape) or flat beside id, name and state.
    let attrs = json.get("attributes").cloned().unwrap_or_else(|| {
        let mut flat = json.as_object().cloned().unwrap_or_default();
        for k in ["entity_id", "name", "state"] {
            flat.remove(k);
        }
        serde_json::Value::Object(flat)
    });
    let name = attrs
        .get("friendly_name")
        .and_then(|n| n.as_str())
        .or_else(|| json.get("name").and_then(|n| n.as_str()))
        .unwrap_or(id);
    let state = json.get("state").map(plain).unwrap_or_default();
    Some(Entity::from_parts(id, name, &state, None, &attrs))
}

/// A failed fetcher's marker passes through every filter, so it stays visible.
fn marker(v: &Value) -> Option<String> {
    v.downcast_object_ref::<Unavailable>()
        .map(|_| v.to_string())
}

/// `compact`: one line per entity; `ids=true` adds entity ids.
fn compact(
    sm: &StateManager,
    cache: &AttrCache,
    v: &Value,
    kwargs: &Kwargs,
) -> Result<String, Error> {
    let with_id: Option<bool> = kwargs.get("ids")?;
    kwargs.assert_all_used()?;
    if let Some(m) = marker(v) {
        return Ok(m);
    }
    let mut out = String::new();
    for (i, e) in entities(sm, v, cache).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("- ");
        e.write_line(&mut out, with_id.unwrap_or(false));
    }
    Ok(out)
}

/// `count_by_state`: `on 3, off 2` (most common first).
fn count_by_state(sm: &StateManager, v: &Value) -> String {
    if let Some(m) = marker(v) {
        return m;
    }
    let items = items(sm, v);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &items {
        *counts.entry(e.state()).or_default() += 1;
    }
    let mut pairs: Vec<(&str, usize)> = counts.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    pairs
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `names`: `Bed Light, Kitchen Lights`.
fn names(sm: &StateManager, v: &Value) -> String {
    if let Some(m) = marker(v) {
        return m;
    }
    items(sm, v)
        .iter()
        .map(Item::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Registers the output filters.
pub fn register(env: &mut Environment<'static>, sm: &StateManager) {
    let s = sm.clone();
    let cache = AttrCache::default();
    env.add_filter("compact", move |v: Value, kwargs: Kwargs| {
        compact(&s, &cache, &v, &kwargs)
    });
    let s = sm.clone();
    env.add_filter("count_by_state", move |v: Value| count_by_state(&s, &v));
    let s = sm.clone();
    env.add_filter("names", move |v: Value| names(&s, &v));
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

    #[test]
    fn compact_line_puts_units_after_values() {
        let attrs = serde_json::json!({"unit_of_measurement": "°C", "device_class": "temperature", "friendly_name": "Out", "icon": "mdi:x"});
        let e = Entity::from_parts("sensor.out", "Out", "12.5", Some("Garden".into()), &attrs);
        assert_eq!(e.compact_line(false), "Out (Garden): 12.5 °C");
        // With ids, a name that only respells the id is left out.
        assert_eq!(e.compact_line(true), "sensor.out (Garden): 12.5 °C");
        let attrs = serde_json::json!({"device_class": "moisture"});
        let e = Entity::from_parts(
            "binary_sensor.basement_floor_wet",
            "Basement Floor Wet",
            "off",
            None,
            &attrs,
        );
        assert_eq!(
            e.compact_line(true),
            "binary_sensor.basement_floor_wet: off, device class moisture"
        );
        let attrs = serde_json::json!({"temperature": 21, "current_temperature": 19.5, "temperature_unit": "°C"});
        let e = Entity::from_parts("climate.x", "X", "heat", None, &attrs);
        assert_eq!(
            e.compact_line(true),
            "climate.x: heat, temperature 21 °C, current temperature 19.5 °C"
        );
    }
}
