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

pub struct Heartbeats {
    pending: Mutex<HashMap<Uuid, (DateTime<Utc>, pb::HeartbeatRequest)>>,
    /// Job statuses kept per heartbeat (`limits.max_heartbeat_runs`).
    max_runs: usize,
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
            max_runs,
        }
    }

    /// Keeps the agent's newest report, bounded: at most `max_runs` job
    /// statuses, and short texts (the message size limit bounds the rest).
    pub fn record(&self, agent: Uuid, mut report: pb::HeartbeatRequest) {
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
        if let Ok(mut m) = self.pending.lock() {
            m.insert(agent, (Utc::now(), report));
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
        }
        sqlx::query(
            "UPDATE transmissor.agents a SET heartbeat_at = v.at, last_seen_at = v.at, agent_version = v.version, \
               os = v.os, cert_not_after = v.not_after, clock_offset_ms = v.off, spool_used_bytes = v.used, \
               spool_limit_bytes = v.lim, last_runs = v.runs::jsonb, warning = v.warning \
             FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[], \
                         $7::int8[], $8::int8[], $9::text[], $10::text[]) \
                  AS v(id, at, version, os, not_after, off, used, lim, runs, warning) \
             WHERE a.id = v.id",
        )
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
        .execute(pool)
        .await?;
        Ok(n)
    }

    /// Flushes every `every` until `stop`, then once more.
    pub async fn run(self: Arc<Self>, pool: PgPool, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %crate::pg_error::describe(&e), "cannot write heartbeats");
            }
        }
        if let Err(e) = self.flush(&pool).await {
            tracing::warn!(error = %crate::pg_error::describe(&e), "cannot write the last heartbeats");
        }
    }
}
