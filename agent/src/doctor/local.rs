//! The checks of this machine's own state: which plan runs (verified again
//! from the pinned keys, as the agent does at start) and whether the spool
//! can be written with room to spare. Neither creates anything: a doctor
//! run as root must not leave root-owned files in the agent's directories.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{AgentConfig, JobSourceMode};
use crate::identity::Loaded;
use crate::jobs::JobSet;
use crate::plan::PlanKeeper;
use crate::plan::store::PlanStore;

use super::finding::Finding;
use super::item::{Check, Item};

/// Below this much free space (or two batches, if larger) a run cannot
/// spool anything useful.
const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// The plan that runs, and the jobs the database checks should read.
pub struct PlanCheck {
    pub items: Vec<Item>,
    /// None: unknown (no plan accepted yet).
    pub jobs: Option<JobSet>,
}

/// Which plan runs. `published`: what the collector publishes, if it
/// answered.
pub fn plan(
    cfg: &AgentConfig,
    identity: Option<&Loaded>,
    published: Option<u64>,
    now: DateTime<Utc>,
) -> PlanCheck {
    if cfg.job_source() == JobSourceMode::Local {
        let jobs = JobSet::local(cfg);
        return PlanCheck {
            items: vec![Item::new(
                Check::Plan,
                Finding::LocalJobs {
                    jobs: jobs.jobs.len(),
                },
            )],
            jobs: Some(jobs),
        };
    }
    let ibge = identity.and_then(|l| {
        l.info.as_ref().map(|i| i.ibge.clone()).or_else(|| {
            crate::identity::agent_uri_of(&l.certified.cert[0]).map(|u| u.ibge.as_str().to_string())
        })
    });
    let none = |items: Vec<Item>| PlanCheck { items, jobs: None };
    let Some(ibge) = ibge else {
        return none(vec![Item::new(
            Check::Plan,
            Finding::NotChecked {
                needs: Check::Certificate,
            },
        )]);
    };
    // The running agent keeps its plans here; never created by the doctor.
    let dir = cfg.plan_dir();
    if !dir.join("key-lists").is_dir() {
        return none(vec![Item::new(
            Check::Plan,
            Finding::PlanNone { published },
        )]);
    }
    let keeper = PlanStore::open(&dir).and_then(|store| {
        PlanKeeper::open(
            cfg.plan.keys.iter().cloned().collect(),
            cfg.plan.root_key,
            &ibge,
            store,
        )
    });
    let keeper = match keeper {
        Ok(k) => k,
        Err(e) => {
            return none(vec![Item::new(
                Check::Plan,
                Finding::PlanRefused {
                    reason: e.to_string(),
                    running: None,
                },
            )]);
        }
    };
    let report = keeper.report(now);
    let Some(running) = keeper.running() else {
        let f = match report.refusal {
            Some(reason) => Finding::PlanRefused {
                reason,
                running: None,
            },
            None => Finding::PlanNone { published },
        };
        return none(vec![Item::new(Check::Plan, f)]);
    };
    let plan = &running.plan;
    let mut items = vec![Item::new(
        Check::Plan,
        if report.expired {
            Finding::PlanExpired {
                version: plan.version,
                expires_at: plan.expires_at,
            }
        } else {
            Finding::PlanRunning {
                version: plan.version,
                key_id: running.key_id.clone(),
                expires_at: plan.expires_at,
            }
        },
    )];
    if let Some(p) = published.filter(|p| *p > plan.version) {
        items.push(Item::new(
            Check::Plan,
            Finding::PlanBehind {
                running: plan.version,
                published: p,
            },
        ));
    }
    if let Some(reason) = report.refusal {
        items.push(Item::new(
            Check::Plan,
            Finding::PlanRefused {
                reason,
                running: Some(plan.version),
            },
        ));
    }
    PlanCheck {
        items,
        jobs: Some(JobSet::from_plan(plan)),
    }
}

/// The spool directory exists, takes a written and synced file, and has
/// room: at least two batches (and 64 MiB), ideally its whole limit.
pub fn spool(cfg: &AgentConfig) -> Item {
    let dir = cfg.spool_dir();
    let limit = cfg.spool.max_bytes.as_u64();
    if let Err(error) = probe_write(&dir) {
        return Item::new(Check::Spool, Finding::SpoolNotWritable { dir, error });
    }
    let free = match fs4::available_space(&dir) {
        Ok(f) => f,
        Err(e) => {
            return Item::new(
                Check::Spool,
                Finding::SpoolNotWritable {
                    dir,
                    error: e.to_string(),
                },
            );
        }
    };
    let need = MIN_FREE_BYTES.max(cfg.spool.batch_raw_bytes.as_u64().saturating_mul(2));
    let used = crate::pipeline::spool::Spool::usage(&dir);
    let f = if free < need {
        Finding::SpoolFull { dir, free, need }
    } else if free < limit.saturating_sub(used) {
        Finding::SpoolLow { dir, free, limit }
    } else {
        Finding::SpoolOk { dir, free, limit }
    };
    Item::new(Check::Spool, f)
}

/// Writes, syncs and removes a small file in `dir`, never through a
/// planted link (the doctor runs as root; the spool is the service's).
fn probe_write(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{} does not exist", dir.display()));
    }
    let name = format!(".doctor-{}", std::process::id());
    crate::private_fs::probe_write_in(dir, &name).map_err(|e| e.to_string())
}
