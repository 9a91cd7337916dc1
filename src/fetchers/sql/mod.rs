//! The `sql` source's side of MySQL: [`query`] checks and rewrites the
//! author's query, [`Database`] runs it under three walls (the parse, a
//! read-only transaction, the server's own time limit) with caps on rows and
//! bytes, and [`columns`] turns rows into JSON.

mod columns;
pub mod query;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::Executor;
use tokio::sync::OnceCell;

pub use query::{parse, Query};

use super::{FetchError, ACQUIRE_TIMEOUT};

/// Rows a `sql` fetcher returns unless its `limit` says otherwise.
pub const DEFAULT_ROWS: u64 = 200;
/// The most rows `limit` may ask for.
pub const MAX_ROWS: u64 = 10_000;
/// The most bytes of JSON one result may hold; rows past it are left out,
/// as rows past `limit` are. A megabyte is ~250k tokens: no prompt needs more.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Connections the `sql` source keeps: its queries never wait behind the
/// registry's, and a slow author query holds one of these, not one of those.
pub const MAX_CONNECTIONS: u32 = 4;
/// The server's limit is this share of the fetcher's `timeout_ms`, so the
/// server stops the query (and says so) just before the engine gives up.
const SERVER_SHARE: f64 = 0.9;

/// Which server: they spell the statement time limit differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// `max_statement_time`, in seconds.
    MariaDb,
    /// `max_execution_time`, in milliseconds (SELECTs only, which is all we send).
    MySql,
}

/// The MySQL that `sql` fetchers read: `FETCHERS_SQL_URL`, else `DATABASE_URL`.
#[derive(Clone, Debug)]
pub struct Database {
    /// Its own small pool (see [`MAX_CONNECTIONS`]); session settings made
    /// here never reach the registry's connections.
    pool: MySqlPool,
    /// Learnt from `VERSION()` on first use.
    flavour: Arc<OnceCell<Flavour>>,
}

/// What one run may return.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows at most.
    pub rows: u64,
    /// The fetcher's timeout; the server is told [`SERVER_SHARE`] of it.
    pub time: Duration,
}

/// A result and whether a cap cut it.
#[derive(Debug)]
pub struct Rows {
    /// One object per row.
    pub rows: Vec<Value>,
    /// `Some(why)` when rows were left out.
    pub capped: Option<&'static str>,
}

impl Database {
    /// The MySQL of `sql` fetchers under `settings` (`FETCHERS_SQL_URL`, else
    /// `DATABASE_URL`); `None` when neither is set (they then fail alone,
    /// with a clear error).
    pub fn of(settings: &crate::config::Settings) -> anyhow::Result<Option<Self>> {
        use anyhow::Context as _;
        use secrecy::ExposeSecret as _;
        let Some((name, url)) = settings.sql_url() else {
            return Ok(None);
        };
        Self::connect_lazy(url.expose_secret())
            .map(Some)
            .with_context(|| format!("{name}: not a MySQL URL"))
    }

    /// A lazy pool: the service starts while MySQL is still down, and only
    /// `sql` fetchers notice.
    pub fn connect_lazy(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self::with_options(url.parse()?))
    }

    /// As [`connect_lazy`](Self::connect_lazy), from parsed options.
    pub fn with_options(options: MySqlConnectOptions) -> Self {
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // The server's own time zone, not sqlx's UTC: `CURDATE()` is the
            // day the author's `mysql` client sees.
            .connect_lazy_with(options.timezone(None::<String>));
        Self {
            pool,
            flavour: Arc::default(),
        }
    }

    async fn flavour(&self) -> Result<Flavour, sqlx::Error> {
        self.flavour
            .get_or_try_init(|| async {
                let v: String = sqlx::query_scalar("SELECT VERSION()")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(match v.to_ascii_lowercase().contains("mariadb") {
                    true => Flavour::MariaDb,
                    false => Flavour::MySql,
                })
            })
            .await
            .copied()
    }

    /// Runs `q` with `params` bound, inside a read-only transaction and under
    /// the server's time limit; stops reading at `limits.rows` rows or
    /// [`MAX_BYTES`].
    pub async fn run(
        &self,
        q: &Query,
        params: &Map<String, Value>,
        json: &[String],
        limits: &Limits,
    ) -> Result<Rows, FetchError> {
        let server_ms = ((limits.time.as_millis() as f64 * SERVER_SHARE) as u64).max(1);
        // A down server is said as such before the engine's timeout would
        // hide it behind a bare "timed out".
        let connect = async { Ok((self.flavour().await?, self.pool.acquire().await?)) };
        let (flavour, mut conn) =
            match tokio::time::timeout(Duration::from_millis(server_ms), connect).await {
                Ok(Ok(got)) => got,
                Ok(Err(e)) => return Err(unreachable(&e)),
                Err(_) => {
                    return Err(FetchError::Failed(format!(
                        "MySQL is unreachable: no connection within {server_ms} ms"
                    )))
                }
            };
        let limit = match flavour {
            Flavour::MariaDb => format!(
                "SET SESSION max_statement_time = {:.3}",
                server_ms as f64 / 1e3
            ),
            Flavour::MySql => format!("SET SESSION max_execution_time = {server_ms}"),
        };
        // One round trip: a transaction left open by a cancelled run is
        // ended here (implicitly) before this one starts.
        conn.execute(sqlx::raw_sql(&format!(
            "{limit}; START TRANSACTION READ ONLY"
        )))
        .await
        .map_err(|e| failed(e, limits))?;
        let mut query = sqlx::query(&q.text);
        for name in &q.binds {
            query = bind(query, params.get(name).unwrap_or(&Value::Null));
        }
        let mut out = Rows {
            rows: Vec::new(),
            capped: None,
        };
        let mut bytes = 2;
        {
            let mut stream = conn.fetch(query);
            while let Some(row) = stream.try_next().await.map_err(|e| failed(e, limits))? {
                if out.rows.len() as u64 >= limits.rows {
                    out.capped = Some("limit");
                    break;
                }
                let row = Value::Object(columns::row_json(&row, json).map_err(FetchError::Failed)?);
                bytes += serde_json::to_string(&row).map_or(0, |s| s.len()) + 1;
                if bytes > MAX_BYTES {
                    out.capped = Some("bytes");
                    break;
                }
                out.rows.push(row);
            }
        }
        match out.capped {
            // The rest of a cut result is not read: the connection is closed
            // (the server then stops sending), never drained.
            Some(_) => conn.close_on_drop(),
            None => {
                conn.execute("ROLLBACK")
                    .await
                    .map_err(|e| failed(e, limits))?;
            }
        }
        Ok(out)
    }

    /// Prepares `q` without running it, so the server reports an unknown
    /// table or column (for `check`).
    pub async fn prepare(&self, q: &Query) -> Result<(), String> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| unreachable(&e).to_string())?;
        conn.prepare(q.text.as_str())
            .await
            .map(drop)
            .map_err(|e| server_message(&e))
    }
}

type MySqlQuery<'q> = sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>;

/// Binds one JSON value: scalars as themselves, arrays and objects as JSON
/// text (for `JSON_CONTAINS`, `JSON_TABLE`).
fn bind<'q>(q: MySqlQuery<'q>, v: &Value) -> MySqlQuery<'q> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => q.bind(i),
            (_, Some(u)) => q.bind(u),
            _ => q.bind(n.as_f64()),
        },
        Value::String(s) => q.bind(s.clone()),
        other => q.bind(other.to_string()),
    }
}

/// A server error as the fetcher's error: a statement the time limit
/// stopped is a timeout; others keep the server's words.
fn failed(e: sqlx::Error, limits: &Limits) -> FetchError {
    let number = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|d| d.number());
    match number {
        // 1969: MariaDB's max_statement_time; 3024: MySQL's max_execution_time.
        Some(1969 | 3024) => FetchError::Timeout(limits.time.as_millis() as u64),
        _ => FetchError::Failed(server_message(&e)),
    }
}

fn unreachable(e: &sqlx::Error) -> FetchError {
    match crate::tls::describe(e) {
        Some(why) => FetchError::Failed(format!("MySQL is unreachable: TLS: {why}")),
        None => FetchError::Failed(format!("MySQL is unreachable: {e}")),
    }
}

/// The server's own message, which names the table or column at fault.
fn server_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => format!("MySQL: {}", d.message()),
        None => format!("MySQL: {e}"),
    }
}
