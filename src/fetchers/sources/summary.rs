//! `summary`: cache health and statistics.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Context, Typed};
use crate::fetchers::FetchError;
use crate::state::Read;

/// Params of the `summary` source: none.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The source.
pub struct Summary;

#[async_trait]
impl Typed for Summary {
    const NAME: &'static str = "summary";
    type Params = Params;

    async fn run(cx: &Context, _p: Params) -> Result<(Value, Vec<Read>), FetchError> {
        let read = Read::of(&cx.states, None);
        let v = serde_json::to_value(cx.states.summary())
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        Ok((v, vec![read]))
    }
}
