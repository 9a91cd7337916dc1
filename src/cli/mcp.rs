//! `ha-fetchers mcp`: the Model Context Protocol over stdio, for clients that
//! launch a command. The process builds the same engine as `serve` (from the
//! same settings: HA_URL, REDIS_URL, DATABASE_URL, …) so its state is a live
//! mirror of its own; it opens no listener. Logs go to stderr: stdout is the
//! protocol's.

use std::process::ExitCode;

use anyhow::Context;
use rmcp::ServiceExt;

use super::local::Local;
use crate::mcp::Mcp;
use crate::Settings;

pub async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let app = Local::start(settings).await?;
    let lists = crate::mcp::lists(&app.engine, tokio_util::sync::CancellationToken::new());
    let service = Mcp::new(app.engine.clone(), lists)
        .serve(crate::mcp::stdio::guarded(
            tokio::io::stdin(),
            tokio::io::stdout(),
            app.max_body_bytes,
        ))
        .await
        .context("the MCP client did not initialize over stdio")?;
    let reason = service.waiting().await;
    tracing::info!(?reason, "MCP client closed stdio");
    app.stop().await;
    Ok(ExitCode::SUCCESS)
}
