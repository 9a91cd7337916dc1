//! `device_status`: link mode (live WebSocket vs REST fallback), counts per
//! domain and state, and the entities HA lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Context, Typed};
use crate::fetchers::FetchError;
use crate::state::Read;

/// The most unavailable entities `device_status` names.
pub const MAX_UNAVAILABLE_LISTED: usize = 50;
/// The most states `device_status` counts per domain; the rest are `other`.
pub const MAX_STATES_PER_DOMAIN: usize = 8;

/// Params of the `device_status` source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Domains to break down; all when empty.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// The source.
pub struct DeviceStatus;

#[async_trait]
impl Typed for DeviceStatus {
    const NAME: &'static str = "device_status";
    type Params = Params;

    async fn run(cx: &Context, p: Params) -> Result<(Value, Vec<Read>), FetchError> {
        let states = &cx.states;
        let read = Read::of(states, None);
        let summary = states.summary();
        // Live means events are streaming in; otherwise reads are served from the
        // cache and misses from HA's REST API.
        let mode = if summary.connected {
            "websocket"
        } else {
            "rest_fallback"
        };
        let in_scope = |domain: &str| p.domains.is_empty() || p.domains.iter().any(|d| d == domain);
        let domains: Vec<Value> = states
            .domains()
            .into_iter()
            .filter(|d| in_scope(&d.domain))
            .map(|d| json!({"domain": d.domain, "count": d.count, "states": top_states(d.states)}))
            .collect();
        // `unknown` is a button's or a notifier's normal state; `unavailable` means
        // HA lost the device, which is what needs attention. One pass for both.
        let mut unavailable: Vec<Arc<str>> = Vec::new();
        let mut unknown_count = 0;
        states.store().read(&mut |ix| {
            let seen = ix
                .slots()
                .filter(|(id, _, e)| states.sees_entry(ix, id, *e));
            for s in seen.filter_map(|(_, slot, _)| slot.as_ref()) {
                match &*s.state {
                    "unavailable" if in_scope(s.domain()) => unavailable.push(s.entity_id.clone()),
                    "unknown" if in_scope(s.domain()) => unknown_count += 1,
                    _ => {}
                }
            }
        });
        unavailable.sort_unstable();
        let v = json!({
            "mode": mode,
            "connected": summary.connected,
            "ha_version": summary.ha_version,
            "last_event_age_secs": summary.last_event_age_secs,
            "entity_count": summary.entity_count,
            "unavailable_count": unavailable.len(),
            "unavailable": unavailable.iter().take(MAX_UNAVAILABLE_LISTED).collect::<Vec<_>>(),
            "unknown_count": unknown_count,
            "domains": domains,
        });
        Ok((v, vec![read]))
    }
}

/// The most common states of a domain, the rest summed as `other`: a sensor
/// domain has a state per reading, and a prompt wants none of them.
fn top_states(states: BTreeMap<String, usize>) -> Map<String, Value> {
    let mut pairs: Vec<(String, usize)> = states.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let other: usize = pairs.iter().skip(MAX_STATES_PER_DOMAIN).map(|p| p.1).sum();
    pairs.truncate(MAX_STATES_PER_DOMAIN);
    let mut out: Map<String, Value> = pairs.into_iter().map(|(k, n)| (k, n.into())).collect();
    if other > 0 {
        out.insert("other".into(), other.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_states_keeps_the_most_common_and_sums_the_rest() {
        let mut states: BTreeMap<String, usize> = (0..20).map(|i| (format!("{i}.5"), 1)).collect();
        states.insert("unavailable".into(), 3);
        let top = top_states(states);
        assert_eq!(top.len(), MAX_STATES_PER_DOMAIN + 1);
        assert_eq!(top["unavailable"], 3);
        assert_eq!(top["other"], 20 - (MAX_STATES_PER_DOMAIN - 1));
    }
}
