//! Incremental (upsert) extraction: which watermark a snapshot proves,
//! what a run reads, and how the lower bound reaches the query.
//!
//! **The watermark a snapshot proves.** A run's snapshot is observed as
//! `(t, xmin, xmax)`: `t` is the source's `transaction_timestamp()` of the
//! extraction (set at `BEGIN`, before the snapshot is taken at the first
//! query), `xmin` the oldest transaction id still running in the snapshot,
//! `xmax` the first id not yet assigned. Each observation is a fact: every
//! transaction that had an id at time `t` has an id below `xmax`. So if a
//! later snapshot's `xmin` is at or above an earlier `xmax_j`, every
//! transaction that had an id at `t_j` has finished and its rows are in
//! the later snapshot. The snapshot proves the newest such `t_j` (its own
//! `t` when no writing transaction is open). A row committed late by a
//! transaction that was open during an extraction therefore has a
//! watermark after what that extraction proves, and a later run reads it.
//! The lookback covers what ids cannot: the time between a writer's start
//! (when `now()` is fixed) and its first write, and writers' clock skew.
//!
//! Observations are kept in `<state_dir>/snapshots.json` (the last
//! [`KEEP`]); losing the file only makes the proven watermark lag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::UpsertJob;
use crate::pipeline::spool::ColumnMeta;
use transmissor_proto::names::quote_ident;

/// Observations kept.
pub const KEEP: usize = 64;

/// How long an upsert job's extraction waits for `Begin`'s answer (the
/// snapshot is held meanwhile) before it reads the job in full.
pub const BEGIN_WAIT: Duration = Duration::from_secs(60);

/// What `Begin` answered for an upsert job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub watermark: Option<DateTime<Utc>>,
    pub reconciled_at: Option<DateTime<Utc>>,
}

/// One run's snapshot, as far as the watermark is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub t: DateTime<Utc>,
    pub xmin: i64,
    pub xmax: i64,
}

/// The observations of earlier runs against this source.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub seen: Vec<Observation>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the snapshot history {path}: {source}")]
pub struct HistoryError {
    path: PathBuf,
    source: std::io::Error,
}

impl History {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("snapshots.json")
    }

    /// The history, or an empty one when the file is absent or unreadable
    /// (an empty history only proves less).
    pub fn load(state_dir: &Path) -> Self {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "snapshot history unreadable; starting a new one");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// The watermark `now` proves: the newest earlier (or its own) time
    /// whose transactions have all finished in it. Times after `now.t` (a
    /// source clock stepped back) prove nothing.
    pub fn proves(&self, now: &Observation) -> Option<DateTime<Utc>> {
        let own = (now.xmax <= now.xmin).then_some(now.t);
        self.seen
            .iter()
            .filter(|o| o.xmax <= now.xmin && o.t <= now.t)
            .map(|o| o.t)
            .chain(own)
            .max()
    }

    /// Adds `now` and saves (atomically: a temporary file renamed).
    pub fn record(&mut self, state_dir: &Path, now: Observation) -> Result<(), HistoryError> {
        self.seen.push(now);
        self.seen.sort_by_key(|o| o.t);
        if self.seen.len() > KEEP {
            let extra = self.seen.len() - KEEP;
            self.seen.drain(..extra);
        }
        let path = Self::path(state_dir);
        let tmp = path.with_extension("json.tmp");
        let err = |source| HistoryError {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(self).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }
}

/// What one upsert extraction reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every row: no committed watermark yet, a reconciliation is due, or
    /// the committed watermark could not be learnt in time.
    Full(FullWhy),
    /// Rows whose watermark is after `since`.
    Since(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullWhy {
    FirstRun,
    Reconcile,
    CollectorSilent,
}

impl FullWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstRun => "no committed watermark yet",
            Self::Reconcile => "reconciliation due",
            Self::CollectorSilent => "the collector did not answer in time",
        }
    }
}

/// What to read, from the committed watermark and the last reconciliation
/// the collector reported and the job's reconcile slot (the latest one at
/// or before now, if the job has a reconcile schedule).
pub fn decide(
    committed: Option<DateTime<Utc>>,
    reconciled_at: Option<DateTime<Utc>>,
    reconcile_slot: Option<DateTime<Utc>>,
    lookback: Duration,
) -> Read {
    let Some(watermark) = committed else {
        return Read::Full(FullWhy::FirstRun);
    };
    if let Some(slot) = reconcile_slot
        && reconciled_at.is_none_or(|r| r < slot)
    {
        return Read::Full(FullWhy::Reconcile);
    }
    let lookback = chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::MAX);
    Read::Since(
        watermark
            .checked_sub_signed(lookback)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// How the watermark column compares with the bound (a UTC instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkType {
    /// `timestamp with time zone`: an instant.
    Instant,
    /// `timestamp without time zone`: read as the municipality's local time.
    Local,
}

/// The watermark column's type, or why the job cannot run incrementally.
pub fn watermark_type(job: &UpsertJob, columns: &[ColumnMeta]) -> Result<WatermarkType, String> {
    for k in &job.key {
        if !columns.iter().any(|c| &c.name == k) {
            return Err(format!(
                "key column {k:?} is not in the query's result; select it"
            ));
        }
    }
    let Some(c) = columns.iter().find(|c| c.name == job.watermark) else {
        return Err(format!(
            "watermark column {:?} is not in the query's result; select it",
            job.watermark
        ));
    };
    let t = c.target_type.as_str();
    if t.starts_with("timestamp")
        && t.ends_with("with time zone")
        && !t.ends_with("without time zone")
    {
        Ok(WatermarkType::Instant)
    } else if t.starts_with("timestamp") && t.ends_with("without time zone") {
        Ok(WatermarkType::Local)
    } else {
        Err(format!(
            "watermark column {:?} is {t}; an upsert watermark must be a timestamp or timestamptz",
            job.watermark
        ))
    }
}

/// Binds the bound and the municipality's time zone for the job (as
/// parameters: nothing is spliced into SQL), in the job's savepoint.
pub const SET_BOUND: &str = include_str!("queries/incremental_bound.sql");

/// The job's query restricted to rows after the bound set by [`SET_BOUND`].
pub fn filtered(query: &str, watermark: &str, ty: WatermarkType) -> String {
    let bound = match ty {
        WatermarkType::Instant => "current_setting('transmissor.since')::timestamptz",
        WatermarkType::Local => {
            "(current_setting('transmissor.since')::timestamptz AT TIME ZONE current_setting('transmissor.zone'))"
        }
    };
    format!(
        "SELECT * FROM ({query}\n) AS transmissor_src WHERE transmissor_src.{} > {bound}",
        quote_ident(watermark)
    )
}

/// RFC 3339 with microseconds, as PostgreSQL reads a `timestamptz`.
pub fn bound_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + i64::from(s), 0).unwrap()
    }

    fn obs(t: u32, xmin: i64, xmax: i64) -> Observation {
        Observation {
            t: at(t),
            xmin,
            xmax,
        }
    }

    #[test]
    fn a_snapshot_proves_the_newest_time_whose_writers_all_finished() {
        let mut h = History::default();
        // Nothing open: the snapshot proves its own time.
        assert_eq!(h.proves(&obs(10, 100, 100)), Some(at(10)));
        // Transaction 100 open, no history: nothing proven.
        assert_eq!(h.proves(&obs(20, 100, 105)), None);
        h.seen = vec![obs(10, 100, 100), obs(20, 100, 105)];
        // Still open at the next run: only the run before it started counts.
        assert_eq!(h.proves(&obs(30, 100, 110)), Some(at(10)));
        // 100 finished, 103 (id given after t=20? no: before, it is < 105) open.
        assert_eq!(h.proves(&obs(40, 103, 112)), Some(at(10)));
        // Everything before 105 finished: t=20 is proven.
        assert_eq!(h.proves(&obs(50, 105, 112)), Some(at(20)));
        // A clock stepped back proves nothing newer than itself.
        assert_eq!(h.proves(&obs(5, 200, 201)), None);
    }

    #[test]
    fn the_history_is_bounded_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path());
        for i in 0..(KEEP as u32 + 5) {
            h.record(dir.path(), obs(i, i64::from(i), i64::from(i)))
                .unwrap();
        }
        let again = History::load(dir.path());
        assert_eq!(again.seen.len(), KEEP);
        assert_eq!(again.seen[0].t, at(5));
        std::fs::write(History::path(dir.path()), b"{not json").unwrap();
        assert!(History::load(dir.path()).seen.is_empty());
    }

    #[test]
    fn what_a_run_reads() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            decide(None, None, None, hour),
            Read::Full(FullWhy::FirstRun)
        );
        assert_eq!(
            decide(Some(at(7200)), None, None, hour),
            Read::Since(at(3600))
        );
        // A reconcile slot after the last reconciliation: full.
        assert_eq!(
            decide(Some(at(7200)), Some(at(100)), Some(at(200)), hour),
            Read::Full(FullWhy::Reconcile)
        );
        assert_eq!(
            decide(Some(at(7200)), Some(at(300)), Some(at(200)), hour),
            Read::Since(at(3600))
        );
        assert_eq!(
            decide(Some(at(7200)), None, Some(at(200)), hour),
            Read::Full(FullWhy::Reconcile)
        );
    }

    fn col(name: &str, ty: &str) -> ColumnMeta {
        ColumnMeta {
            name: name.into(),
            source_type: ty.into(),
            target_type: ty.into(),
            pseudonymised: false,
        }
    }

    #[test]
    fn the_watermark_must_be_a_selected_timestamp() {
        let job = UpsertJob {
            key: vec!["id".into()],
            watermark: "changed".into(),
            lookback: Duration::from_secs(60),
        };
        let cols = |t: &str| vec![col("id", "bigint"), col("changed", t)];
        assert_eq!(
            watermark_type(&job, &cols("timestamp with time zone")),
            Ok(WatermarkType::Instant)
        );
        assert_eq!(
            watermark_type(&job, &cols("timestamp(3) without time zone")),
            Ok(WatermarkType::Local)
        );
        assert!(
            watermark_type(&job, &cols("date"))
                .unwrap_err()
                .contains("is date")
        );
        assert!(
            watermark_type(&job, &[col("changed", "timestamp with time zone")])
                .unwrap_err()
                .contains("key column \"id\"")
        );
        assert!(
            watermark_type(&job, &[col("id", "bigint")])
                .unwrap_err()
                .contains("watermark column \"changed\"")
        );
    }

    #[test]
    fn the_filter_compares_the_quoted_column_with_the_bound() {
        let sql = filtered("SELECT * FROM t", "Dt \"x\"", WatermarkType::Local);
        assert!(sql.contains("transmissor_src.\"Dt \"\"x\"\"\" > "), "{sql}");
        assert!(sql.contains("AT TIME ZONE current_setting('transmissor.zone')"));
        assert_eq!(bound_text(at(0)), "2025-11-24T16:00:00.000000Z");
    }
}
