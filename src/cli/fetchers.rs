//! The fetcher commands behind the binary: `migrate`, `seed`, `fetch`, `check`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::fetchers::{db, files, validate, validate_all, FetchRequest, Registry};
use crate::state::MemoryStore;

pub(super) fn pool(settings: &Settings) -> anyhow::Result<sqlx::MySqlPool> {
    let url = settings
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set")?;
    db::pool(url.expose_secret()).context("DATABASE_URL")
}

/// Applies the schema files, then seeds the shipped fetchers from `fetchers_dir`.
pub(super) async fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let pool = pool(settings)?;
    let versions = db::migrate(&pool).await.context("applying mysql/schemas")?;
    println!("migrations applied: {versions:?}");
    seed(settings, &pool).await
}

/// Upserts `fetchers/*.toml` into `data_fetchers`; a file that does not parse or validate stops it.
pub(super) async fn seed(settings: &Settings, pool: &sqlx::MySqlPool) -> anyhow::Result<ExitCode> {
    let dir = &settings.fetchers_dir;
    let (rows, mut problems) =
        files::load_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    problems.extend(validate_all(&rows).1);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        anyhow::bail!(
            "not seeding: {} problem(s) in {}",
            problems.len(),
            dir.display()
        );
    }
    let n = db::seed(pool, &rows)
        .await
        .context("seeding data_fetchers")?;
    println!("seeded {n} fetchers from {}", dir.display());
    let prompts = dir.join(crate::prompt::PROMPTS_SUBDIR);
    let n = crate::prompt::seed(pool, &prompts)
        .await
        .with_context(|| format!("seeding prompt_templates from {}", prompts.display()))?;
    println!("seeded {n} prompt templates from {}", prompts.display());
    Ok(ExitCode::SUCCESS)
}

/// `seed` on its own.
pub(super) async fn seed_only(settings: &Settings) -> anyhow::Result<ExitCode> {
    let pool = pool(settings)?;
    seed(settings, &pool).await
}

/// Validates every fetcher row and prompt template (MySQL when configured,
/// else files); one line per problem, naming the row and field.
pub(super) async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    let reg = open_registry(settings).await?;
    let (rows, mut problems) = reg.read_rows().await.context("reading fetcher rows")?;
    // Each row validated once, disabled ones too: its problems, or a
    // definition its source verifies below.
    let mut defs = Vec::new();
    for row in &rows {
        match validate(row) {
            Ok(def) => defs.push(def),
            Err(p) => problems.extend(p),
        }
    }
    // Everything is checked by the engine `serve` builds (its limits, its
    // `sql` source), over these rows and no Home Assistant: each row by its
    // source against what it runs on (a `sql` query prepared on the live
    // database, so an unknown table or column is named here, not at the
    // first call), then the templates.
    let stop = tokio_util::sync::CancellationToken::new();
    let started =
        crate::engine::Engine::start_offline(settings, Arc::new(MemoryStore::new()), &stop).await?;
    problems.extend(started.engine.fetchers().verify(&defs).await);
    let sql_rows = rows.iter().filter(|r| r.source == "sql").count();
    if sql_rows > 0 && settings.fetchers_sql_url.is_none() && settings.database_url.is_some() {
        eprintln!(
            "warning: {sql_rows} sql fetcher rows read with DATABASE_URL's credentials, which can write the registry; \
             set FETCHERS_SQL_URL to a read-only user (README, \"Fetchers over your own MySQL data\")"
        );
    }
    for p in &problems {
        println!("{p}");
    }
    let templates = match &settings.database_url {
        Some(_) => crate::prompt::load_db(&pool(settings)?)
            .await
            .context("reading prompt_templates")?,
        None => crate::prompt::load_dir(&settings.fetchers_dir.join(crate::prompt::PROMPTS_SUBDIR))
            .context("reading prompt templates")?,
    };
    let renderer = started.engine.prompts().renderer().clone();
    stop.cancel();
    let count = templates.len();
    let template_problems = crate::prompt::Prompts::new(renderer, templates).check();
    for p in &template_problems {
        println!("{p}");
    }
    let total = problems.len() + template_problems.len();
    if total == 0 {
        eprintln!(
            "{} fetcher rows and {} templates, all valid",
            rows.len(),
            count
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{total} problem(s) in {} rows and {} templates",
            rows.len(),
            count
        );
        Ok(ExitCode::FAILURE)
    }
}

async fn open_registry(settings: &Settings) -> anyhow::Result<Arc<Registry>> {
    let reg = Arc::new(Registry::new(match &settings.database_url {
        Some(_) => crate::fetchers::Backend::Mysql(pool(settings)?),
        None => crate::fetchers::Backend::Files(settings.fetchers_dir.clone()),
    }));
    Ok(reg)
}

/// `k=v`: `v` as JSON when it parses (numbers, booleans, arrays), else as a string.
pub(super) fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("--param {s:?}: expected key=value"))?;
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), v))
}

/// Runs one fetcher and prints its outcome as JSON, on the engine `serve`
/// builds (no listener): states from HA's first snapshot when it is
/// configured, else from Redis when `REDIS_URL` is set, else none.
pub(super) async fn fetch(
    settings: &Settings,
    name: String,
    params: Vec<(String, Value)>,
) -> anyhow::Result<ExitCode> {
    let local = super::local::Local::start(settings.clone()).await?;
    let params: Map<String, Value> = params.into_iter().collect();
    let out = local.engine.run(FetchRequest { name, params }).await;
    local.stop().await;
    println!(
        "{}",
        serde_json::to_string_pretty(&crate::api::outcome_json(&out))?
    );
    Ok(if out.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
