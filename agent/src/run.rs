//! One run of the agent: first finish what an earlier run left in the spool,
//! then extract every job in one snapshot while uploading each job as its
//! batches land.
//!
//! [`Agent`] also owns what lives between runs: the TLS credentials (one
//! channel whose new connections always present the current certificate),
//! the clock offset, and the status the heartbeat reports. The long-running
//! agent starts renewal and heartbeats with [`Agent::start_background`];
//! `run --once` calls [`Agent::renew_if_due`] first.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::config::{AgentConfig, JobSourceMode};
use crate::heartbeat::Heartbeat;
use crate::identity::clock::ClockSync;
use crate::identity::credentials::Credentials;
use crate::identity::renew::{RenewError, Renewer};
use crate::identity::{self, IdentityError, IdentityPaths};
use crate::job_lock::{JobLocks, LockError};
use crate::jobs::JobSet;
use crate::pipeline::bandwidth::LinkCap;
use crate::pipeline::extract::{self, ExtractError, Phase, Progress, StartedJob};
use crate::pipeline::spool::{JobState, Spool, SpoolError};
use crate::pipeline::transport;
use crate::pipeline::upload::{JobOutcome, Uploader};
use crate::plan::PlanKeeper;
use crate::plan::store::PlanStore;
use crate::run_requests::RunRequests;
use crate::status::AgentStatus;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    PlanStore(#[from] crate::plan::store::StoreError),
    #[error(transparent)]
    Ledger(#[from] crate::schedule::LedgerError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "central mode needs the municipality, named by the agent's certificate: enroll the agent first"
    )]
    NoMunicipality,
    #[error("cannot listen for metrics on {addr} ([metrics] listen): {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
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
                    JobOutcome::Committed { .. }
                        | JobOutcome::Abandoned { .. }
                        | JobOutcome::Superseded { .. }
                        | JobOutcome::Skipped { .. }
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
                JobOutcome::Superseded { transmission_id } => writeln!(
                    f,
                    "{job} (run {short}): superseded, transmission {transmission_id} (a newer snapshot of the job was committed first)"
                )?,
                JobOutcome::Abandoned { reason } => {
                    writeln!(f, "{job} (run {short}): abandoned: {reason}")?
                }
                JobOutcome::Skipped { reason } => {
                    writeln!(f, "{job} (run {short}): skipped: {reason}")?
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
    paths: IdentityPaths,
    channel: Channel,
    credentials: Arc<Credentials>,
    clock: Arc<ClockSync>,
    status: Arc<AgentStatus>,
    /// The municipality (certificate, else config).
    ibge: Option<String>,
    /// Central mode: the plan keeper (None in local mode).
    plans: Option<Arc<PlanKeeper>>,
    /// Operators' run requests, from heartbeat answers to the daemon.
    run_requests: Arc<RunRequests>,
    /// The upload bandwidth cap of the collector channel.
    cap: Arc<LinkCap>,
}

impl Agent {
    /// Loads the identity (see [`IdentityPaths::from_config`]) and opens the
    /// spool; connects lazily.
    pub fn new(cfg: AgentConfig, cancel: CancellationToken) -> Result<Self, AgentError> {
        let paths = IdentityPaths::from_config(&cfg);
        let loaded = identity::load(&paths)?;
        let credentials = Arc::new(Credentials::from_loaded(&loaded)?);
        let clock = Arc::new(ClockSync::new(
            loaded.info.as_ref().map_or(0, |i| i.clock_offset_ms),
        ));
        let spool = Spool::open(&cfg.spool_dir(), cfg.spool.max_bytes.as_u64())?;
        let tls = credentials
            .client_config()
            .map_err(transport::TransportError::from)?;
        let cap = Arc::new(LinkCap::new(cfg.upload.clone(), cfg.schedule.timezone.0));
        crate::pipeline::level::link::global().attach(cap.clone(), &cfg.agent.state_dir);
        let channel = transport::channel(&cfg.collector, tls, cap.clone())?;
        let client = transport::client(
            channel.clone(),
            cfg.collector.max_message_bytes.as_u64() as usize,
        );
        let ibge = cfg
            .agent
            .ibge
            .clone()
            .or_else(|| loaded.info.as_ref().map(|i| i.ibge.clone()));
        let plans = match cfg.job_source() {
            JobSourceMode::Local => None,
            JobSourceMode::Central => {
                // The certificate's municipality decides which plans apply.
                let ibge = loaded
                    .info
                    .as_ref()
                    .map(|i| i.ibge.clone())
                    .or_else(|| {
                        identity::agent_uri_of(&loaded.certified.cert[0])
                            .map(|u| u.ibge.as_str().to_string())
                    })
                    .ok_or(AgentError::NoMunicipality)?;
                let pinned = cfg.plan.keys.iter().cloned().collect();
                let store = PlanStore::open(&cfg.plan_dir())?;
                Some(Arc::new(PlanKeeper::open(
                    pinned,
                    cfg.plan.root_key,
                    &ibge,
                    store,
                )?))
            }
        };
        let uploader = Uploader::new(
            client,
            cfg.retry.clone(),
            cfg.collector.in_flight,
            ibge.clone(),
            cancel,
        );
        Ok(Self {
            cfg,
            spool,
            uploader,
            paths,
            channel,
            credentials,
            clock,
            status: Arc::new(AgentStatus::default()),
            ibge,
            plans,
            run_requests: Arc::default(),
            cap,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The municipality, when known (certificate, else config).
    pub fn ibge(&self) -> Option<&str> {
        self.ibge.as_deref()
    }

    /// Central mode's plan keeper.
    pub fn plans(&self) -> Option<&Arc<PlanKeeper>> {
        self.plans.as_ref()
    }

    /// The jobs to run now: the running plan's (central mode; none before
    /// the first plan is accepted) or the config's (local mode).
    pub fn job_set(&self) -> JobSet {
        match &self.plans {
            None => JobSet::local(&self.cfg),
            Some(k) => k
                .running()
                .map_or_else(JobSet::empty, |r| JobSet::from_plan(&r.plan)),
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub fn clock(&self) -> &Arc<ClockSync> {
        &self.clock
    }

    pub fn status(&self) -> &Arc<AgentStatus> {
        &self.status
    }

    /// Operators' run requests the heartbeat receives for the daemon.
    pub fn run_requests(&self) -> &Arc<RunRequests> {
        &self.run_requests
    }

    pub fn renewer(&self) -> Renewer {
        Renewer::new(
            transport::lifecycle_client(self.channel.clone()),
            self.credentials.clone(),
            self.paths.clone(),
            self.clock.clone(),
            self.status.clone(),
            self.cfg.retry.clone(),
        )
    }

    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat::new(
            transport::lifecycle_client(self.channel.clone()),
            self.credentials.clone(),
            self.clock.clone(),
            self.status.clone(),
            self.spool.clone(),
            self.plans.clone(),
            self.run_requests.clone(),
        )
        .with_doctor_summaries(&self.cfg.agent.state_dir)
    }

    /// Renews the certificate if its renewal point has passed (one attempt;
    /// for `run --once`). Ok(true) when it renewed.
    pub async fn renew_if_due(&self) -> Result<bool, RenewError> {
        self.renewer().renew_if_due().await
    }

    /// Starts the renewal and heartbeat tasks of the long-running agent;
    /// they end with `cancel`.
    pub fn start_background(
        &self,
        cancel: &CancellationToken,
        metrics: Option<tokio::net::TcpListener>,
    ) -> JoinSet<()> {
        let mut set = JoinSet::new();
        set.spawn(self.renewer().run(cancel.clone()));
        set.spawn(
            self.heartbeat()
                .run(self.cfg.heartbeat.interval, cancel.clone()),
        );
        if let Some(listener) = metrics {
            let (heartbeat, status) = (self.heartbeat(), self.status.clone());
            let cap = self.cap.clone();
            set.spawn(crate::metrics::serve(
                listener,
                std::sync::Arc::new(move || {
                    crate::metrics::render(&heartbeat.request(), &status.totals(), Some(&cap))
                }),
                cancel.clone(),
            ));
        }
        set
    }

    /// Finishes whatever earlier runs left in the spool.
    pub async fn recover(&self) -> Result<Vec<(Uuid, String, JobOutcome)>, AgentError> {
        let mut locks = self.job_locks();
        self.recover_with(&mut locks).await
    }

    /// The job locks of one run (`<state_dir>/locks`).
    pub fn job_locks(&self) -> JobLocks {
        JobLocks::new(&self.cfg.agent.state_dir.join("locks"))
    }

    /// Finishes what earlier runs left in the spool, for the jobs whose lock
    /// `locks` holds or can take: a job another run holds is that run's.
    async fn recover_with(
        &self,
        locks: &mut JobLocks,
    ) -> Result<Vec<(Uuid, String, JobOutcome)>, AgentError> {
        let mut set = JoinSet::new();
        for dir in self.spool.jobs()? {
            let Ok(meta) = dir.meta() else {
                tracing::warn!(dir = %dir.path().display(), "removing a job directory without job.json");
                let _ = dir.remove();
                continue;
            };
            if !locks.try_take(&meta.job)? {
                tracing::debug!(job = %meta.job, "spooled job belongs to a run in progress; left to it");
                continue;
            }
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
                let outcome = uploader.upload(dir, rx, None, None).await;
                (meta.run_id, meta.job, outcome)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        self.status.record_outcomes(&out);
        Ok(out)
    }

    /// Recovers, then runs every job of [`Agent::job_set`] once.
    pub async fn run_once(&self, cancel: &CancellationToken) -> RunReport {
        self.run_jobs(&self.job_set(), cancel).await
    }

    /// Recovers, then runs `set` once, in one snapshot. A job another run
    /// (this process's or another's) is running is left out, reported as
    /// pending: two runs of one job never overlap.
    pub async fn run_jobs(&self, set: &JobSet, cancel: &CancellationToken) -> RunReport {
        let mut report = RunReport::default();
        let mut locks = self.job_locks();
        let mut free = Vec::new();
        for name in set.names() {
            match locks.try_take(&name) {
                Ok(true) => free.push(name),
                Ok(false) => {
                    tracing::warn!(job = %name, "job already running; this run leaves it out");
                    report.jobs.push((
                        Uuid::nil(),
                        name,
                        JobOutcome::Pending {
                            reason: "already running: another run of this job holds its lock"
                                .into(),
                        },
                    ));
                }
                Err(e) => {
                    report.run_error = Some(e.to_string());
                    return report;
                }
            }
        }
        let set = &set.only(&free);
        let jobs = set.names();
        match self.recover_with(&mut locks).await {
            Ok(recovered) => report.jobs.extend(recovered),
            Err(e) => {
                report.run_error = Some(format!("spool: {e}"));
                self.status
                    .record_run(&report.jobs, report.run_error.as_deref(), &jobs);
                return report;
            }
        }
        if cancel.is_cancelled() || set.jobs.is_empty() {
            return report;
        }
        // With an expired certificate nothing can be sent: do not hold a
        // snapshot on the municipal server for data that cannot leave.
        let validity = self.credentials.validity();
        if self.clock.collector_now_ms() >= validity.not_after_ms {
            let msg = crate::identity::renew::expired_message(validity.not_after());
            tracing::error!("{msg}");
            report.run_error = Some(msg);
            self.status
                .record_run(&report.jobs, report.run_error.as_deref(), &jobs);
            return report;
        }
        let run_id = Uuid::now_v7();
        report.run_id = Some(run_id);
        tracing::info!(%run_id, spool_used = self.spool.used(), "run starting");
        let mut uploads = JoinSet::new();
        let extracted = extract::extract_run(
            &self.cfg,
            set,
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
                            .upload(
                                started.dir,
                                started.progress,
                                Some(started.stop),
                                started.begun,
                            )
                            .await,
                    )
                });
            },
            cancel,
        )
        .await;
        match extracted {
            Ok(facts) => {
                self.status
                    .set_pec_version(facts.pec_version.map(|v| v.to_string()));
                for (job, reason) in facts.skipped {
                    report
                        .jobs
                        .push((run_id, job, JobOutcome::Skipped { reason }));
                }
            }
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
        self.status
            .record_run(&report.jobs, report.run_error.as_deref(), &jobs);
        report
    }
}
