//! The long-running agent: renewal and heartbeats in the background, the
//! schedule in the foreground, until the cancellation token fires. A service
//! wrapper (systemd, or the Windows service) calls [`run`] and cancels the
//! token to stop it; shutdown is ordered: the current run stops at a batch
//! boundary, then the background tasks end.

use tokio_util::sync::CancellationToken;

use crate::run::{Agent, AgentError};
use crate::schedule::Schedule;

/// Runs `agent` on `schedule` until `cancel`.
pub async fn run(
    agent: &Agent,
    schedule: &Schedule,
    cancel: &CancellationToken,
) -> Result<(), AgentError> {
    // Renewal and heartbeats run beside the schedule until shutdown.
    let mut background = agent.start_background(cancel);
    // Send what earlier runs left behind before waiting.
    for (_, job, outcome) in agent.recover().await? {
        tracing::info!(%job, ?outcome, "recovered");
    }
    loop {
        let next = schedule.next_after(chrono::Utc::now());
        tracing::info!(next_run = %next.to_rfc3339(), "waiting for the next run");
        // Sleep in short steps so a corrected wall clock is followed.
        while chrono::Utc::now() < next {
            let left = (next - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = cancel.cancelled() => {
                    while background.join_next().await.is_some() {}
                    return Ok(());
                }
                () = tokio::time::sleep(left.min(std::time::Duration::from_secs(30))) => {}
            }
        }
        let report = agent.run_once(cancel).await;
        for line in report.to_string().lines() {
            tracing::info!(summary = line, "run finished");
        }
        if cancel.is_cancelled() {
            while background.join_next().await.is_some() {}
            return Ok(());
        }
    }
}
