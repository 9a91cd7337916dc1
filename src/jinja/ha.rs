//! Home Assistant's template functions, with HA's names and meanings, read
//! from the state store: `states`, `is_state`, `state_attr`, areas, time and
//! the forgiving number conversions.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, FixedOffset, Local, TimeZone};
use minijinja::value::{Enumerator, Object, ObjectRepr, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use super::reads;
use crate::state::{EntityState, Index, StateManager};

/// States HA treats as "no value" in `has_value`.
const NO_VALUE: [&str; 2] = ["unknown", "unavailable"];

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

/// `states(id)`: the state string, `unknown` when missing.
fn state_of(sm: &StateManager, id: &str) -> String {
    reads::note_entity(sm, id);
    sm.cached(id)
        .map_or_else(|| "unknown".to_string(), |s| s.state.to_string())
}

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

/// A timestamp value: `now()` and what the time functions return.
#[derive(Debug)]
pub struct DateTimeValue(pub DateTime<FixedOffset>);

impl Object for DateTimeValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        Some(Value::from(match key.as_str()? {
            "year" => t.year() as i64,
            "month" => t.month() as i64,
            "day" => t.day() as i64,
            "hour" => t.hour() as i64,
            "minute" => t.minute() as i64,
            "second" => t.second() as i64,
            "microsecond" => (t.nanosecond() / 1000) as i64,
            _ => return None,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        use chrono::Datelike;
        match method {
            "timestamp" => Ok(Value::from(self.0.timestamp_micros() as f64 / 1e6)),
            "isoformat" => Ok(Value::from(self.0.to_rfc3339())),
            "weekday" => Ok(Value::from(self.0.weekday().num_days_from_monday())),
            "strftime" => {
                let (fmt,): (&str,) = minijinja::value::from_args(args)?;
                let items: Vec<_> = chrono::format::StrftimeItems::new(fmt).collect();
                if items.contains(&chrono::format::Item::Error) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("strftime: bad format {fmt:?}"),
                    ));
                }
                Ok(Value::from(
                    self.0.format_with_items(items.into_iter()).to_string(),
                ))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Python's str(datetime), which is what HA templates print.
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f%:z"))
    }
}

/// The local time now.
fn now_local() -> DateTime<FixedOffset> {
    Local::now().fixed_offset()
}

/// Reads a time from a `now()` value, an ISO string, or Unix seconds.
fn to_datetime(v: &Value) -> Option<DateTime<FixedOffset>> {
    if let Some(d) = v.downcast_object_ref::<DateTimeValue>() {
        return Some(d.0);
    }
    if let Some(s) = v.as_str() {
        let s = s.trim();
        return DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
            .ok();
    }
    let secs = f64::try_from(v.clone()).ok()?;
    let t = chrono::Utc.timestamp_micros((secs * 1e6) as i64).single()?;
    Some(t.fixed_offset())
}

/// HA's humanised span: `5 minutes`, `2 hours`, with `precision` units.
fn humanize(mut secs: i64, precision: usize) -> String {
    const UNITS: [(&str, i64); 6] = [
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut parts = Vec::new();
    for (name, size) in UNITS {
        if parts.len() == precision.max(1) {
            break;
        }
        let n = secs / size;
        if n > 0 || (size == 1 && parts.is_empty()) {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
            secs -= n * size;
        }
    }
    parts.join(" ")
}

fn invalid(func: &str, v: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{func} got invalid input {v} and no default was given"),
    )
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
];

/// Registers every HA function (and the filter forms HA offers) on `env`.
pub fn register(env: &mut Environment<'static>, sm: &StateManager) {
    env.add_global("states", Value::from_object(StatesRoot { sm: sm.clone() }));

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

    env.add_function("now", || Value::from_object(DateTimeValue(now_local())));
    env.add_function("utcnow", || {
        Value::from_object(DateTimeValue(chrono::Utc::now().fixed_offset()))
    });

    let as_timestamp = |v: Value, default: Option<Value>| match to_datetime(&v) {
        Some(t) => Ok(Value::from(t.timestamp_micros() as f64 / 1e6)),
        None => default.ok_or_else(|| invalid("as_timestamp", &v)),
    };
    env.add_function("as_timestamp", as_timestamp);
    env.add_filter("as_timestamp", as_timestamp);

    // HA gives the datetime back unchanged when it is in the future.
    let relative_time = |v: Value| match to_datetime(&v) {
        Some(t) if t <= now_local() => Value::from(humanize((now_local() - t).num_seconds(), 1)),
        _ => v,
    };
    env.add_function("relative_time", relative_time);
    env.add_filter("relative_time", relative_time);

    let time_since = |v: Value, precision: Option<usize>| match to_datetime(&v) {
        Some(t) if t <= now_local() => Value::from(humanize(
            (now_local() - t).num_seconds(),
            precision.unwrap_or(1),
        )),
        _ => v,
    };
    env.add_function("time_since", time_since);
    env.add_filter("time_since", time_since);

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
        s.store()
            .read(&mut |ix| out = ix.registries().area_entities(area));
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
            let area = reg.area_id(lookup).or_else(|| reg.area_of(lookup));
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
            out = reg
                .area_id(lookup)
                .or_else(|| reg.area_of(lookup))
                .map(str::to_string);
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

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn humanize_like_ha() {
        assert_eq!(humanize(0, 1), "0 seconds");
        assert_eq!(humanize(61, 1), "1 minute");
        assert_eq!(humanize(7300, 2), "2 hours 1 minute");
        assert_eq!(humanize(86400 * 3, 1), "3 days");
    }
}
