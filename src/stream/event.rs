//! One event of the change stream and its Server-Sent Events text.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fetchers::Problem;
use crate::state::Update;

/// What happened.
#[derive(Debug)]
pub enum Kind {
    /// An entity's state was written (`new` is always set).
    State(Update),
    /// An entity left the cache.
    Removed(Arc<str>),
    /// Clients must re-read every state: a snapshot replaced the cache, or
    /// this client fell behind (`overflow`) or resumed too late (`expired`).
    Resync(&'static str),
    /// Fetchers or templates were reloaded.
    Reload {
        /// Definitions loaded.
        fetchers: usize,
        /// Templates loaded.
        templates: usize,
        /// Rows that did not load.
        problems: Vec<Problem>,
    },
}

/// One numbered event. Its text is rendered on first send and shared by
/// every subscriber after that, so a hundred clients cost one serialisation.
#[derive(Debug)]
pub struct Event {
    /// Increasing; resumes compare it.
    pub id: u64,
    /// The change.
    pub kind: Kind,
    /// The SSE text without the full state object.
    text: OnceLock<Bytes>,
    /// The SSE text with it (`?full=1`).
    full: OnceLock<Bytes>,
}

/// The timestamps a `state` event carries, read from the state's own JSON.
#[derive(Deserialize, Default)]
struct Times<'a> {
    #[serde(borrow, default)]
    last_changed: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    last_updated: Option<Cow<'a, str>>,
}

/// The data of a `state` event.
#[derive(Serialize)]
struct StateData<'a> {
    entity_id: &'a str,
    old_state: Option<&'a str>,
    new_state: &'a str,
    last_changed: Option<&'a str>,
    last_updated: Option<&'a str>,
}

impl Event {
    pub fn new(id: u64, kind: Kind) -> Self {
        Self {
            id,
            kind,
            text: OnceLock::new(),
            full: OnceLock::new(),
        }
    }

    /// The entity it is about; `None` for events every client gets.
    pub fn entity_id(&self) -> Option<&str> {
        match &self.kind {
            Kind::State(u) => Some(&u.entity_id),
            Kind::Removed(id) => Some(id),
            Kind::Resync(_) | Kind::Reload { .. } => None,
        }
    }

    /// The SSE text: `id`, `event` and one `data` line of JSON.
    pub fn sse(&self, full: bool) -> &Bytes {
        let full = full && matches!(self.kind, Kind::State(_));
        let cell = if full { &self.full } else { &self.text };
        cell.get_or_init(|| {
            let (name, data) = self.data(full);
            frame(Some(self.id), name, &data)
        })
    }

    /// The event's name and JSON data.
    fn data(&self, full: bool) -> (&'static str, String) {
        let json = |v: serde_json::Value| v.to_string();
        match &self.kind {
            Kind::State(u) => ("state", state_data(u, full)),
            Kind::Removed(id) => ("removed", json(serde_json::json!({ "entity_id": &**id }))),
            Kind::Resync(reason) => ("resync", json(serde_json::json!({ "reason": reason }))),
            Kind::Reload {
                fetchers,
                templates,
                problems,
            } => (
                "reload",
                json(serde_json::json!({
                    "fetchers": fetchers,
                    "templates": templates,
                    "problems": problems,
                })),
            ),
        }
    }
}

/// `{"entity_id", "old_state", "new_state", "last_changed", "last_updated"}`,
/// with `"new"`: the state object as HA sent it when `full`.
fn state_data(u: &Update, full: bool) -> String {
    let Some(new) = &u.new else {
        return serde_json::json!({ "entity_id": &*u.entity_id }).to_string();
    };
    let times = times_of(&new.raw);
    let mut out = serde_json::to_string(&StateData {
        entity_id: &u.entity_id,
        old_state: u.old_state.as_deref(),
        new_state: &new.state,
        last_changed: times.last_changed.as_deref(),
        last_updated: times.last_updated.as_deref(),
    })
    .expect("strings always serialise");
    if full {
        out.pop();
        out.push_str(",\"new\":");
        // One `data:` line cannot hold a line break; HA's own JSON has none,
        // but a state read back from elsewhere may be pretty-printed.
        if new.raw.contains(['\n', '\r']) {
            let v: serde_json::Value = serde_json::from_str(&new.raw).unwrap_or_default();
            out.push_str(&v.to_string());
        } else {
            out.push_str(&new.raw);
        }
        out.push('}');
    }
    out
}

/// The two timestamps of a state object. HA writes them as plain ISO strings
/// (no escapes), so they are read by position; anything unusual falls back
/// to parsing the whole object, which costs a microsecond or two per event.
fn times_of(raw: &str) -> Times<'_> {
    let plain = |key: &str| -> Option<Option<Cow<'_, str>>> {
        let at = raw.find(key)? + key.len();
        let rest = &raw[at..];
        let end = rest.find('"')?;
        let v = &rest[..end];
        (!v.contains('\\')).then_some(Some(Cow::Borrowed(v)))
    };
    match (plain("\"last_changed\":\""), plain("\"last_updated\":\"")) {
        // Only when each key appears once: a friendly name could hold the text.
        (Some(c), Some(u))
            if raw.matches("\"last_changed\"").count() == 1
                && raw.matches("\"last_updated\"").count() == 1 =>
        {
            Times {
                last_changed: c,
                last_updated: u,
            }
        }
        _ => serde_json::from_str(raw).unwrap_or_default(),
    }
}

/// An SSE frame. `data` must hold no line break (JSON from serde_json has none).
pub fn frame(id: Option<u64>, name: &str, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + name.len() + 40);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(&id.to_string());
        s.push('\n');
    }
    s.push_str("event: ");
    s.push_str(name);
    s.push_str("\ndata: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EntityState;

    #[test]
    fn a_state_event_names_old_and_new_and_carries_the_object_when_full() {
        let raw = r#"{"entity_id":"light.a","state":"on","attributes":{},"last_changed":"2026-01-01T00:00:00+00:00","last_updated":"2026-01-01T00:00:01+00:00"}"#;
        let e = Event::new(
            7,
            Kind::State(Update {
                entity_id: "light.a".into(),
                old_state: Some("off".into()),
                new: Some(EntityState::from_raw(raw).unwrap()),
            }),
        );
        let text = std::str::from_utf8(e.sse(false)).unwrap();
        assert_eq!(
            text,
            "id: 7\nevent: state\ndata: {\"entity_id\":\"light.a\",\"old_state\":\"off\",\"new_state\":\"on\",\"last_changed\":\"2026-01-01T00:00:00+00:00\",\"last_updated\":\"2026-01-01T00:00:01+00:00\"}\n\n"
        );
        let full = std::str::from_utf8(e.sse(true)).unwrap();
        let data: serde_json::Value =
            serde_json::from_str(full.lines().nth(2).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(data["new"]["state"], "on");
        assert_eq!(data["old_state"], "off");
    }

    #[test]
    fn timestamps_are_read_by_position_and_an_attribute_of_the_same_name_is_not_taken() {
        let raw = r#"{"entity_id":"light.a","state":"on","attributes":{},"last_changed":"2026-01-01T00:00:00+00:00","last_updated":"2026-01-01T00:00:01+00:00"}"#;
        let t = times_of(raw);
        assert_eq!(t.last_changed.as_deref(), Some("2026-01-01T00:00:00+00:00"));
        assert_eq!(t.last_updated.as_deref(), Some("2026-01-01T00:00:01+00:00"));
        let tricky = r#"{"entity_id":"sensor.a","state":"1","attributes":{"last_changed":"attr"},"last_changed":"2026-01-01T00:00:00+00:00","last_updated":"2026-01-01T00:00:01+00:00"}"#;
        assert_eq!(
            times_of(tricky).last_changed.as_deref(),
            Some("2026-01-01T00:00:00+00:00")
        );
        assert!(times_of(r#"{"state":"x"}"#).last_changed.is_none());
    }

    #[test]
    fn a_pretty_printed_state_still_fits_one_data_line() {
        let raw = "{\n \"entity_id\": \"light.a\",\n \"state\": \"on\"\n}";
        let e = Event::new(
            1,
            Kind::State(Update {
                entity_id: "light.a".into(),
                old_state: None,
                new: Some(EntityState::from_raw(raw).unwrap()),
            }),
        );
        let text = std::str::from_utf8(e.sse(true)).unwrap();
        assert_eq!(text.matches('\n').count(), 4, "{text}");
    }
}
