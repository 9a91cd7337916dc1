//! Where tokens are kept: the `api_tokens` table, or a JSON file when there
//! is no MySQL.

use std::path::{Path, PathBuf};

use sqlx::MySqlPool;

use super::Stored;

/// Why the tokens could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("MySQL api_tokens: {0} (run `ha-fetchers migrate`)")]
    Sql(#[from] sqlx::Error),
    #[error("TOKENS_FILE {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("a token named {0:?} exists; revoke it first or choose another name")]
    Exists(String),
    #[error("no token named {0:?}")]
    NoSuch(String),
    #[error("token {0:?}: a name is 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
}

/// The tokens' home.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The `api_tokens` table.
    Sql(MySqlPool),
    /// A JSON array of [`Stored`] in this file (made at the first `create`).
    File(PathBuf),
}

fn file_err(path: &Path, why: impl ToString) -> TokenError {
    TokenError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

impl Backend {
    /// Every stored token.
    pub async fn load(&self) -> Result<Vec<Stored>, TokenError> {
        match self {
            Backend::Sql(pool) => {
                let rows: Vec<(String, String, String, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as(
                        "SELECT name, token_hash, scope, created_at FROM api_tokens ORDER BY name",
                    )
                    .fetch_all(pool)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for (name, hash, scope, created) in rows {
                    match serde_json::from_str(&scope) {
                        Ok(scope) => out.push(Stored {
                            name,
                            hash,
                            scope,
                            created_at: created.to_rfc3339(),
                        }),
                        Err(e) => {
                            tracing::warn!(token = %name, error = %e, "Skipping a token whose scope is not JSON")
                        }
                    }
                }
                Ok(out)
            }
            Backend::File(path) => match tokio::fs::read_to_string(path).await {
                Ok(text) => serde_json::from_str(&text).map_err(|e| file_err(path, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(file_err(path, e)),
            },
        }
    }

    /// Adds a token; its name must be new.
    pub async fn create(&self, t: Stored) -> Result<(), TokenError> {
        let ok = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(TokenError::BadName(t.name));
        }
        match self {
            Backend::Sql(pool) => {
                let scope = serde_json::to_string(&t.scope).expect("a scope serialises");
                let r = sqlx::query(
                    "INSERT INTO api_tokens (name, token_hash, scope) VALUES (?, ?, ?)",
                )
                .bind(&t.name)
                .bind(&t.hash)
                .bind(scope)
                .execute(pool)
                .await;
                match r {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Err(TokenError::Exists(t.name))
                    }
                    other => other.map(drop).map_err(Into::into),
                }
            }
            Backend::File(path) => {
                let mut all = self.load().await?;
                if all.iter().any(|s| s.name == t.name) {
                    return Err(TokenError::Exists(t.name));
                }
                all.push(t);
                write_file(path, &all).await
            }
        }
    }

    /// Removes the token `name`.
    pub async fn revoke(&self, name: &str) -> Result<(), TokenError> {
        match self {
            Backend::Sql(pool) => {
                let r = sqlx::query("DELETE FROM api_tokens WHERE name = ?")
                    .bind(name)
                    .execute(pool)
                    .await?;
                match r.rows_affected() {
                    0 => Err(TokenError::NoSuch(name.to_string())),
                    _ => Ok(()),
                }
            }
            Backend::File(path) => {
                let mut all = self.load().await?;
                let before = all.len();
                all.retain(|s| s.name != name);
                if all.len() == before {
                    return Err(TokenError::NoSuch(name.to_string()));
                }
                write_file(path, &all).await
            }
        }
    }
}

/// Writes the file whole, through a temporary one, readable by its owner only.
async fn write_file(path: &Path, all: &[Stored]) -> Result<(), TokenError> {
    let text = serde_json::to_string_pretty(all).expect("tokens serialise");
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, text)
        .await
        .map_err(|e| file_err(&tmp, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).await;
    }
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| file_err(path, e))
}
