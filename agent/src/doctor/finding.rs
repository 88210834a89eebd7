//! What a check found ([`Finding`]): its outcome and a stable code. Its
//! sentence is in [`super::message`], its fix in [`super::fix`], each in
//! Portuguese and English side by side.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::item::{Check, Outcome};
use super::write_access;

/// One thing a check found. Each variant knows its outcome; the texts are
/// in [`Finding::message`] and [`Finding::fix`].
#[derive(Debug, Clone)]
pub enum Finding {
    /// Not run, because `needs` did not pass (or was skipped).
    NotChecked {
        needs: Check,
    },
    /// Not run: `--skip`.
    Skipped,
    /// Not run: it does not apply on this system (systemd on Windows).
    NotApplicable,

    ConfigOk {
        path: PathBuf,
        central: bool,
    },
    ConfigInvalid {
        path: PathBuf,
        error: String,
    },

    DbConnected {
        host: String,
        port: u16,
        dbname: String,
        user: String,
    },
    DbPasswordUnreadable {
        error: String,
    },
    DbUnreachable {
        host: String,
        port: u16,
        error: String,
    },
    DbAuthFailed {
        user: String,
        error: String,
    },
    DbNoHbaEntry {
        user: String,
        dbname: String,
        error: String,
    },
    DbNoDatabase {
        dbname: String,
    },
    DbError {
        error: String,
    },

    VersionSupported {
        version: String,
    },
    VersionTooOld {
        version: String,
    },
    VersionUntested {
        version: String,
    },

    PecFound {
        version: String,
    },
    PecUnknown,

    JobReadable {
        job: String,
        columns: usize,
    },
    NoJobs,
    ReadDenied {
        job: String,
        object: Option<String>,
        user: String,
        error: String,
    },
    TableMissing {
        job: String,
        error: String,
    },
    QueryFailed {
        job: String,
        error: String,
    },

    CannotWrite {
        role: String,
    },
    CanWrite {
        role: String,
        access: write_access::Finding,
    },
    MayWrite {
        role: String,
        access: write_access::Finding,
    },

    NotEnrolled {
        path: PathBuf,
    },
    IdentityUnreadable {
        error: String,
    },
    CertValid {
        not_after: DateTime<Utc>,
        days_left: i64,
    },
    CertExpiring {
        not_after: DateTime<Utc>,
        days_left: i64,
    },
    CertExpired {
        not_after: DateTime<Utc>,
    },
    CertNotYetValid {
        not_before: DateTime<Utc>,
    },

    CollectorOk {
        endpoint: String,
        ibge: String,
        agent_id: String,
    },
    CollectorUnreachable {
        endpoint: String,
        error: String,
    },
    CollectorNotTrusted {
        endpoint: String,
        error: String,
    },
    CollectorRefused {
        endpoint: String,
        error: String,
    },

    ClockOk {
        offset_ms: i64,
    },
    ClockSkewed {
        offset_ms: i64,
    },

    PlanRunning {
        version: u64,
        key_id: String,
        expires_at: DateTime<Utc>,
    },
    PlanBehind {
        running: u64,
        published: u64,
    },
    PlanExpired {
        version: u64,
        expires_at: DateTime<Utc>,
    },
    PlanRefused {
        reason: String,
        running: Option<u64>,
    },
    PlanNone {
        published: Option<u64>,
    },
    LocalJobs {
        jobs: usize,
    },

    SpoolOk {
        dir: PathBuf,
        free: u64,
        limit: u64,
    },
    SpoolNotWritable {
        dir: PathBuf,
        error: String,
    },
    SpoolFull {
        dir: PathBuf,
        free: u64,
        need: u64,
    },
    SpoolLow {
        dir: PathBuf,
        free: u64,
        limit: u64,
    },

    ServiceRunning {
        name: String,
    },
    ServiceNotInstalled {
        name: String,
    },
    ServiceDisabled {
        name: String,
    },
    ServiceNotRunning {
        name: String,
        state: String,
    },
    NoServiceManager,

    SystemdOk {
        version: u32,
        min: u32,
    },
    SystemdOld {
        version: u32,
        min: u32,
    },
    SystemdUnknown {
        error: String,
    },
}

impl Finding {
    pub fn outcome(&self) -> Outcome {
        use Finding::*;
        match self {
            NotChecked { .. } | Skipped | NotApplicable => Outcome::Skip,
            ConfigOk { .. }
            | DbConnected { .. }
            | VersionSupported { .. }
            | PecFound { .. }
            | JobReadable { .. }
            | CannotWrite { .. }
            | CertValid { .. }
            | CollectorOk { .. }
            | ClockOk { .. }
            | PlanRunning { .. }
            | SpoolOk { .. }
            | ServiceRunning { .. }
            | SystemdOk { .. } => Outcome::Pass,
            VersionUntested { .. }
            | PecUnknown
            | NoJobs
            | MayWrite { .. }
            | CertExpiring { .. }
            | PlanBehind { .. }
            | PlanExpired { .. }
            | PlanNone { .. }
            | LocalJobs { .. }
            | SpoolLow { .. }
            | NoServiceManager
            | SystemdUnknown { .. } => Outcome::Warn,
            PlanRefused { running, .. } => {
                if running.is_some() {
                    Outcome::Warn
                } else {
                    Outcome::Fail
                }
            }
            ConfigInvalid { .. }
            | DbPasswordUnreadable { .. }
            | DbUnreachable { .. }
            | DbAuthFailed { .. }
            | DbNoHbaEntry { .. }
            | DbNoDatabase { .. }
            | DbError { .. }
            | VersionTooOld { .. }
            | ReadDenied { .. }
            | TableMissing { .. }
            | QueryFailed { .. }
            | CanWrite { .. }
            | NotEnrolled { .. }
            | IdentityUnreadable { .. }
            | CertExpired { .. }
            | CertNotYetValid { .. }
            | CollectorUnreachable { .. }
            | CollectorNotTrusted { .. }
            | CollectorRefused { .. }
            | ClockSkewed { .. }
            | SpoolNotWritable { .. }
            | SpoolFull { .. }
            | ServiceNotInstalled { .. }
            | ServiceDisabled { .. }
            | ServiceNotRunning { .. }
            | SystemdOld { .. } => Outcome::Fail,
        }
    }

    /// A stable code for machines (JSON, the heartbeat's summary).
    pub fn code(&self) -> &'static str {
        use Finding::*;
        match self {
            NotChecked { .. } => "not_checked",
            Skipped => "skipped",
            NotApplicable => "not_applicable",
            ConfigOk { .. } => "ok",
            ConfigInvalid { .. } => "invalid",
            DbConnected { .. } => "ok",
            DbPasswordUnreadable { .. } => "password_unreadable",
            DbUnreachable { .. } => "unreachable",
            DbAuthFailed { .. } => "auth_failed",
            DbNoHbaEntry { .. } => "no_hba_entry",
            DbNoDatabase { .. } => "no_database",
            DbError { .. } => "error",
            VersionSupported { .. } => "ok",
            VersionTooOld { .. } => "too_old",
            VersionUntested { .. } => "untested",
            PecFound { .. } => "ok",
            PecUnknown => "unknown",
            JobReadable { .. } => "ok",
            NoJobs => "no_jobs",
            ReadDenied { .. } => "permission_denied",
            TableMissing { .. } => "missing_table",
            QueryFailed { .. } => "query_failed",
            CannotWrite { .. } => "ok",
            CanWrite { .. } => "can_write",
            MayWrite { .. } => "security_definer",
            NotEnrolled { .. } => "not_enrolled",
            IdentityUnreadable { .. } => "unreadable",
            CertValid { .. } => "ok",
            CertExpiring { .. } => "expiring",
            CertExpired { .. } => "expired",
            CertNotYetValid { .. } => "not_yet_valid",
            CollectorOk { .. } => "ok",
            CollectorUnreachable { .. } => "unreachable",
            CollectorNotTrusted { .. } => "pin_mismatch",
            CollectorRefused { .. } => "refused",
            ClockOk { .. } => "ok",
            ClockSkewed { .. } => "skewed",
            PlanRunning { .. } => "ok",
            PlanBehind { .. } => "behind",
            PlanExpired { .. } => "expired",
            PlanRefused { .. } => "refused",
            PlanNone { .. } => "none",
            LocalJobs { .. } => "local_jobs",
            SpoolOk { .. } => "ok",
            SpoolNotWritable { .. } => "not_writable",
            SpoolFull { .. } => "full",
            SpoolLow { .. } => "low_space",
            ServiceRunning { .. } => "ok",
            ServiceNotInstalled { .. } => "not_installed",
            ServiceDisabled { .. } => "disabled",
            ServiceNotRunning { .. } => "not_running",
            NoServiceManager => "no_service_manager",
            SystemdOk { .. } => "ok",
            SystemdOld { .. } => "too_old",
            SystemdUnknown { .. } => "unknown",
        }
    }
}
