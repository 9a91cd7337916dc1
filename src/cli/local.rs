//! The engine for a one-shot command (`render`, `mcp`, `fetch`): built from
//! the same settings and with the same limits as `serve`, with no listener,
//! and holding HA's first snapshot before the command starts.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Started};
use crate::state::WriterHandle;
use crate::Settings;

/// How long the first snapshot from HA is waited for before the command works
/// with what the cache holds.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(15);
/// How often the snapshot is looked for meanwhile.
const SNAPSHOT_POLL: Duration = Duration::from_millis(20);
/// How long pending cache writes get to land when the command ends.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// A running engine and how to stop it.
pub struct Local {
    /// What the command reads.
    pub engine: Engine,
    /// The max body of `serve`, which the stdio transport holds lines to.
    pub max_body_bytes: usize,
    /// Stops its tasks.
    stop: CancellationToken,
    /// Flushed at the end, so a Redis mirror keeps what this run wrote.
    writer: WriterHandle,
    /// The engine's tasks.
    tasks: Vec<JoinHandle<()>>,
}

impl Local {
    /// Builds and starts the engine from settings the command line has
    /// already validated, then waits for the first snapshot
    /// (when HA is configured) for at most [`SNAPSHOT_WAIT`].
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let store = crate::app::open_store(&settings).await?;
        let stop = CancellationToken::new();
        let Started {
            engine,
            writer,
            tasks,
        } = Engine::start(&settings, store, &stop).await?;
        if engine.link().configured {
            let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT;
            while engine.states().meta().last_resync_at.is_none()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(SNAPSHOT_POLL).await;
            }
        }
        Ok(Self {
            engine,
            max_body_bytes: crate::api::Limits::from_settings(&settings).max_body_bytes,
            stop,
            writer,
            tasks,
        })
    }

    /// Stops the engine's tasks and waits for them, briefly.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(FLUSH_WAIT, self.writer.flush()).await;
        drop(self.writer);
        for t in self.tasks {
            let _ = tokio::time::timeout(FLUSH_WAIT, t).await;
        }
    }
}
