//! `summary`: cache health and statistics.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{checked, Context, Kind, Source};
use crate::fetchers::FetchError;
use crate::state::Read;

/// Params of the `summary` source: none.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The kind, and (having no state) the ready source too.
#[derive(Debug)]
pub struct Summary;

impl Kind for Summary {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn params_schema(&self) -> Option<Value> {
        super::schema_of::<Params>()
    }

    fn build(
        &self,
        _name: &str,
        probe: &Map<String, Value>,
        _template: Option<&str>,
    ) -> Result<Arc<dyn Source>, (&'static str, String)> {
        let _: Params = checked(probe)?;
        Ok(Arc::new(Summary))
    }
}

#[async_trait]
impl Source for Summary {
    fn kind(&self) -> &'static str {
        self.name()
    }

    async fn run(
        &self,
        cx: &Context,
        _params: &Map<String, Value>,
    ) -> Result<(Value, Vec<Read>), FetchError> {
        let read = Read::of(&cx.states, None);
        let v = serde_json::to_value(cx.states.summary())
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        Ok((v, vec![read]))
    }
}
