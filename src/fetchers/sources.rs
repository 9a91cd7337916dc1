//! The built-in sources: general reads over the state store that rows
//! parameterise. Results are compact JSON because they end up in LLM prompts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::definition::{DeviceStatusParams, EntitiesParams, EntityParams, Source};
use super::FetchError;
use crate::state::{EntityState, Glob, Query, Read, StateError, StateManager};

/// The default cap on listed entities.
pub const DEFAULT_LIMIT: usize = 200;
/// The most unavailable entities `device_status` names.
pub const MAX_UNAVAILABLE_LISTED: usize = 50;
/// The most states `device_status` counts per domain; the rest are `other`.
pub const MAX_STATES_PER_DOMAIN: usize = 8;

/// Attributes worth a prompt's tokens, per domain, beyond id, name and state.
fn useful_attributes(domain: &str) -> &'static [&'static str] {
    match domain {
        "light" => &["brightness"],
        "climate" => &["current_temperature", "temperature", "hvac_action"],
        "cover" => &["current_position"],
        "media_player" => &["media_title", "volume_level"],
        "lock" | "switch" | "binary_sensor" => &["device_class"],
        "sensor" => &["unit_of_measurement", "device_class"],
        _ => &["unit_of_measurement"],
    }
}

/// `{entity_id, name, state, …useful attributes, …extra}` from a full state object.
fn compact_json(full: &Value, extra: &[String]) -> Value {
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
    let domain = crate::state::domain_of(id);
    let keys = useful_attributes(domain)
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

/// [`compact_json`] of a stored state, parsing only the attributes it keeps.
fn compact(s: &EntityState, extra: &[String]) -> Value {
    let useful = useful_attributes(s.domain());
    let wanted = |k: &str| useful.contains(&k) || extra.iter().any(|e| e == k);
    let mut picked = s.attributes_where(&wanted);
    let mut out = Map::new();
    out.insert("entity_id".into(), (&*s.entity_id).into());
    out.insert("name".into(), s.name().into());
    out.insert("state".into(), (&*s.state).into());
    for k in useful
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

fn typed<T: serde::de::DeserializeOwned>(params: &Map<String, Value>) -> Result<T, FetchError> {
    serde_json::from_value(Value::Object(params.clone()))
        .map_err(|e| FetchError::BadParams(e.to_string()))
}

fn state_err(e: StateError) -> FetchError {
    match e {
        StateError::BadEntityId(_) | StateError::BadPattern(_) => {
            FetchError::BadParams(e.to_string())
        }
        other => FetchError::Failed(other.to_string()),
    }
}

/// Runs a built-in source (templates run in [`super::template`]).
pub async fn run(
    source: &Source,
    states: &StateManager,
    params: &Map<String, Value>,
) -> Result<(Value, Vec<Read>), FetchError> {
    match source {
        Source::Entities => entities(states, typed(params)?).await,
        Source::Entity => entity(states, typed(params)?).await,
        Source::Summary => {
            let read = Read::of(states, None);
            let v = serde_json::to_value(states.summary())
                .map_err(|e| FetchError::Failed(e.to_string()))?;
            Ok((v, vec![read]))
        }
        Source::DeviceStatus => device_status(states, typed(params)?),
        Source::Template(_) => Err(FetchError::Failed(
            "template sources run through the engine".into(),
        )),
    }
}

async fn entities(
    states: &StateManager,
    p: EntitiesParams,
) -> Result<(Value, Vec<Read>), FetchError> {
    let pattern = match &p.pattern {
        Some(s) => Some(Glob::new(s).map_err(|e| FetchError::BadParams(format!("pattern: {e}")))?),
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
            .map(|s| compact(s, &p.attributes))
            .collect();
        if found.len() > limit {
            out.insert("truncated".into(), true.into());
        }
        out.insert("entities".into(), Value::Array(list));
    }
    Ok((Value::Object(out), vec![read]))
}

async fn entity(states: &StateManager, p: EntityParams) -> Result<(Value, Vec<Read>), FetchError> {
    let id = p
        .entity_id
        .ok_or_else(|| FetchError::BadParams("missing required param entity_id".into()))?;
    let read = Read::of(states, Some(crate::state::domain_of(&id)));
    let s = states.get(&id).await.map_err(state_err)?;
    let full = s.json();
    let mut out = compact_json(&full, &[]);
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

fn device_status(
    states: &StateManager,
    p: DeviceStatusParams,
) -> Result<(Value, Vec<Read>), FetchError> {
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
        for s in ix.slots().filter_map(|(_, slot)| slot.as_ref()) {
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
    fn compact_of_a_stored_state_equals_compact_of_its_json() {
        let raw = include_str!("../../tests/fixtures/home-assistant-2025.4.4/rest-states.json");
        let all: Vec<Value> = serde_json::from_str(raw).unwrap();
        let extra = ["hvac_modes".to_string(), "brightness".to_string()];
        for v in &all {
            let s = EntityState::from_raw(&v.to_string()).unwrap();
            for extra in [&[][..], &extra[..]] {
                assert_eq!(
                    compact(&s, extra),
                    compact_json(v, extra),
                    "{}",
                    s.entity_id
                );
            }
        }
    }

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
