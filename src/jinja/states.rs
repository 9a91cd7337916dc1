//! `states` as templates see it, with HA's meanings: callable
//! (`states('light.x')`, handled in [`super::ha`]), by domain
//! (`states.light`), by entity (`states.light.kitchen`), iterable; each
//! entity a [`StateObject`]. Every read is noted for [`super::reads`].

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

use super::reads;
use crate::state::{EntityState, Index, StateManager};

/// One entity's state as templates see it: `.state`, `.attributes`, `.name`, ….
#[derive(Debug)]
pub struct StateObject {
    /// The stored state, parsed lazily.
    pub state: EntityState,
    /// Its area id (own, else its device's), looked up when the object was made.
    pub area_id: Option<String>,
    /// That area's name.
    pub area_name: Option<String>,
    /// The JSON, parsed on first attribute access.
    json: OnceLock<serde_json::Value>,
}

impl StateObject {
    /// Wraps a state, reading its area from the registries in `ix`.
    pub fn new(ix: &Index, state: EntityState) -> Self {
        let reg = ix.registries();
        let area_id = reg.area_of(&state.entity_id).map(str::to_string);
        let area_name = area_id
            .as_deref()
            .and_then(|a| reg.area_name(a))
            .map(str::to_string);
        Self {
            state,
            area_id,
            area_name,
            json: OnceLock::new(),
        }
    }

    /// The full JSON HA sent.
    pub fn json(&self) -> &serde_json::Value {
        self.json.get_or_init(|| self.state.json())
    }

    /// The attributes object, or `null`.
    pub fn attributes(&self) -> &serde_json::Value {
        self.json()
            .get("attributes")
            .unwrap_or(&serde_json::Value::Null)
    }
}

impl Object for StateObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let s = &self.state;
        Some(match key.as_str()? {
            "entity_id" => Value::from(&*s.entity_id),
            "state" => Value::from(&*s.state),
            "domain" => Value::from(s.domain()),
            "object_id" => Value::from(s.entity_id.split_once('.').map_or("", |(_, o)| o)),
            "name" => Value::from(s.name()),
            "attributes" => Value::from_serialize(self.attributes()),
            k @ ("last_changed" | "last_updated" | "last_reported" | "context") => {
                Value::from_serialize(self.json().get(k)?)
            }
            "area_id" => Value::from(self.area_id.clone()),
            "area_name" => Value::from(self.area_name.clone()),
            _ => return None,
        })
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<state {}={}>", self.state.entity_id, self.state.state)
    }
}

/// `states`: callable (`states('light.x')`), by domain (`states.light`), iterable.
struct StatesRoot {
    /// The store.
    sm: StateManager,
}

/// `states.light`: the entities of one domain.
struct DomainStates {
    /// The store.
    sm: StateManager,
    /// The domain.
    domain: String,
}

impl std::fmt::Debug for StatesRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("states")
    }
}

impl std::fmt::Debug for DomainStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "states.{}", self.domain)
    }
}

/// State objects for the ids `ids` picks out of the index.
fn objects(sm: &StateManager, domain: Option<&str>) -> Vec<Value> {
    reads::note(sm, domain);
    let mut out = Vec::new();
    sm.store().read(&mut |ix| {
        let ids: Box<dyn Iterator<Item = &Arc<str>>> = match domain {
            Some(d) => Box::new(ix.domain_ids(d)),
            None => Box::new(ix.ids()),
        };
        out = ids
            .filter(|id| sm.sees_in(ix, id))
            .filter_map(|id| ix.get(id).cloned().flatten())
            .map(|s| Value::from_object(StateObject::new(ix, s)))
            .collect();
    });
    out
}

/// The state object of one entity, if cached.
pub fn state_object(sm: &StateManager, id: &str) -> Option<StateObject> {
    reads::note_entity(sm, id);
    let mut out = None;
    sm.store().read(&mut |ix| {
        out = ix
            .get(id)
            .filter(|_| sm.sees_in(ix, id))
            .cloned()
            .flatten()
            .map(|s| StateObject::new(ix, s))
    });
    out
}

impl Object for StatesRoot {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let domain = key.as_str()?;
        Some(Value::from_object(DomainStates {
            sm: self.sm.clone(),
            domain: domain.to_string(),
        }))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Iter(Box::new(objects(&self.sm, None).into_iter()))
    }

    fn call(self: &Arc<Self>, _state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (id,): (&str,) = minijinja::value::from_args(args)?;
        Ok(Value::from(state_of(&self.sm, id)))
    }
}

impl Object for DomainStates {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let id = format!("{}.{}", self.domain, key.as_str()?);
        state_object(&self.sm, &id).map(Value::from_object)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Iter(Box::new(objects(&self.sm, Some(&self.domain)).into_iter()))
    }
}

/// The most names `expand` looks at in one call, its arguments and the
/// groups' members together: a bound on the work one call can ask.
pub const MAX_EXPAND: usize = 100_000;

/// HA's `expand(*args)`: the state objects of the entities named (ids, state
/// objects, or lists of either), each once, in HA's order: HA takes the
/// names from the end, as a stack, and a group's members are pushed in
/// its place, so the order is not sorted (`states.light | expand` comes
/// out backwards). A group (`group.*`, or an entity whose `entity_id`
/// attribute lists members, as the group integration's light and switch
/// groups do; HA asks which integration made it, which the mirror does not
/// know) is replaced by its members, a zone by its `persons`; neither is in
/// the answer itself. What the scope does not see is skipped, as an entity
/// HA does not have is. Groups that list each other end here; HA's own
/// `expand` loops on them.
pub(super) fn expand(sm: &StateManager, args: &[Value]) -> Result<Value, Error> {
    let mut search: Vec<Value> = args.to_vec();
    let mut looked = HashSet::new();
    let mut found = Vec::new();
    let mut asked = 0;
    while let Some(v) = search.pop() {
        asked += 1;
        if asked > MAX_EXPAND {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("expand looks at {MAX_EXPAND} names at most, members included"),
            ));
        }
        let id = if let Some(id) = v.as_str() {
            id.to_string()
        } else if let Some(o) = v.downcast_object_ref::<StateObject>() {
            o.state.entity_id.to_string()
        } else {
            // A list (or anything iterable) is its items; a number, nothing.
            if let Ok(items) = v.try_iter() {
                search.extend(items);
            }
            continue;
        };
        // Each entity once: a group that lists itself, or two that list
        // each other, end here.
        if !looked.insert(id.clone()) {
            continue;
        }
        let Some(o) = state_object(sm, &id) else {
            continue;
        };
        let attrs = o.attributes();
        let members = match attrs.get("entity_id") {
            Some(m @ serde_json::Value::Array(_)) => Some(m),
            _ if o.state.domain() == "group" => attrs.get("entity_id"),
            _ if o.state.domain() == "zone" => attrs.get("persons"),
            _ => None,
        };
        match members {
            Some(m) => {
                let ids = m.as_array().into_iter().flatten();
                search.extend(ids.filter_map(|i| i.as_str()).map(Value::from));
            }
            None if matches!(o.state.domain(), "group" | "zone") => {}
            None => found.push(Value::from_object(o)),
        }
    }
    Ok(Value::from(found))
}

/// `states(id)`: the state string, `unknown` when missing.
pub(super) fn state_of(sm: &StateManager, id: &str) -> String {
    reads::note_entity(sm, id);
    sm.cached(id)
        .map_or_else(|| "unknown".to_string(), |s| s.state.to_string())
}

/// The `states` global.
pub(super) fn root(sm: &StateManager) -> Value {
    Value::from_object(StatesRoot { sm: sm.clone() })
}
