//! Heartbeats: the latest state of every agent, kept cheaply. Each call only
//! updates an in-memory map (the newest report per agent wins); a flusher
//! writes the whole map in one `UPDATE ... FROM unnest(...)` every second, so
//! thousands of agents cost one statement per second, not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use transmissor_proto::pb;

/// Longest text kept of an agent-reported error or warning.
const MAX_REPORTED_TEXT: usize = 1000;
/// Most doctor problems kept (the checklist has about a dozen checks).
const MAX_DOCTOR_PROBLEMS: usize = 32;

pub struct Heartbeats {
    pending: Mutex<HashMap<Uuid, (DateTime<Utc>, pb::HeartbeatRequest)>>,
    /// When each agent was last flushed (for the heartbeating-agents gauge).
    seen: Mutex<HashMap<Uuid, std::time::Instant>>,
    /// Job statuses kept per heartbeat (`limits.max_heartbeat_runs`).
    max_runs: usize,
}

/// A doctor summary as stored (`agents.doctor`, [`crate::health::view::DoctorSummary`]).
fn doctor_json(d: &pb::DoctorSummary) -> String {
    let outcome = |o: i32| match pb::DoctorOutcome::try_from(o) {
        Ok(pb::DoctorOutcome::Pass) => "pass",
        Ok(pb::DoctorOutcome::Warn) => "warn",
        Ok(pb::DoctorOutcome::Fail) => "fail",
        _ => "unknown",
    };
    let problems: Vec<serde_json::Value> = d
        .problems
        .iter()
        .map(|p| serde_json::json!({"check": p.check, "outcome": outcome(p.outcome), "code": p.code}))
        .collect();
    serde_json::json!({
        "ran_at": DateTime::from_timestamp_millis(d.ran_at_unix_ms).filter(|_| d.ran_at_unix_ms > 0),
        "worst": outcome(d.worst),
        "passed": d.passed,
        "warnings": d.warnings,
        "failures": d.failures,
        "problems": problems,
    })
    .to_string()
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Heartbeats {
    pub fn new(max_runs: usize) -> Self {
        Self {
            pending: Mutex::default(),
            seen: Mutex::default(),
            max_runs,
        }
    }

    /// Keeps the agent's newest report, bounded by [`Self::bound`].
    pub fn record(&self, agent: Uuid, mut report: pb::HeartbeatRequest) {
        self.bound(agent, &mut report);
        if let Ok(mut m) = self.pending.lock() {
            m.insert(agent, (Utc::now(), report));
        }
    }

    /// Bounds a report before anything logs or keeps it: at most
    /// `max_runs` job statuses, and short texts (the message size limit
    /// bounds the rest).
    pub fn bound(&self, agent: Uuid, report: &mut pb::HeartbeatRequest) {
        if report.last_runs.len() > self.max_runs {
            tracing::warn!(%agent, reported = report.last_runs.len(), kept = self.max_runs, "heartbeat reports too many jobs; the rest are dropped");
            report.last_runs.truncate(self.max_runs);
        }
        for run in &mut report.last_runs {
            truncate(&mut run.error, MAX_REPORTED_TEXT);
            truncate(&mut run.job, 63);
            truncate(&mut run.outcome, 32);
        }
        truncate(&mut report.warning, MAX_REPORTED_TEXT);
        truncate(&mut report.agent_version, 100);
        truncate(&mut report.os, 200);
        truncate(&mut report.pec_version, 40);
        truncate(&mut report.plan_refusal, MAX_REPORTED_TEXT);
        report.next_runs.truncate(self.max_runs);
        if let Some(d) = &mut report.doctor {
            d.problems.truncate(MAX_DOCTOR_PROBLEMS);
            for p in &mut d.problems {
                truncate(&mut p.check, 63);
                truncate(&mut p.code, 63);
            }
        }
        for next in &mut report.next_runs {
            truncate(&mut next.job, 63);
        }
    }

    /// Writes what arrived since the last flush; returns how many agents.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch: Vec<(Uuid, (DateTime<Utc>, pb::HeartbeatRequest))> = match self.pending.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        if let Ok(mut seen) = self.seen.lock() {
            let now = std::time::Instant::now();
            for (id, _) in &batch {
                seen.insert(*id, now);
            }
        }
        let mut ids = Vec::with_capacity(n);
        let mut at = Vec::with_capacity(n);
        let mut version = Vec::with_capacity(n);
        let mut os = Vec::with_capacity(n);
        let mut not_after: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
        let mut offset = Vec::with_capacity(n);
        let mut used = Vec::with_capacity(n);
        let mut limit = Vec::with_capacity(n);
        let mut runs = Vec::with_capacity(n);
        let mut warning: Vec<Option<String>> = Vec::with_capacity(n);
        let mut pec: Vec<Option<String>> = Vec::with_capacity(n);
        let mut source: Vec<Option<&'static str>> = Vec::with_capacity(n);
        let mut plan: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut expired: Vec<bool> = Vec::with_capacity(n);
        let mut refusal: Vec<Option<String>> = Vec::with_capacity(n);
        let mut keys: Vec<i64> = Vec::with_capacity(n);
        let mut next_runs = Vec::with_capacity(n);
        let mut doctor: Vec<Option<String>> = Vec::with_capacity(n);
        for (id, (when, r)) in batch {
            ids.push(id);
            at.push(when);
            version.push(r.agent_version);
            os.push(r.os);
            not_after.push(
                DateTime::from_timestamp_millis(r.certificate_not_after_unix_ms)
                    .filter(|_| r.certificate_not_after_unix_ms > 0),
            );
            offset.push(r.clock_offset_ms);
            used.push(r.spool_used_bytes as i64);
            limit.push(r.spool_limit_bytes as i64);
            let jobs: Vec<serde_json::Value> = r
                .last_runs
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "job": j.job, "outcome": j.outcome, "rows": j.rows, "error": j.error,
                        "finished_at": DateTime::from_timestamp_millis(j.finished_unix_ms),
                    })
                })
                .collect();
            runs.push(serde_json::Value::Array(jobs).to_string());
            warning.push(Some(r.warning).filter(|w| !w.is_empty()));
            pec.push(Some(r.pec_version).filter(|p| !p.is_empty()));
            source.push(match pb::JobSource::try_from(r.job_source) {
                Ok(pb::JobSource::Local) => Some("local"),
                Ok(pb::JobSource::Plan) => Some("plan"),
                _ => None,
            });
            plan.push(i64::try_from(r.plan_version).ok().filter(|v| *v > 0));
            expired.push(r.plan_expired);
            refusal.push(Some(r.plan_refusal).filter(|p| !p.is_empty()));
            keys.push(i64::try_from(r.key_list_serial).unwrap_or(0));
            let next: Vec<serde_json::Value> = r
                .next_runs
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "job": j.job,
                        "next_at": DateTime::from_timestamp_millis(j.next_unix_ms),
                    })
                })
                .collect();
            next_runs.push(serde_json::Value::Array(next).to_string());
            doctor.push(r.doctor.as_ref().map(doctor_json));
        }
        sqlx::query(include_str!("heartbeats/flush.sql"))
            .bind(ids)
            .bind(at)
            .bind(version)
            .bind(os)
            .bind(not_after)
            .bind(offset)
            .bind(used)
            .bind(limit)
            .bind(runs)
            .bind(warning)
            .bind(pec)
            .bind(source)
            .bind(plan)
            .bind(expired)
            .bind(refusal)
            .bind(keys)
            .bind(next_runs)
            .bind(doctor)
            .execute(pool)
            .await?;
        Ok(n)
    }

    /// Agents whose heartbeat arrived within `window` (and forgets older ones).
    pub fn recent(&self, window: Duration) -> usize {
        let Ok(mut seen) = self.seen.lock() else {
            return 0;
        };
        seen.retain(|_, at| at.elapsed() <= window);
        seen.len()
    }

    /// Flushes every `every` until `stop`, then once more; keeps the
    /// heartbeating-agents gauge current.
    pub async fn run(
        self: Arc<Self>,
        pool: PgPool,
        every: Duration,
        stop: CancellationToken,
        metrics: Arc<crate::metrics::Metrics>,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %crate::pg_error::describe(&e), "cannot write heartbeats");
            }
            metrics
                .agents_heartbeating
                .set(self.recent(Duration::from_secs(600)) as i64);
        }
        if let Err(e) = self.flush(&pool).await {
            tracing::warn!(error = %crate::pg_error::describe(&e), "cannot write the last heartbeats");
        }
    }
}
