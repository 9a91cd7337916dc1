//! `/mcp` driven by the official Python SDK (`mcp` on PyPI, installed by
//! `scripts/mcp-client.sh`; `scripts/test.sh` sets `MCP_PYTHON`) against a
//! real Home Assistant and a fresh MariaDB database: tests/mcp/client.py.

use std::process::Command;
use std::time::Duration;

use ha_fetchers::fetchers::db;
use ha_fetchers::{Application, Settings};
use secrecy::SecretString;
use sqlx::MySqlPool;

use crate::helpers::fixtures::shipped_rows;
use crate::helpers::real::real_ha;
use crate::helpers::services::redis_url;

const TOKEN: &str = "mcp-python-token";

/// The venv python with `mcp`, or `None` (a skip) unless `MCP_CLIENT_REQUIRED` is set.
fn python() -> Option<String> {
    match std::env::var("MCP_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("MCP_CLIENT_REQUIRED").is_err(),
                "MCP_CLIENT_REQUIRED is set but MCP_PYTHON is not (run scripts/mcp-client.sh)"
            );
            eprintln!("skipped: no MCP Python client (set MCP_PYTHON, or run scripts/test.sh)");
            None
        }
    }
}

#[sqlx::test(migrations = "mysql/schemas")]
async fn the_official_python_sdk_drives_mcp(pool: MySqlPool) {
    let (Some(py), Some(ha)) = (python(), real_ha()) else {
        return;
    };
    db::seed(&pool, &shipped_rows()).await.unwrap();
    let fetchers_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fetchers");
    ha_fetchers::prompt::seed(
        &pool,
        &fetchers_dir.join(ha_fetchers::prompt::PROMPTS_SUBDIR),
    )
    .await
    .unwrap();
    let database = pool.connect_options().get_database().unwrap().to_string();
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(&database);

    let mut s = Settings::embedded();
    s.ha_url = Some(ha.url.parse().unwrap());
    s.ha_token = Some(SecretString::from(ha.token.clone()));
    s.database_url = Some(SecretString::from(url.to_string()));
    s.fetchers_dir = fetchers_dir;
    s.reload_interval = Duration::from_millis(200);
    s.api_token = Some(SecretString::from(TOKEN));
    s.redis_url = Some(SecretString::from(redis_url()));
    s.redis_prefix = format!("mcp-python-{}-{database}:", std::process::id());
    let app = Application::build(s).await.unwrap();
    let port = app.port();
    let stop = app.shutdown_token();
    let engine = app.engine().clone();
    let server = tokio::spawn(app.run_until_stopped());
    for _ in 0..200 {
        if engine.states().cached("light.bed_light").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let (host, mysql_port) = (
        url.host_str().unwrap().to_string(),
        url.port().unwrap_or(3306),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .env("MCP_URL", format!("http://127.0.0.1:{port}/mcp"))
            .env("MCP_TOKEN", TOKEN)
            .env("HA_URL", &ha.url)
            .env("HA_TOKEN", &ha.token)
            .env("MYSQL_DATABASE", database)
            .env("MYSQL_HOST", host)
            .env("MYSQL_PORT", mysql_port.to_string())
            .output()
            .expect("the venv python runs")
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!("{said}\n{}", String::from_utf8_lossy(&out.stderr));
    stop.cancel();
    let _ = server.await;
    assert!(out.status.success(), "tests/mcp/client.py failed:\n{said}");
    assert!(said.contains("all MCP client checks passed"));
}
