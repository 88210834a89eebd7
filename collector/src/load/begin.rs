//! Opening a transmission: validate the job, create the target or evolve its
//! columns (see [`super::evolve`]), record the transmission and create its
//! staging table, in one transaction. Only a `Begin` that creates or alters
//! the target takes a lock of the target (briefly, with a short
//! `lock_timeout`, retried); every other `Begin` takes none.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use transmissor_proto::names::check_plain;

use super::schema::{self, ColumnSpec};
use super::upsert::{self, UpsertSpec};
use super::{Loader, TxState, evolve, layout, staging_table, targets};
use crate::error::CollectorError;
use crate::identity::Caller;

/// What a `Begin` does to the target, decided from its registry entry.
enum Plan {
    /// The target does not exist yet: create it.
    Create,
    /// Load into it, adding these columns first (none: the daily case).
    Load { added: Vec<ColumnSpec> },
    /// Refuse the transmission (other mode, changed column type).
    Refuse(String),
}

impl Plan {
    /// `max_columns` bounds what a target may grow to: one agent (perhaps a
    /// compromised one) must not spend the columns PostgreSQL allows a
    /// table (1,600, dropped ones included) for all municipalities.
    fn of(registered: Option<targets::Target>, spec: &BeginSpec, max_columns: usize) -> Self {
        let Some(t) = registered else {
            if spec.columns.len() > max_columns {
                return Self::Refuse(format!(
                    "job {} sends {} columns; a target holds at most {max_columns} (load.max_target_columns)",
                    spec.job,
                    spec.columns.len()
                ));
            }
            return Self::Create;
        };
        if t.mode != spec.mode {
            return Self::Refuse(format!(
                "target {} holds {} data but job {} sends {}; use another target",
                spec.target, t.mode, spec.job, spec.mode
            ));
        }
        if let Some(u) = &spec.upsert
            && t.key.as_deref() != Some(u.key.as_slice())
        {
            return Self::Refuse(format!(
                "target {} is merged by key ({}) but job {} sends key ({}); use another target",
                spec.target,
                t.key.as_deref().unwrap_or_default().join(", "),
                spec.job,
                u.key.join(", ")
            ));
        }
        match evolve::evolve(&t.columns, &spec.columns) {
            Ok(e) if t.columns.len() + e.added.len() > max_columns => Self::Refuse(format!(
                "target {} has {} columns and this transmission would add {} more; a target holds at most {max_columns} (load.max_target_columns)",
                spec.target,
                t.columns.len(),
                e.added.len()
            )),
            Ok(e) => Self::Load { added: e.added },
            Err(changes) => Self::Refuse(evolve::change_message(&spec.target, &changes)),
        }
    }

    /// Creating or altering the target (a lock of the target) is needed.
    fn needs_ddl(&self) -> bool {
        match self {
            Self::Create => true,
            Self::Load { added } => !added.is_empty(),
            Self::Refuse(_) => false,
        }
    }
}

/// Says on each new pseudonymised column of a target what it holds
/// (`COMMENT ON COLUMN`), for the analysts who read it.
async fn comment_pseudonyms(
    conn: &mut sqlx::PgConnection,
    qualified: &str,
    cols: &[ColumnSpec],
) -> Result<(), CollectorError> {
    for stmt in layout::pseudonym_comments(qualified, cols) {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `lock_not_available`: the schema change's `lock_timeout` expired.
fn is_lock_timeout(e: &CollectorError) -> bool {
    matches!(e, CollectorError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03"))
}

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
    /// Mode `upsert` only.
    pub upsert: Option<UpsertSpec>,
}

#[derive(Debug, Clone)]
pub struct BeginOutcome {
    pub transmission_id: i64,
    pub state: TxState,
    pub held_seqs: Vec<u32>,
    /// Mode `upsert`: the job's committed watermark for the municipality.
    pub committed: upsert::Committed,
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
        schema::check_columns(&spec.columns, self.max_target_columns)?;
        crate::admission::check_len("plan_version", &spec.plan_version, 200)?;
        crate::admission::check_len("snapshot", &spec.snapshot, 8192)?;
        crate::admission::check_len("agent_version", &spec.agent_version, 100)?;
        if (spec.mode == "upsert") != spec.upsert.is_some() {
            return Err(CollectorError::InvalidArgument(format!(
                "job {}: key and watermark go with mode upsert, and only with it",
                spec.job
            )));
        }

        if let Some(mut found) = self.find(caller, spec.run_id, &spec.job).await? {
            if spec.upsert.is_some() {
                found.committed = self.committed(caller, &spec.job).await?;
            }
            return Ok(found);
        }
        self.admit_transmission(caller).await?;

        // A schema change needs a brief exclusive lock on the target: it is
        // tried with a short lock_timeout, so readers queue behind it for
        // at most that long, and tried again after a jittered pause while
        // the target is busy.
        let deadline = Instant::now() + self.ddl_retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.open(caller, &spec).await {
                Err(e) if is_lock_timeout(&e) => {
                    if Instant::now() >= deadline {
                        tracing::warn!(ibge = %caller.ibge, job = %spec.job, target_table = %spec.target, "schema change gave way to readers until the deadline; the agent will retry");
                        return Err(CollectorError::TargetBusy(format!(
                            "target {} is busy: adding the columns this transmission brings needs a moment without long-running readers, and none came within {:?}; retry later",
                            spec.target, self.ddl_retry_for
                        )));
                    }
                    tracing::debug!(target_table = %spec.target, "schema change gave way to readers; retrying");
                    let jittered = rand::random_range(Duration::ZERO..=pause);
                    tokio::time::sleep(jittered).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// One attempt at opening the transmission: one database transaction.
    async fn open(&self, caller: Caller, spec: &BeginSpec) -> Result<BeginOutcome, CollectorError> {
        let mut tx = self.pool.begin().await?;
        self.admit_transmission_locked(&mut tx, caller).await?;
        let mut plan = Plan::of(
            targets::read(&mut tx, &spec.target).await?,
            spec,
            self.max_target_columns,
        );
        if plan.needs_ddl() {
            // Creating or altering the target: one Begin at a time per
            // target, and never a long wait in front of readers.
            sqlx::query(audited_sql!(
                "SET LOCAL lock_timeout = '{}ms'",
                self.ddl_lock_timeout.as_millis()
            ))
            .execute(&mut *tx)
            .await?;
            sqlx::query(include_str!("queries/target_ddl_lock.sql"))
                .bind(&spec.target)
                .execute(&mut *tx)
                .await?;
            plan = Plan::of(
                targets::read(&mut tx, &spec.target).await?,
                spec,
                self.max_target_columns,
            );
        }
        let schema_error = match &plan {
            Plan::Refuse(msg) => Some(msg.clone()),
            _ => None,
        };

        let columns_json = serde_json::to_value(&spec.columns)
            .map_err(|e| CollectorError::Internal(e.to_string()))?;
        let state = if schema_error.is_some() {
            "failed"
        } else {
            "open"
        };
        let inserted: Option<(i64,)> =
            sqlx::query_as(include_str!("queries/transmission_insert.sql"))
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
                .bind(spec.upsert.as_ref().map(|u| &u.key))
                .bind(spec.upsert.as_ref().map(|u| &u.watermark))
                .bind(spec.upsert.as_ref().map(|u| u.snapshot_at))
                .bind(spec.upsert.as_ref().and_then(|u| u.proves))
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

        let qualified = self.qualified_target(&spec.target);
        match &plan {
            Plan::Create => {
                // Snapshot and upsert targets hold one slice per
                // municipality: hash-partitioned by it.
                let partitions = if spec.mode == "append" {
                    0
                } else {
                    self.target_partitions
                };
                let key = spec.upsert.as_ref().map(|u| u.key.as_slice());
                let mut ddl =
                    layout::create_target(&qualified, &spec.target, &spec.columns, partitions);
                if let Some(key) = key {
                    ddl.push(upsert::key_index(&qualified, key));
                }
                for stmt in ddl {
                    sqlx::query(sqlx::AssertSqlSafe(stmt))
                        .execute(&mut *tx)
                        .await?;
                }
                targets::register(
                    &mut tx,
                    &spec.target,
                    spec.mode,
                    partitions,
                    key,
                    &spec.columns,
                    id,
                )
                .await?;
                comment_pseudonyms(&mut tx, &qualified, &spec.columns).await?;
                tracing::info!(transmission = id, target_table = %spec.target, mode = spec.mode, columns = spec.columns.len(), partitions, "target table created");
            }
            Plan::Load { added } if !added.is_empty() => {
                sqlx::query(sqlx::AssertSqlSafe(layout::add_columns(&qualified, added)))
                    .execute(&mut *tx)
                    .await?;
                targets::add_columns(&mut tx, &spec.target, added, id).await?;
                comment_pseudonyms(&mut tx, &qualified, added).await?;
                let names: Vec<&str> = added.iter().map(|c| c.name.as_str()).collect();
                tracing::info!(transmission = id, ibge = %caller.ibge, target_table = %spec.target, added = ?names, "target columns added");
            }
            Plan::Load { .. } | Plan::Refuse(_) => {}
        }

        sqlx::query(sqlx::AssertSqlSafe(layout::create_staging(
            &staging_table(id),
            &spec.columns,
        )))
        .execute(&mut *tx)
        .await?;
        let committed = match &spec.upsert {
            Some(_) => upsert::committed(&mut tx, caller.ibge.as_str(), &spec.job).await?,
            None => upsert::Committed::default(),
        };
        tx.commit().await?;
        tracing::info!(transmission = id, ibge = %caller.ibge, agent = %caller.agent_id, job = %spec.job, target_table = %spec.target, "transmission opened");
        Ok(BeginOutcome {
            transmission_id: id,
            state: TxState::Open,
            held_seqs: Vec::new(),
            committed,
        })
    }

    async fn committed(
        &self,
        caller: Caller,
        job: &str,
    ) -> Result<upsert::Committed, CollectorError> {
        let mut conn = self.pool.acquire().await?;
        upsert::committed(&mut conn, caller.ibge.as_str(), job).await
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
                committed: upsert::Committed::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cols: &[&str]) -> BeginSpec {
        BeginSpec {
            run_id: Uuid::nil(),
            job: "j".into(),
            mode: "snapshot",
            target: "t".into(),
            columns: cols
                .iter()
                .map(|c| ColumnSpec::builtin(c, "integer"))
                .collect(),
            plan_version: String::new(),
            snapshot: String::new(),
            source_server_version: 0,
            agent_version: String::new(),
            copy_format: "text",
            upsert: None,
        }
    }

    fn target(cols: &[&str]) -> Option<targets::Target> {
        Some(targets::Target {
            mode: "snapshot".into(),
            partitions: 16,
            columns: spec(cols).columns,
            key: None,
        })
    }

    #[test]
    fn a_target_grows_only_to_its_column_limit() {
        assert!(matches!(
            Plan::of(None, &spec(&["a", "b"]), 2),
            Plan::Create
        ));
        assert!(matches!(
            Plan::of(None, &spec(&["a", "b", "c"]), 2),
            Plan::Refuse(_)
        ));
        let plan = Plan::of(target(&["a"]), &spec(&["a", "b"]), 2);
        assert!(matches!(&plan, Plan::Load { added } if added.len() == 1));
        assert!(plan.needs_ddl());
        let Plan::Refuse(msg) = Plan::of(target(&["a", "b"]), &spec(&["c"]), 2) else {
            panic!("a third column was accepted");
        };
        assert!(
            msg.contains("has 2 columns and this transmission would add 1 more"),
            "{msg}"
        );
        // Sending fewer columns than the target has is always fine.
        assert!(!Plan::of(target(&["a", "b"]), &spec(&["a"]), 2).needs_ddl());
    }
}
