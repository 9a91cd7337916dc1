//! The `template` source: an author's minijinja over the states.
//!
//! Sandboxed by construction: no loader (no file access), no network or
//! environment functions, fuel and recursion limits, and a cap on output.
//! Reads go through [`Reader`], which records the domain generations it saw
//! so the result cache knows exactly when the result goes stale.

use std::sync::Arc;

use minijinja::value::{Object, Value as JValue};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::sources::{self, Read};
use crate::state::{Query, StateManager};

/// Instructions one render may execute; stops runaway loops long before the timeout matters.
pub const FUEL: u64 = 2_000_000;
/// Nesting depth of macros, includes and data.
pub const RECURSION_LIMIT: usize = 64;
/// The most output one render may produce (results go into LLM prompts).
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// The context variable that carries the reader; not meant for authors.
const READER_VAR: &str = "__reader";

/// A compiled template with its own environment.
#[derive(Debug)]
pub struct Compiled {
    /// Holds the one template, under the fetcher's name.
    env: Environment<'static>,
    /// The fetcher's name, the template's key in `env`.
    name: String,
}

/// Read access for one render; remembers what it read.
pub struct Reader {
    /// The states.
    states: StateManager,
    /// Domains read and their generations at read time.
    reads: Mutex<Vec<Read>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl Object for Reader {}

fn reader(state: &State) -> Result<Arc<Reader>, Error> {
    state
        .lookup(READER_VAR)
        .and_then(|v| v.downcast_object::<Reader>())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no state reader"))
}

/// An entity as templates see it: HA's object plus `name` and `domain`.
fn template_entity(s: &crate::state::EntityState) -> Value {
    let mut v = s.json();
    if let Value::Object(m) = &mut v {
        m.insert("name".into(), s.name().into());
        m.insert("domain".into(), s.domain().into());
    }
    v
}

/// `states()` or `states("light")`: entities sorted by id.
fn states_fn(state: &State, domain: Option<String>) -> Result<JValue, Error> {
    let r = reader(state)?;
    r.reads.lock().push(Read::of(&r.states, domain.as_deref()));
    let q = Query {
        domain,
        ..Default::default()
    };
    let (mut found, _) = r.states.scan(&q);
    found.sort_by(|a, b| a.entity_id.cmp(&b.entity_id));
    let list: Vec<Value> = found.iter().map(template_entity).collect();
    Ok(JValue::from_serialize(&list))
}

/// `state("light.kitchen")`: one entity, or none.
fn state_fn(state: &State, entity_id: String) -> Result<JValue, Error> {
    let r = reader(state)?;
    let d = crate::state::domain_of(&entity_id).to_string();
    r.reads.lock().push(Read::of(&r.states, Some(&d)));
    Ok(match r.states.cached(&entity_id) {
        Some(s) => JValue::from_serialize(template_entity(&s)),
        None => JValue::from(()),
    })
}

/// `is_state("light.kitchen", "on")`.
fn is_state_fn(state: &State, entity_id: String, want: String) -> Result<bool, Error> {
    let s = state_fn(state, entity_id)?;
    Ok(s.get_attr("state")
        .ok()
        .and_then(|v| v.as_str().map(|x| x == want))
        == Some(true))
}

/// `x | number`: a float, or none when `x` is not numeric (HA states are strings).
fn number_filter(v: JValue) -> JValue {
    if let Some(s) = v.as_str() {
        return s
            .trim()
            .parse::<f64>()
            .map(JValue::from)
            .unwrap_or(JValue::from(()));
    }
    match f64::try_from(v) {
        Ok(f) => JValue::from(f),
        Err(_) => JValue::from(()),
    }
}

/// `compact(entity)` or `entity | compact`: the short form lists use (id, name, state, key attributes).
fn compact_filter(v: JValue) -> Result<JValue, Error> {
    let json: Value = serde_json::to_value(&v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(JValue::from_serialize(sources::compact_json(&json, &[])))
}

impl Compiled {
    /// Compiles `source`; `Err` is the syntax error, with line, for `check`.
    pub fn new(name: &str, source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.add_function("states", states_fn);
        env.add_function("state", state_fn);
        env.add_function("is_state", is_state_fn);
        env.add_filter("number", number_filter);
        env.add_filter("compact", compact_filter);
        env.add_function("compact", compact_filter);
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| describe(&e))?;
        Ok(Self {
            env,
            name: name.to_string(),
        })
    }

    /// Renders with `params`; output that parses as JSON is returned as JSON, else as a string.
    pub fn render(
        &self,
        states: &StateManager,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), String> {
        let tmpl = self
            .env
            .get_template(&self.name)
            .map_err(|e| describe(&e))?;
        let reader = Arc::new(Reader {
            states: states.clone(),
            reads: Mutex::new(Vec::new()),
        });
        let ctx = minijinja::context! {
            params => JValue::from_serialize(params),
            __reader => JValue::from_dyn_object(reader.clone()),
        };
        let out = tmpl.render(ctx).map_err(|e| describe(&e))?;
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(format!(
                "output is {} bytes, more than {MAX_OUTPUT_BYTES}",
                out.len()
            ));
        }
        let out = out.trim();
        let value = serde_json::from_str(out).unwrap_or_else(|_| Value::String(out.to_string()));
        let reads = std::mem::take(&mut *reader.reads.lock());
        Ok((value, reads))
    }
}

/// One line: the error and where it is.
fn describe(e: &Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}
