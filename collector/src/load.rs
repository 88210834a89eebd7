//! Loading transmissions into the analytic database, exactly once.
//!
//! | file               | responsibility                                                   |
//! |--------------------|------------------------------------------------------------------|
//! | `load/schema.rs`   | column specs, type allow-list, modes and COPY formats            |
//! | `load/evolve.rs`   | the schema-evolution policy across PEC versions                  |
//! | `load/layout.rs`   | target DDL: hash partitions, added columns, staging tables       |
//! | `load/targets.rs`  | the target registry: columns, per-municipality slices            |
//! | `load/begin.rs`    | opening (or finding) a transmission and its staging table        |
//! | `load/batch.rs`    | one batch = one DB transaction: ledger row + `COPY` into staging |
//! | `load/commit.rs`   | making a transmission visible at once; abort; status             |
//! | `load/upsert.rs`   | upsert jobs: key, watermark, supersede, merge by key             |
//! | `load/quota.rs`    | per-agent quotas: open, per day, staged bytes, batches           |
//! | `load/reaper.rs`   | aborting transmissions nobody will finish                        |
//! | `load/queries/`    | the control-schema SQL they run                                  |
//!
//! Guarantees (see ARCHITECTURE.md): a batch is acknowledged only after the
//! transaction holding its rows and its ledger row has committed; a repeated
//! batch is recognised by `(transmission, seq)` and not loaded again; nothing
//! of a transmission is visible in the target until its commit, which either
//! replaces the municipality's rows (`snapshot`: `DELETE` + `INSERT`, row
//! locks only) or inserts the staged rows (`append`) in one transaction with
//! the state change. Commits of different municipalities never wait for each
//! other; analysts' reads never wait for a commit.

pub mod batch;
mod begin;
mod commit;
pub mod evolve;
pub mod layout;
mod quota;
pub mod reaper;
pub mod schema;
pub mod targets;
pub mod upsert;

use std::time::Duration;

use sqlx::PgPool;

use crate::admission::DecompressBudget;
use crate::config::{LimitsConfig, LoadConfig};

pub use batch::BatchOutcome;
pub use begin::{BeginOutcome, BeginSpec};
pub use commit::{CommitOutcome, NeverBegun, StatusOutcome, UpsertCommit};

/// Transmission states as stored in `transmissor.transmissions.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Open,
    Committed,
    Failed,
    Aborted,
}

impl TxState {
    pub fn parse(s: &str) -> Self {
        match s {
            "committed" => Self::Committed,
            "failed" => Self::Failed,
            "aborted" => Self::Aborted,
            _ => Self::Open,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Committed => "committed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    pub fn to_pb(self) -> transmissor_proto::pb::State {
        use transmissor_proto::pb::State;
        match self {
            Self::Open => State::Open,
            Self::Committed => State::Committed,
            Self::Failed => State::Failed,
            Self::Aborted => State::Aborted,
        }
    }
}

/// Loads transmissions; shared by all RPC handlers.
#[derive(Clone)]
pub struct Loader {
    pool: PgPool,
    target_schema: String,
    max_batch_raw_bytes: u64,
    /// Hash partitions of a new snapshot target.
    target_partitions: u16,
    /// Columns a target may grow to (schema evolution).
    max_target_columns: usize,
    /// Schema changes: how long one attempt waits for its lock, and how
    /// long a `Begin` keeps attempting.
    ddl_lock_timeout: Duration,
    ddl_retry_for: Duration,
    quotas: quota::Quotas,
    /// Decompressed bytes held at once over all calls.
    budget: DecompressBudget,
}

impl Loader {
    pub fn new(pool: PgPool, cfg: &LoadConfig, limits: &LimitsConfig) -> Self {
        Self {
            pool,
            target_schema: cfg.target_schema.clone(),
            max_batch_raw_bytes: cfg.max_batch_raw_bytes.as_u64(),
            target_partitions: cfg.target_partitions,
            max_target_columns: usize::from(cfg.max_target_columns),
            ddl_lock_timeout: cfg.ddl_lock_timeout,
            ddl_retry_for: cfg.ddl_retry_for,
            quotas: quota::Quotas::from(limits),
            // A batch waits in line for the budget at most a minute, then
            // the agent retries.
            budget: DecompressBudget::new(
                limits.decompress_budget.as_u64(),
                Duration::from_secs(60),
            ),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `schema.target`, quoted.
    fn qualified_target(&self, target: &str) -> String {
        format!(
            "{}.{}",
            transmissor_proto::names::quote_ident(&self.target_schema),
            transmissor_proto::names::quote_ident(target)
        )
    }
}

/// Staging table of a transmission, in schema `transmissor_staging`.
pub fn staging_table(transmission_id: i64) -> String {
    format!("transmissor_staging.t_{transmission_id}")
}

/// Schema that holds the hash partitions of snapshot targets.
pub const PARTS_SCHEMA: &str = "transmissor_parts";
