//! Home Assistant's template functions, with HA's names and meanings:
//! `is_state`, `state_attr`, `has_value`, areas and the forgiving number
//! conversions here; `states` and `expand` in [`super::states`], time in
//! [`super::time`].

use minijinja::value::{Rest, Value};
use minijinja::{Environment, Error};

use super::states::{self, state_of};
use super::{invalid, reads, time};
use crate::state::StateManager;

/// States HA treats as "no value" in `has_value`.
const NO_VALUE: [&str; 2] = ["unknown", "unavailable"];

/// An attribute of an entity, as a template value.
fn attr_of(sm: &StateManager, id: &str, name: &str) -> Value {
    reads::note_entity(sm, id);
    sm.cached(id)
        .and_then(|s| s.json().get("attributes")?.get(name).cloned())
        .map_or(Value::from(()), Value::from_serialize)
}

/// Whether `got` equals `want`, or is one of `want` when it is a list.
fn matches(got: &Value, want: &Value) -> bool {
    if want.kind() == minijinja::value::ValueKind::Seq {
        want.try_iter().is_ok_and(|mut it| it.any(|w| &w == got))
    } else {
        got == want
    }
}

/// HA's forgiving `float`: `float(x, default)`; the default may be `none`.
fn to_float(v: Value, default: Rest<Value>) -> Result<Value, Error> {
    let parsed = match v.as_str() {
        Some(s) => s.trim().parse::<f64>().ok(),
        None if v.kind() == minijinja::value::ValueKind::Bool => Some(f64::from(v.is_true() as u8)),
        None => f64::try_from(v.clone()).ok(),
    };
    match (parsed, default.first()) {
        (Some(f), _) => Ok(Value::from(f)),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(invalid("float", &v)),
    }
}

/// HA's forgiving `int`: `"3.7"` is 3, like Jinja's.
fn to_int(v: Value, default: Rest<Value>) -> Result<Value, Error> {
    let parsed = match v.as_str() {
        Some(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().map(|f| f.trunc() as i64))
        }
        None if v.kind() == minijinja::value::ValueKind::Bool => Some(v.is_true() as i64),
        None => i64::try_from(v.clone())
            .ok()
            .or_else(|| f64::try_from(v.clone()).ok().map(|f| f.trunc() as i64)),
    };
    match (parsed, default.first()) {
        (Some(i), _) => Ok(Value::from(i)),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(invalid("int", &v)),
    }
}

/// Names this module adds, so reference finding does not take them for fetchers.
pub const GLOBALS: &[&str] = &[
    "states",
    "is_state",
    "state_attr",
    "is_state_attr",
    "has_value",
    "now",
    "utcnow",
    "as_timestamp",
    "relative_time",
    "time_since",
    "iif",
    "float",
    "int",
    "area_entities",
    "area_name",
    "area_id",
    "areas",
    "expand",
];

/// Registers every HA function (and the filter forms HA offers) on `env`.
/// A flat list, one registration per function, kept in one place so the set
/// of names matches [`GLOBALS`] at a glance.
pub fn register(env: &mut Environment<'static>, sm: &StateManager) {
    env.add_global("states", states::root(sm));

    let s = sm.clone();
    let expand = move |args: Rest<Value>| states::expand(&s, &args);
    env.add_function("expand", expand.clone());
    env.add_filter("expand", expand);

    let s = sm.clone();
    let is_state = move |id: &str, want: Value| matches(&Value::from(state_of(&s, id)), &want);
    env.add_function("is_state", is_state.clone());
    env.add_filter("is_state", is_state.clone());
    env.add_test("is_state", is_state);

    let s = sm.clone();
    let state_attr = move |id: &str, name: &str| attr_of(&s, id, name);
    env.add_function("state_attr", state_attr.clone());
    env.add_filter("state_attr", state_attr);

    let s = sm.clone();
    let is_state_attr =
        move |id: &str, name: &str, want: Value| matches(&attr_of(&s, id, name), &want);
    env.add_function("is_state_attr", is_state_attr.clone());
    env.add_test("is_state_attr", is_state_attr);

    let s = sm.clone();
    let has_value = move |id: &str| {
        s.cached(id)
            .is_some_and(|st| !NO_VALUE.contains(&&*st.state))
    };
    env.add_function("has_value", has_value.clone());
    env.add_filter("has_value", has_value.clone());
    env.add_test("has_value", has_value);

    time::register(env);

    let iif =
        |v: Value, if_true: Option<Value>, if_false: Option<Value>, if_none: Option<Value>| {
            let if_false = if_false.unwrap_or(Value::from(false));
            if v.is_none() || v.is_undefined() {
                if_none.unwrap_or(if_false)
            } else if v.is_true() {
                if_true.unwrap_or(Value::from(true))
            } else {
                if_false
            }
        };
    env.add_function("iif", iif);
    env.add_filter("iif", iif);

    env.add_function("float", to_float);
    env.add_filter("float", to_float);
    env.add_function("int", to_int);
    env.add_filter("int", to_int);

    let s = sm.clone();
    let area_entities = move |area: &str| {
        reads::note(&s, None);
        let mut out = Vec::new();
        s.store().read(&mut |ix| {
            out = ix.registries().area_entities(area);
            out.retain(|id| s.sees_in(ix, id));
        });
        Value::from(out)
    };
    env.add_function("area_entities", area_entities.clone());
    env.add_filter("area_entities", area_entities);

    let s = sm.clone();
    let area_name = move |lookup: &str| {
        reads::note(&s, None);
        let mut out = None;
        s.store().read(&mut |ix| {
            let reg = ix.registries();
            // An entity outside the scope has no area, as it has no state.
            let of = || reg.area_of(lookup).filter(|_| s.sees_in(ix, lookup));
            let area = reg.area_id(lookup).or_else(of);
            out = area.and_then(|a| reg.area_name(a)).map(str::to_string);
        });
        Value::from(out)
    };
    env.add_function("area_name", area_name.clone());
    env.add_filter("area_name", area_name);

    let s = sm.clone();
    let area_id = move |lookup: &str| {
        reads::note(&s, None);
        let mut out = None;
        s.store().read(&mut |ix| {
            let reg = ix.registries();
            let of = || reg.area_of(lookup).filter(|_| s.sees_in(ix, lookup));
            out = reg.area_id(lookup).or_else(of).map(str::to_string);
        });
        Value::from(out)
    };
    env.add_function("area_id", area_id.clone());
    env.add_filter("area_id", area_id);

    let s = sm.clone();
    env.add_function("areas", move || {
        reads::note(&s, None);
        let mut out = Vec::new();
        s.store().read(&mut |ix| {
            out = ix
                .registries()
                .areas()
                .map(|(id, _)| id.to_string())
                .collect()
        });
        Value::from(out)
    });
}
