//! `entity`: one entity, with all its attributes but the noisy ones.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{checked, entry_json, state_err, typed, Context, Kind, Source};
use crate::fetchers::FetchError;
use crate::state::Read;

/// Params of the `entity` source: one entity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The entity to read; required.
    pub entity_id: Option<String>,
}

/// The kind, and (having no state) the ready source too.
#[derive(Debug)]
pub struct Entity;

impl Kind for Entity {
    fn name(&self) -> &'static str {
        "entity"
    }

    fn params_schema(&self) -> Option<Value> {
        super::schema_of::<Params>()
    }

    fn required(&self) -> &'static [&'static str] {
        &["entity_id"]
    }

    fn build(
        &self,
        _name: &str,
        probe: &Map<String, Value>,
        _template: Option<&str>,
    ) -> Result<Arc<dyn Source>, (&'static str, String)> {
        let p: Params = checked(probe)?;
        if let Some(id) = &p.entity_id {
            if !crate::state::valid_entity_id(id) {
                return Err((
                    "params",
                    format!("entity_id {id:?} is not a valid entity id"),
                ));
            }
        }
        Ok(Arc::new(Entity))
    }
}

#[async_trait]
impl Source for Entity {
    fn kind(&self) -> &'static str {
        self.name()
    }

    async fn run(
        &self,
        cx: &Context,
        params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        let p: Params = typed(params)?;
        let states = &cx.states;
        let id = p
            .entity_id
            .ok_or_else(|| FetchError::BadParams("missing required param entity_id".into()))?;
        let read = Read::of(states, Some(crate::state::domain_of(&id)));
        let s = states.get(&id).await.map_err(state_err)?;
        let full = s.json();
        let mut out = entry_json(&full, &[]);
        if let (Value::Object(o), Some(Value::Object(attrs))) = (&mut out, full.get("attributes")) {
            let mut rest = attrs.clone();
            for k in [
                "friendly_name",
                "supported_features",
                "entity_picture",
                "icon",
            ] {
                rest.remove(k);
            }
            o.insert("attributes".into(), Value::Object(rest));
            if let Some(lc) = full.get("last_changed") {
                o.insert("last_changed".into(), lc.clone());
            }
        }
        Ok((out, vec![read]))
    }
}
