//! Opening a transmission: validate the job, create or check the target,
//! record the transmission and create its staging table, in one transaction.

use uuid::Uuid;

use transmissor_proto::names::{check_plain, quote_literal};

use super::schema::{self, ColumnSpec};
use super::{Loader, TxState, staging_table};
use crate::error::CollectorError;
use crate::identity::Caller;

/// What an agent asks to open.
#[derive(Debug, Clone)]
pub struct BeginSpec {
    pub run_id: Uuid,
    pub job: String,
    pub mode: &'static str,
    pub target: String,
    pub columns: Vec<ColumnSpec>,
    pub plan_version: String,
    pub snapshot: String,
    pub source_server_version: i32,
    pub agent_version: String,
    /// `text` or `binary`.
    pub copy_format: &'static str,
}

#[derive(Debug, Clone)]
pub struct BeginOutcome {
    pub transmission_id: i64,
    pub state: TxState,
    pub held_seqs: Vec<u32>,
}

impl Loader {
    pub async fn begin(
        &self,
        caller: Caller,
        spec: BeginSpec,
    ) -> Result<BeginOutcome, CollectorError> {
        check_plain("job", &spec.job)
            .map_err(|e| CollectorError::InvalidArgument(e.to_string()))?;
        check_plain("target", &spec.target)
            .map_err(|e| CollectorError::InvalidArgument(e.to_string()))?;
        schema::check_columns(&spec.columns)?;

        if let Some(found) = self.find(caller, spec.run_id, &spec.job).await? {
            return Ok(found);
        }
        schema::check_types(&self.pool, &spec.columns).await?;

        let columns_json = serde_json::to_value(&spec.columns)
            .map_err(|e| CollectorError::Internal(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('transmissor.target:' || $1))")
            .bind(&spec.target)
            .execute(&mut *tx)
            .await?;

        let registered: Option<(String, sqlx::types::Json<Vec<ColumnSpec>>)> =
            sqlx::query_as("SELECT mode, columns FROM transmissor.targets WHERE name = $1")
                .bind(&spec.target)
                .fetch_optional(&mut *tx)
                .await?;
        let qualified = self.qualified_target(&spec.target);
        let schema_error = match registered {
            None => {
                for stmt in schema::create_target_sql(&qualified, spec.mode, &spec.columns) {
                    sqlx::query(sqlx::AssertSqlSafe(stmt))
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO transmissor.targets (name, mode, columns) VALUES ($1, $2, $3)",
                )
                .bind(&spec.target)
                .bind(spec.mode)
                .bind(&columns_json)
                .execute(&mut *tx)
                .await?;
                tracing::info!(target_table = %spec.target, mode = spec.mode, columns = spec.columns.len(), "target table created");
                None
            }
            Some((mode, _)) if mode != spec.mode => Some(format!(
                "target {} holds {mode} data but job {} sends {}; use another target",
                spec.target, spec.job, spec.mode
            )),
            Some((_, cols)) => schema::diff(&spec.target, &cols.0, &spec.columns),
        };

        let state = if schema_error.is_some() {
            "failed"
        } else {
            "open"
        };
        let inserted: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO transmissor.transmissions \
               (ibge, agent_id, run_id, job, mode, target, plan_version, columns, source_snapshot, \
                source_server_version, agent_version, state, error, finished_at, copy_format) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                     CASE WHEN $12 = 'open' THEN NULL ELSE now() END, $14) \
             ON CONFLICT (agent_id, run_id, job) DO NOTHING RETURNING id",
        )
        .bind(caller.ibge.as_str())
        .bind(caller.agent_id)
        .bind(spec.run_id)
        .bind(&spec.job)
        .bind(spec.mode)
        .bind(&spec.target)
        .bind(&spec.plan_version)
        .bind(&columns_json)
        .bind(&spec.snapshot)
        .bind(spec.source_server_version)
        .bind(&spec.agent_version)
        .bind(state)
        .bind(&schema_error)
        .bind(spec.copy_format)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id,)) = inserted else {
            // A concurrent Begin for the same run and job won the race.
            tx.rollback().await?;
            return self
                .find(caller, spec.run_id, &spec.job)
                .await?
                .ok_or_else(|| CollectorError::Internal("transmission vanished".into()));
        };

        if let Some(msg) = schema_error {
            tx.commit().await?;
            tracing::warn!(transmission = id, ibge = %caller.ibge, job = %spec.job, error = %msg, "transmission refused");
            return Err(CollectorError::FailedPrecondition(msg));
        }

        let staging = staging_table(id);
        let ibge = quote_literal(caller.ibge.as_str());
        sqlx::query(audited_sql!(
            "CREATE TABLE {staging} (LIKE {qualified} INCLUDING DEFAULTS)"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(audited_sql!(
            "ALTER TABLE {staging} \
               ALTER COLUMN {ic} SET DEFAULT {ibge}, \
               ALTER COLUMN {tc} SET DEFAULT {id}, \
               ADD CONSTRAINT t_{id}_ibge CHECK ({ic} = {ibge})",
            ic = schema::IBGE_COLUMN,
            tc = schema::TRANSMISSION_COLUMN,
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(transmission = id, ibge = %caller.ibge, agent = %caller.agent_id, job = %spec.job, target_table = %spec.target, "transmission opened");
        Ok(BeginOutcome {
            transmission_id: id,
            state: TxState::Open,
            held_seqs: Vec::new(),
        })
    }

    /// The caller's transmission for (run, job), if any. A failed or aborted
    /// one is reported as the error it ended with.
    async fn find(
        &self,
        caller: Caller,
        run_id: Uuid,
        job: &str,
    ) -> Result<Option<BeginOutcome>, CollectorError> {
        let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, state, error FROM transmissor.transmissions \
             WHERE agent_id = $1 AND run_id = $2 AND job = $3",
        )
        .bind(caller.agent_id)
        .bind(run_id)
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, state, error)) = row else {
            return Ok(None);
        };
        let state = TxState::parse(&state);
        match state {
            TxState::Failed | TxState::Aborted => Err(CollectorError::FailedPrecondition(format!(
                "transmission {id} is {}: {}",
                state.as_str(),
                error.unwrap_or_default()
            ))),
            _ => Ok(Some(BeginOutcome {
                transmission_id: id,
                state,
                held_seqs: self.held_seqs(id).await?,
            })),
        }
    }

    pub(super) async fn held_seqs(&self, id: i64) -> Result<Vec<u32>, CollectorError> {
        let seqs: Vec<(i32,)> = sqlx::query_as(
            "SELECT seq FROM transmissor.batches WHERE transmission_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(seqs.into_iter().map(|(s,)| s as u32).collect())
    }
}
