//! The reaper: open transmissions nobody will finish are aborted and their
//! staging tables dropped, so what agents start cannot hold space in the
//! analytic database forever. A transmission is stale when it had no
//! `Begin` or batch for `limits.stale_transmission_after`, or at once when
//! its agent was revoked (re-enrollment revokes the previous agent).
//!
//! A stale transmission being committed right now is skipped (its row is
//! locked); the next round sees it committed. An agent that comes back
//! after its transmission was reaped is told it was aborted, and its next
//! run extracts afresh.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Loader, TxState};
use crate::error::CollectorError;

/// Transmissions aborted per statement round (the rest wait for the next).
const PER_ROUND: i64 = 500;

impl Loader {
    /// Aborts every stale open transmission; returns how many.
    pub async fn reap(&self, stale_after: Duration) -> Result<u64, CollectorError> {
        let stale: Vec<(i64, String, Uuid, bool)> =
            sqlx::query_as(include_str!("queries/transmissions_stale.sql"))
                .bind(stale_after.as_secs_f64())
                .bind(PER_ROUND)
                .fetch_all(&self.pool)
                .await?;
        let mut reaped = 0;
        for (id, ibge, agent, revoked) in stale {
            let reason = if revoked {
                "aborted by the collector: its agent was revoked".to_string()
            } else {
                format!(
                    "aborted by the collector: nothing received for {} (limits.stale_transmission_after)",
                    humantime::format_duration(stale_after)
                )
            };
            let mut tx = self.pool.begin().await?;
            let state: Option<(String,)> = sqlx::query_as(
                "SELECT state FROM transmissor.transmissions WHERE id = $1 FOR UPDATE SKIP LOCKED",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if state.is_none_or(|(s,)| TxState::parse(&s) != TxState::Open) {
                continue;
            }
            self.finish(&mut tx, id, TxState::Aborted, Some(&reason))
                .await?;
            tx.commit().await?;
            reaped += 1;
            tracing::warn!(transmission = id, %ibge, %agent, revoked, "stale transmission aborted, staging dropped");
        }
        Ok(reaped)
    }

    /// Reaps every `every` until `stop`, the first round one period after
    /// start (a restarted collector first lets agents come back).
    pub async fn run_reaper(self, stale_after: Duration, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            match self.reap(stale_after).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reaped = n, "stale transmissions aborted"),
                Err(e) => tracing::warn!(error = %e, "cannot reap stale transmissions"),
            }
        }
    }
}
