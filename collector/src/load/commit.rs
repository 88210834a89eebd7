//! Ending a transmission: commit (all at once), abort, and status.

use transmissor_proto::checksum::TransmissionDigest;
use transmissor_proto::names::{check_plain, quote_literal};

use super::schema::ColumnSpec;
use super::{Loader, TxState, layout, staging_table, targets, upsert};
use crate::error::CollectorError;
use crate::identity::Caller;

#[derive(Debug, Clone)]
pub struct CommitOutcome {
    pub state: TxState,
    pub rows: u64,
    /// Upsert: what the merge did.
    pub merged: upsert::Merged,
    /// Upsert: not loaded, a newer snapshot of the job was committed first.
    pub superseded: bool,
}

/// What an upsert transmission's commit adds to the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpsertCommit {
    /// The transmission holds the job's whole result: rows whose key it
    /// lacks are deleted.
    pub full: bool,
    /// The watermark lower bound the extraction used (not full).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone)]
pub struct StatusOutcome {
    pub state: TxState,
    pub held_seqs: Vec<u32>,
    pub error: Option<String>,
}

/// Identifies a job's transmission by run when its id is unknown.
pub struct NeverBegun {
    pub run_id: uuid::Uuid,
    pub job: String,
    pub mode: &'static str,
    pub target: String,
    pub plan_version: String,
}

struct Locked {
    ibge: String,
    job: String,
    state: TxState,
    mode: String,
    target: String,
    columns: Vec<ColumnSpec>,
    rows: i64,
}

/// Missing sequence numbers shown in a refused commit.
const SHOWN_MISSING: usize = 20;

/// How many of `1..=total` are not in `held` (ascending, distinct), and the
/// first [`SHOWN_MISSING`] of them. Work and memory are bounded by the
/// ledger's length, whatever `total` the caller declares.
fn missing_batches(held: impl IntoIterator<Item = u32>, total: u32) -> (u64, Vec<u32>) {
    let mut shown = Vec::new();
    let mut present = 0u64;
    let mut next = 1u64;
    let show_gap = |from: u64, to: u64, shown: &mut Vec<u32>| {
        let room = SHOWN_MISSING.saturating_sub(shown.len()) as u64;
        shown.extend((from..to).take(room as usize).map(|s| s as u32));
    };
    for seq in held.into_iter().map(u64::from) {
        if seq > u64::from(total) {
            break;
        }
        show_gap(next, seq, &mut shown);
        present += 1;
        next = seq + 1;
    }
    show_gap(next, u64::from(total) + 1, &mut shown);
    (u64::from(total) - present, shown)
}

impl Loader {
    /// Locks the caller's transmission row for the rest of `tx`.
    async fn lock(
        tx: &mut sqlx::PgConnection,
        caller: Caller,
        id: i64,
    ) -> Result<Locked, CollectorError> {
        #[allow(clippy::type_complexity)]
        let row: Option<(
            String,
            uuid::Uuid,
            String,
            String,
            String,
            sqlx::types::Json<Vec<ColumnSpec>>,
            i64,
            String,
        )> = sqlx::query_as(
            "SELECT ibge, agent_id, state, mode, target, columns, rows, job \
                 FROM transmissor.transmissions WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some((ibge, agent, state, mode, target, columns, rows, job))
                if agent == caller.agent_id =>
            {
                Ok(Locked {
                    ibge,
                    job,
                    state: TxState::parse(&state),
                    mode,
                    target,
                    columns: columns.0,
                    rows,
                })
            }
            _ => Err(CollectorError::TransmissionNotFound(id)),
        }
    }

    pub async fn commit(
        &self,
        caller: Caller,
        id: i64,
        total_batches: u32,
        total_rows: u64,
        digest: &str,
        merge: UpsertCommit,
    ) -> Result<CommitOutcome, CollectorError> {
        // The digest is the peer's text: its length is checked before
        // anything, its form before it is compared, and it is never echoed
        // unless it is 64 hex digits.
        if digest.len() > DIGEST_LEN {
            return Err(bad_digest(digest));
        }
        if total_batches > self.quotas.batches_per_transmission {
            return Err(CollectorError::InvalidArgument(format!(
                "transmission {id} declares {total_batches} batches; a transmission holds at most {} (limits.max_batches_per_transmission)",
                self.quotas.batches_per_transmission
            )));
        }
        let mut tx = self.pool.begin().await?;
        let t = Self::lock(&mut tx, caller, id).await?;
        match t.state {
            TxState::Committed => {
                return Ok(CommitOutcome {
                    state: TxState::Committed,
                    rows: t.rows as u64,
                    merged: upsert::Merged::default(),
                    superseded: false,
                });
            }
            TxState::Failed | TxState::Aborted => {
                return Err(CollectorError::FailedPrecondition(format!(
                    "transmission {id} is {} and cannot be committed",
                    t.state.as_str()
                )));
            }
            TxState::Open => {}
        }
        if digest.len() != DIGEST_LEN
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad_digest(digest));
        }

        let ledger: Vec<(i32, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT seq, rows, crc32c, raw_bytes, compressed_bytes FROM transmissor.batches \
             WHERE transmission_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // What is missing is computed from the ledger, never by walking
        // 1..=total_batches: the total is the caller's number.
        let (missing, shown) = missing_batches(ledger.iter().map(|r| r.0 as u32), total_batches);
        if missing > 0 {
            let shown: Vec<String> = shown.iter().map(u32::to_string).collect();
            return Err(CollectorError::FailedPrecondition(format!(
                "transmission {id} cannot commit: {missing} of {total_batches} batches missing ({}{})",
                shown.join(", "),
                if missing > shown.len() as u64 {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        let mut d = TransmissionDigest::new();
        let (mut raw, mut comp) = (0i64, 0i64);
        for &(seq, rows, crc, r, c) in &ledger {
            d.add(seq as u32, rows as u64, crc as u32);
            raw += r;
            comp += c;
        }
        let (batches, rows) = (d.batches(), d.rows());
        let computed = d.finish();
        if batches != total_batches || rows != total_rows || computed != digest {
            let msg = format!(
                "transmission {id} does not match what the agent extracted: collector holds {batches} batches / {rows} rows (digest {computed}), agent declares {total_batches} / {total_rows} (digest {digest})"
            );
            self.finish(&mut tx, id, TxState::Failed, Some(&msg))
                .await?;
            tx.commit().await?;
            return Err(CollectorError::FailedPrecondition(msg));
        }

        // Commits of one municipality into one target queue on its slice's
        // row; other municipalities' commits and analysts' reads never wait.
        targets::lock_slice(&mut tx, &t.target, &t.ibge).await?;
        let qualified = self.qualified_target(&t.target);
        let staging = staging_table(id);
        let ibge = quote_literal(&t.ibge);
        if t.mode == "snapshot" {
            let deleted = sqlx::query(sqlx::AssertSqlSafe(layout::delete_slice(&qualified, &ibge)))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tracing::debug!(transmission = id, deleted, "previous slice removed");
        }
        let mut merged = upsert::Merged::default();
        let mut upserted = None;
        if t.mode == "upsert" {
            let recorded = upsert::recorded(&mut tx, id).await?;
            if let Some(newest) = upsert::lock_newest(&mut tx, &t.ibge, &t.job).await?
                && recorded.snapshot_at < newest
            {
                let msg = format!(
                    "superseded: a transmission of job {} from a newer snapshot ({}) was committed first and holds every change this one holds",
                    t.job,
                    newest.to_rfc3339()
                );
                self.finish(&mut tx, id, TxState::Aborted, Some(&msg))
                    .await?;
                tx.commit().await?;
                tracing::info!(transmission = id, ibge = %t.ibge, job = %t.job, "upsert transmission superseded; not loaded");
                return Ok(CommitOutcome {
                    state: TxState::Aborted,
                    rows: 0,
                    merged,
                    superseded: true,
                });
            }
            if let Some(problem) = upsert::key_problem(&mut tx, &staging, &recorded.key).await? {
                let msg = format!("transmission {id} cannot be merged: {problem}");
                self.finish(&mut tx, id, TxState::Failed, Some(&msg))
                    .await?;
                tx.commit().await?;
                return Err(CollectorError::FailedPrecondition(msg));
            }
            merged = upsert::merge(
                &mut tx,
                &qualified,
                &staging,
                &recorded.key,
                &ibge,
                merge.full,
            )
            .await?;
            upsert::advance(
                &mut tx, &t.ibge, &t.job, &t.target, &recorded, merge.full, id,
            )
            .await?;
            upserted = Some(recorded);
        }
        let inserted = sqlx::query(sqlx::AssertSqlSafe(layout::insert_from_staging(
            &qualified, &staging, &t.columns, &ibge, id,
        )))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != rows {
            return Err(CollectorError::Internal(format!(
                "transmission {id}: staging holds {inserted} rows where the ledger counts {rows}"
            )));
        }
        targets::record_slice(&mut tx, &t.target, &t.ibge, id, &t.columns).await?;
        sqlx::query(audited_sql!("DROP TABLE {staging}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE transmissor.transmissions SET state = 'committed', finished_at = now(), \
               batches = $2, rows = $3, raw_bytes = $4, compressed_bytes = $5, error = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .bind(batches as i32)
        .bind(rows as i64)
        .bind(raw)
        .bind(comp)
        .execute(&mut *tx)
        .await?;
        if upserted.is_some() {
            sqlx::query(
                "UPDATE transmissor.transmissions SET full_extract = $2, since = $3, \
                   updated_rows = $4, deleted_rows = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(merge.full)
            .bind(merge.since)
            .bind(merged.updated as i64)
            .bind(merged.deleted as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(transmission = id, ibge = %t.ibge, target_table = %t.target, rows, batches, raw_bytes = raw, compressed_bytes = comp,
            updated = merged.updated, deleted = merged.deleted, full = merge.full, "transmission committed");
        Ok(CommitOutcome {
            state: TxState::Committed,
            rows,
            merged,
            superseded: false,
        })
    }

    /// Ends an open transmission without loading it. `run_id`/`job` find it
    /// when the agent never learned its id.
    pub async fn abort(
        &self,
        caller: Caller,
        id: Option<i64>,
        run_job: Option<NeverBegun>,
        failed: bool,
        reason: &str,
    ) -> Result<TxState, CollectorError> {
        let state = if failed {
            TxState::Failed
        } else {
            TxState::Aborted
        };
        let reason: String = reason.chars().take(4000).collect();
        let id = match (id, run_job) {
            (Some(id), _) => id,
            (None, Some(nb)) => {
                let NeverBegun {
                    run_id: run,
                    job,
                    mode,
                    target,
                    plan_version,
                } = nb;
                let found: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM transmissor.transmissions WHERE agent_id = $1 AND run_id = $2 AND job = $3",
                )
                .bind(caller.agent_id)
                .bind(run)
                .bind(&job)
                .fetch_optional(&self.pool)
                .await?;
                match found {
                    Some((id,)) => id,
                    None => {
                        // Never begun (e.g. the query failed while being described):
                        // record it so the failure shows like any transmission.
                        check_plain("job", &job)
                            .map_err(|e| CollectorError::InvalidArgument(e.to_string()))?;
                        check_plain("target", &target)
                            .map_err(|e| CollectorError::InvalidArgument(e.to_string()))?;
                        crate::admission::check_len("plan_version", &plan_version, 200)?;
                        // Counted against the daily quota exactly, like a
                        // Begin: checked and inserted under the agent's lock.
                        let mut tx = self.pool.begin().await?;
                        self.admit_transmission_locked(&mut tx, caller).await?;
                        sqlx::query(
                            "INSERT INTO transmissor.transmissions \
                               (ibge, agent_id, run_id, job, mode, target, plan_version, columns, state, error, finished_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, '[]', $8, $9, now()) \
                             ON CONFLICT (agent_id, run_id, job) DO NOTHING",
                        )
                        .bind(caller.ibge.as_str())
                        .bind(caller.agent_id)
                        .bind(run)
                        .bind(&job)
                        .bind(mode)
                        .bind(&target)
                        .bind(&plan_version)
                        .bind(state.as_str())
                        .bind(&reason)
                        .execute(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        tracing::warn!(ibge = %caller.ibge, %job, state = state.as_str(), %reason, "job ended before its transmission began");
                        return Ok(state);
                    }
                }
            }
            (None, None) => {
                return Err(CollectorError::InvalidArgument(
                    "abort needs a transmission id or a run id and job".into(),
                ));
            }
        };
        let mut tx = self.pool.begin().await?;
        let t = Self::lock(&mut tx, caller, id).await?;
        if t.state != TxState::Open {
            return Ok(t.state);
        }
        self.finish(&mut tx, id, state, Some(&reason)).await?;
        tx.commit().await?;
        tracing::warn!(transmission = id, ibge = %t.ibge, state = state.as_str(), %reason, "transmission ended without loading");
        Ok(state)
    }

    pub(super) async fn finish(
        &self,
        tx: &mut sqlx::PgConnection,
        id: i64,
        state: TxState,
        error: Option<&str>,
    ) -> Result<(), CollectorError> {
        sqlx::query(audited_sql!("DROP TABLE IF EXISTS {}", staging_table(id)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE transmissor.transmissions SET state = $2, error = $3, finished_at = now(), \
               batches = (SELECT count(*) FROM transmissor.batches WHERE transmission_id = $1), \
               rows = (SELECT coalesce(sum(rows), 0) FROM transmissor.batches WHERE transmission_id = $1) \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(error)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    pub async fn status(&self, caller: Caller, id: i64) -> Result<StatusOutcome, CollectorError> {
        let row: Option<(uuid::Uuid, String, Option<String>)> = sqlx::query_as(
            "SELECT agent_id, state, error FROM transmissor.transmissions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((agent, state, error)) if agent == caller.agent_id => Ok(StatusOutcome {
                state: TxState::parse(&state),
                held_seqs: self.held_seqs(id).await?,
                error,
            }),
            _ => Err(CollectorError::TransmissionNotFound(id)),
        }
    }
}

/// A transmission digest is a lowercase hex SHA-256: 64 characters.
const DIGEST_LEN: usize = 64;

/// The refusal of a malformed digest (its length, never its text).
fn bad_digest(digest: &str) -> CollectorError {
    CollectorError::InvalidArgument(format!(
        "digest is {} bytes long or not lowercase hex; a transmission digest is {DIGEST_LEN} lowercase hex digits",
        digest.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::missing_batches;

    #[test]
    fn missing_batches_are_counted_from_the_ledger() {
        assert_eq!(missing_batches([1, 2, 3], 3), (0, vec![]));
        assert_eq!(missing_batches([1, 3], 4), (2, vec![2, 4]));
        assert_eq!(missing_batches([], 0), (0, vec![]));
        // Held batches beyond the declared total do not count as present.
        assert_eq!(missing_batches([1, 2, 9], 3), (1, vec![3]));
        // A huge total costs nothing: only the first 20 are listed.
        let (n, shown) = missing_batches([1, 2], u32::MAX);
        assert_eq!(n, u64::from(u32::MAX) - 2);
        assert_eq!(shown, (3..23).collect::<Vec<u32>>());
    }
}
