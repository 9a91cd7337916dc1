//! One entity's state, kept as the exact JSON text Home Assistant sent.

use std::sync::Arc;

use serde::Deserialize;

/// Why a state object could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateParseError {
    #[error("state object is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("state object has an empty or invalid entity_id {0:?}")]
    BadEntityId(String),
    #[error("state object for {entity_id} has an unparsable last_updated {value:?}")]
    BadTimestamp { entity_id: String, value: String },
    #[error("state object is for {state}, but its event is for {event}")]
    IdMismatch { event: String, state: String },
}

/// A state as HA sent it, plus the few fields we index.
///
/// `raw` is served to readers untouched, so our JSON cannot be told from HA's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityState {
    /// `domain.object_id`, the key of every index.
    pub entity_id: Arc<str>,
    /// The state string, indexed for `state=` filters.
    pub state: Arc<str>,
    /// `attributes.friendly_name`, searched by `q` patterns.
    pub friendly_name: Option<Arc<str>>,
    /// `last_updated` in microseconds since the epoch; an older state never overwrites a newer one.
    pub last_updated: i64,
    /// The JSON object exactly as received.
    pub raw: Arc<str>,
}

#[derive(Deserialize)]
struct Indexed<'a> {
    #[serde(borrow)]
    entity_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    state: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    last_updated: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    attributes: Option<Attrs<'a>>,
}

#[derive(Deserialize)]
struct Attrs<'a> {
    #[serde(borrow, default)]
    friendly_name: Option<std::borrow::Cow<'a, str>>,
}

impl EntityState {
    /// Parses the indexed fields out of a raw state object and keeps the text.
    pub fn from_raw(raw: &str) -> Result<Self, StateParseError> {
        Self::from_shared(Arc::from(raw), None)
    }

    /// Like [`from_raw`](Self::from_raw), for text already copied out of its
    /// frame (an event's `new_state`). With `event_id`, the state must be that
    /// entity's, and the event's id is kept rather than allocated again.
    pub fn from_shared(raw: Arc<str>, event_id: Option<Arc<str>>) -> Result<Self, StateParseError> {
        let ix: Indexed<'_> = serde_json::from_str(&raw)?;
        if !valid_entity_id(&ix.entity_id) {
            return Err(StateParseError::BadEntityId(ix.entity_id.into_owned()));
        }
        let entity_id = match event_id {
            Some(id) if *id == *ix.entity_id => id,
            Some(id) => {
                return Err(StateParseError::IdMismatch {
                    event: id.to_string(),
                    state: ix.entity_id.into_owned(),
                })
            }
            None => Arc::from(ix.entity_id.as_ref()),
        };
        let last_updated = match ix.last_updated.as_deref() {
            Some(ts) => parse_ts(ts).ok_or_else(|| StateParseError::BadTimestamp {
                entity_id: entity_id.to_string(),
                value: ts.to_string(),
            })?,
            None => 0,
        };
        let friendly_name = ix
            .attributes
            .and_then(|a| a.friendly_name)
            .map(|n| Arc::from(n.as_ref()));
        let state = Arc::from(ix.state.as_ref());
        Ok(Self {
            entity_id,
            state,
            friendly_name,
            last_updated,
            raw,
        })
    }

    /// The part of the id before the dot.
    pub fn domain(&self) -> &str {
        domain_of(&self.entity_id)
    }

    /// The parsed JSON, for code that needs attributes (templates, filters).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.raw).unwrap_or(serde_json::Value::Null)
    }

    /// Only the attributes `wanted` accepts, in the order HA sent them; the
    /// rest is skipped unparsed. Listings print a few attributes of many
    /// entities, and building each whole JSON tree was most of their cost.
    pub fn attributes_where(
        &self,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, serde_json::Value)> {
        let mut de = serde_json::Deserializer::from_str(&self.raw);
        let walk = pick::Walk { wanted, top: true };
        serde::de::DeserializeSeed::deserialize(walk, &mut de).unwrap_or_default()
    }

    /// The friendly name, or the entity id when HA gave none.
    pub fn name(&self) -> &str {
        self.friendly_name.as_deref().unwrap_or(&self.entity_id)
    }
}

/// A streaming walk over a state object that keeps chosen attributes.
mod pick {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    type Picked = Vec<(String, serde_json::Value)>;

    /// A walk over the state object (`top`), which enters only `attributes`,
    /// or over the attributes, which keeps the wanted ones and skips the rest.
    pub struct Walk<'w> {
        /// Which attributes to keep.
        pub wanted: &'w dyn Fn(&str) -> bool,
        /// Whether this is the state object rather than its attributes.
        pub top: bool,
    }
    /// A key, borrowed from the input unless it has escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> serde::Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(V)
        }
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = Picked;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Picked, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = Picked;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Picked, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = m.next_key::<Key<'de>>()? {
                if self.top && k.0 == "attributes" {
                    out = m.next_value_seed(Walk {
                        wanted: self.wanted,
                        top: false,
                    })?;
                } else if !self.top && (self.wanted)(&k.0) {
                    out.push((k.0.into_owned(), m.next_value()?));
                } else {
                    m.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
        // HA may send `"attributes": null` for a bare state.
        fn visit_unit<E>(self) -> Result<Picked, E> {
            Ok(Vec::new())
        }
    }
}

/// How far past our clock a `last_updated` may be. Further ahead, the state
/// is refused: it comes from a bad answer or a clock that jumped, and under
/// "newest wins" it would hide every real change until it is overtaken.
/// Clocks of hosts kept by NTP agree within seconds; five minutes leaves room
/// for one that is not.
pub const MAX_FUTURE: std::time::Duration = std::time::Duration::from_secs(300);

impl EntityState {
    /// Whether `last_updated` is more than [`MAX_FUTURE`] ahead of our clock.
    pub fn from_the_future(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        self.last_updated > now + MAX_FUTURE.as_micros() as i64
    }
}

/// The domain of an entity id (`light` for `light.kitchen`).
pub fn domain_of(entity_id: &str) -> &str {
    entity_id.split_once('.').map_or(entity_id, |(d, _)| d)
}

/// HA's rule: `domain.object_id`, lowercase letters, digits and underscores.
pub fn valid_entity_id(id: &str) -> bool {
    let Some((d, o)) = id.split_once('.') else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    id.len() <= 255 && ok(d) && ok(o)
}

/// Parses an HA ISO-8601 timestamp into microseconds since the epoch.
pub fn parse_ts(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_and_indexes_fields() {
        let raw = r#"{"entity_id":"light.bed_light","state":"on","attributes":{"friendly_name":"Bed Light","brightness":1.50},"last_changed":"2026-11-21T14:43:02.491458+00:00","last_updated":"2026-11-21T14:43:02.491458+00:00","context":{"id":"x","parent_id":null,"user_id":null}}"#;
        let s = EntityState::from_raw(raw).unwrap();
        assert_eq!(&*s.raw, raw);
        assert_eq!(s.domain(), "light");
        assert_eq!(s.name(), "Bed Light");
        assert_eq!(&*s.state, "on");
        assert!(s.last_updated > 0);
    }

    #[test]
    fn picks_attributes_without_the_rest() {
        let raw = r#"{"entity_id":"climate.x","state":"heat","attributes":{"hvac_modes":["heat","off"],"temperature":21,"nested":{"temperature":1},"fri\u0065ndly_name":"X","current_temperature":null},"context":{"temperature":5}}"#;
        let s = EntityState::from_raw(raw).unwrap();
        let got = s.attributes_where(&|k| k.contains("temperature") || k == "friendly_name");
        assert_eq!(
            got,
            vec![
                ("temperature".to_string(), serde_json::json!(21)),
                ("friendly_name".to_string(), serde_json::json!("X")),
                ("current_temperature".to_string(), serde_json::Value::Null),
            ]
        );
        let bare = EntityState::from_raw(r#"{"entity_id":"a.b","state":"on"}"#).unwrap();
        assert!(bare.attributes_where(&|_| true).is_empty());
    }

    #[test]
    fn rejects_missing_entity_id_and_bad_ids() {
        assert!(EntityState::from_raw(r#"{"state":"on"}"#).is_err());
        assert!(EntityState::from_raw(r#"{"entity_id":"nodot","state":"on"}"#).is_err());
        assert!(EntityState::from_raw(
            r#"{"entity_id":"a.b","state":"on","last_updated":"yesterday"}"#
        )
        .is_err());
        assert!(EntityState::from_raw("[1,2]").is_err());
        let raw: Arc<str> = r#"{"entity_id":"a.b","state":"on"}"#.into();
        assert!(EntityState::from_shared(raw.clone(), Some("a.c".into())).is_err());
        let id: Arc<str> = "a.b".into();
        let s = EntityState::from_shared(raw, Some(id.clone())).unwrap();
        assert!(Arc::ptr_eq(&s.entity_id, &id));
    }
}
