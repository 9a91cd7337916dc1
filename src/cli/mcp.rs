//! `ha-fetchers mcp`: the Model Context Protocol over stdio, for clients that
//! launch a command. The process builds the same application as `serve`
//! (from the same settings: HA_URL, REDIS_URL, DATABASE_URL, …) so its state
//! is a live mirror of its own; only the HTTP listener is left unused, on a
//! loopback port of its own. Logs go to stderr: stdout is the protocol's.

use std::process::ExitCode;

use anyhow::Context;
use rmcp::ServiceExt;

use super::local::Local;
use crate::mcp::Mcp;
use crate::Settings;

pub async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let app = Local::start(settings).await?;
    let state = std::sync::Arc::new(app.state.clone());
    let state_limit = state.limits.max_body_bytes;
    let lists = crate::mcp::lists(&state, tokio_util::sync::CancellationToken::new());
    let service = Mcp::new(state, lists)
        .serve(crate::mcp::stdio::guarded(
            tokio::io::stdin(),
            tokio::io::stdout(),
            state_limit,
        ))
        .await
        .context("the MCP client did not initialize over stdio")?;
    let reason = service.waiting().await;
    tracing::info!(?reason, "MCP client closed stdio");
    app.stop().await;
    Ok(ExitCode::SUCCESS)
}
