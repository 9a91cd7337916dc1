//! Home Assistant WebSocket messages: what we parse and what we send.
//!
//! Parsing borrows from the frame text, so a 20 MB `get_states` result is
//! scanned once and each state's bytes are copied once, into the cache.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::state::{parse_ts, Change, EntityState, StateParseError};

/// Why a frame or message could not be used. Logged and skipped, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("frame is neither a message object nor an array of them")]
    Shape,
    #[error("state_changed event without an entity_id")]
    NoEntityId,
    #[error("state_changed event for {event} carries the state of {state}")]
    IdMismatch { event: String, state: String },
    #[error("bad state in event: {0}")]
    State(#[from] StateParseError),
}

/// One message from HA, borrowing from the frame.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// `auth_required`, `auth_ok`, `result`, `event`, `pong`, …
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The command id this answers.
    #[serde(default)]
    pub id: Option<u64>,
    /// For `result`.
    #[serde(default)]
    pub success: Option<bool>,
    /// For `result`: left unparsed until we know what it is.
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    /// For `result` with `success: false`.
    #[serde(default)]
    pub error: Option<ErrorBody>,
    /// For `event`.
    #[serde(borrow, default)]
    pub event: Option<&'a RawValue>,
    /// From `auth_required` and `auth_ok`.
    #[serde(default)]
    pub ha_version: Option<String>,
    /// From `auth_invalid`.
    #[serde(default)]
    pub message: Option<String>,
}

/// HA's error object in a failed result.
#[derive(Debug, Deserialize, Clone)]
pub struct ErrorBody {
    /// e.g. `unknown_command`, `not_found`.
    #[serde(default)]
    pub code: String,
    /// Human-readable reason.
    #[serde(default)]
    pub message: String,
}

/// Splits a frame into messages: one object, or an array of them when
/// `coalesce_messages` is on. An element of the wrong shape is returned as an
/// error in its place, so one bad message does not cost its neighbours.
pub fn parse_frame(text: &str) -> Result<Vec<Result<Incoming<'_>, FrameError>>, FrameError> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => Ok(vec![Ok(serde_json::from_str(text)?)]),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            Ok(items
                .into_iter()
                .map(|raw| serde_json::from_str(raw.get()).map_err(FrameError::from))
                .collect())
        }
        _ => Err(FrameError::Shape),
    }
}

#[derive(Deserialize)]
struct EventEnvelope<'a> {
    /// Absent in `subscribe_entities`' compressed events, which we do not use.
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time_fired: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StateChangedData<'a> {
    #[serde(borrow, default)]
    entity_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    new_state: Option<&'a RawValue>,
}

/// What an `event` message means to us.
#[derive(Debug)]
pub enum Event {
    /// A `state_changed` event.
    StateChanged(Change),
    /// A registry changed; the named list must be fetched again.
    RegistryUpdated(String),
    /// Something we do not subscribe to on purpose.
    Other(String),
}

/// Reads an event body.
pub fn parse_event(raw: &RawValue) -> Result<Event, FrameError> {
    let env: EventEnvelope<'_> = serde_json::from_str(raw.get())?;
    match env.event_type.as_deref().unwrap_or("compressed_state") {
        "state_changed" => {
            let data = env.data.ok_or(FrameError::NoEntityId)?;
            let d: StateChangedData<'_> = serde_json::from_str(data.get())?;
            let id = d.entity_id.ok_or(FrameError::NoEntityId)?;
            let new_state = d.new_state.filter(|r| r.get() != "null");
            change(&id, new_state, env.time_fired.as_deref()).map(Event::StateChanged)
        }
        t @ ("area_registry_updated" | "entity_registry_updated" | "device_registry_updated") => {
            Ok(Event::RegistryUpdated(t.to_string()))
        }
        other => Ok(Event::Other(other.to_string())),
    }
}

#[derive(Deserialize)]
struct FastMsg<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    event: FastEvent<'a>,
}

#[derive(Deserialize)]
struct FastEvent<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    data: FastData<'a>,
    #[serde(borrow, default)]
    time_fired: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct FastData<'a> {
    #[serde(borrow)]
    entity_id: Cow<'a, str>,
    #[serde(borrow, default)]
    new_state: Option<&'a RawValue>,
}

/// One `state_changed` event as a change: `new_state` must be this entity's,
/// and a removal needs a valid id; `time_fired` orders a removal against states.
fn change(
    id: &str,
    new_state: Option<&RawValue>,
    time_fired: Option<&str>,
) -> Result<Change, FrameError> {
    match new_state {
        Some(ns) => {
            let s = EntityState::from_raw(ns.get())?;
            if *s.entity_id != *id {
                return Err(FrameError::IdMismatch {
                    event: id.to_string(),
                    state: s.entity_id.to_string(),
                });
            }
            Ok(Change::Upsert(s))
        }
        None if crate::state::valid_entity_id(id) => Ok(Change::Remove {
            entity_id: id.into(),
            at: time_fired.and_then(parse_ts).unwrap_or(0),
        }),
        None => Err(FrameError::NoEntityId),
    }
}

/// The hot path: a frame made only of `state_changed` events, parsed in one
/// typed pass down to `new_state` (the general path scans each event five
/// times), whose text is handed on unparsed. `None` means "not such a frame,
/// or not clean": use [`parse_frame`].
pub fn state_changes_fast(text: &str) -> Option<Vec<Change>> {
    let msgs: Vec<FastMsg<'_>> = match text.as_bytes().first()? {
        b'[' => serde_json::from_str(text).ok()?,
        b'{' => vec![serde_json::from_str(text).ok()?],
        _ => return None,
    };
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        if m.kind != "event" || m.event.event_type != "state_changed" {
            return None;
        }
        let data = m.event.data;
        out.push(match data.new_state {
            // Parsed by the writer (see `Change::Unparsed`).
            Some(ns) => Change::Unparsed {
                entity_id: data.entity_id.as_ref().into(),
                raw: ns.get().into(),
            },
            None => change(&data.entity_id, None, m.event.time_fired.as_deref()).ok()?,
        });
    }
    Some(out)
}

/// Parses a `get_states` result into states; bad elements are returned apart.
pub fn parse_states(
    raw: &RawValue,
) -> Result<(Vec<EntityState>, Vec<StateParseError>), FrameError> {
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())?;
    let mut ok = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for item in items {
        match EntityState::from_raw(item.get()) {
            Ok(s) => ok.push(s),
            Err(e) => bad.push(e),
        }
    }
    Ok((ok, bad))
}

/// Commands we send, built as JSON text.
pub mod out {
    use serde_json::json;

    pub fn auth(token: &str) -> String {
        json!({"type": "auth", "access_token": token}).to_string()
    }
    pub fn supported_features(id: u64) -> String {
        json!({"id": id, "type": "supported_features", "features": {"coalesce_messages": 1}})
            .to_string()
    }
    pub fn subscribe(id: u64, event_type: &str) -> String {
        json!({"id": id, "type": "subscribe_events", "event_type": event_type}).to_string()
    }
    pub fn command(id: u64, kind: &str) -> String {
        json!({"id": id, "type": kind}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects_and_coalesced_arrays() {
        let f = parse_frame(r#"{"type":"auth_required","ha_version":"2025.4.4"}"#).unwrap();
        assert_eq!(f[0].as_ref().unwrap().kind, "auth_required");
        let f = parse_frame(r#"[{"id":1,"type":"result","success":true,"result":null},{"id":2,"type":"pong"},{"nope":1}]"#).unwrap();
        assert_eq!(f.len(), 3);
        assert!(f[0].as_ref().unwrap().result.is_none());
        assert!(f[2].is_err());
        assert!(parse_frame("42").is_err());
        assert!(parse_frame("{\"type\":").is_err());
    }

    #[test]
    fn fast_path_takes_only_clean_event_frames() {
        let ev = |id: &str, ns: &str| {
            format!(
                r#"{{"type":"event","event":{{"event_type":"state_changed","data":{{"entity_id":"{id}","old_state":null,"new_state":{ns}}},"time_fired":"2026-01-01T00:00:00+00:00"}},"id":2}}"#
            )
        };
        let on = r#"{"entity_id":"light.a","state":"on","attributes":{},"last_updated":"2026-01-01T00:00:00+00:00"}"#;
        let frame = format!("[{},{}]", ev("light.a", on), ev("light.b", "null"));
        let c = state_changes_fast(&frame).unwrap();
        assert!(
            matches!(&c[0], Change::Unparsed { entity_id, raw } if &**entity_id == "light.a" && &**raw == on)
        );
        assert!(matches!(&c[1], Change::Remove { entity_id, .. } if &**entity_id == "light.b"));
        // Anything else falls back to the general path.
        assert!(state_changes_fast(&format!(
            "[{},{{\"id\":9,\"type\":\"pong\"}}]",
            ev("light.a", on)
        ))
        .is_none());
        // The writer checks the state against the event's id.
        let c = state_changes_fast(&ev("light.x", on)).unwrap();
        let Change::Unparsed { entity_id, raw } = c[0].clone() else {
            panic!("not unparsed: {c:?}")
        };
        assert!(EntityState::from_shared(raw, Some(entity_id)).is_err());
        assert!(state_changes_fast("[{\"type\":\"event\"").is_none());
    }

    #[test]
    fn state_changed_upsert_and_remove() {
        let ev = RawValue::from_string(r#"{"event_type":"state_changed","data":{"entity_id":"light.a","old_state":null,"new_state":{"entity_id":"light.a","state":"on","attributes":{},"last_updated":"2026-01-01T00:00:00+00:00"}},"time_fired":"2026-01-01T00:00:00+00:00"}"#.into()).unwrap();
        assert!(matches!(
            parse_event(&ev).unwrap(),
            Event::StateChanged(Change::Upsert(_))
        ));
        let ev = RawValue::from_string(r#"{"event_type":"state_changed","data":{"entity_id":"light.a","old_state":{},"new_state":null},"time_fired":"2026-01-01T00:00:00+00:00"}"#.into()).unwrap();
        assert!(matches!(
            parse_event(&ev).unwrap(),
            Event::StateChanged(Change::Remove { .. })
        ));
        let ev = RawValue::from_string(
            r#"{"event_type":"state_changed","data":{"new_state":null}}"#.into(),
        )
        .unwrap();
        assert!(parse_event(&ev).is_err());
    }
}
