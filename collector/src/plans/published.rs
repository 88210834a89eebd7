//! The published plans and key lists, held in memory (a plan is a few
//! kilobytes) and refreshed from the database when `plan publish` notifies
//! and every `plans.refresh_every`, so a heartbeat or a `Begin` costs no
//! query. A `Begin` naming a plan
//! version the cache does not know yet (published seconds ago through
//! another collector) refreshes it once before refusing.
//!
//! Only a plan that verifies under the pinned keys ([`PlanTrust`], moved
//! along the root-signed key lists) and is not below the floor authorizes
//! a `Begin`: a row written around `plan publish` (or signed by a key a
//! later list dropped) is still served as stored — agents judge it and
//! refuse it — but authorizes nothing here.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use transmissor_plan::Plan;

use crate::error::CollectorError;

use super::trust::{self, PlanTrust};

/// The channel `plan publish` notifies on commit.
pub const NOTIFY_CHANNEL: &str = "transmissor_plans";

/// One published plan: the envelope as stored, and what it defines.
#[derive(Debug)]
pub struct PublishedPlan {
    pub version: u64,
    /// What the plan defines (`None`: it does not verify under this
    /// collector's keys, or cannot be read; it is still served, the agents
    /// judge it, but no `Begin` is authorized by it).
    pub plan: Option<Plan>,
    pub envelope: Arc<[u8]>,
    /// The scope recorded at publication (what serving follows).
    pub scope_all: bool,
    pub scope_ibge: Vec<String>,
}

impl PublishedPlan {
    fn serves(&self, ibge: &str) -> bool {
        self.scope_all || self.scope_ibge.iter().any(|i| i == ibge)
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Newest first.
    plans: Vec<Arc<PublishedPlan>>,
    /// Oldest first (the chain order).
    key_lists: Vec<(u64, Arc<[u8]>)>,
}

pub struct PublishedPlans {
    pool: PgPool,
    trust: Option<PlanTrust>,
    allow_local_jobs: bool,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl PublishedPlans {
    /// Loads what is published. `trust`: `plans.keys` and `plans.root_key`
    /// (`None`: no plan authorizes anything). `allow_local_jobs` lets agents
    /// without a plan (local `[[jobs]]`, development) begin transmissions.
    pub async fn load(
        pool: PgPool,
        trust: Option<PlanTrust>,
        allow_local_jobs: bool,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let this = Arc::new(Self {
            pool,
            trust,
            allow_local_jobs,
            snapshot: RwLock::default(),
        });
        this.refresh().await?;
        Ok(this)
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads every published plan and key list again.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<(i64, Vec<u8>, bool, Vec<String>)> =
            sqlx::query_as(include_str!("queries/plans_load.sql"))
                .fetch_all(&self.pool)
                .await?;
        let key_lists: Vec<(i64, Vec<u8>)> =
            sqlx::query_as(include_str!("queries/key_lists_load.sql"))
                .fetch_all(&self.pool)
                .await?;
        let chain = self
            .trust
            .as_ref()
            .map(|t| t.chain(key_lists.iter().map(|(_, e)| e.as_slice())));
        let mut plans = Vec::with_capacity(rows.len());
        for (version, envelope, scope_all, scope_ibge) in rows {
            // Stored only after the same verification: a failure here means
            // the table was written around `plan publish`, a later key list
            // dropped the signer or raised the floor, or a newer collector
            // published a format this one does not read.
            let verified = match &chain {
                Some(chain) => trust::verify(chain, &envelope),
                None => Err("plans.keys is not set".to_string()),
            };
            let plan = match verified {
                Ok(v) => Some(v.plan),
                Err(e) => {
                    tracing::warn!(version, error = %e, "published plan does not verify on this collector; served as stored, authorizes nothing");
                    None
                }
            };
            plans.push(Arc::new(PublishedPlan {
                version: version as u64,
                plan,
                envelope: envelope.into(),
                scope_all,
                scope_ibge,
            }));
        }
        let key_lists = key_lists
            .into_iter()
            .map(|(s, e)| (s as u64, Arc::from(e)))
            .collect();
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { plans, key_lists });
        Ok(())
    }

    /// Keeps the cache current until `stop`: at once when `plan publish`
    /// notifies (`NOTIFY transmissor_plans`, sent at its commit, reaching
    /// every collector replica), and every `every` in case a notification
    /// was missed (e.g. while the listening connection was re-established).
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        crate::db::follow::follow(
            &self.pool,
            NOTIFY_CHANNEL,
            "published plans",
            every,
            stop,
            || self.refresh(),
        )
        .await;
    }

    /// The newest plan whose scope includes `ibge`.
    pub fn latest_for(&self, ibge: &str) -> Option<Arc<PublishedPlan>> {
        self.current()
            .plans
            .iter()
            .find(|p| p.serves(ibge))
            .cloned()
    }

    /// Serial of the newest key list (0: none).
    pub fn key_list_serial(&self) -> u64 {
        self.current().key_lists.last().map_or(0, |(s, _)| *s)
    }

    /// Key lists newer than `serial`, oldest first.
    pub fn key_lists_after(&self, serial: u64) -> Vec<Arc<[u8]>> {
        self.current()
            .key_lists
            .iter()
            .filter(|(s, _)| *s > serial)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Every published plan, newest first.
    pub fn all(&self) -> Vec<Arc<PublishedPlan>> {
        self.current().plans.clone()
    }

    /// The published plan `version`, if it serves `ibge`.
    pub fn version_for(&self, version: u64, ibge: &str) -> Option<Arc<PublishedPlan>> {
        self.version(version).filter(|p| p.serves(ibge))
    }

    /// The plan whose signed content is `version` (what agents report
    /// running), else the row stored as `version` (which then authorizes
    /// nothing: it did not verify).
    fn version(&self, version: u64) -> Option<Arc<PublishedPlan>> {
        let snapshot = self.current();
        snapshot
            .plans
            .iter()
            .find(|p| p.plan.as_ref().is_some_and(|x| x.version == version))
            .or_else(|| snapshot.plans.iter().find(|p| p.version == version))
            .cloned()
    }

    /// Whether a municipality's agent may begin `job` into `target` with
    /// `mode` under plan `plan` (0: a local job). The plan must be
    /// published, be for that municipality, and define the job with that
    /// target and mode. A plan older than the newest is accepted: during a
    /// rollout agents move to a new plan at their next heartbeat.
    pub async fn authorize_begin(
        &self,
        ibge: &str,
        plan: u64,
        job: &str,
        target: &str,
        mode: &str,
        upsert: Option<&crate::load::upsert::UpsertSpec>,
    ) -> Result<(), CollectorError> {
        // Names are echoed in refusals: only checked ones.
        for (what, name) in [("job", job), ("target", target)] {
            transmissor_proto::names::check_plain(what, name)
                .map_err(|e| CollectorError::InvalidArgument(e.to_string()))?;
        }
        if plan == 0 {
            if self.allow_local_jobs {
                return Ok(());
            }
            return Err(CollectorError::PermissionDenied(format!(
                "job {job:?} does not come from a signed plan, and this collector accepts only jobs of published plans (plans.allow_local_jobs is off)"
            )));
        }
        let found = match self.version(plan) {
            Some(p) => Some(p),
            None => {
                self.refresh().await?;
                self.version(plan)
            }
        };
        let Some(published) = found else {
            return Err(CollectorError::PermissionDenied(format!(
                "plan {plan} is not published on this collector"
            )));
        };
        let Some(defined_plan) = &published.plan else {
            return Err(CollectorError::PermissionDenied(format!(
                "plan {plan} is not readable by this collector"
            )));
        };
        if !published.serves(ibge) || !defined_plan.applies_to(ibge) {
            return Err(CollectorError::PermissionDenied(format!(
                "plan {plan} is not for municipality {ibge}"
            )));
        }
        let Some(defined) = defined_plan.job(job) else {
            return Err(CollectorError::PermissionDenied(format!(
                "job {job:?} is not in plan {plan}"
            )));
        };
        if defined.target != target {
            return Err(CollectorError::PermissionDenied(format!(
                "job {job:?} of plan {plan} loads {:?}, not {target:?}",
                defined.target
            )));
        }
        if defined.mode.name() != mode {
            return Err(CollectorError::PermissionDenied(format!(
                "job {job:?} of plan {plan} is {}, not {mode}",
                defined.mode.name()
            )));
        }
        if let (transmissor_plan::JobMode::Upsert(d), Some(u)) = (&defined.mode, upsert)
            && (d.key != u.key || d.watermark != u.watermark)
        {
            return Err(CollectorError::PermissionDenied(format!(
                "job {job:?} of plan {plan} merges by key ({}) with watermark {:?}, not by ({}) with {:?}",
                d.key.join(", "),
                d.watermark,
                u.key.join(", "),
                u.watermark
            )));
        }
        Ok(())
    }
}
