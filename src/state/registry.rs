//! Home Assistant's area, entity and device registries: what templates need
//! to answer "which room is this in".
//!
//! HA sends each registry as one JSON list. We keep that text as received (it
//! is what Redis holds under `registry:{kind}`) and index only the area links.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

/// The registries we mirror, and the list of what HA exposes to Assist,
/// which HA keeps in the entity registry's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistryKind {
    Area,
    Entity,
    Device,
    /// `homeassistant/expose_entity/list`: the entities exposed to an assistant.
    Exposed,
}

impl RegistryKind {
    pub const ALL: [RegistryKind; 4] = [Self::Area, Self::Entity, Self::Device, Self::Exposed];

    /// The events HA fires when one of them changes, each once.
    pub const EVENTS: [&'static str; 3] = [
        "area_registry_updated",
        "entity_registry_updated",
        "device_registry_updated",
    ];

    /// The WebSocket command that lists it.
    pub fn command(self) -> &'static str {
        match self {
            Self::Area => "config/area_registry/list",
            Self::Entity => "config/entity_registry/list_for_display",
            Self::Device => "config/device_registry/list",
            Self::Exposed => "homeassistant/expose_entity/list",
        }
    }

    /// The event HA fires when it changes: exposing an entity is an update
    /// of its registry entry's options. (An entity outside the registry
    /// fires none; the session also lists exposure on a timer.)
    pub fn event(self) -> &'static str {
        match self {
            Self::Area => "area_registry_updated",
            Self::Entity | Self::Exposed => "entity_registry_updated",
            Self::Device => "device_registry_updated",
        }
    }

    /// The kinds an `*_registry_updated` event names.
    pub fn from_event(event: &str) -> impl Iterator<Item = Self> + '_ {
        Self::ALL.into_iter().filter(move |k| k.event() == event)
    }

    /// The key suffix in Redis (`registry:{name}`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Area => "area",
            Self::Entity => "entity",
            Self::Device => "device",
            Self::Exposed => "exposed",
        }
    }
}

/// The assistant whose exposure scopes follow: Assist, HA's `conversation`.
pub const ASSISTANT: &str = "conversation";

/// Why a registry list could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?} registry is not in the expected shape: {source}")]
pub struct RegistryError {
    kind: RegistryKind,
    source: serde_json::Error,
}

#[derive(Deserialize)]
struct AreaRow {
    area_id: String,
    name: String,
}

#[derive(Deserialize)]
struct DeviceRow {
    id: String,
    #[serde(default)]
    area_id: Option<String>,
}

/// `list_for_display` uses short keys: `ei` entity id, `ai` area id, `di` device id.
#[derive(Deserialize)]
struct EntityRow {
    ei: String,
    #[serde(default)]
    ai: Option<String>,
    #[serde(default)]
    di: Option<String>,
}

#[derive(Deserialize)]
struct EntityList {
    entities: Vec<EntityRow>,
}

/// `{"exposed_entities": {"light.x": {"conversation": true}}}`.
#[derive(Deserialize)]
struct ExposedList {
    exposed_entities: HashMap<String, HashMap<String, bool>>,
}

/// The registries as HA last sent them, with the area links indexed.
#[derive(Debug, Default, Clone)]
pub struct Registries {
    /// The JSON text per kind, as received; what Redis stores.
    raw: BTreeMap<RegistryKind, Arc<str>>,
    /// area id → area name.
    areas: BTreeMap<String, String>,
    /// device id → its area id.
    device_area: HashMap<String, String>,
    /// entity id → (its own area, its device).
    entities: HashMap<String, (Option<String>, Option<String>)>,
    /// The entities exposed to Assist; `None` until HA has said. Asked per
    /// entity of every scoped listing: the fast hasher.
    exposed: Option<HashSet<String, foldhash::fast::RandomState>>,
}

impl Registries {
    /// Replaces one registry with HA's list; the old one stays on a parse error.
    pub fn set(&mut self, kind: RegistryKind, raw: Arc<str>) -> Result<(), RegistryError> {
        let err = |source| RegistryError { kind, source };
        match kind {
            RegistryKind::Area => {
                let rows: Vec<AreaRow> = serde_json::from_str(&raw).map_err(err)?;
                self.areas = rows.into_iter().map(|a| (a.area_id, a.name)).collect();
            }
            RegistryKind::Device => {
                let rows: Vec<DeviceRow> = serde_json::from_str(&raw).map_err(err)?;
                self.device_area = rows
                    .into_iter()
                    .filter_map(|d| Some((d.id, d.area_id?)))
                    .collect();
            }
            RegistryKind::Entity => {
                let list: EntityList = serde_json::from_str(&raw).map_err(err)?;
                self.entities = list
                    .entities
                    .into_iter()
                    .map(|e| (e.ei, (e.ai, e.di)))
                    .collect();
            }
            RegistryKind::Exposed => {
                let list: ExposedList = serde_json::from_str(&raw).map_err(err)?;
                let exposed = list
                    .exposed_entities
                    .into_iter()
                    .filter(|(_, to)| to.get(ASSISTANT) == Some(&true))
                    .map(|(id, _)| id);
                self.exposed = Some(exposed.collect());
            }
        }
        self.raw.insert(kind, raw);
        Ok(())
    }

    /// The JSON text of one registry, if received.
    pub fn raw(&self, kind: RegistryKind) -> Option<&Arc<str>> {
        self.raw.get(&kind)
    }

    /// The area id of an entity: its own, else its device's.
    pub fn area_of(&self, entity_id: &str) -> Option<&str> {
        let (own, device) = self.entities.get(entity_id)?;
        own.as_deref()
            .or_else(|| self.device_area.get(device.as_deref()?).map(String::as_str))
    }

    /// An area's name.
    pub fn area_name(&self, area_id: &str) -> Option<&str> {
        self.areas.get(area_id).map(String::as_str)
    }

    /// The area id for an area id or an area name (case-insensitive).
    pub fn area_id(&self, id_or_name: &str) -> Option<&str> {
        if let Some((id, _)) = self.areas.get_key_value(id_or_name) {
            return Some(id);
        }
        self.areas
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(id_or_name))
            .map(|(id, _)| id.as_str())
    }

    /// Entity ids in an area (by id or name), sorted.
    pub fn area_entities(&self, area: &str) -> Vec<String> {
        let Some(area) = self.area_id(area) else {
            return Vec::new();
        };
        let mut out: Vec<String> = self
            .entities
            .keys()
            .filter(|e| self.area_of(e) == Some(area))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Whether HA exposes `entity_id` to Assist. Exactly the entities HA's
    /// `homeassistant/expose_entity/list` names for `conversation`: HA
    /// settles an entity of its registry when the entity is created, so the
    /// list holds them all; one outside the registry (a state set over REST)
    /// is listed once HA has decided for it, and until then is not exposed.
    /// Nothing is before HA has answered.
    pub fn exposed(&self, entity_id: &str) -> bool {
        self.exposed.as_ref().is_some_and(|e| e.contains(entity_id))
    }

    /// The exposed entities, sorted; `None` until HA has said.
    pub fn exposed_ids(&self) -> Option<Vec<String>> {
        let mut ids: Vec<String> = self.exposed.as_ref()?.iter().cloned().collect();
        ids.sort();
        Some(ids)
    }

    /// Every area as (id, name), sorted by id.
    pub fn areas(&self) -> impl Iterator<Item = (&str, &str)> {
        self.areas.iter().map(|(i, n)| (i.as_str(), n.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_area_is_its_own_else_its_devices() {
        let mut r = Registries::default();
        r.set(
            RegistryKind::Area,
            r#"[{"area_id":"kitchen","name":"Kitchen"},{"area_id":"bedroom","name":"Bedroom"}]"#
                .into(),
        )
        .unwrap();
        r.set(
            RegistryKind::Device,
            r#"[{"id":"d1","area_id":"bedroom"},{"id":"d2","area_id":null}]"#.into(),
        )
        .unwrap();
        r.set(
            RegistryKind::Entity,
            r#"{"entities":[{"ei":"light.a","di":"d1"},{"ei":"light.b","di":"d1","ai":"kitchen"},{"ei":"light.c","di":"d2"}]}"#.into(),
        )
        .unwrap();
        assert_eq!(r.area_of("light.a"), Some("bedroom"));
        assert_eq!(r.area_of("light.b"), Some("kitchen"));
        assert_eq!(r.area_of("light.c"), None);
        assert_eq!(r.area_id("KITCHEN"), Some("kitchen"));
        assert_eq!(r.area_entities("Bedroom"), vec!["light.a"]);
        assert!(r.set(RegistryKind::Area, "{}".into()).is_err());
        assert_eq!(r.area_name("kitchen"), Some("Kitchen"));
    }
}
