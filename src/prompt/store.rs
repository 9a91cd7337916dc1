//! Where templates live: files in `fetchers/prompts/` (the source of truth,
//! shipped with the code) seeded into MySQL's `prompt_templates`, which is
//! reloaded on an interval so an `UPDATE` takes effect without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde_json::Map;
use sqlx::MySqlPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::template::PromptTemplate;
use super::{check, prepare, Prepared, References, RenderError, RenderOptions, Rendered, Renderer};
use crate::fetchers::valid_name;
use crate::fetchers::Problem;

/// The folder under `FETCHERS_DIR` that holds shipped templates.
pub const PROMPTS_SUBDIR: &str = "prompts";
/// Template files end with this.
const EXTENSION: &str = "j2";
/// The name previews render under.
pub const INLINE_NAME: &str = "inline";

/// Why templates could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum TemplateStoreError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: a template's file name {} and ends .j2", .0.display(), crate::fetchers::NAME_RULE)]
    BadFileName(PathBuf),
    #[error("prompt_templates: {0}")]
    Db(#[from] sqlx::Error),
}

/// The first line of a leading `{# … #}` comment.
fn description_of(body: &str) -> String {
    body.trim_start()
        .strip_prefix("{#")
        .and_then(|rest| rest.split_once("#}"))
        .and_then(|(c, _)| c.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or_default()
        .to_string()
}

/// Reads every `*.j2` in `dir`, sorted by name; a missing folder is no templates.
pub fn load_dir(dir: &Path) -> Result<Vec<PromptTemplate>, TemplateStoreError> {
    let io = |source| TemplateStoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|n| valid_name(n))
            .ok_or_else(|| TemplateStoreError::BadFileName(path.clone()))?
            .to_string();
        let body = std::fs::read_to_string(&path).map_err(|source| TemplateStoreError::Io {
            path: path.clone(),
            source,
        })?;
        out.push(PromptTemplate {
            description: description_of(&body),
            name,
            body,
            enabled: true,
            updated_at: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Writes the files in `dir` into MySQL (`prompt_templates`, made by
/// `ha-fetchers migrate`): body and description follow the files; `enabled`
/// stays as the operator set it. Returns how many it wrote.
pub async fn seed(pool: &MySqlPool, dir: &Path) -> Result<usize, TemplateStoreError> {
    let templates = load_dir(dir)?;
    for t in &templates {
        sqlx::query(
            "INSERT INTO prompt_templates (name, body, description) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE body = VALUES(body), description = VALUES(description)",
        )
        .bind(&t.name)
        .bind(&t.body)
        .bind(&t.description)
        .execute(pool)
        .await?;
    }
    Ok(templates.len())
}

/// Every row of `prompt_templates`, sorted by name.
pub async fn load_db(pool: &MySqlPool) -> Result<Vec<PromptTemplate>, TemplateStoreError> {
    let rows: Vec<(String, String, String, bool, DateTime<Utc>)> = sqlx::query_as(
        "SELECT name, body, description, enabled, updated_at FROM prompt_templates ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, body, description, enabled, updated_at)| PromptTemplate {
                name,
                body,
                description,
                enabled,
                updated_at: Some(updated_at),
            },
        )
        .collect())
}

/// The templates in use and the renderer that serves them.
pub struct Prompts {
    /// Shared environment and fetcher source.
    renderer: Arc<Renderer>,
    /// By name; swapped whole on reload, so a render sees one consistent set.
    templates: RwLock<Arc<BTreeMap<String, Stored>>>,
    /// Bumped when a reload changed the set, and pushed to whoever waits on
    /// it (the change stream, MCP sessions), so nobody polls.
    revision: tokio::sync::watch::Sender<u64>,
}

/// One template as loaded: compiled once, when it (or its text) arrived.
struct Stored {
    /// The row or file.
    template: PromptTemplate,
    /// Its program, or why it does not compile (`check` names it, a render answers with it).
    prepared: Result<Prepared, RenderError>,
}

impl Prompts {
    pub fn new(renderer: Arc<Renderer>, templates: Vec<PromptTemplate>) -> Self {
        let p = Self {
            renderer,
            templates: RwLock::default(),
            revision: tokio::sync::watch::Sender::new(0),
        };
        p.replace(templates);
        p
    }

    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.renderer
    }

    /// Swaps in a new set of templates, when it differs from the current one;
    /// only a template whose text changed is compiled again.
    pub fn replace(&self, templates: Vec<PromptTemplate>) {
        // Compiled outside the lock, so renders go on meanwhile; only the
        // reload task replaces, so nothing changes the set in between.
        let current = self.templates.read().clone();
        let same = current.len() == templates.len()
            && templates
                .iter()
                .all(|t| current.get(&t.name).is_some_and(|s| s.template == *t));
        if same {
            return;
        }
        let map: BTreeMap<String, Stored> = templates
            .into_iter()
            .map(|t| {
                let prepared = match current.get(&t.name) {
                    Some(s) if s.template.body == t.body => s.prepared.clone(),
                    _ => prepare(&t.name, &t.body),
                };
                (
                    t.name.clone(),
                    Stored {
                        template: t,
                        prepared,
                    },
                )
            })
            .collect();
        *self.templates.write() = Arc::new(map);
        self.revision.send_modify(|r| *r += 1);
    }

    /// Changes with every reload that changed the set.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// The revision, woken on each change: wait on it instead of polling.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Every template, sorted by name.
    pub fn list(&self) -> Vec<PromptTemplate> {
        self.templates
            .read()
            .values()
            .map(|s| s.template.clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<PromptTemplate> {
        self.templates.read().get(name).map(|s| s.template.clone())
    }

    /// What the stored template `name` refers to, given the fetchers loaded
    /// now; `None` when there is no such template or it does not compile.
    pub fn references(&self, name: &str) -> Option<References> {
        let set = self.templates.read().clone();
        let prepared = set.get(name)?.prepared.as_ref().ok()?;
        Some(self.renderer.references(prepared, &Map::new()))
    }

    /// Renders a stored, enabled template.
    pub async fn render(&self, name: &str, opts: RenderOptions) -> Result<Rendered, RenderError> {
        self.render_with(&self.renderer, name, opts).await
    }

    /// [`render`](Self::render) with another renderer over the same compiled
    /// templates: a scope's, whose states and fetchers are the scope's.
    pub async fn render_with(
        &self,
        renderer: &Arc<Renderer>,
        name: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, RenderError> {
        let prepared = self
            .templates
            .read()
            .get(name)
            .filter(|s| s.template.enabled)
            .map(|s| s.prepared.clone())
            .ok_or_else(|| RenderError::NotFound(name.to_string()))?;
        let started = std::time::Instant::now();
        let res = match prepared {
            Ok(t) => renderer.render(&t, opts).await,
            Err(e) => Err(e),
        };
        metrics::histogram!("ha_render_duration_seconds", "template" => name.to_string())
            .record(started.elapsed().as_secs_f64());
        if res.is_err() {
            metrics::counter!("ha_render_errors_total", "template" => name.to_string())
                .increment(1);
        }
        res
    }

    /// Renders a body that is not stored: the authors' preview, compiled for
    /// this request only.
    pub async fn render_inline(
        &self,
        body: &str,
        opts: RenderOptions,
    ) -> Result<Rendered, RenderError> {
        self.renderer.render_source(INLINE_NAME, body, opts).await
    }

    /// Problems with the current templates.
    pub fn check(&self) -> Vec<Problem> {
        let set = self.templates.read().clone();
        let loaded: Vec<_> = set
            .values()
            .map(|s| (&s.template, s.prepared.as_ref()))
            .collect();
        check(&self.renderer, &loaded)
    }

    /// Reloads from MySQL every `every` until `shutdown`; a failed load keeps the last good set.
    pub fn spawn_reload(
        self: &Arc<Self>,
        pool: MySqlPool,
        every: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(every, shutdown, move || {
            let (this, pool) = (this.clone(), pool.clone());
            async move {
                match load_db(&pool).await {
                    Ok(t) if t != this.list() => {
                        tracing::info!(templates = t.len(), "Prompt templates reloaded");
                        this.replace(t);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Could not reload prompt templates"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_is_the_leading_comment() {
        assert_eq!(
            description_of("{# Home status.\n more #}\nx"),
            "Home status."
        );
        assert_eq!(description_of("x {# no #}"), "");
        assert!(valid_name("home_status") && !valid_name("Home-Status") && !valid_name(""));
    }
}
