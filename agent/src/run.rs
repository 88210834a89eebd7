//! One run of the agent: first finish what an earlier run left in the spool,
//! then extract every job in one snapshot while uploading each job as its
//! batches land.

use std::fmt;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::AgentConfig;
use crate::extract::{self, ExtractError, Phase, Progress, StartedJob};
use crate::spool::{JobState, Spool, SpoolError};
use crate::transport;
use crate::upload::{JobOutcome, Uploader};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
}

/// What happened to each job of a run (and of recovered earlier runs).
#[derive(Debug, Default)]
pub struct RunReport {
    pub run_id: Option<Uuid>,
    /// Set when the run could not start at all (e.g. source unreachable).
    pub run_error: Option<String>,
    pub jobs: Vec<(Uuid, String, JobOutcome)>,
}

impl RunReport {
    pub fn all_committed(&self) -> bool {
        self.run_error.is_none()
            && self.jobs.iter().all(|(_, _, o)| {
                matches!(
                    o,
                    JobOutcome::Committed { .. } | JobOutcome::Abandoned { .. }
                )
            })
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.run_error {
            writeln!(f, "run failed: {e}")?;
        }
        for (run, job, outcome) in &self.jobs {
            let id = run.simple().to_string();
            let short = &id[id.len() - 8..];
            match outcome {
                JobOutcome::Committed {
                    transmission_id,
                    rows,
                } => writeln!(
                    f,
                    "{job} (run {short}): committed, transmission {transmission_id}, {rows} rows"
                )?,
                JobOutcome::Failed { reason } => {
                    writeln!(f, "{job} (run {short}): FAILED: {reason}")?
                }
                JobOutcome::Refused { reason } => {
                    writeln!(f, "{job} (run {short}): REFUSED: {reason}")?
                }
                JobOutcome::Pending { reason } => {
                    writeln!(f, "{job} (run {short}): PENDING: {reason}")?
                }
                JobOutcome::Abandoned { reason } => {
                    writeln!(f, "{job} (run {short}): abandoned: {reason}")?
                }
            }
        }
        Ok(())
    }
}

pub struct Agent {
    cfg: AgentConfig,
    spool: Spool,
    uploader: Uploader,
}

impl Agent {
    pub fn new(cfg: AgentConfig, cancel: CancellationToken) -> Result<Self, AgentError> {
        let spool = Spool::open(&cfg.spool_dir(), cfg.spool.max_bytes.as_u64())?;
        let channel = transport::channel(&cfg.collector)?;
        let client = transport::client(channel, cfg.collector.max_message_bytes.as_u64() as usize);
        let uploader = Uploader::new(
            client,
            cfg.retry.clone(),
            cfg.collector.in_flight,
            cfg.agent.ibge.clone(),
            cancel,
        );
        Ok(Self {
            cfg,
            spool,
            uploader,
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Finishes whatever earlier runs left in the spool.
    pub async fn recover(&self) -> Result<Vec<(Uuid, String, JobOutcome)>, AgentError> {
        let mut set = JoinSet::new();
        for dir in self.spool.jobs()? {
            let Ok(meta) = dir.meta() else {
                tracing::warn!(dir = %dir.path().display(), "removing a job directory without job.json");
                let _ = dir.remove();
                continue;
            };
            let phase = match dir.state()? {
                JobState::Done(d) => Phase::Done(d),
                JobState::Failed(r) => Phase::Failed(r),
                JobState::Interrupted => Phase::Interrupted(
                    "the agent stopped while extracting this job; it is extracted again by the next run"
                        .into(),
                ),
            };
            let interrupted = matches!(phase, Phase::Interrupted(_));
            tracing::info!(run = %meta.run_id, job = %meta.job, interrupted, "recovering spooled job");
            let written = match &phase {
                Phase::Done(d) => d.batches,
                _ => 0,
            };
            let (tx, rx) = watch::channel(Progress { written, phase });
            let uploader = self.uploader.clone();
            set.spawn(async move {
                let _keep = tx;
                let outcome = uploader.upload(dir, rx, None).await;
                (meta.run_id, meta.job, outcome)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Recovers, then runs every job once.
    pub async fn run_once(&self, cancel: &CancellationToken) -> RunReport {
        let mut report = RunReport::default();
        match self.recover().await {
            Ok(jobs) => report.jobs.extend(jobs),
            Err(e) => {
                report.run_error = Some(format!("spool: {e}"));
                return report;
            }
        }
        if cancel.is_cancelled() {
            return report;
        }
        let run_id = Uuid::now_v7();
        report.run_id = Some(run_id);
        tracing::info!(%run_id, spool_used = self.spool.used(), "run starting");
        let mut uploads = JoinSet::new();
        let extracted = extract::extract_run(
            &self.cfg,
            &self.spool,
            run_id,
            |started: StartedJob| {
                let uploader = self.uploader.clone();
                uploads.spawn(async move {
                    let job = started.dir.meta().map(|m| m.job).unwrap_or_default();
                    (
                        run_id,
                        job,
                        uploader
                            .upload(started.dir, started.progress, Some(started.stop))
                            .await,
                    )
                });
            },
            cancel,
        )
        .await;
        match extracted {
            Ok(()) => {}
            Err(ExtractError::Cancelled) => report.run_error = Some("cancelled".into()),
            Err(e) => {
                tracing::error!(%run_id, error = %e, "run could not extract");
                report.run_error = Some(e.to_string());
            }
        }
        while let Some(r) = uploads.join_next().await {
            if let Ok(r) = r {
                report.jobs.push(r);
            }
        }
        report
    }
}
