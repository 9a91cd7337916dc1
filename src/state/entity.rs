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
        let ix: Indexed<'_> = serde_json::from_str(raw)?;
        if !valid_entity_id(&ix.entity_id) {
            return Err(StateParseError::BadEntityId(ix.entity_id.into_owned()));
        }
        let last_updated = match ix.last_updated.as_deref() {
            Some(ts) => parse_ts(ts).ok_or_else(|| StateParseError::BadTimestamp {
                entity_id: ix.entity_id.to_string(),
                value: ts.to_string(),
            })?,
            None => 0,
        };
        let friendly_name = ix
            .attributes
            .and_then(|a| a.friendly_name)
            .map(|n| Arc::from(n.as_ref()));
        Ok(Self {
            entity_id: Arc::from(ix.entity_id.as_ref()),
            state: Arc::from(ix.state.as_ref()),
            friendly_name,
            last_updated,
            raw: Arc::from(raw),
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

    /// The friendly name, or the entity id when HA gave none.
    pub fn name(&self) -> &str {
        self.friendly_name.as_deref().unwrap_or(&self.entity_id)
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
    fn rejects_missing_entity_id_and_bad_ids() {
        assert!(EntityState::from_raw(r#"{"state":"on"}"#).is_err());
        assert!(EntityState::from_raw(r#"{"entity_id":"nodot","state":"on"}"#).is_err());
        assert!(EntityState::from_raw(
            r#"{"entity_id":"a.b","state":"on","last_updated":"yesterday"}"#
        )
        .is_err());
        assert!(EntityState::from_raw("[1,2]").is_err());
    }
}
