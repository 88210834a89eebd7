//! What to run: the jobs of the verified plan the agent runs (central
//! mode), or the config's `[[jobs]]` (local mode, development), as one
//! typed set. Extraction takes its jobs from here, never from the config
//! directly, so in central mode only signed SQL can reach the database.

use std::sync::Arc;

use transmissor_plan::{JobMode, Plan, VersionRange};

use crate::config::{AgentConfig, JobConfig, Mode};
use crate::pipeline::minimise::JobPrivacy;
use crate::schedule::Timing;

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Name, mode, target and SQL.
    pub job: JobConfig,
    /// When it runs (`None`: only on demand, e.g. local jobs without `[schedule]`).
    pub timing: Option<Timing>,
    /// PEC versions it runs on (`None`: any).
    pub pec_version: Option<VersionRange>,
    /// Upsert jobs of a plan: when a run is full (deletes reconciled).
    pub reconcile: Option<Timing>,
    /// The plan's personal-data policy for it (`None`: a local job).
    pub privacy: Option<Arc<JobPrivacy>>,
}

/// A set of jobs and where it came from.
#[derive(Debug, Clone)]
pub struct JobSet {
    /// The signed plan's version (0: local jobs).
    pub plan: u64,
    /// What each transmission records as its plan version: `plan:<N>` or
    /// `config:<hash>`.
    pub plan_version: String,
    pub jobs: Vec<JobSpec>,
}

impl JobSet {
    /// The config's local jobs on its `[schedule]`.
    pub fn local(cfg: &AgentConfig) -> Self {
        let timing = Timing::from_config(&cfg.schedule);
        Self {
            plan: 0,
            plan_version: cfg.plan_version(),
            jobs: cfg
                .jobs
                .iter()
                .map(|j| JobSpec {
                    job: j.clone(),
                    timing: timing.clone(),
                    pec_version: None,
                    reconcile: None,
                    privacy: None,
                })
                .collect(),
        }
    }

    /// A verified plan's jobs.
    pub fn from_plan(plan: &Plan) -> Self {
        let personal_data = Arc::new(plan.personal_data_list());
        let jobs = plan
            .jobs
            .iter()
            .map(|j| {
                let (mode, upsert) = match &j.mode {
                    JobMode::Snapshot => (Mode::Snapshot, None),
                    JobMode::Append => (Mode::Append, None),
                    JobMode::Upsert(u) => (Mode::Upsert, Some(u)),
                };
                let mut job = JobConfig::new(&j.name, mode, &j.target, &j.sql);
                if let Some(u) = upsert {
                    job.key = u.key.clone();
                    job.watermark = Some(u.watermark.clone());
                    job.lookback = Some(u.lookback);
                }
                JobSpec {
                    job,
                    timing: Some(Timing::Cron(j.schedule.clone())),
                    pec_version: j.pec_version,
                    reconcile: upsert.and_then(|u| u.reconcile.clone()).map(Timing::Cron),
                    privacy: Some(Arc::new(JobPrivacy {
                        columns: j.columns.clone(),
                        personal_data: personal_data.clone(),
                    })),
                }
            })
            .collect();
        Self {
            plan: plan.version,
            plan_version: format!("plan:{}", plan.version),
            jobs,
        }
    }

    /// No job (central mode before the first plan arrives).
    pub fn empty() -> Self {
        Self {
            plan: 0,
            plan_version: String::new(),
            jobs: Vec::new(),
        }
    }

    /// The same set, restricted to `names`.
    pub fn only(&self, names: &[String]) -> Self {
        Self {
            plan: self.plan,
            plan_version: self.plan_version.clone(),
            jobs: self
                .jobs
                .iter()
                .filter(|j| names.contains(&j.job.name))
                .cloned()
                .collect(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.job.name.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.job.name == name)
    }
}
