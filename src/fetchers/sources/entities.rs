//! `entities`: a filtered listing (domain, state, glob pattern, area), with
//! counts per state if asked.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{entry, state_err, Context, Typed};
use crate::fetchers::FetchError;
use crate::state::{Glob, Query, Read};

/// The default cap on listed entities.
pub const DEFAULT_LIMIT: usize = 200;

/// Params of the `entities` source: a filtered listing.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Only this domain (`light`).
    pub domain: Option<String>,
    /// Only this state (`on`).
    pub state: Option<String>,
    /// A glob over entity id and friendly name.
    pub pattern: Option<String>,
    /// Only entities in this area (id or name; an entity's own area, else its device's).
    pub area: Option<String>,
    /// Add counts per state.
    #[serde(default)]
    pub breakdown: bool,
    /// Leave out the entity list (counts only).
    #[serde(default)]
    pub counts_only: bool,
    /// Extra attribute names to include per entity.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// The most entities listed.
    pub limit: Option<usize>,
}

/// The source.
pub struct Entities;

#[async_trait]
impl Typed for Entities {
    const NAME: &'static str = "entities";
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        match &p.pattern {
            Some(pat) => Glob::new(pat)
                .map(drop)
                .map_err(|e| format!("pattern: {e}")),
            None => Ok(()),
        }
    }

    async fn run(cx: &Context, p: Params) -> Result<(Value, Vec<Read>), FetchError> {
        let states = &cx.states;
        let pattern = match &p.pattern {
            Some(s) => {
                Some(Glob::new(s).map_err(|e| FetchError::BadParams(format!("pattern: {e}")))?)
            }
            None => None,
        };
        let read = Read::of(states, p.domain.as_deref());
        let q = Query {
            domain: p.domain.clone(),
            state: p.state.clone(),
            pattern,
        };
        let mut found = states.list(&q).await.map_err(state_err)?;
        if let Some(area) = &p.area {
            let inside = states.area_entities(area).ok_or_else(|| {
                FetchError::BadParams(format!(
                    "area: no area {area:?} in Home Assistant's area registry"
                ))
            })?;
            found.retain(|s| inside.contains(&*s.entity_id));
        }
        let mut out = Map::new();
        out.insert("count".into(), found.len().into());
        if p.breakdown {
            let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &found {
                *by_state.entry(&s.state).or_default() += 1;
            }
            out.insert("by_state".into(), json!(by_state));
        }
        if !p.counts_only {
            let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
            let list: Vec<Value> = found
                .iter()
                .take(limit)
                .map(|s| entry(s, &p.attributes))
                .collect();
            if found.len() > limit {
                out.insert("truncated".into(), true.into());
            }
            out.insert("entities".into(), Value::Array(list));
        }
        Ok((Value::Object(out), vec![read]))
    }
}
