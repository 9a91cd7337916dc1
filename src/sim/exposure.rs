//! What the simulated house exposes to Assist: HA's defaults for a new
//! entity (`exposed_entities.py`: a domain in `DEFAULT_EXPOSED_DOMAINS`, a
//! door, window or motion sensor, a temperature or humidity sensor), changed
//! by `homeassistant/expose_entity` as in HA.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// HA's `DEFAULT_EXPOSED_DOMAINS`.
const DOMAINS: &[&str] = &[
    "climate",
    "cover",
    "fan",
    "humidifier",
    "light",
    "media_player",
    "scene",
    "switch",
    "todo",
    "vacuum",
    "water_heater",
];
/// HA's `DEFAULT_EXPOSED_BINARY_SENSOR_DEVICE_CLASSES`.
const BINARY_CLASSES: &[&str] = &[
    "door",
    "garage_door",
    "lock",
    "motion",
    "opening",
    "presence",
    "window",
];
/// HA's `DEFAULT_EXPOSED_SENSOR_DEVICE_CLASSES`.
const SENSOR_CLASSES: &[&str] = &[
    "aqi",
    "carbon_monoxide",
    "carbon_dioxide",
    "humidity",
    "pm10",
    "pm25",
    "temperature",
    "volatile_organic_compounds",
];

/// Settings made with `homeassistant/expose_entity`, over the defaults.
#[derive(Debug, Default)]
pub struct Exposure {
    /// entity id → exposed to Assist.
    set: HashMap<String, bool>,
}

/// Whether HA exposes an entity with this state (JSON text) by default.
fn by_default(id: &str, raw: &str) -> bool {
    let domain = id.split('.').next().unwrap_or_default();
    let class = serde_json::from_str::<Value>(raw).ok().and_then(|v| {
        v.pointer("/attributes/device_class")?
            .as_str()
            .map(str::to_string)
    });
    let class = class.as_deref().unwrap_or_default();
    DOMAINS.contains(&domain)
        || (domain == "binary_sensor" && BINARY_CLASSES.contains(&class))
        || (domain == "sensor" && SENSOR_CLASSES.contains(&class))
}

impl Exposure {
    /// Answers an exposure command, or `None` when `cmd` is not one.
    /// `states` gives every entity and its JSON text.
    pub fn answer(
        &mut self,
        cmd: &Value,
        states: &mut dyn Iterator<Item = (&str, &str)>,
    ) -> Option<Value> {
        match cmd.get("type")?.as_str()? {
            "homeassistant/expose_entity/list" => {
                let mut out = Map::new();
                for (id, raw) in states {
                    let on = self
                        .set
                        .get(id)
                        .copied()
                        .unwrap_or_else(|| by_default(id, raw));
                    if on {
                        out.insert(id.to_string(), json!({"conversation": true}));
                    }
                }
                Some(json!({ "exposed_entities": out }))
            }
            "homeassistant/expose_entity" => {
                let on = cmd.get("should_expose")?.as_bool()?;
                for id in cmd
                    .get("entity_ids")?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                {
                    self.set.insert(id.to_string(), on);
                }
                Some(Value::Null)
            }
            _ => None,
        }
    }
}
