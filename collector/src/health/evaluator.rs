//! The evaluation pass: every `[monitor] evaluate_every`, derive the
//! health of every municipality and store what changed.
//!
//! One pass reads the municipalities with their agents (one statement),
//! applies the transmissions that finished since the previous pass to the
//! in-memory [`Memory`] (the first pass loads the last
//! [`REMEMBER_DAYS`](super::memory::REMEMBER_DAYS) days), derives each
//! municipality with [`crate::monitor::derive`], and then, in one
//! transaction holding a transaction-level advisory lock (so with several
//! collector replicas one writes per pass and the others skip): reads the
//! stored states, writes the rows that changed and one history row per
//! transition. Only after the commit are the overall transitions handed
//! to the alerts, so a transition is alerted at most once per stored change.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use transmissor_plan::PecVersion;

use super::gather::{self, MunicipalityRecord};
use super::memory::{Memory, REMEMBER_DAYS};
use super::store::{self, Changed, Stored, Summary};
use super::uf;
use crate::monitor::{
    self, Axis, FleetFacts, JobFacts, MunicipalityFacts, Overall, Thresholds, Transition,
};
use crate::plans::PublishedPlans;

/// The advisory lock key of the evaluation (`'tmhealth'` as an integer).
const LOCK_KEY: i64 = 0x746d_6865_616c_7468;

/// A finished transmission may become visible up to this long after its
/// `finished_at` (the commit's transaction time): each pass re-reads this
/// much before the previous one.
const OVERLAP: TimeDelta = TimeDelta::minutes(10);

/// Schema drift is read again after this long (it needs a scan of every
/// target's slices).
const DRIFT_EVERY: TimeDelta = TimeDelta::minutes(5);

/// An overall transition of one municipality, for the alerts.
#[derive(Debug, Clone)]
pub struct OverallChange {
    pub ibge: String,
    pub name: String,
    pub uf: &'static str,
    pub from: Option<Overall>,
    pub to: Overall,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub reason_pt_br: String,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// False when another collector held the lock (nothing written).
    pub wrote: bool,
    pub municipalities: usize,
    pub rows_written: usize,
    pub transitions: usize,
    pub overall_changes: Vec<OverallChange>,
    /// Every municipality's overall state after the pass (for the gauges).
    pub by_state: HashMap<Overall, u64>,
    /// Active agents' certificates: expired, under 7 days, under 30, later.
    pub certificates: [u64; 4],
    /// Spool bytes in use over the active agents.
    pub spool_used_bytes: i64,
    pub duration: std::time::Duration,
    /// On the first pass that wrote: the non-ok states stored before it
    /// (`from` empty, `at` when the state began), for the alerts' reminders.
    pub restored: Option<Vec<OverallChange>>,
}

pub struct Evaluator {
    pool: PgPool,
    plans: Arc<PublishedPlans>,
    thresholds: Thresholds,
    memory: Memory,
    watermark: Option<DateTime<Utc>>,
    drift: HashMap<String, Vec<String>>,
    drift_read: Option<DateTime<Utc>>,
    /// Whether a pass of this process has written (and so restored).
    has_written: bool,
}

impl Evaluator {
    pub fn new(pool: PgPool, plans: Arc<PublishedPlans>, thresholds: Thresholds) -> Self {
        Self {
            pool,
            plans,
            thresholds,
            memory: Memory::default(),
            watermark: None,
            drift: HashMap::new(),
            drift_read: None,
            has_written: false,
        }
    }

    /// One pass at `now`.
    pub async fn pass(&mut self, now: DateTime<Utc>) -> Result<PassReport, sqlx::Error> {
        let started = Instant::now();
        match self.watermark {
            None => {
                let n = gather::load_recent(
                    &self.pool,
                    &mut self.memory,
                    now - TimeDelta::days(REMEMBER_DAYS),
                )
                .await?;
                tracing::info!(transmissions = n, "health evaluator loaded the recent past");
            }
            Some(w) => {
                gather::load_changed(&self.pool, &mut self.memory, w - OVERLAP).await?;
            }
        }
        // The next pass reads from this pass's start: anything finishing
        // later has a later `finished_at`.
        self.watermark = Some(now);
        self.memory.prune(now);
        if self.drift_read.is_none_or(|at| now - at >= DRIFT_EVERY) {
            self.drift = gather::schema_drift(&self.pool).await?;
            self.drift_read = Some(now);
        }
        let records = gather::municipalities(&self.pool).await?;

        let derived = self.derive_all(&records, now);

        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        let mut report = PassReport {
            municipalities: records.len(),
            ..PassReport::default()
        };
        for d in &derived {
            *report.by_state.entry(d.stored.health.overall).or_default() += 1;
        }
        for r in &records {
            report.spool_used_bytes = report
                .spool_used_bytes
                .saturating_add(r.spool_used_bytes.unwrap_or(0));
            if let Some(at) = r.cert_not_after {
                let left = at - now;
                let bucket = if left <= TimeDelta::zero() {
                    0
                } else if left < TimeDelta::days(7) {
                    1
                } else if left < TimeDelta::days(30) {
                    2
                } else {
                    3
                };
                report.certificates[bucket] += 1;
            }
        }
        if !locked {
            report.duration = started.elapsed();
            tx.rollback().await?;
            return Ok(report);
        }
        let previous = store::read(&mut tx).await?;
        if !self.has_written {
            let names: HashMap<&str, &str> = records
                .iter()
                .map(|r| (r.ibge.as_str(), r.name.as_str()))
                .collect();
            report.restored = Some(
                previous
                    .iter()
                    .filter(|(_, p)| p.health.overall != Overall::Ok)
                    .filter_map(|(ibge, p)| {
                        // The texts of the state as stored.
                        let t = monitor::transitions(None, &p.health, p.since)
                            .into_iter()
                            .find(|t| t.change.axis() == Axis::Overall)?;
                        Some(OverallChange {
                            ibge: ibge.clone(),
                            name: names.get(ibge.as_str()).unwrap_or(&"").to_string(),
                            uf: uf::of(ibge),
                            from: None,
                            to: p.health.overall,
                            at: p.since,
                            reason: t.reason,
                            reason_pt_br: t.reason_pt_br,
                        })
                    })
                    .collect(),
            );
        }
        let mut rows = Vec::new();
        let mut history: Vec<(&str, Transition)> = Vec::new();
        let mut finals: Vec<Stored> = Vec::with_capacity(derived.len());
        for d in &derived {
            let prev = previous.get(&d.record.ibge);
            let mut next = d.stored.clone();
            next.since = match prev {
                Some(p) if p.health.overall == next.health.overall => p.since,
                _ => now,
            };
            for t in monitor::transitions(prev.map(|p| &p.health), &next.health, now) {
                if let monitor::Change::Overall { from, to } = t.change {
                    report.overall_changes.push(OverallChange {
                        ibge: d.record.ibge.clone(),
                        name: d.record.name.clone(),
                        uf: uf::of(&d.record.ibge),
                        from,
                        to,
                        at: now,
                        reason: t.reason.clone(),
                        reason_pt_br: t.reason_pt_br.clone(),
                    });
                }
                history.push((d.record.ibge.as_str(), t));
            }
            finals.push(next);
        }
        for (d, next) in derived.iter().zip(&finals) {
            let unchanged = previous.get(&d.record.ibge).is_some_and(|p| {
                p.health == next.health && p.summary == next.summary && p.since == next.since
            });
            if !unchanged {
                rows.push(Changed {
                    ibge: &d.record.ibge,
                    stored: next,
                });
            }
        }
        store::write(&mut tx, &rows, now).await?;
        store::append_history(&mut tx, &history).await?;
        store::record_pass(
            &mut tx,
            now,
            records.len(),
            history.len(),
            started.elapsed().as_millis(),
        )
        .await?;
        tx.commit().await?;
        self.has_written = true;
        report.wrote = true;
        report.duration = started.elapsed();
        report.rows_written = rows.len();
        report.transitions = history.len();
        debug_assert!(report.overall_changes.iter().all(|c| {
            history
                .iter()
                .any(|(i, t)| *i == c.ibge && t.change.axis() == Axis::Overall)
        }));
        Ok(report)
    }

    fn derive_all<'r>(
        &self,
        records: &'r [MunicipalityRecord],
        now: DateTime<Utc>,
    ) -> Vec<Derived<'r>> {
        let fleet = FleetFacts {
            newest_pec: records
                .iter()
                .filter_map(|r| r.pec_version.as_deref())
                .filter_map(|v| v.parse::<PecVersion>().ok())
                .max(),
            minimum_pec: None,
        };
        let first_issued = self.first_issued();
        records
            .iter()
            .map(|r| {
                let tz = uf::time_zone(
                    &r.ibge,
                    r.timezone.as_deref().and_then(|t| t.parse::<Tz>().ok()),
                );
                let facts = self.facts(r, &first_issued);
                let health = monitor::derive(&facts, &fleet, &self.thresholds, tz, now);
                let (last_success, last_rows) = self.memory.last_success(&r.ibge);
                let jobs = self
                    .memory
                    .jobs_of(&r.ibge)
                    .map(|jobs| jobs.iter().filter_map(|(name, j)| j.last(name)).collect())
                    .unwrap_or_default();
                Derived {
                    record: r,
                    stored: Stored {
                        health,
                        since: now,
                        summary: Summary {
                            last_success,
                            last_rows,
                            daily_rows: self.memory.daily_rows(&r.ibge, tz, now),
                            jobs,
                        },
                    },
                }
            })
            .collect()
    }

    /// Job name → when the oldest published plan defining it was issued.
    fn first_issued(&self) -> HashMap<String, DateTime<Utc>> {
        let mut first: HashMap<String, DateTime<Utc>> = HashMap::new();
        for p in self.plans.all() {
            let Some(plan) = &p.plan else { continue };
            for j in &plan.jobs {
                first
                    .entry(j.name.clone())
                    .and_modify(|at| *at = (*at).min(plan.issued_at))
                    .or_insert(plan.issued_at);
            }
        }
        first
    }

    fn facts(
        &self,
        r: &MunicipalityRecord,
        first_issued: &HashMap<String, DateTime<Utc>>,
    ) -> MunicipalityFacts {
        let pec = r.pec_version.as_deref().and_then(|v| v.parse().ok());
        // The plan the agent says it runs, else the one it should.
        let plan = r
            .plan_version
            .and_then(|v| u64::try_from(v).ok())
            .and_then(|v| self.plans.version_for(v, &r.ibge))
            .or_else(|| self.plans.latest_for(&r.ibge));
        let remembered = self.memory.jobs_of(&r.ibge);
        let mut jobs: Vec<JobFacts> = Vec::new();
        if let Some(plan) = plan.as_ref().and_then(|p| p.plan.as_ref()) {
            for j in plan.jobs.iter().filter(|j| j.runs_on(pec.as_ref())) {
                let mut f = remembered
                    .and_then(|m| m.get(&j.name))
                    .map(|m| m.facts(&j.name))
                    .unwrap_or_else(|| JobFacts {
                        job: j.name.clone(),
                        ..JobFacts::default()
                    });
                f.schedule = Some(j.schedule.clone());
                f.expected_since = first_issued.get(&j.name).copied();
                jobs.push(f);
            }
        }
        // Jobs seen in transmissions but not scheduled by a plan (local
        // jobs, or dropped from the plan): judged on failures only.
        if let Some(m) = remembered {
            for (name, j) in m {
                if !jobs.iter().any(|f| &f.job == name) {
                    jobs.push(j.facts(name));
                }
            }
        }
        MunicipalityFacts {
            ibge: r.ibge.clone(),
            enrolled_at: r.enrolled_at.unwrap_or(r.created_at),
            last_heartbeat: r.heartbeat_at,
            heartbeat_interval: self.thresholds.heartbeat_interval,
            cert_not_after: r.cert_not_after,
            plan_refusal: r.plan_refusal.clone(),
            plan_expired: r.plan_expired,
            pec_version: pec,
            jobs,
            schema_drift: self.drift.get(&r.ibge).cloned().unwrap_or_default(),
            extra_holidays: r.holidays.iter().copied().collect::<BTreeSet<_>>(),
        }
    }

    /// Passes every `evaluate_every` until `stop`; hands each pass's report
    /// to `after`.
    pub async fn run(mut self, stop: CancellationToken, mut after: impl FnMut(&PassReport) + Send) {
        let every = self.thresholds.evaluate_every;
        loop {
            let now = Utc::now();
            let span = tracing::info_span!("health_pass", at = %now);
            match self.pass(now).instrument(span).await {
                Ok(report) => {
                    if report.transitions > 0 {
                        tracing::info!(
                            municipalities = report.municipalities,
                            written = report.rows_written,
                            transitions = report.transitions,
                            "health evaluated"
                        );
                    }
                    after(&report);
                }
                Err(e) => {
                    tracing::warn!(error = %crate::pg_error::describe(&e), "health evaluation failed");
                    // Read everything again next time: a failed pass may
                    // have applied part of a window.
                    self.watermark = self.watermark.map(|w| w - OVERLAP);
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

struct Derived<'r> {
    record: &'r MunicipalityRecord,
    stored: Stored,
}
