//! The long-running agent: renewal and heartbeats (which also fetch new
//! plans) in the background, each job's schedule in the foreground, until
//! the cancellation token fires. A service wrapper (systemd, or the Windows
//! service) calls [`run`] and cancels the token to stop it; shutdown is
//! ordered: the current run stops at a batch boundary, then the background
//! tasks end.
//!
//! Scheduling: each job fires at its slots plus its stable offset
//! ([`crate::schedule`]). Jobs that fire while a run is going on wait for it
//! and then run together, in one snapshot; a job is never queued twice, so
//! two runs of one job never overlap (across processes, the job locks see
//! to it). At start, each job's latest slot that neither committed nor was
//! already caught up runs once (anacron-style). The ledger is written before
//! each run starts and after it ends. An operator's run request (a retry,
//! received with a heartbeat answer) queues its job, or every job, like a
//! slot that fired; it has no slot, so the ledger does not move for it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::jobs::JobSet;
use crate::pipeline::upload::JobOutcome;
use crate::run::{Agent, AgentError, RunReport};
use crate::schedule::{JobClock, Ledger};

/// Longest sleep between looks at the wall clock (a corrected clock is
/// followed within this).
const TICK: Duration = Duration::from_secs(30);

/// Why a job is queued: its slot fired (or is caught up), or an operator
/// asked (`None`).
type Slot = Option<DateTime<Utc>>;

/// The run in progress: its jobs with their slots, and its report.
type RunInFlight<'a> = futures::future::LocalBoxFuture<'a, (Vec<(String, Slot)>, RunReport)>;

/// Queues `job` once; a slot wins over an operator's request (the ledger
/// records it).
fn enqueue(queue: &mut BTreeMap<String, Slot>, job: String, slot: Slot) {
    let queued = queue.entry(job).or_insert(slot);
    if queued.is_none() {
        *queued = slot;
    }
}

/// The scheduler's view of the jobs of the set in force.
struct Plan {
    set: JobSet,
    clocks: Vec<JobClock>,
    /// Per job: the next slot and when it fires.
    next: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)>,
}

impl Plan {
    fn new(set: JobSet, ibge: &str, now: DateTime<Utc>, tz: Tz) -> Self {
        let clocks: Vec<JobClock> = set
            .jobs
            .iter()
            .filter_map(|j| Some(JobClock::new(&j.job.name, j.timing.clone()?, ibge)))
            .collect();
        let next = clocks
            .iter()
            .filter_map(|c| Some((c.job.clone(), c.next_firing(now, tz)?)))
            .collect();
        Self { set, clocks, next }
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.next.values().map(|(_, fires)| *fires).min()
    }

    /// Jobs whose firing time has come, with their slot; each moves on to
    /// its next slot after `now`.
    fn take_fired(&mut self, now: DateTime<Utc>, tz: Tz) -> Vec<(String, DateTime<Utc>)> {
        let mut fired = Vec::new();
        for c in &self.clocks {
            let Some((slot, fires)) = self.next.get(&c.job).copied() else {
                continue;
            };
            if fires <= now {
                fired.push((c.job.clone(), slot));
                match c.next_firing(now, tz) {
                    Some(n) => self.next.insert(c.job.clone(), n),
                    None => self.next.remove(&c.job),
                };
            }
        }
        fired
    }
}

/// Runs the agent on its jobs' schedules until `cancel`.
pub async fn run(agent: &Agent, cancel: &CancellationToken) -> Result<(), AgentError> {
    // Renewal and heartbeats run beside the schedule until shutdown.
    let metrics = match agent.config().metrics.listen {
        Some(addr) => Some(
            crate::metrics::bind(addr)
                .await
                .map_err(|source| AgentError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    let mut background = agent.start_background(cancel, metrics);
    let result = scheduled(agent, cancel).await;
    while background.join_next().await.is_some() {}
    result
}

async fn scheduled(agent: &Agent, cancel: &CancellationToken) -> Result<(), AgentError> {
    let cfg = agent.config();
    let tz = cfg.schedule.timezone.0;
    let ibge = agent.ibge().unwrap_or("").to_string();
    let ledger_dir = cfg.plan_dir();
    crate::private_fs::create_dir_all(&ledger_dir).map_err(|source| {
        crate::schedule::LedgerError::Io {
            path: ledger_dir.clone(),
            source,
        }
    })?;
    let mut ledger = Ledger::load(&ledger_dir)?;
    let mut plan_changes = agent.plans().map(|k| k.subscribe());

    // Send what earlier runs left behind before waiting.
    for (_, job, outcome) in agent.recover().await? {
        tracing::info!(%job, ?outcome, "recovered");
    }

    let mut plan = Plan::new(agent.job_set(), &ibge, Utc::now(), tz);
    ledger.sync_jobs(&plan.clocks, Utc::now());
    let mut queue: BTreeMap<String, Slot> = BTreeMap::new();
    for (job, slot) in ledger.take_catch_up(&plan.clocks, Utc::now(), tz) {
        tracing::info!(%job, slot = %slot.to_rfc3339(), "catching up a missed slot");
        enqueue(&mut queue, job, Some(slot));
    }
    ledger.save(&ledger_dir)?;
    publish_next_runs(agent, &plan);
    tracing::info!(
        plan = plan.set.plan,
        jobs = plan.set.jobs.len(),
        catch_up = queue.len(),
        "schedule ready"
    );

    // Operators' run requests are taken from now on.
    agent.run_requests().accept();
    let mut running: Option<RunInFlight<'_>> = None;
    loop {
        // Start the queued jobs together when nothing runs.
        if running.is_none() && !queue.is_empty() {
            let batch: Vec<(String, Slot)> = std::mem::take(&mut queue).into_iter().collect();
            let names: Vec<String> = batch.iter().map(|(j, _)| j.clone()).collect();
            for (job, slot) in &batch {
                if let Some(slot) = slot {
                    ledger.attempted(job, *slot);
                }
            }
            ledger.save(&ledger_dir)?;
            agent.run_requests().started(&names);
            let set = plan.set.only(&names);
            tracing::info!(jobs = ?names, "scheduled run starting");
            running = Some(
                async move {
                    let report = agent.run_jobs(&set, cancel).await;
                    (batch, report)
                }
                .boxed_local(),
            );
        }
        let wait = plan
            .earliest()
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(TICK)
            .min(TICK);
        tokio::select! {
            // In this order: a plan accepted before a run request arrived
            // (one heartbeat answer brings both) is followed first.
            biased;
            () = cancel.cancelled() => {
                if let Some(r) = running.take() {
                    // The run stops at a batch boundary; its spool stays.
                    let _ = r.await;
                }
                return Ok(());
            }
            (batch, report) = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                running = None;
                for line in report.to_string().lines() {
                    tracing::info!(summary = line, "run finished");
                }
                for (job, slot) in batch {
                    let Some(slot) = slot else { continue };
                    let done = report.jobs.iter().any(|(_, j, o)| {
                        *j == job && matches!(o, JobOutcome::Committed { .. } | JobOutcome::Skipped { .. })
                    });
                    if done && report.run_error.is_none() {
                        ledger.committed(&job, slot);
                    }
                }
                ledger.save(&ledger_dir)?;
            }
            changed = async { plan_changes.as_mut().expect("guarded").changed().await }, if plan_changes.is_some() => {
                if changed.is_err() {
                    plan_changes = None;
                    continue;
                }
                let now = Utc::now();
                plan = Plan::new(agent.job_set(), &ibge, now, tz);
                ledger.sync_jobs(&plan.clocks, now);
                // Jobs the agent knew before (e.g. the first plan arrived
                // after start) catch up their missed slot like at start.
                for (job, slot) in ledger.take_catch_up(&plan.clocks, now, tz) {
                    tracing::info!(%job, slot = %slot.to_rfc3339(), "catching up a missed slot");
                    enqueue(&mut queue, job, Some(slot));
                }
                ledger.save(&ledger_dir)?;
                // Queued jobs the new plan no longer has are dropped.
                queue.retain(|job, _| plan.set.get(job).is_some());
                tracing::info!(plan = plan.set.plan, jobs = plan.set.jobs.len(), "schedule follows the new plan");
                publish_next_runs(agent, &plan);
            }
            requested = agent.run_requests().next() => {
                for r in requested {
                    let min = agent.config().schedule.run_now_min_interval;
                    let may = |job: &str| agent.run_requests().may_run_now(r.id, job, min);
                    match r.job {
                        None => {
                            for j in &plan.set.jobs {
                                if may(&j.job.name) {
                                    enqueue(&mut queue, j.job.name.clone(), None);
                                }
                            }
                        }
                        Some(job) if plan.set.get(&job).is_some() => {
                            if may(&job) {
                                enqueue(&mut queue, job, None);
                            }
                        }
                        Some(job) => tracing::warn!(request = r.id, %job, "run request names a job the running plan does not have; ignored"),
                    }
                }
            }
            () = tokio::time::sleep(wait) => {
                let fired = plan.take_fired(Utc::now(), tz);
                for (job, slot) in fired {
                    tracing::info!(%job, slot = %slot.to_rfc3339(), "job due");
                    enqueue(&mut queue, job, Some(slot));
                }
                publish_next_runs(agent, &plan);
            }
        }
    }
}

/// Records each job's next run for the heartbeat (`run --now` reports it
/// too, so agents run from cron show their schedule).
pub fn report_next_runs(agent: &Agent) {
    let tz = agent.config().schedule.timezone.0;
    let plan = Plan::new(agent.job_set(), agent.ibge().unwrap_or(""), Utc::now(), tz);
    publish_next_runs(agent, &plan);
}

/// Tells the heartbeat when each job runs next.
fn publish_next_runs(agent: &Agent, plan: &Plan) {
    agent.status().set_next_runs(
        plan.next
            .iter()
            .map(|(job, (_, fires))| (job.clone(), *fires)),
    );
    if let Some(t) = plan.earliest() {
        tracing::debug!(next_run = %t.to_rfc3339(), "waiting for the next run");
    }
}
