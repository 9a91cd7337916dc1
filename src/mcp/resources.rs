//! Resources: `ha://entity/{entity_id}` (one state, as HA sent it) and
//! `ha://domain/{domain}` (a domain's lines) as templates, and one
//! `ha://fetcher/{name}` per fetcher (its result with the row's defaults).

use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use rmcp::ErrorData;
use serde_json::Map;

use super::reply::{too_large, MAX_REPLY_BYTES};
use super::{live, tools};
use crate::engine::Engine;
use crate::fetchers::lean;
use crate::fetchers::FetchRequest;
use crate::state::{valid_entity_id, Query, StateError};

/// The scheme and kind prefixes of our URIs.
const ENTITY: &str = "ha://entity/";
const DOMAIN: &str = "ha://domain/";
const FETCHER: &str = "ha://fetcher/";

/// What a URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Entity(String),
    Domain(String),
    Fetcher(String),
}

impl Target {
    /// Parses one of our URIs; anything else is "resource not found".
    pub fn parse(uri: &str) -> Result<Self, ErrorData> {
        let not_found = || {
            ErrorData::resource_not_found(
                format!("no resource {uri:?}; use ha://entity/{{entity_id}}, ha://domain/{{domain}} or ha://fetcher/{{name}}"),
                None,
            )
        };
        if let Some(id) = uri.strip_prefix(ENTITY) {
            if !valid_entity_id(id) {
                return Err(not_found());
            }
            return Ok(Self::Entity(id.to_string()));
        }
        if let Some(d) = uri.strip_prefix(DOMAIN) {
            if d.is_empty()
                || !d
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(not_found());
            }
            return Ok(Self::Domain(d.to_string()));
        }
        if let Some(f) = uri.strip_prefix(FETCHER) {
            if crate::fetchers::valid_name(f) {
                return Ok(Self::Fetcher(f.to_string()));
            }
        }
        Err(not_found())
    }
}

/// Checks a subscription to `uri` before it is taken: a scoped caller may
/// follow only an entity it sees and a fetcher it may run, answered as for a
/// resource that does not exist.
pub fn check_subscription(app: &Engine, uri: &str) -> Result<Target, ErrorData> {
    let target = Target::parse(uri)?;
    let seen = match (&target, app.scope()) {
        (_, None) => true,
        (Target::Entity(id), Some(_)) => app.states().sees(id),
        (Target::Fetcher(name), Some(_)) => app.fetcher(name).is_some(),
        (Target::Domain(_), Some(_)) => true,
    };
    match seen {
        true => Ok(target),
        false => Err(ErrorData::resource_not_found(
            format!("no resource {uri:?}"),
            None,
        )),
    }
}

/// The two templates.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{ENTITY}{{entity_id}}"), "entity")
            .with_description("One entity's state with every attribute, as Home Assistant sent it")
            .with_mime_type("application/json"),
        ResourceTemplate::new(format!("{DOMAIN}{{domain}}"), "domain")
            .with_description("Every entity of a domain, one line each with its id")
            .with_mime_type("text/plain"),
    ]
}

/// One resource per fetcher that is a tool.
pub fn list(app: &Engine) -> Vec<Resource> {
    tools::fetchers(app)
        .iter()
        .map(|d| {
            let r = Resource::new(format!("{FETCHER}{}", d.name), d.name.clone())
                .with_mime_type("text/plain");
            if d.description.trim().is_empty() {
                r
            } else {
                r.with_description(d.description.clone())
            }
        })
        .collect()
}

/// Reads `uri` now.
pub async fn read(app: &Engine, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let text = match Target::parse(uri)? {
        Target::Entity(id) => match app.states().get(&id).await {
            Ok(s) if s.raw.len() > MAX_REPLY_BYTES => {
                return Err(ErrorData::invalid_request(too_large(s.raw.len()), None))
            }
            Ok(s) => {
                return Ok(ReadResourceResult::new(vec![ResourceContents::text(
                    s.raw.to_string(),
                    uri,
                )
                .with_mime_type("application/json")]))
            }
            Err(StateError::NotFound(_)) => {
                return Err(ErrorData::resource_not_found(
                    format!("no entity {id:?}"),
                    None,
                ))
            }
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        },
        Target::Domain(d) => {
            let q = Query {
                domain: Some(d.clone()),
                ..Default::default()
            };
            let states = app
                .states()
                .list(&q)
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            if states.is_empty() {
                format!("no {d} entities")
            } else {
                live::lines(
                    app,
                    &states,
                    live::MAX_LIMIT,
                    "use live_context with a name filter",
                )
            }
        }
        Target::Fetcher(name) => {
            let out = app
                .fetchers()
                .run(FetchRequest {
                    name: name.clone(),
                    params: Map::new(),
                })
                .await;
            match out.result {
                Ok(v) => lean::text(&v),
                Err(e) => return Err(ErrorData::resource_not_found(format!("{name}: {e}"), None)),
            }
        }
    };
    if text.len() > MAX_REPLY_BYTES {
        return Err(ErrorData::invalid_request(too_large(text.len()), None));
    }
    Ok(ReadResourceResult::new(vec![ResourceContents::text(
        text, uri,
    )
    .with_mime_type("text/plain")]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_or_are_not_found() {
        assert_eq!(
            Target::parse("ha://entity/light.bed_light").unwrap(),
            Target::Entity("light.bed_light".into())
        );
        assert_eq!(
            Target::parse("ha://domain/light").unwrap(),
            Target::Domain("light".into())
        );
        assert_eq!(
            Target::parse("ha://fetcher/ha_lights_on").unwrap(),
            Target::Fetcher("ha_lights_on".into())
        );
        for bad in [
            "ha://entity/nope",
            "ha://domain/",
            "file:///etc/passwd",
            "ha://fetcher/Bad",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
