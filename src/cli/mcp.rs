//! `ha-fetchers mcp`: the Model Context Protocol over stdio, for clients that
//! launch a command. The process builds the same application as `serve`
//! (from the same settings: HA_URL, REDIS_URL, DATABASE_URL, …) so its state
//! is a live mirror of its own; only the HTTP listener is left unused, on a
//! loopback port of its own. Logs go to stderr: stdout is the protocol's.

use std::process::ExitCode;

use anyhow::Context;
use rmcp::ServiceExt;

use crate::mcp::Mcp;
use crate::{Application, Settings};

/// How long the first snapshot from HA is waited for before serving what
/// the cache holds (a client's first `live_context` should see the house).
const FIRST_SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn serve(mut settings: Settings) -> anyhow::Result<ExitCode> {
    settings.bind = ([127, 0, 0, 1], 0).into();
    let app = Application::build(settings).await?;
    let state = std::sync::Arc::new(app.state().clone());
    let stop = app.shutdown_token();
    if app.state().ha_configured {
        let waited = std::time::Instant::now();
        while app
            .writer()
            .stats
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
            && waited.elapsed() < FIRST_SNAPSHOT_WAIT
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let running = tokio::spawn(app.run_until_stopped());
    let service = Mcp::new(state)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP client did not initialize over stdio")?;
    let reason = service.waiting().await;
    tracing::info!(?reason, "MCP client closed stdio");
    stop.cancel();
    let _ = running.await;
    Ok(ExitCode::SUCCESS)
}
