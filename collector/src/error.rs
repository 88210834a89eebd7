//! The collector's errors, and the one place where they become gRPC statuses.

use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;
use tonic::{Code, Status};

use transmissor_proto::batch::BatchError;

#[derive(Debug, Error)]
pub enum CollectorError {
    /// The caller presented no usable identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (unknown or revoked agent,
    /// another municipality's transmission, a claimed identity that differs).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("transmission {0} does not exist for this agent")]
    TransmissionNotFound(i64),
    /// The request does not fit the transmission's state (committed, failed,
    /// schema changed, batches missing at commit).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("batch {seq} of transmission {transmission}: {source}")]
    Batch {
        transmission: i64,
        seq: u32,
        source: BatchError,
    },
    #[error(
        "batch {seq} of transmission {transmission} was already received with different content (crc32c {held:08x}, now {sent:08x})"
    )]
    BatchConflict {
        transmission: i64,
        seq: u32,
        held: u32,
        sent: u32,
    },
    /// The data does not load into the target (e.g. a value the type rejects).
    #[error("batch {seq} of transmission {transmission} does not load: {message}")]
    Copy {
        transmission: i64,
        seq: u32,
        message: String,
    },
    /// Too many failed attempts (enrollment).
    #[error("{0}")]
    RateLimited(String),
    /// A per-agent quota is used up (open transmissions, staged bytes,
    /// transmissions per day, batches per transmission): retrying the same
    /// call does not help until the agent's earlier work ends.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A momentary limit (the agent's concurrent calls, the decompression
    /// budget): the caller retries after a pause.
    #[error("{0}")]
    Overloaded(String),
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// A schema change kept giving way to readers; the caller retries later.
    #[error("{0}")]
    TargetBusy(String),
    /// Printed redacted ([`crate::pg_error`]), and not a `source`: an error
    /// chain walked by a caller would print the database's own words.
    #[error("database error: {}", crate::pg_error::describe(.0))]
    Database(sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CollectorError {
    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::InvalidArgument(_) | Self::Copy { .. } => Code::InvalidArgument,
            Self::Batch { source, .. } => match source {
                BatchError::TooLarge { .. } => Code::ResourceExhausted,
                BatchError::Checksum { .. } => Code::DataLoss,
                _ => Code::InvalidArgument,
            },
            Self::TransmissionNotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::BatchConflict { .. } => Code::AlreadyExists,
            Self::RateLimited(_) | Self::QuotaExceeded(_) => Code::ResourceExhausted,
            Self::DatabaseUnavailable(_) | Self::TargetBusy(_) | Self::Overloaded(_) => {
                Code::Unavailable
            }
            Self::Database(e) => {
                if is_transient_db_error(e) {
                    Code::Unavailable
                } else {
                    Code::Internal
                }
            }
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<sqlx::Error> for CollectorError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// Connection loss, pool exhaustion, serialization failures and the like:
/// an agent should simply retry.
fn is_transient_db_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 40001 serialization, 40P01 deadlock, 55P03 lock not available,
            // 57P01..03 shutdown / cannot connect now, 08xxx connection.
            c.starts_with("40") || c == "55P03" || c.starts_with("57P") || c.starts_with("08")
        }),
        _ => false,
    }
}

/// Refusals logged per second at most: a caller sending junk in a loop
/// (a compromised agent, an anonymous host) must not fill the disk with
/// log lines. Each refusal still reaches its caller, and what concerns a
/// transmission is recorded with it; how many lines were left out is
/// logged with the next one written.
const REFUSALS_LOGGED_PER_SECOND: u64 = 50;

struct RefusalLog {
    second: AtomicU64,
    in_second: AtomicU64,
    suppressed: AtomicU64,
}

static REFUSALS: RefusalLog = RefusalLog {
    second: AtomicU64::new(0),
    in_second: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};

impl RefusalLog {
    /// Whether this refusal may be logged now, and how many were left out
    /// before it.
    fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.in_second.store(0, Ordering::Relaxed);
        }
        if self.in_second.fetch_add(1, Ordering::Relaxed) < REFUSALS_LOGGED_PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl From<CollectorError> for Status {
    fn from(e: CollectorError) -> Self {
        let code = e.code();
        match code {
            Code::Internal => tracing::error!(error = %e, "request failed"),
            _ => {
                if let Some(left_out) = REFUSALS.admit() {
                    if code == Code::Unavailable {
                        tracing::warn!(error = %e, left_out, "request failed, caller will retry");
                    } else {
                        tracing::warn!(code = ?code, error = %e, left_out, "request refused");
                    }
                }
            }
        }
        Status::new(code, e.to_string())
    }
}
