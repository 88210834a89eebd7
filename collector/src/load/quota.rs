//! Per-agent quotas that need the database: open transmissions and
//! transmissions per day (at `Begin`), staged bytes and batches per
//! transmission (at `PutBatch`, before anything is decompressed).
//!
//! The open-transmission quota is exact: `Begin` checks it inside the
//! transaction that inserts the transmission, after taking a
//! transaction-level advisory lock on the agent, so concurrent `Begin`s of
//! one agent check and insert one at a time (other agents never wait). The
//! other checks read, then act: two calls of the same agent racing can pass
//! together, so those quotas can be overshot by at most the agent's
//! concurrent calls (`limits.max_calls_per_agent`), never without bound.

use uuid::Uuid;

use super::{Loader, TxState};
use crate::config::LimitsConfig;
use crate::error::CollectorError;
use crate::identity::Caller;

/// The quotas, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub open_per_agent: u32,
    pub per_agent_per_day: u32,
    pub staged_bytes_per_agent: u64,
    pub batches_per_transmission: u32,
}

impl From<&LimitsConfig> for Quotas {
    fn from(c: &LimitsConfig) -> Self {
        Self {
            open_per_agent: c.max_open_transmissions_per_agent,
            per_agent_per_day: c.max_transmissions_per_agent_per_day,
            staged_bytes_per_agent: c.max_staged_bytes_per_agent.as_u64(),
            batches_per_transmission: c.max_batches_per_transmission,
        }
    }
}

impl Loader {
    /// May `caller` open one more transmission (or record one more that
    /// never began)?
    pub(super) async fn admit_transmission(&self, caller: Caller) -> Result<(), CollectorError> {
        let mut conn = self.pool.acquire().await?;
        self.check_transmission_quota(&mut conn, caller).await
    }

    /// As [`Self::admit_transmission`], exact: inside the transaction that
    /// will insert the transmission, holding the agent's advisory lock
    /// until it ends.
    pub(super) async fn admit_transmission_locked(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: Caller,
    ) -> Result<(), CollectorError> {
        sqlx::query(include_str!("queries/agent_begin_lock.sql"))
            .bind(caller.agent_id)
            .execute(&mut *tx)
            .await?;
        self.check_transmission_quota(tx, caller).await
    }

    async fn check_transmission_quota(
        &self,
        conn: &mut sqlx::PgConnection,
        caller: Caller,
    ) -> Result<(), CollectorError> {
        let (open, today): (i64, i64) =
            sqlx::query_as(include_str!("queries/agent_begin_quota.sql"))
                .bind(caller.agent_id)
                .fetch_one(conn)
                .await?;
        let q = &self.quotas;
        if open >= i64::from(q.open_per_agent) {
            return Err(CollectorError::QuotaExceeded(format!(
                "agent {} already holds {open} open transmissions (limits.max_open_transmissions_per_agent = {}); commit or abort them first",
                caller.agent_id, q.open_per_agent
            )));
        }
        if today >= i64::from(q.per_agent_per_day) {
            return Err(CollectorError::QuotaExceeded(format!(
                "agent {} started {today} transmissions in the last 24 hours (limits.max_transmissions_per_agent_per_day = {})",
                caller.agent_id, q.per_agent_per_day
            )));
        }
        Ok(())
    }

    /// Checked before a batch is decompressed: the transmission is the
    /// caller's, open or holding this batch already, the sequence number is
    /// within the quota, and the agent's staged bytes leave room for it.
    pub(super) async fn admit_batch(
        &self,
        caller: Caller,
        id: i64,
        seq: u32,
        raw_len: u64,
    ) -> Result<(), CollectorError> {
        let q = &self.quotas;
        if seq > q.batches_per_transmission {
            return Err(CollectorError::QuotaExceeded(format!(
                "batch {seq} of transmission {id}: a transmission holds at most {} batches (limits.max_batches_per_transmission)",
                q.batches_per_transmission
            )));
        }
        let row: Option<(Uuid, String, bool, i64)> =
            sqlx::query_as(include_str!("queries/batch_admit.sql"))
                .bind(id)
                .bind(seq as i32)
                .fetch_optional(&self.pool)
                .await?;
        let Some((_, state, held, staged)) =
            row.filter(|(agent, _, _, _)| *agent == caller.agent_id)
        else {
            return Err(CollectorError::TransmissionNotFound(id));
        };
        // A repeat of a held batch, or a batch of a finished transmission,
        // goes on: it is answered from the ledger and stages nothing.
        if !held
            && TxState::parse(&state) == TxState::Open
            && (staged.max(0) as u64).saturating_add(raw_len) > q.staged_bytes_per_agent
        {
            return Err(CollectorError::QuotaExceeded(format!(
                "agent {} holds {staged} raw bytes staged in open transmissions; this batch would pass limits.max_staged_bytes_per_agent ({} bytes)",
                caller.agent_id, q.staged_bytes_per_agent
            )));
        }
        Ok(())
    }
}
