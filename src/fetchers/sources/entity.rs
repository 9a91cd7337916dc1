//! `entity`: one entity, with all its attributes but the noisy ones.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{entry_json, state_err, Context, Typed};
use crate::fetchers::FetchError;
use crate::state::Read;

/// Params of the `entity` source: one entity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The entity to read; required.
    pub entity_id: Option<String>,
}

/// The source.
pub struct Entity;

#[async_trait]
impl Typed for Entity {
    const NAME: &'static str = "entity";
    const REQUIRED: &'static [&'static str] = &["entity_id"];
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        match &p.entity_id {
            Some(id) if !crate::state::valid_entity_id(id) => {
                Err(format!("entity_id {id:?} is not a valid entity id"))
            }
            _ => Ok(()),
        }
    }

    async fn run(cx: &Context, p: Params) -> Result<(Value, Vec<Read>), FetchError> {
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
