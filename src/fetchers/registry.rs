//! The registry: loads definitions from MySQL (or `fetchers/` files),
//! validates them, and hot-reloads. When MySQL fails, the last-known
//! definitions stay in force and the failure shows in health.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::mysql::MySqlPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::db::{self, DbError};
use super::definition::{validate_all, Definition, Problem, Row};
use super::files;
use crate::state::now_secs;

/// Where definitions come from.
#[derive(Clone)]
pub enum Backend {
    /// `data_fetchers` rows.
    Mysql(MySqlPool),
    /// `*.toml` files in a folder.
    Files(PathBuf),
    /// Fixed rows (tests, embedding).
    Rows(Vec<Row>),
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reading {dir}: {error}")]
    Files { dir: String, error: std::io::Error },
    /// The URL cannot work ([`LoadError::is_configuration`]): the reason
    /// once, in words, rather than the driver's chain repeated.
    #[error("{0}")]
    Unusable(String),
}

impl LoadError {
    /// This configuration failure as one line: a refused handshake in the
    /// words of the other links, else the server's own message.
    fn unusable(self) -> Self {
        let why = match &self {
            LoadError::Db(DbError::Sql(e)) => match crate::tls::describe(e) {
                Some(tls) => format!("TLS: {tls}"),
                None => e
                    .as_database_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string()),
            },
            other => other.to_string(),
        };
        LoadError::Unusable(why)
    }

    /// A failure no retry heals: the settings are wrong (a refused TLS
    /// handshake, a refused login, a database that does not exist), as
    /// opposed to MySQL being down.
    pub fn is_configuration(&self) -> bool {
        let LoadError::Db(DbError::Sql(e)) = self else {
            return false;
        };
        match e {
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => true,
            // A refused handshake arrives as the I/O error rustls raised.
            sqlx::Error::Io(_) => crate::tls::describe(e).is_some(),
            // A refused login (SQLSTATE 28000: 1045, MariaDB's 1698), a
            // database refused (1044) or unknown (1049).
            sqlx::Error::Database(d) => {
                d.code().as_deref() == Some("28000")
                    || d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                        .is_some_and(|m| matches!(m.number(), 1044 | 1049))
            }
            _ => false,
        }
    }
}

/// One validated set of definitions.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Enabled, valid definitions by name.
    pub defs: BTreeMap<String, Arc<Definition>>,
    /// What was wrong with the rest.
    pub problems: Vec<Problem>,
    /// Bumped whenever the rows change; cached results of older revisions are dropped.
    pub revision: u64,
    /// The rows this came from, to tell whether a reload changed anything.
    rows: Vec<Row>,
    /// Problems found before validation (unreadable files).
    pre_problems: Vec<Problem>,
}

impl Loaded {
    /// The definitions `keep` accepts, without the problems.
    pub fn only(&self, keep: impl Fn(&str) -> bool) -> Loaded {
        Loaded {
            defs: self
                .defs
                .iter()
                .filter(|(n, _)| keep(n))
                .map(|(n, d)| (n.clone(), d.clone()))
                .collect(),
            problems: Vec::new(),
            revision: self.revision,
            rows: Vec::new(),
            pre_problems: Vec::new(),
        }
    }
}

/// Where definitions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// MySQL's `data_fetchers` table.
    Mysql,
    /// `fetchers/*.toml`.
    Files,
    /// Rows given in code (tests, `check`).
    Rows,
}

impl BackendKind {
    /// `mysql`, `files` or `rows`, as logs and health name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Files => "files",
            Self::Rows => "rows",
        }
    }

    /// What a definition from here is listed as: `mysql`, `file` or `rows`.
    pub fn origin(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Files => "file",
            Self::Rows => "rows",
        }
    }
}

/// How the last load went, for `/api/health/mysql`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoadStatus {
    /// `mysql`, `files` or `rows`.
    pub backend: BackendKind,
    /// Whether the last load succeeded.
    pub ok: bool,
    /// Why it did not.
    pub error: Option<String>,
    /// Unix seconds of the last successful load.
    pub last_ok_at: Option<f64>,
}

/// Definitions, hot-reloaded.
pub struct Registry {
    /// Where they come from.
    backend: Backend,
    /// The current set; swapped whole so readers never see a half-load.
    loaded: RwLock<Arc<Loaded>>,
    /// How the last load went.
    status: RwLock<LoadStatus>,
    /// The current set's revision, pushed to whoever waits on it (the change
    /// stream, MCP sessions) after each swap, so nobody polls.
    revision: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    /// An empty registry over `backend`; call [`reload`](Self::reload) to fill it.
    pub fn new(backend: Backend) -> Self {
        let kind = match &backend {
            Backend::Mysql(_) => BackendKind::Mysql,
            Backend::Files(_) => BackendKind::Files,
            Backend::Rows(_) => BackendKind::Rows,
        };
        Self {
            backend,
            loaded: RwLock::new(Arc::new(Loaded::default())),
            status: RwLock::new(LoadStatus {
                backend: kind,
                ok: false,
                error: Some("not loaded yet".into()),
                last_ok_at: None,
            }),
            revision: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The MySQL pool rows come from, so other MySQL readers share it.
    pub fn pool(&self) -> Option<&MySqlPool> {
        match &self.backend {
            Backend::Mysql(pool) => Some(pool),
            _ => None,
        }
    }

    /// MySQL when `DATABASE_URL` is set, else `fetchers_dir`; loads once.
    ///
    /// If MySQL cannot be read at start, the shipped files are the
    /// last-known set until it can, so prompts still work.
    /// MySQL at `database_url` when set (the files in `fetchers_dir` serve
    /// while it does not answer), else the files.
    pub async fn open(
        database_url: Option<&SecretString>,
        fetchers_dir: &Path,
    ) -> Result<Arc<Self>, LoadError> {
        match database_url {
            Some(url) => {
                let reg = Arc::new(Self::new(Backend::Mysql(db::pool(url.expose_secret())?)));
                if let Err(e) = reg.reload().await {
                    // No silent fallback to the files when the URL itself is wrong.
                    if e.is_configuration() {
                        return Err(e.unusable());
                    }
                    tracing::warn!(error = %e, dir = %fetchers_dir.display(),
                        "MySQL unavailable at start; using the shipped fetcher files until it answers");
                    if let Ok((rows, pre)) = files::load_dir(fetchers_dir) {
                        reg.install(rows, pre);
                    }
                }
                Ok(reg)
            }
            None => {
                let reg = Arc::new(Self::new(Backend::Files(fetchers_dir.to_path_buf())));
                if let Err(e) = reg.reload().await {
                    tracing::warn!(error = %e, "Could not read fetcher files");
                }
                Ok(reg)
            }
        }
    }

    /// Fixed rows, loaded at once.
    pub fn from_rows(rows: Vec<Row>) -> Arc<Self> {
        let reg = Self::new(Backend::Rows(rows.clone()));
        reg.install(rows, Vec::new());
        *reg.status.write() = LoadStatus {
            backend: BackendKind::Rows,
            ok: true,
            error: None,
            last_ok_at: Some(now_secs()),
        };
        Arc::new(reg)
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Reads the rows from the backend (no validation).
    pub async fn read_rows(&self) -> Result<(Vec<Row>, Vec<Problem>), LoadError> {
        match &self.backend {
            Backend::Mysql(pool) => Ok((db::load_rows(pool).await?, Vec::new())),
            Backend::Files(dir) => files::load_dir(dir).map_err(|error| LoadError::Files {
                dir: dir.display().to_string(),
                error,
            }),
            Backend::Rows(r) => Ok((r.clone(), Vec::new())),
        }
    }

    /// Reloads; on failure the current definitions stay and status says why.
    pub async fn reload(&self) -> Result<(), LoadError> {
        match self.read_rows().await {
            Ok((rows, pre)) => {
                self.install(rows, pre);
                let mut st = self.status.write();
                if !st.ok && st.last_ok_at.is_some() {
                    tracing::info!(
                        backend = st.backend.as_str(),
                        "Fetcher definitions source is back"
                    );
                }
                st.ok = true;
                st.error = None;
                st.last_ok_at = Some(now_secs());
                Ok(())
            }
            Err(e) => {
                let mut st = self.status.write();
                if st.ok || st.error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(backend = st.backend.as_str(), error = %e,
                        "Could not reload fetcher definitions; keeping the last-known set");
                }
                st.ok = false;
                st.error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Validates and swaps in `rows` if they differ from the current ones.
    fn install(&self, rows: Vec<Row>, pre_problems: Vec<Problem>) {
        let cur = self.loaded.read().clone();
        if cur.revision > 0 && cur.rows == rows && cur.pre_problems == pre_problems {
            return;
        }
        let (defs, mut problems) = validate_all(&rows);
        problems.splice(0..0, pre_problems.iter().cloned());
        for p in &problems {
            tracing::warn!(fetcher = %p.name, field = %p.field, reason = %p.reason, "Skipping an invalid fetcher");
        }
        tracing::info!(
            fetchers = defs.len(),
            problems = problems.len(),
            "Fetcher definitions loaded"
        );
        let loaded = Loaded {
            defs: defs
                .into_iter()
                .map(|d| (d.name.clone(), Arc::new(d)))
                .collect(),
            problems,
            revision: cur.revision + 1,
            rows,
            pre_problems,
        };
        let revision = loaded.revision;
        *self.loaded.write() = Arc::new(loaded);
        self.revision.send_replace(revision);
    }

    /// The current set's revision, woken on each swap: wait on it instead of
    /// polling [`current`](Self::current).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// The current set.
    pub fn current(&self) -> Arc<Loaded> {
        self.loaded.read().clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Definition>> {
        self.loaded.read().defs.get(name).cloned()
    }

    pub fn status(&self) -> LoadStatus {
        self.status.read().clone()
    }

    /// Checks MySQL answers now (`SELECT 1`); `Ok` for file backends.
    pub async fn ping(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Mysql(pool) => sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Reloads every `interval` until `stop` is cancelled.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let reg = self.clone();
        crate::periodic::every(interval, stop, move || {
            let reg = reg.clone();
            async move {
                let _ = reg.reload().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload that changed the files wakes a watcher once; one that
    /// changed nothing does not, so nobody needs to poll.
    #[tokio::test]
    async fn a_changed_set_is_pushed_and_an_unchanged_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let text = format!("source = \"entities\"\n[params]\ndomain = \"{name}\"\n");
            std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        };
        file("light");
        let reg = Registry::new(Backend::Files(dir.path().to_path_buf()));
        let mut seen = reg.watch();
        reg.reload().await.unwrap();
        assert!(seen.has_changed().unwrap());
        assert_eq!(*seen.borrow_and_update(), reg.current().revision);
        reg.reload().await.unwrap();
        assert!(!seen.has_changed().unwrap(), "nothing changed");
        file("switch");
        reg.reload().await.unwrap();
        assert!(seen.has_changed().unwrap());
        assert_eq!(*seen.borrow_and_update(), 2);
        assert_eq!(reg.current().defs.len(), 2);
    }
}
