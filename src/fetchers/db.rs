//! MySQL: migrations, seeding from `fetchers/`, and reading the rows.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::Row as _;

use super::definition::Row;

/// The numbered files in `mysql/schemas/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./mysql/schemas");

pub use super::ACQUIRE_TIMEOUT;

/// MySQL failures.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("mysql: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] MigrateError),
}

/// A small lazy pool: the service starts even when MySQL is not up yet.
pub fn pool(url: &str) -> Result<MySqlPool, DbError> {
    Ok(MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy(url)?)
}

/// Applies pending migrations in order; returns the versions now applied.
///
/// sqlx records each file's checksum in `_sqlx_migrations`, applies nothing
/// twice, and fails with `VersionMismatch` when an applied file has changed.
pub async fn migrate(pool: &MySqlPool) -> Result<Vec<i64>, DbError> {
    MIGRATOR.run(pool).await?;
    let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
}

/// Upserts rows by name. `enabled` is set on insert only, so an admin's
/// disable survives the next migrate.
pub async fn seed(pool: &MySqlPool, rows: &[Row]) -> Result<usize, DbError> {
    let mut tx = pool.begin().await?;
    for r in rows {
        sqlx::query(
            "INSERT INTO data_fetchers
               (name, description, source, params, required_params, template, ttl_seconds, timeout_ms, enabled)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE
               description = VALUES(description), source = VALUES(source),
               params = VALUES(params), required_params = VALUES(required_params),
               template = VALUES(template), ttl_seconds = VALUES(ttl_seconds),
               timeout_ms = VALUES(timeout_ms)",
        )
        .bind(&r.name)
        .bind(&r.description)
        .bind(&r.source)
        .bind(&r.params)
        .bind(&r.required_params)
        .bind(&r.template)
        .bind(r.ttl_seconds)
        .bind(r.timeout_ms)
        .bind(r.enabled)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// Every row, enabled or not, sorted by name.
pub async fn load_rows(pool: &MySqlPool) -> Result<Vec<Row>, DbError> {
    let rows = sqlx::query(
        "SELECT name, description, source, params, required_params, template,
                ttl_seconds, timeout_ms, enabled
         FROM data_fetchers ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Row {
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                source: r.try_get("source")?,
                params: r.try_get("params")?,
                required_params: r.try_get("required_params")?,
                template: r.try_get("template")?,
                ttl_seconds: r.try_get("ttl_seconds")?,
                timeout_ms: r.try_get("timeout_ms")?,
                enabled: r.try_get("enabled")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}
