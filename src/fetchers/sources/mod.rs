//! The sources a fetcher row can name, one file each: its params, their
//! validation and its run. A new source is a new file and one line in
//! [`ALL`]. Results are compact JSON because they end up in LLM prompts.

mod device_status;
mod entities;
mod entity;
pub mod past;
mod sql;
mod summary;
mod template;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minijinja::Environment;
use serde_json::{Map, Value};

use super::FetchError;
use crate::state::{EntityState, Read, StateError, StateManager};

/// Every source, under the name rows use.
pub const ALL: &[&dyn Kind] = &[
    &Of::<entities::Entities>::KIND,
    &Of::<entity::Entity>::KIND,
    &Of::<summary::Summary>::KIND,
    &Of::<device_status::DeviceStatus>::KIND,
    &Of::<past::history::History>::KIND,
    &Of::<past::statistics::Statistics>::KIND,
    &Of::<past::logbook::Logbook>::KIND,
    &template::Template,
    &sql::Sql,
];

/// The names rows may use, in [`ALL`]'s order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|k| k.name()).collect()
}

/// The source called `name`.
pub fn find(name: &str) -> Option<&'static dyn Kind> {
    ALL.iter().copied().find(|k| k.name() == name)
}

/// A kind of source: what a row's `source` column names.
pub trait Kind: Sync {
    /// The name rows use.
    fn name(&self) -> &'static str;
    /// Params a call cannot run without: the row must give them or list them
    /// in `required_params`.
    fn required(&self) -> &'static [&'static str] {
        &[]
    }
    /// Params only the row sets: left out of a fetcher's input schema, and
    /// refused when a call changes them (a `sql` fetcher's query).
    fn fixed(&self) -> &'static [&'static str] {
        &[]
    }
    /// The JSON Schema of its params type, for callers that describe a
    /// fetcher's inputs (the Model Context Protocol's tools); `None` when any
    /// params are accepted (a template's variables).
    fn params_schema(&self) -> Option<Value> {
        None
    }
    /// Checks a row's params (its defaults, with placeholders for the
    /// required ones) and template (`None` when empty; only a source that
    /// renders one accepts it), and makes the source ready to run, compiling
    /// what it can. `Err` is the field at fault and why.
    fn build(
        &self,
        name: &str,
        probe: &Map<String, Value>,
        template: Option<&str>,
    ) -> Result<Arc<dyn Source>, (&'static str, String)>;
}

/// A source ready to run, made from a valid row.
#[async_trait]
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Its kind's name.
    fn kind(&self) -> &'static str;
    /// Whether its result changes only with the states, so a state change is
    /// the moment to look again; `false` for data that changes unseen (a
    /// `sql` query), which watchers poll instead.
    fn follows_states(&self) -> bool {
        true
    }
    /// Computes the result for `params` (the row's defaults with the
    /// caller's on top) and says which domains it read.
    async fn run(
        &self,
        cx: &Context,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError>;
    /// Checks the row against what it will run on (a `sql` query against the
    /// live database), for `check`; `Err` is the field at fault and why.
    async fn verify(&self, _cx: &Context) -> Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// A source whose params are one serde type and which keeps nothing per row,
/// as the state sources are: one impl of this is the whole source, and
/// [`Of`] makes it a [`Kind`] and a [`Source`].
#[async_trait]
pub trait Typed: Send + Sync + 'static {
    /// The name rows use.
    const NAME: &'static str;
    /// Params a call cannot run without (see [`Kind::required`]).
    const REQUIRED: &'static [&'static str] = &[];
    /// Its params, checked by name and type.
    type Params: serde::de::DeserializeOwned + schemars::JsonSchema + Send;
    /// Whether its result changes only with the states (see
    /// [`Source::follows_states`]).
    const FOLLOWS_STATES: bool = true;
    /// What a row's params must also satisfy beyond their types.
    fn check(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }
    /// Computes the result and says which domains it read.
    async fn run(cx: &Context, params: Self::Params) -> Result<(Value, Vec<Read>), FetchError>;
}

/// A [`Typed`] source as a kind and, having no state, as the ready source.
pub struct Of<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Of<T> {
    /// The one value, for [`ALL`].
    pub const KIND: Self = Of(std::marker::PhantomData);
}

impl<T: Typed> std::fmt::Debug for Of<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(T::NAME)
    }
}

impl<T: Typed> Kind for Of<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn required(&self) -> &'static [&'static str] {
        T::REQUIRED
    }

    fn params_schema(&self) -> Option<Value> {
        schema_of::<T::Params>()
    }

    fn build(
        &self,
        _name: &str,
        probe: &Map<String, Value>,
        template: Option<&str>,
    ) -> Result<Arc<dyn Source>, (&'static str, String)> {
        no_template(T::NAME, template)?;
        let p: T::Params = checked(probe)?;
        T::check(&p).map_err(|r| ("params", r))?;
        Ok(Arc::new(Self::KIND))
    }
}

#[async_trait]
impl<T: Typed> Source for Of<T> {
    fn kind(&self) -> &'static str {
        T::NAME
    }

    fn follows_states(&self) -> bool {
        T::FOLLOWS_STATES
    }

    async fn run(
        &self,
        cx: &Context,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        T::run(cx, typed(params)?).await
    }
}

/// The `template` field's problem when a source that renders none is given one.
fn no_template(source: &str, template: Option<&str>) -> Result<(), (&'static str, String)> {
    match template {
        Some(_) => Err((
            "template",
            format!("source {source} takes no template; only source template renders one"),
        )),
        None => Ok(()),
    }
}

/// What a run may use.
pub struct Context {
    /// The states.
    pub states: StateManager,
    /// The one template language over those states.
    pub env: Arc<Environment<'static>>,
    /// Bytes a template render may grow the process by.
    pub render_memory: usize,
    /// The fetcher's timeout (a template render stops itself at it, and a
    /// `sql` query is stopped by the server just before it).
    pub timeout: Duration,
    /// The MySQL `sql` fetchers read, when one is configured.
    pub sql: Option<crate::fetchers::sql::Database>,
    /// Calls over the live link to HA, for the sources of the past.
    pub ha: crate::ha::Calls,
}

/// `params` as the source's params type; a mismatch is the caller's error.
fn typed<T: serde::de::DeserializeOwned>(params: &Map<String, Value>) -> Result<T, FetchError> {
    serde_json::from_value(Value::Object(params.clone()))
        .map_err(|e| FetchError::BadParams(e.to_string()))
}

/// As [`typed`], for validating a row: the reason is the `params` field's.
fn checked<T: serde::de::DeserializeOwned>(
    probe: &Map<String, Value>,
) -> Result<T, (&'static str, String)> {
    serde_json::from_value(Value::Object(probe.clone())).map_err(|e| ("params", e.to_string()))
}

/// The JSON Schema of `T`, as [`Kind::params_schema`] gives it.
fn schema_of<T: schemars::JsonSchema>() -> Option<Value> {
    Some(schemars::schema_for!(T).to_value())
}

fn state_err(e: StateError) -> FetchError {
    match e {
        StateError::BadEntityId(_) | StateError::BadPattern(_) => {
            FetchError::BadParams(e.to_string())
        }
        other => FetchError::Failed(other.to_string()),
    }
}

/// Attributes worth a prompt's tokens beyond id, name and state: the one
/// list the `compact` filter prints too (an entity carries only its domain's).
const USEFUL: &[&str] = &crate::jinja::EXPOSED_ATTRIBUTES;

/// `{entity_id, name, state, …useful attributes, …extra}` from a full state object.
fn entry_json(full: &Value, extra: &[String]) -> Value {
    let id = full.get("entity_id").and_then(Value::as_str).unwrap_or("");
    let attrs = full.get("attributes").and_then(Value::as_object);
    let mut out = Map::new();
    out.insert("entity_id".into(), id.into());
    let name = attrs
        .and_then(|a| a.get("friendly_name"))
        .and_then(Value::as_str)
        .or_else(|| full.get("name").and_then(Value::as_str))
        .unwrap_or(id);
    out.insert("name".into(), name.into());
    out.insert(
        "state".into(),
        full.get("state").cloned().unwrap_or(Value::Null),
    );
    let keys = USEFUL
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str));
    for k in keys {
        if let Some(v) = attrs.and_then(|a| a.get(k)).filter(|v| !v.is_null()) {
            out.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// [`entry_json`] of a stored state, parsing only the attributes it keeps.
fn entry(s: &EntityState, extra: &[String]) -> Value {
    let wanted = |k: &str| USEFUL.contains(&k) || extra.iter().any(|e| e == k);
    let mut picked = s.attributes_where(&wanted);
    let mut out = Map::new();
    out.insert("entity_id".into(), (&*s.entity_id).into());
    out.insert("name".into(), s.name().into());
    out.insert("state".into(), (&*s.state).into());
    for k in USEFUL
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        if let Some(i) = picked.iter().position(|(n, v)| n == k && !v.is_null()) {
            let (k, v) = picked.swap_remove(i);
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_of_a_stored_state_equals_compact_of_its_json() {
        let raw = include_str!("../../../tests/fixtures/home-assistant-2025.4.4/rest-states.json");
        let all: Vec<Value> = serde_json::from_str(raw).unwrap();
        let extra = ["hvac_modes".to_string(), "brightness".to_string()];
        for v in &all {
            let s = EntityState::from_raw(&v.to_string()).unwrap();
            for extra in [&[][..], &extra[..]] {
                assert_eq!(entry(&s, extra), entry_json(v, extra), "{}", s.entity_id);
            }
        }
    }
}
