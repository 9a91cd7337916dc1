//! The application for a one-shot command (`render`, `mcp`): built from the
//! same settings as `serve`, its HTTP listener on a loopback port of its own,
//! running, and holding HA's first snapshot before the command starts.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::{Application, Settings};

/// How long the first snapshot from HA is waited for before the command works
/// with what the cache holds.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(15);
/// How often the snapshot is looked for meanwhile.
const SNAPSHOT_POLL: Duration = Duration::from_millis(20);

/// A running application and how to stop it.
pub struct Local {
    /// What the command reads.
    pub state: AppState,
    /// Stops it.
    stop: CancellationToken,
    /// The application's task.
    running: JoinHandle<anyhow::Result<()>>,
}

impl Local {
    /// Builds and runs the application, then waits for the first snapshot
    /// (when HA is configured) for at most [`SNAPSHOT_WAIT`].
    pub async fn start(mut settings: Settings) -> anyhow::Result<Self> {
        settings.bind = ([127, 0, 0, 1], 0).into();
        let wait_for_ha = settings.home_assistant()?.is_some();
        let app = Application::build(settings).await?;
        let state = app.state().clone();
        let stop = app.shutdown_token();
        let running = tokio::spawn(app.run_until_stopped());
        if wait_for_ha {
            let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT;
            while state.states.meta().last_resync_at.is_none()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(SNAPSHOT_POLL).await;
            }
        }
        Ok(Self {
            state,
            stop,
            running,
        })
    }

    /// Stops the application and waits for it to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.running.await;
    }
}
