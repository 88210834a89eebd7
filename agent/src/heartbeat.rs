//! Heartbeats: the long-running agent tells the collector, at a jittered
//! interval, that it is alive and how it is doing — version, OS, certificate
//! expiry, clock offset, spool usage, the last outcome of each job and any
//! warning. Each response's time also refreshes the clock offset
//! ([`crate::clock`]) the renewal schedule relies on.
//!
//! [`AgentStatus`] is the state shared by the run loop (which records job
//! outcomes), the renewal task (which sets the certificate warning) and the
//! heartbeat task (which reports both).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;

use crate::clock::{self, ClockSync};
use crate::credentials::Credentials;
use crate::run::RunReport;
use crate::spool::Spool;
use crate::transport::explain;
use crate::upload::JobOutcome;

/// Heartbeat waits are drawn within ±20% of the configured interval.
pub const JITTER: f64 = 0.2;

/// What the agent reports about itself between runs.
#[derive(Debug, Default)]
pub struct AgentStatus {
    last_runs: Mutex<BTreeMap<String, pb::JobRunStatus>>,
    certificate_warning: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `(outcome, rows, error)` as the heartbeat reports a job's outcome.
pub fn outcome_fields(o: &JobOutcome) -> (&'static str, u64, String) {
    match o {
        JobOutcome::Committed { rows, .. } => ("committed", *rows, String::new()),
        JobOutcome::Failed { reason } => ("failed", 0, reason.clone()),
        JobOutcome::Refused { reason } => ("refused", 0, reason.clone()),
        JobOutcome::Pending { reason } => ("pending", 0, reason.clone()),
        JobOutcome::Abandoned { reason } => ("abandoned", 0, reason.clone()),
    }
}

impl AgentStatus {
    /// Keeps each job's latest outcome.
    pub fn record_outcomes(&self, jobs: &[(Uuid, String, JobOutcome)]) {
        let now = clock::now_unix_ms();
        let mut runs = lock(&self.last_runs);
        for (_, job, outcome) in jobs {
            let (outcome, rows, error) = outcome_fields(outcome);
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
    pub fn record_report(&self, report: &RunReport, configured_jobs: &[String]) {
        self.record_outcomes(&report.jobs);
        let Some(err) = report.run_error.as_deref().filter(|e| *e != "cancelled") else {
            return;
        };
        let reached: Vec<&str> = report.jobs.iter().map(|(_, j, _)| j.as_str()).collect();
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
}

/// `interval` scaled by `1 + JITTER·r`, for `r` in `[-1, 1]`.
pub fn jittered(interval: Duration, r: f64) -> Duration {
    interval.mul_f64(1.0 + JITTER * r.clamp(-1.0, 1.0))
}

/// The host OS as reported: `std::env::consts::{OS, ARCH}`.
pub fn os() -> String {
    format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Sends heartbeats.
#[derive(Clone)]
pub struct Heartbeat {
    client: AgentLifecycleClient<Channel>,
    credentials: Arc<Credentials>,
    clock: Arc<ClockSync>,
    status: Arc<AgentStatus>,
    spool: Spool,
}

impl Heartbeat {
    pub fn new(
        client: AgentLifecycleClient<Channel>,
        credentials: Arc<Credentials>,
        clock: Arc<ClockSync>,
        status: Arc<AgentStatus>,
        spool: Spool,
    ) -> Self {
        Self {
            client,
            credentials,
            clock,
            status,
            spool,
        }
    }

    /// The heartbeat as it would be sent now.
    pub fn request(&self) -> pb::HeartbeatRequest {
        let warning = [self.status.certificate_warning(), self.clock.warning()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        pb::HeartbeatRequest {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            os: os(),
            certificate_not_after_unix_ms: self.credentials.validity().not_after_ms,
            agent_time_unix_ms: clock::now_unix_ms(),
            clock_offset_ms: self.clock.offset_ms(),
            spool_used_bytes: self.spool.used(),
            spool_limit_bytes: self.spool.limit(),
            last_runs: self.status.last_runs(),
            warning,
        }
    }

    /// Sends one heartbeat; returns the measured clock offset.
    pub async fn beat(&self) -> Result<i64, Status> {
        let req = self.request();
        let sent = req.agent_time_unix_ms;
        let resp = self.client.clone().heartbeat(req).await?.into_inner();
        Ok(self
            .clock
            .record(sent, clock::now_unix_ms(), resp.collector_time_unix_ms))
    }

    /// Beats now, then every `interval` ±20%, until `cancel`.
    pub async fn run(self, interval: Duration, cancel: CancellationToken) {
        let mut failing = false;
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.beat() => r,
            };
            match result {
                Ok(offset) => {
                    if failing {
                        tracing::info!("heartbeats reach the collector again");
                    }
                    failing = false;
                    tracing::debug!(clock_offset_ms = offset, "heartbeat sent");
                }
                Err(s) if !failing => {
                    failing = true;
                    tracing::warn!(error = %explain(&s), "heartbeat failed; retrying at the next interval");
                }
                Err(s) => tracing::debug!(error = %explain(&s), "heartbeat failed again"),
            }
            let wait = jittered(interval, rand::rng().random_range(-1.0..=1.0));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let i = Duration::from_secs(60);
        assert_eq!(jittered(i, 0.0), i);
        assert_eq!(jittered(i, -1.0), Duration::from_secs(48));
        assert_eq!(jittered(i, 1.0), Duration::from_secs(72));
        assert_eq!(jittered(i, 7.0), Duration::from_secs(72));
    }

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

        let report = RunReport {
            run_id: None,
            run_error: Some("source database: connection refused".into()),
            jobs: vec![],
        };
        s.record_report(&report, &["a".into(), "c".into()]);
        let r = s.last_runs();
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|j| j.job == "b" || j.outcome == "failed"));
        assert!(r[2].error.contains("connection refused"));
        // A cancelled run is not a failure of its jobs.
        let report = RunReport {
            run_id: None,
            run_error: Some("cancelled".into()),
            jobs: vec![],
        };
        s.record_report(&report, &["d".into()]);
        assert_eq!(s.last_runs().len(), 3);
    }

    #[test]
    fn os_names_platform_and_arch() {
        let o = os();
        assert!(o.starts_with(std::env::consts::OS) && o.ends_with(std::env::consts::ARCH));
    }
}
