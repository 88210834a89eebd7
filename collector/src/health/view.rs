//! What the API returns and the dashboard shows: typed read models, the
//! same for JSON and HTML (so both show a municipality the same way).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::monitor::{Connectivity, DataState, HealthState, Overall, Reason};

/// Days in a municipality's sparkline of daily rows.
pub const SPARK_DAYS: usize = 30;

/// One municipality on the overview (and at the top of its own page).
#[derive(Debug, Clone, Serialize)]
pub struct MunicipalityRow {
    pub ibge: String,
    pub name: String,
    /// Two-letter state (from the IBGE code's first two digits).
    pub uf: &'static str,
    pub overall: Overall,
    pub connectivity: Connectivity,
    pub data: DataState,
    pub health: HealthState,
    /// Since when the overall state holds.
    pub since: DateTime<Utc>,
    pub evaluated_at: DateTime<Utc>,
    pub reasons: Vec<Reason>,
    /// The latest committed transmission of any job.
    pub last_success: Option<DateTime<Utc>>,
    /// Rows of the latest committed transmissions, summed over jobs.
    pub last_rows: Option<i64>,
    /// Rows committed per local day, oldest first, the last
    /// [`SPARK_DAYS`] days (today last).
    pub daily_rows: Vec<i64>,
    pub agent: Option<AgentSummary>,
    /// The last transmission of each job.
    pub jobs: Vec<JobLast>,
}

/// The agent of a municipality, as far as the overview needs it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSummary {
    pub id: Uuid,
    pub version: Option<String>,
    pub pec_version: Option<String>,
    pub plan_version: Option<i64>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// The last transmission of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct JobLast {
    pub job: String,
    /// `open`, `committed`, `failed`, `aborted`.
    pub state: String,
    pub at: DateTime<Utc>,
    pub rows: i64,
    pub last_commit: Option<DateTime<Utc>>,
}

/// Counts per overall state, every state present (zero included), best
/// first.
#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    pub state: Overall,
    pub count: u64,
}

/// The overview: counts and one row per municipality.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub counts: Vec<StateCount>,
    pub total: u64,
    /// Rows after the filter, sorted.
    pub rows: Vec<MunicipalityRow>,
    /// The oldest evaluation among the rows (how fresh the page is).
    pub evaluated_at: Option<DateTime<Utc>>,
}

/// Filter and order of the overview (query string of the page and of
/// `GET /api/v1/municipalities`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    /// Overall state, by its stable name.
    pub state: Option<Overall>,
    /// Two-letter state.
    pub uf: Option<String>,
    /// Part of the name or of the IBGE code, any case.
    pub q: Option<String>,
    pub sort: Option<SortKey>,
    /// Descending.
    #[serde(default)]
    pub desc: bool,
    /// Dashboard language (`pt` default, `en`); ignored by the API.
    pub lang: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Worst first, then name.
    #[default]
    State,
    Uf,
    Name,
    LastSuccess,
    Rows,
    CertExpiry,
}

/// One transmission.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TransmissionRow {
    pub id: i64,
    pub ibge: String,
    /// The municipality's name.
    pub name: String,
    pub job: String,
    pub target: String,
    pub mode: String,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub rows: i64,
    pub raw_bytes: i64,
    pub compressed_bytes: i64,
    pub plan_version: String,
    pub agent_version: String,
    /// In full (no personal data: errors are built without data values).
    pub error: Option<String>,
}

/// A page of rows and the cursor of the next (older) page.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `before` to get the next page; absent on the last one.
    pub next_before: Option<i64>,
}

/// One stored change of state.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// `connectivity`, `data`, `health` or `overall`.
    pub axis: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    pub reason_pt_br: String,
}

/// One day of a municipality's transmissions (the charts).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DailyPoint {
    pub day: NaiveDate,
    pub rows: i64,
    /// Seconds of the day's committed transmissions, summed.
    pub seconds: f64,
    pub committed: i64,
    pub failed: i64,
}

/// An agent, as `GET /api/v1/agents` and the municipality page show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AgentRow {
    pub id: Uuid,
    pub ibge: String,
    pub name: String,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub version: Option<String>,
    pub pec_version: Option<String>,
    /// `central` or `local`.
    pub job_source: Option<String>,
    pub plan_version: Option<i64>,
    /// `applied`, `expired`, `refused: <reason>`, or absent before the
    /// first heartbeat.
    pub plan_status: Option<String>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub enrolled_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub spool_used_bytes: Option<i64>,
    pub spool_limit_bytes: Option<i64>,
    /// The last doctor summary the agent reported.
    pub doctor: Option<sqlx::types::Json<DoctorSummary>>,
}

/// What the agent's last `transmissor-agent doctor` run found, as its
/// heartbeat reported it (the texts stay on the agent, in its language).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DoctorSummary {
    pub ran_at: Option<DateTime<Utc>>,
    /// `pass`, `warn` or `fail`: the worst item.
    pub worst: String,
    pub passed: u32,
    pub warnings: u32,
    pub failures: u32,
    /// The checks that warned or failed.
    pub problems: Vec<DoctorProblem>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DoctorProblem {
    /// e.g. `database.write_access`.
    pub check: String,
    /// `warn` or `fail`.
    pub outcome: String,
    /// What was found, e.g. `can_write`.
    pub code: String,
}

/// A municipality's own page.
#[derive(Debug, Clone, Serialize)]
pub struct MunicipalityDetail {
    pub municipality: MunicipalityRow,
    /// Newest first.
    pub history: Vec<HistoryEntry>,
    /// Oldest first, the last 90 days.
    pub daily: Vec<DailyPoint>,
    /// Newest first.
    pub recent_transmissions: Vec<TransmissionRow>,
    /// Failed or aborted, newest first, errors in full.
    pub recent_errors: Vec<TransmissionRow>,
    pub agents: Vec<AgentRow>,
    /// Operators' newest run requests (retries), newest first.
    pub run_requests: Vec<crate::run_requests::RunRequestRow>,
}
