//! What a caller may see: the entities of a scope, and the fetchers and
//! prompts it may use. A scoped [`StateManager`](super::StateManager) answers
//! as if the entities outside its scope did not exist.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{domain_of, Glob, Index};

/// Which entities a scope sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entities {
    /// Every entity.
    All,
    /// What Home Assistant exposes to Assist (see [`super::Registries::exposed`]).
    Assist,
    /// Those any of these select: `light.kitchen`, `light.*`, `domain:switch`,
    /// `area:kitchen`.
    Only(Vec<String>),
}

/// One selector of [`Entities::Only`], parsed.
#[derive(Debug, Clone)]
enum Selector {
    /// An entity id or a glob over ids.
    Id(Glob),
    /// Every entity of a domain.
    Domain(String),
    /// Every entity in an area (id or name).
    Area(String),
}

impl Selector {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(d) = s.strip_prefix("domain:") {
            return match d.trim() {
                "" => Err("domain: names no domain".into()),
                d => Ok(Self::Domain(d.to_string())),
            };
        }
        if let Some(a) = s.strip_prefix("area:") {
            return match a.trim() {
                "" => Err("area: names no area".into()),
                a => Ok(Self::Area(a.to_string())),
            };
        }
        if s.is_empty() {
            return Err("an empty entity selector".into());
        }
        Glob::new(s)
            .map(Self::Id)
            .map_err(|e| format!("{s:?}: {e}"))
    }

    fn allows(&self, id: &str, ix: &Index) -> bool {
        match self {
            Self::Id(g) => g.matches(id),
            Self::Domain(d) => domain_of(id) == d,
            Self::Area(a) => {
                let reg = ix.registries();
                match (reg.area_id(a), reg.area_of(id)) {
                    (Some(want), Some(is)) => want == is,
                    _ => false,
                }
            }
        }
    }
}

/// A scope as a token carries it: the entities, the fetchers and the
/// prompts (names or globs; empty means all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeSpec {
    /// Which entities.
    pub entities: Entities,
    /// Which fetchers, by name or glob; empty: all.
    #[serde(default)]
    pub fetchers: Vec<String>,
    /// Which prompt templates, by name or glob; empty: all.
    #[serde(default)]
    pub prompts: Vec<String>,
}

/// A scope ready to check against: its selectors and globs parsed.
#[derive(Debug)]
pub struct Scope {
    /// The token's name: what logs say, and what keeps one scope's cached
    /// results from another's.
    pub name: Arc<str>,
    /// As given.
    pub spec: ScopeSpec,
    /// [`Entities::Only`]'s selectors, parsed.
    selectors: Vec<Selector>,
    /// The fetcher globs, parsed.
    fetchers: Vec<Glob>,
    /// The prompt globs, parsed.
    prompts: Vec<Glob>,
}

fn globs(list: &[String], what: &str) -> Result<Vec<Glob>, String> {
    list.iter()
        .map(|g| Glob::new(g).map_err(|e| format!("{what} {g:?}: {e}")))
        .collect()
}

impl Scope {
    /// Checks `spec`; `Err` says which part is wrong.
    pub fn new(name: &str, spec: ScopeSpec) -> Result<Self, String> {
        let selectors = match &spec.entities {
            Entities::Only(list) if list.is_empty() => {
                return Err("entities: name at least one (or use all or assist)".into())
            }
            Entities::Only(list) => list
                .iter()
                .map(|s| Selector::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("entities: {e}"))?,
            _ => Vec::new(),
        };
        Ok(Self {
            name: name.into(),
            fetchers: globs(&spec.fetchers, "fetchers")?,
            prompts: globs(&spec.prompts, "prompts")?,
            selectors,
            spec,
        })
    }

    /// Whether the scope sees entity `id`, given the index (for exposure and areas).
    pub fn allows(&self, id: &str, ix: &Index) -> bool {
        match &self.spec.entities {
            Entities::Assist => ix.exposed(id),
            _ => self.allows_entry(id, false, ix),
        }
    }

    /// [`Self::allows`] for an entry in hand: `exposed` is its flag
    /// ([`Index::entry`]), which spares `assist` a lookup per entity.
    pub fn allows_entry(&self, id: &str, exposed: bool, ix: &Index) -> bool {
        match &self.spec.entities {
            Entities::All => true,
            Entities::Assist => exposed,
            Entities::Only(_) => self.selectors.iter().any(|s| s.allows(id, ix)),
        }
    }

    /// Whether it may run the fetcher `name`.
    pub fn allows_fetcher(&self, name: &str) -> bool {
        self.fetchers.is_empty() || self.fetchers.iter().any(|g| g.matches(name))
    }

    /// Whether it may render the prompt `name`.
    pub fn allows_prompt(&self, name: &str) -> bool {
        self.prompts.is_empty() || self.prompts.iter().any(|g| g.matches(name))
    }

    /// A line for `token list`: `assist; fetchers ha_*; prompts all`.
    pub fn describe(&self) -> String {
        let entities = match &self.spec.entities {
            Entities::All => "all entities".to_string(),
            Entities::Assist => "entities exposed to Assist".to_string(),
            Entities::Only(list) => format!("entities {}", list.join(",")),
        };
        let or_all = |l: &[String]| match l.is_empty() {
            true => "all".to_string(),
            false => l.join(","),
        };
        format!(
            "{entities}; fetchers {}; prompts {}",
            or_all(&self.spec.fetchers),
            or_all(&self.spec.prompts)
        )
    }
}
