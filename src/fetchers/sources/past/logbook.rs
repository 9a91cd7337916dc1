//! `logbook`: what happened over a window, from HA's `logbook/get_events`,
//! newest first, one short line each ("18:02 Front Door opened"), capped at
//! `limit` with the count of the rest. Read in slices, newest first, keeping
//! only the newest `limit` lines.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::super::{Context, Typed};
use super::{ask, clock, from_secs, iso, wire, Select, Slices};
use crate::fetchers::FetchError;
use crate::state::{EntityState, Read};

/// Lines listed unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 20;

/// Params of the `logbook` source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Which entities; the whole house when none is named.
    #[serde(flatten)]
    pub select: Select,
    /// Where the window starts (`"24h"`, `"today"`, an ISO time); required.
    pub since: Option<String>,
    /// Where it ends; now unless given.
    pub until: Option<String>,
    /// The most lines listed, newest first.
    pub limit: Option<usize>,
}

/// One logbook entry as HA sends it.
#[derive(Deserialize)]
struct Entry {
    /// When, in seconds since the epoch.
    when: f64,
    /// The entity, for state changes and most events.
    entity_id: Option<String>,
    /// The new state, for state changes.
    state: Option<String>,
    /// The name HA gave, when it gave one.
    name: Option<String>,
    /// What happened, for events that are not state changes.
    message: Option<String>,
}

/// The source.
pub struct Logbook;

#[async_trait]
impl Typed for Logbook {
    const NAME: &'static str = "logbook";
    const REQUIRED: &'static [&'static str] = &["since"];
    type Params = Params;

    fn check(p: &Params) -> Result<(), String> {
        p.select.check()?;
        super::check_window(p.since.as_deref(), p.until.as_deref())
    }

    async fn run(cx: &Context, p: Params) -> Result<(Value, Vec<Read>), FetchError> {
        // A caller's selection, not only the row's; the window is checked
        // where it is resolved, in HA's zone.
        p.select.check().map_err(FetchError::BadParams)?;
        let (entities, mut reads) = match p.select.is_empty() {
            true => (Vec::new(), vec![Read::of(&cx.states, None)]),
            false => p.select.resolve(cx).await?,
        };
        let (w, tz) = super::window_of(cx, p.since.as_deref(), p.until.as_deref()).await?;
        if !w.ends_now {
            reads.clear();
        }
        let limit = super::limit(p.limit, DEFAULT_LIMIT)?;
        let mut kept: Vec<Entry> = Vec::new();
        let mut total = 0usize;
        let selected = !p.select.is_empty();
        if !selected || !entities.is_empty() {
            let ids: Vec<&str> = entities.iter().map(|s| &*s.entity_id).collect();
            let mut slices = Slices::new(&w);
            while let Some(slice) = slices.next_slice() {
                let mut body = json!({
                    "type": "logbook/get_events",
                    "start_time": wire(slice.0),
                    "end_time": wire(slice.1),
                });
                if selected {
                    body["entity_ids"] = json!(ids);
                }
                let raw = ask(cx, body).await?;
                slices.learn(slice, raw.get().len());
                let entries: Vec<Entry> = serde_json::from_str(raw.get())
                    .map_err(|e| FetchError::Failed(format!("logbook from Home Assistant: {e}")))?;
                // HA answers for the whole house; a scope sees its entities'
                // entries. One of no entity ("Home Assistant started", a
                // `logbook.log` line naming anything) only a scope of every
                // entity sees: its words may be about any of them.
                let seen = |e: &Entry| match e.entity_id.as_deref() {
                    Some(id) => cx.states.sees(id),
                    None => cx.states.sees_all(),
                };
                // Slices come newest first, entries oldest first within one.
                for e in entries.into_iter().rev().filter(seen) {
                    total += 1;
                    if kept.len() < limit {
                        kept.push(e);
                    }
                }
            }
        }
        let by_id: HashMap<&str, &EntityState> =
            entities.iter().map(|s| (&*s.entity_id, s)).collect();
        let now = chrono::Utc::now();
        let mut events = Vec::with_capacity(kept.len());
        for e in &kept {
            let at = from_secs(e.when);
            let known = match (&e.entity_id, by_id.is_empty()) {
                (Some(id), false) => by_id.get(id.as_str()).map(|s| (*s).clone()),
                (Some(id), true) => cx.states.cached(id),
                (None, _) => None,
            };
            let mut o = Map::new();
            o.insert("when".into(), iso(at, tz).into());
            if let Some(id) = &e.entity_id {
                o.insert("entity_id".into(), id.clone().into());
            }
            o.insert(
                "line".into(),
                format!("{} {}", clock(at, tz, now), say(e, known.as_ref())).into(),
            );
            events.push(Value::Object(o));
        }
        let mut out = Map::new();
        out.insert("since".into(), iso(w.start, tz).into());
        out.insert("until".into(), iso(w.end, tz).into());
        out.insert("events".into(), Value::Array(events));
        if total > kept.len() {
            out.insert("more".into(), (total - kept.len()).into());
        }
        Ok((Value::Object(out), reads))
    }
}

/// "Front Door opened": the entry's name and what happened, in the words
/// HA's logbook uses for the entity's kind.
fn say(e: &Entry, known: Option<&EntityState>) -> String {
    let name = e
        .name
        .clone()
        .or_else(|| known.map(|s| s.name().to_string()))
        .or_else(|| e.entity_id.clone())
        .unwrap_or_default();
    if let Some(m) = &e.message {
        return format!("{name} {m}");
    }
    let Some(state) = &e.state else {
        return name;
    };
    let domain = e
        .entity_id
        .as_deref()
        .map(crate::state::domain_of)
        .unwrap_or_default();
    let class = known
        .and_then(|s| {
            s.attributes_where(&|k| k == "device_class")
                .into_iter()
                .next()
        })
        .and_then(|(_, v)| v.as_str().map(str::to_string));
    format!("{name} {}", words(domain, class.as_deref(), state))
}

/// What a new state means, as HA's logbook words it.
fn words(domain: &str, class: Option<&str>, state: &str) -> String {
    let on = state == "on";
    let pair = match (domain, class) {
        (_, _) if matches!(state, "unavailable" | "unknown") => return format!("became {state}"),
        ("binary_sensor", Some("door" | "window" | "opening" | "garage_door")) => {
            ("opened", "closed")
        }
        ("binary_sensor", Some("motion" | "occupancy" | "presence")) => ("detected", "cleared"),
        ("binary_sensor", Some("lock")) => ("unlocked", "locked"),
        ("binary_sensor", Some("battery")) => ("is low", "is normal"),
        ("binary_sensor", Some("connectivity")) => ("connected", "disconnected"),
        (
            "light" | "switch" | "fan" | "input_boolean" | "automation" | "binary_sensor" | "siren"
            | "humidifier" | "remote" | "script",
            _,
        ) if matches!(state, "on" | "off") => ("turned on", "turned off"),
        _ => return format!("changed to {state}"),
    };
    match on {
        true => pair.0.to_string(),
        false if state == "off" => pair.1.to_string(),
        false => format!("changed to {state}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_happened_in_has_words() {
        assert_eq!(words("binary_sensor", Some("door"), "on"), "opened");
        assert_eq!(words("binary_sensor", Some("door"), "off"), "closed");
        assert_eq!(words("light", None, "off"), "turned off");
        assert_eq!(words("lock", None, "locked"), "changed to locked");
        assert_eq!(words("sensor", None, "21.5"), "changed to 21.5");
        assert_eq!(words("light", None, "unavailable"), "became unavailable");
        let e = Entry {
            when: 0.0,
            entity_id: Some("automation.x".into()),
            state: None,
            name: Some("Wake up".into()),
            message: Some("triggered by time".into()),
        };
        assert_eq!(say(&e, None), "Wake up triggered by time");
    }
}
