//! The state the heartbeat reports, shared by the tasks that change it: the
//! run loop records job outcomes, the renewal task sets the certificate
//! warning, the heartbeat task reads it all. It depends on none of them.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

use transmissor_proto::pb;

use crate::identity::clock;
use crate::pipeline::upload::JobOutcome;

/// What the agent reports about itself between runs.
#[derive(Debug, Default)]
pub struct AgentStatus {
    last_runs: Mutex<BTreeMap<String, pb::JobRunStatus>>,
    certificate_warning: Mutex<Option<String>>,
    /// The source's PEC version as last detected (`None`: unknown).
    pec_version: Mutex<Option<String>>,
    /// Next scheduled run of each job.
    next_runs: Mutex<BTreeMap<String, chrono::DateTime<chrono::Utc>>>,
    /// Since start: runs by job and outcome, and rows committed by job.
    totals: Mutex<RunTotals>,
}

/// Counts since the agent started (the local metrics).
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    /// `(job, outcome)` → runs.
    pub runs: BTreeMap<(String, &'static str), u64>,
    /// job → rows committed.
    pub rows: BTreeMap<String, u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The outcome names the heartbeat uses, as `'static` (a reported name not
/// among them is `other`).
pub fn outcome_name(name: &str) -> &'static str {
    [
        "committed",
        "failed",
        "refused",
        "pending",
        "abandoned",
        "superseded",
        "skipped",
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("other")
}

/// `(outcome, rows, error)` as the heartbeat reports a job's outcome.
pub fn outcome_fields(o: &JobOutcome) -> (&'static str, u64, String) {
    match o {
        JobOutcome::Committed { rows, .. } => ("committed", *rows, String::new()),
        JobOutcome::Failed { reason } => ("failed", 0, reason.clone()),
        JobOutcome::Refused { reason } => ("refused", 0, reason.clone()),
        JobOutcome::Pending { reason } => ("pending", 0, reason.clone()),
        JobOutcome::Abandoned { reason } => ("abandoned", 0, reason.clone()),
        JobOutcome::Superseded { .. } => (
            "superseded",
            0,
            "a newer snapshot of the job was committed first".to_string(),
        ),
        JobOutcome::Skipped { reason } => ("skipped", 0, reason.clone()),
    }
}

impl AgentStatus {
    /// Keeps each job's latest outcome.
    pub fn record_outcomes(&self, jobs: &[(Uuid, String, JobOutcome)]) {
        let now = clock::now_unix_ms();
        let mut runs = lock(&self.last_runs);
        let mut totals = lock(&self.totals);
        for (_, job, outcome) in jobs {
            let (outcome, rows, error) = outcome_fields(outcome);
            *totals.runs.entry((job.clone(), outcome)).or_default() += 1;
            *totals.rows.entry(job.clone()).or_default() += rows;
            runs.insert(
                job.clone(),
                pb::JobRunStatus {
                    job: job.clone(),
                    outcome: outcome.into(),
                    finished_unix_ms: now,
                    rows,
                    error,
                },
            );
        }
    }

    /// Records a run. When the run failed as a whole (e.g. the source
    /// database was unreachable), each configured job it did not reach is
    /// recorded as failed with that reason.
    pub fn record_run(
        &self,
        jobs: &[(Uuid, String, JobOutcome)],
        run_error: Option<&str>,
        configured_jobs: &[String],
    ) {
        self.record_outcomes(jobs);
        let Some(err) = run_error.filter(|e| *e != "cancelled") else {
            return;
        };
        let reached: Vec<&str> = jobs.iter().map(|(_, j, _)| j.as_str()).collect();
        let missed: Vec<(Uuid, String, JobOutcome)> = configured_jobs
            .iter()
            .filter(|j| !reached.contains(&j.as_str()))
            .map(|j| {
                let reason = format!("the run failed: {err}");
                (Uuid::nil(), j.clone(), JobOutcome::Failed { reason })
            })
            .collect();
        self.record_outcomes(&missed);
    }

    pub fn totals(&self) -> RunTotals {
        lock(&self.totals).clone()
    }

    pub fn last_runs(&self) -> Vec<pb::JobRunStatus> {
        lock(&self.last_runs).values().cloned().collect()
    }

    /// Set while the certificate is near expiry (or expired) and not renewed.
    pub fn set_certificate_warning(&self, warning: Option<String>) {
        *lock(&self.certificate_warning) = warning;
    }

    pub fn certificate_warning(&self) -> Option<String> {
        lock(&self.certificate_warning).clone()
    }

    pub fn set_pec_version(&self, v: Option<String>) {
        *lock(&self.pec_version) = v;
    }

    pub fn pec_version(&self) -> Option<String> {
        lock(&self.pec_version).clone()
    }

    /// Replaces the next run times (jobs no longer scheduled disappear).
    pub fn set_next_runs(
        &self,
        next: impl IntoIterator<Item = (String, chrono::DateTime<chrono::Utc>)>,
    ) {
        *lock(&self.next_runs) = next.into_iter().collect();
    }

    pub fn next_runs(&self) -> Vec<pb::JobNextRun> {
        lock(&self.next_runs)
            .iter()
            .map(|(job, at)| pb::JobNextRun {
                job: job.clone(),
                next_unix_ms: at.timestamp_millis(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_outcome_per_job_and_run_failures() {
        let s = AgentStatus::default();
        let run = Uuid::now_v7();
        s.record_outcomes(&[
            (
                run,
                "a".into(),
                JobOutcome::Committed {
                    transmission_id: 1,
                    rows: 10,
                },
            ),
            (
                run,
                "b".into(),
                JobOutcome::Pending {
                    reason: "collector unreachable".into(),
                },
            ),
        ]);
        s.record_outcomes(&[(
            run,
            "a".into(),
            JobOutcome::Refused {
                reason: "schema".into(),
            },
        )]);
        let r = s.last_runs();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].job.as_str(),
                r[0].outcome.as_str(),
                r[0].error.as_str()
            ),
            ("a", "refused", "schema")
        );
        assert_eq!((r[1].outcome.as_str(), r[1].rows), ("pending", 0));

        s.record_run(
            &[],
            Some("source database: connection refused"),
            &["a".into(), "c".into()],
        );
        let r = s.last_runs();
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|j| j.job == "b" || j.outcome == "failed"));
        assert!(r[2].error.contains("connection refused"));
        // A cancelled run is not a failure of its jobs.
        s.record_run(&[], Some("cancelled"), &["d".into()]);
        assert_eq!(s.last_runs().len(), 3);
    }
}
