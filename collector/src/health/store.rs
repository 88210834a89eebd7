//! The stored state: read every municipality's current health, write the
//! rows that changed and the transitions, in the evaluator's transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};

use super::view::JobLast;
use crate::monitor::{Health, Reason, Transition};

/// What a municipality's row holds besides its states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub last_success: Option<DateTime<Utc>>,
    pub last_rows: Option<i64>,
    pub daily_rows: Vec<i64>,
    pub jobs: Vec<JobLast>,
}

/// A municipality's stored row.
#[derive(Debug, Clone)]
pub struct Stored {
    pub health: Health,
    pub since: DateTime<Utc>,
    pub summary: Summary,
}

#[derive(sqlx::FromRow)]
struct Row {
    ibge: String,
    connectivity: String,
    data: String,
    health: String,
    overall: String,
    reasons: Json<serde_json::Value>,
    since: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
    last_rows: Option<i64>,
    daily_rows: Vec<i64>,
    jobs: Json<serde_json::Value>,
}

/// A state by its stable name (`None`: not one this build knows).
pub(super) fn state<T: DeserializeOwned>(name: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name)).ok()
}

impl Row {
    /// `None` when a state or a reason is not one this build knows (a row
    /// written by a newer collector): it is then derived afresh.
    fn into_stored(self) -> Option<(String, Stored)> {
        let reasons: Vec<Reason> = serde_json::from_value(self.reasons.0).ok()?;
        let jobs: Vec<JobLast> = serde_json::from_value(self.jobs.0).unwrap_or_default();
        let health = Health {
            connectivity: state(&self.connectivity)?,
            data: state(&self.data)?,
            health: state(&self.health)?,
            overall: state(&self.overall)?,
            reasons,
        };
        Some((
            self.ibge,
            Stored {
                health,
                since: self.since,
                summary: Summary {
                    last_success: self.last_success,
                    last_rows: self.last_rows,
                    daily_rows: self.daily_rows,
                    jobs,
                },
            },
        ))
    }
}

pub async fn read(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<HashMap<String, Stored>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(include_str!("queries/stored_health.sql"))
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().filter_map(Row::into_stored).collect())
}

/// A row to write.
pub struct Changed<'a> {
    pub ibge: &'a str,
    pub stored: &'a Stored,
}

pub async fn write(
    tx: &mut Transaction<'_, Postgres>,
    changed: &[Changed<'_>],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let mut cols: [Vec<String>; 6] = Default::default();
    let (mut since, mut changed_at, mut last_success, mut last_rows, mut daily, mut jobs) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for c in changed {
        let h = &c.stored.health;
        cols[0].push(c.ibge.to_string());
        cols[1].push(h.connectivity.as_str().into());
        cols[2].push(h.data.as_str().into());
        cols[3].push(h.health.as_str().into());
        cols[4].push(h.overall.as_str().into());
        cols[5].push(serde_json::to_string(&h.reasons).unwrap_or_else(|_| "[]".into()));
        since.push(c.stored.since);
        changed_at.push(at);
        let s = &c.stored.summary;
        last_success.push(s.last_success);
        last_rows.push(s.last_rows);
        let days: Vec<String> = s.daily_rows.iter().map(i64::to_string).collect();
        daily.push(format!("{{{}}}", days.join(",")));
        jobs.push(serde_json::to_string(&s.jobs).unwrap_or_else(|_| "[]".into()));
    }
    let [ibge, conn, data, health, overall, reasons] = cols;
    sqlx::query(include_str!("queries/write_health.sql"))
        .bind(ibge)
        .bind(conn)
        .bind(data)
        .bind(health)
        .bind(overall)
        .bind(reasons)
        .bind(since)
        .bind(changed_at)
        .bind(last_success)
        .bind(last_rows)
        .bind(daily)
        .bind(jobs)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Appends transitions to the history.
pub async fn append_history(
    tx: &mut Transaction<'_, Postgres>,
    transitions: &[(&str, Transition)],
) -> Result<(), sqlx::Error> {
    if transitions.is_empty() {
        return Ok(());
    }
    let mut ibge = Vec::with_capacity(transitions.len());
    let mut at = Vec::with_capacity(transitions.len());
    let (mut axis, mut from, mut to, mut reason, mut reason_pt) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (i, t) in transitions {
        ibge.push(i.to_string());
        at.push(t.at);
        axis.push(t.change.axis().as_str());
        from.push(t.change.before());
        to.push(t.change.after());
        reason.push(t.reason.as_str());
        reason_pt.push(t.reason_pt_br.as_str());
    }
    sqlx::query(include_str!("queries/write_history.sql"))
        .bind(ibge)
        .bind(at)
        .bind(axis)
        .bind(from)
        .bind(to)
        .bind(reason)
        .bind(reason_pt)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn record_pass(
    tx: &mut Transaction<'_, Postgres>,
    at: DateTime<Utc>,
    municipalities: usize,
    transitions: usize,
    duration_ms: u128,
) -> Result<(), sqlx::Error> {
    sqlx::query(include_str!("queries/write_evaluation.sql"))
        .bind(at)
        .bind(i32::try_from(municipalities).unwrap_or(i32::MAX))
        .bind(i32::try_from(transitions).unwrap_or(i32::MAX))
        .bind(i32::try_from(duration_ms).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
