//! API tokens with scopes. `API_TOKEN` stays the admin's and opens
//! everything; `ha-fetchers token create NAME --scope …` makes a token that
//! sees only its scope. Only a SHA-256 of a token is stored, in MySQL
//! (`api_tokens`) or, without one, in the file `TOKENS_FILE`; the set is
//! reloaded every `RELOAD_INTERVAL`, so a revoked token stops working
//! within it.

mod store;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{Scope, ScopeSpec};

pub use store::{Backend, TokenError};

/// The prefix of every token we make: it tells a leaked one apart in logs
/// and scanners.
pub const PREFIX: &str = "hf_";

/// One stored token: its name, the hash of its secret, its scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Unique; what `token revoke` names.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// What it may see.
    pub scope: ScopeSpec,
    /// When it was made, RFC 3339.
    pub created_at: String,
}

/// A new token's secret and hash.
pub fn mint() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    // Asked on every scoped request: a table, not 32 `format!`s (which cost
    // 2 µs of the 2.3 µs a scoped GET added in the bench).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// The tokens in force, by hash; swapped whole at each reload.
#[derive(Default)]
pub struct Tokens {
    /// hash → the scope its token sees.
    by_hash: RwLock<HashMap<String, Arc<Scope>>>,
}

impl Tokens {
    /// The scope of the token `presented`, when it is one of ours.
    pub fn scope_of(&self, presented: &str) -> Option<Arc<Scope>> {
        if !presented.starts_with(PREFIX) {
            return None;
        }
        self.by_hash.read().get(&hash(presented)).cloned()
    }

    /// How many are in force.
    pub fn len(&self) -> usize {
        self.by_hash.read().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `stored` in force. A token whose name, hash and scope did not
    /// change keeps its `Scope` (and so the engine's view built for it); a
    /// row whose scope does not parse is skipped with a warning.
    pub fn replace(&self, stored: Vec<Stored>) {
        let old = self.by_hash.read().clone();
        let mut next = HashMap::with_capacity(stored.len());
        for s in stored {
            let kept = old
                .get(&s.hash)
                .filter(|k| *k.name == *s.name && k.spec == s.scope)
                .cloned();
            let scope = match kept {
                Some(k) => k,
                None => match Scope::new(&s.name, s.scope) {
                    Ok(scope) => Arc::new(scope),
                    Err(e) => {
                        tracing::warn!(token = %s.name, error = %e, "Skipping a token whose scope does not parse");
                        continue;
                    }
                },
            };
            next.insert(s.hash, scope);
        }
        *self.by_hash.write() = next;
    }
}

/// Where `settings` keep tokens: the `api_tokens` table of `pool` (the
/// definitions' MySQL), else `TOKENS_FILE`.
pub fn backend(settings: &crate::Settings, pool: Option<sqlx::MySqlPool>) -> Backend {
    match pool {
        Some(pool) => Backend::Sql(pool),
        None => Backend::File(settings.tokens_file.clone()),
    }
}

/// Loads the tokens once; a failure keeps the set in force and says why.
async fn reload(backend: &Backend, tokens: &Tokens) {
    match backend.load().await {
        Ok(all) => tokens.replace(all),
        Err(e) => {
            tracing::warn!(error = %e, "Could not reload the API tokens; the last set stays in force")
        }
    }
}

/// Loads the tokens now, then again every `every` until `stop`.
pub async fn spawn_reload(
    backend: Backend,
    tokens: Arc<Tokens>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    reload(&backend, &tokens).await;
    crate::periodic::every(every, stop, move || {
        let (backend, tokens) = (backend.clone(), tokens.clone());
        async move { reload(&backend, &tokens).await }
    })
}

/// Reads `--scope`: `all`, `assist`, or a comma-separated list of entity
/// ids, globs, `domain:x` and `area:y`.
pub fn parse_entities(s: &str) -> crate::state::Entities {
    use crate::state::Entities;
    match s.trim() {
        "all" => Entities::All,
        "assist" => Entities::Assist,
        list => Entities::Only(
            list.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        ),
    }
}

/// A comma-separated list of names or globs.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Entities;

    #[test]
    fn a_token_is_found_by_its_hash_and_only_then() {
        let (token, h) = mint();
        assert!(token.starts_with(PREFIX) && token.len() > 40);
        let t = Tokens::default();
        let spec = ScopeSpec {
            entities: Entities::Assist,
            fetchers: vec![],
            prompts: vec![],
        };
        let row = Stored {
            name: "desk".into(),
            hash: h.clone(),
            scope: spec.clone(),
            created_at: String::new(),
        };
        t.replace(vec![row.clone()]);
        let first = t.scope_of(&token).unwrap();
        assert_eq!(&*first.name, "desk");
        assert!(t.scope_of("hf_nope").is_none());
        assert!(t.scope_of(&h).is_none(), "the hash is not the token");
        // Unchanged at a reload: the same scope, so views stay cached.
        t.replace(vec![row]);
        assert!(Arc::ptr_eq(&first, &t.scope_of(&token).unwrap()));
        t.replace(vec![]);
        assert!(t.scope_of(&token).is_none(), "revoked");
    }
}
