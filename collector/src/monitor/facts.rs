//! What is known of a municipality when its health is derived: typed
//! inputs, gathered by the caller (heartbeats, transmissions, plans).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use transmissor_plan::{PecVersion, Schedule};

/// One municipality (one agent).
#[derive(Debug, Clone, Default)]
pub struct MunicipalityFacts {
    pub ibge: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The interval the agent heartbeats at (zero counts as one minute).
    pub heartbeat_interval: Duration,
    /// `NotAfter` of the agent's current certificate.
    pub cert_not_after: Option<DateTime<Utc>>,
    /// The agent refused the plan it was sent (its text, from the heartbeat).
    pub plan_refusal: Option<String>,
    /// The plan the agent runs has expired (from the heartbeat).
    pub plan_expired: bool,
    /// The PEC version the agent reported.
    pub pec_version: Option<PecVersion>,
    pub jobs: Vec<JobFacts>,
    /// One text per target whose columns this municipality lacks.
    pub schema_drift: Vec<String>,
    /// The municipality's own holidays.
    pub extra_holidays: BTreeSet<NaiveDate>,
}

/// One job of the municipality's plan.
#[derive(Debug, Clone, Default)]
pub struct JobFacts {
    pub job: String,
    /// `None`: not scheduled (run on demand), never late.
    pub schedule: Option<Schedule>,
    /// Slots before this (when the job entered the plan the agent runs)
    /// are not expected; slots before enrollment never are.
    pub expected_since: Option<DateTime<Utc>>,
    /// When the last committed transmission of the job committed.
    pub last_commit: Option<DateTime<Utc>>,
    /// The last transmission of the job, whatever its outcome.
    pub last_attempt: Option<Attempt>,
    /// Rows of the last committed transmission.
    pub latest_rows: Option<u64>,
    /// Rows of the committed transmissions before it, newest first.
    pub row_history: Vec<u64>,
}

/// A transmission of a job and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// How an attempt ended (`open`: still running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Open,
    Committed,
    Failed,
    Refused,
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Committed => "committed",
            Self::Failed => "failed",
            Self::Refused => "refused",
            Self::Aborted => "aborted",
        }
    }

    /// As in "a última tentativa …".
    pub fn pt_br(self) -> &'static str {
        match self {
            Self::Open => "está em andamento",
            Self::Committed => "foi concluída",
            Self::Failed => "falhou",
            Self::Refused => "foi recusada",
            Self::Aborted => "foi abortada",
        }
    }

    /// Failed, refused or aborted.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Refused | Self::Aborted)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of the whole fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetFacts {
    /// The newest PEC version any agent reports.
    pub newest_pec: Option<PecVersion>,
    /// The oldest PEC version the central team still accepts without a
    /// warning; when set, it is the reference instead of `newest_pec` (a
    /// PEC release reaches 5,570 municipalities over weeks).
    pub minimum_pec: Option<PecVersion>,
}

impl FleetFacts {
    /// The version an agent is compared with.
    pub fn expected_pec(&self) -> Option<PecVersion> {
        self.minimum_pec.or(self.newest_pec)
    }
}
