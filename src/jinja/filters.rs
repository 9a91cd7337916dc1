//! Token-lean output filters: a list of states in, short text out.
//!
//! Input may be state objects (`states.light`), fetcher results (lists of HA
//! state JSON, or objects with an `entities` list) or entity ids. Each entity
//! becomes one line with its name, state with unit, area and the attributes
//! Home Assistant's LLM API exposes — nothing else.

use std::collections::BTreeMap;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error};

use super::entity::{plain, AttrCache, Entity};
use super::marker::Unavailable;
use super::states::{state_object, StateObject};
use crate::state::EntityState;
use crate::state::StateManager;

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
