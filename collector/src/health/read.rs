//! What the API and the dashboard read: the stored health with the
//! current agent, one municipality's page, transmissions and history by
//! cursor, agents, failures. Every statement is in `queries/`.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::store::state;
use super::uf;
use super::view::{
    AgentRow, AgentSummary, DailyPoint, HistoryEntry, JobLast, MunicipalityDetail, MunicipalityRow,
    Overview, OverviewQuery, Page, SortKey, StateCount, TransmissionRow,
};
use crate::monitor::{Connectivity, DataState, HealthState, Overall, Reason};

/// Largest page the API serves.
pub const MAX_PAGE: i64 = 500;

/// Days on a municipality's charts.
const CHART_DAYS: i32 = 90;

#[derive(sqlx::FromRow)]
struct OverviewRecord {
    ibge: String,
    name: String,
    connectivity: String,
    data: String,
    health: String,
    overall: String,
    reasons: Json<serde_json::Value>,
    since: DateTime<Utc>,
    changed_at: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
    last_rows: Option<i64>,
    daily_rows: Vec<i64>,
    jobs: Json<serde_json::Value>,
    agent_id: Option<Uuid>,
    agent_version: Option<String>,
    pec_version: Option<String>,
    plan_version: Option<i64>,
    cert_not_after: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
}

impl OverviewRecord {
    fn into_row(self, evaluated_at: Option<DateTime<Utc>>) -> MunicipalityRow {
        let reasons: Vec<Reason> = serde_json::from_value(self.reasons.0).unwrap_or_default();
        let jobs: Vec<JobLast> = serde_json::from_value(self.jobs.0).unwrap_or_default();
        MunicipalityRow {
            uf: uf::of(&self.ibge),
            ibge: self.ibge,
            name: self.name,
            overall: state(&self.overall).unwrap_or(Overall::Never),
            connectivity: state(&self.connectivity).unwrap_or(Connectivity::Never),
            data: state(&self.data).unwrap_or(DataState::OnTime),
            health: state(&self.health).unwrap_or(HealthState::Ok),
            since: self.since,
            evaluated_at: evaluated_at.unwrap_or(self.changed_at),
            reasons,
            last_success: self.last_success,
            last_rows: self.last_rows,
            daily_rows: self.daily_rows,
            agent: self.agent_id.map(|id| AgentSummary {
                id,
                version: self.agent_version,
                pec_version: self.pec_version,
                plan_version: self.plan_version,
                cert_not_after: self.cert_not_after,
                last_heartbeat: self.heartbeat_at,
            }),
            jobs,
        }
    }
}

async fn evaluated_at(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(include_str!("queries/evaluated.sql"))
        .fetch_optional(pool)
        .await
}

async fn rows(pool: &PgPool, ibge: Option<&str>) -> Result<Vec<MunicipalityRow>, sqlx::Error> {
    let at = evaluated_at(pool).await?;
    let records: Vec<OverviewRecord> = sqlx::query_as(include_str!("queries/overview.sql"))
        .bind(ibge)
        .fetch_all(pool)
        .await?;
    Ok(records.into_iter().map(|r| r.into_row(at)).collect())
}

fn matches_text(row: &MunicipalityRow, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    q.is_empty() || row.ibge.contains(&q) || row.name.to_lowercase().contains(&q)
}

fn compare(a: &MunicipalityRow, b: &MunicipalityRow, key: SortKey) -> Ordering {
    let by_name = || a.name.cmp(&b.name).then_with(|| a.ibge.cmp(&b.ibge));
    match key {
        // Worst first.
        SortKey::State => b.overall.cmp(&a.overall).then_with(by_name),
        SortKey::Uf => a.uf.cmp(b.uf).then_with(by_name),
        SortKey::Name => by_name(),
        SortKey::LastSuccess => a.last_success.cmp(&b.last_success).then_with(by_name),
        SortKey::Rows => a.last_rows.cmp(&b.last_rows).then_with(by_name),
        SortKey::CertExpiry => {
            let exp = |r: &MunicipalityRow| r.agent.as_ref().and_then(|a| a.cert_not_after);
            exp(a).cmp(&exp(b)).then_with(by_name)
        }
    }
}

/// The overview: counts per state over the municipalities matching the UF
/// and text filters, and the rows also matching the state filter, sorted.
pub async fn overview(pool: &PgPool, query: &OverviewQuery) -> Result<Overview, sqlx::Error> {
    let all = rows(pool, None).await?;
    let uf_filter = query.uf.as_deref().map(str::to_uppercase);
    let mut counts: Vec<StateCount> = Overall::ALL
        .iter()
        .map(|s| StateCount {
            state: *s,
            count: 0,
        })
        .collect();
    let mut total = 0;
    let mut kept = Vec::with_capacity(all.len());
    let mut oldest: Option<DateTime<Utc>> = None;
    for row in all {
        if uf_filter.as_deref().is_some_and(|uf| uf != row.uf)
            || !query.q.as_deref().is_none_or(|q| matches_text(&row, q))
        {
            continue;
        }
        total += 1;
        if let Some(c) = counts.iter_mut().find(|c| c.state == row.overall) {
            c.count += 1;
        }
        if query.state.is_none_or(|s| s == row.overall) {
            oldest = Some(oldest.map_or(row.evaluated_at, |o| o.min(row.evaluated_at)));
            kept.push(row);
        }
    }
    let key = query.sort.unwrap_or_default();
    kept.sort_by(|a, b| {
        let o = compare(a, b, key);
        if query.desc { o.reverse() } else { o }
    });
    Ok(Overview {
        counts,
        total,
        rows: kept,
        evaluated_at: oldest,
    })
}

#[derive(sqlx::FromRow)]
struct HistoryRecord {
    id: i64,
    at: DateTime<Utc>,
    axis: String,
    from_state: Option<String>,
    to_state: String,
    reason: String,
    reason_pt_br: String,
}

/// A page of a municipality's state history, newest first.
pub async fn history(
    pool: &PgPool,
    ibge: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Page<HistoryEntry>, sqlx::Error> {
    let limit = limit.clamp(1, MAX_PAGE);
    let records: Vec<HistoryRecord> = sqlx::query_as(include_str!("queries/history.sql"))
        .bind(ibge)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let next_before = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(Page {
        items: records
            .into_iter()
            .map(|r| HistoryEntry {
                at: r.at,
                axis: r.axis,
                from: r.from_state,
                to: r.to_state,
                reason: r.reason,
                reason_pt_br: r.reason_pt_br,
            })
            .collect(),
        next_before,
    })
}

/// Which transmissions to list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmissionsQuery {
    /// One municipality.
    pub ibge: Option<String>,
    /// `open`, `committed`, `failed`, `aborted`; comma-separated for several.
    pub state: Option<String>,
    /// Started at or after.
    pub from: Option<DateTime<Utc>>,
    /// Started before.
    pub to: Option<DateTime<Utc>>,
    /// The cursor: ids below this.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// The states a transmission can be in.
pub const TRANSMISSION_STATES: [&str; 4] = ["open", "committed", "failed", "aborted"];

#[derive(Debug, thiserror::Error)]
pub enum TransmissionsError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("unknown transmission state {0:?}; the states are open, committed, failed, aborted")]
    UnknownState(String),
}

/// A page of transmissions, newest first.
pub async fn transmissions(
    pool: &PgPool,
    q: &TransmissionsQuery,
) -> Result<Page<TransmissionRow>, TransmissionsError> {
    let states: Option<Vec<String>> = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => {
            let list: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
            if let Some(bad) = list
                .iter()
                .find(|s| !TRANSMISSION_STATES.contains(&s.as_str()))
            {
                return Err(TransmissionsError::UnknownState(bad.clone()));
            }
            Some(list)
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    // Two statements rather than `$1 IS NULL OR ibge = $1`, which a
    // generic plan cannot use an index for.
    let query = match q.ibge.as_deref() {
        Some(ibge) => sqlx::query_as(include_str!("queries/transmissions_of.sql")).bind(ibge),
        None => sqlx::query_as(include_str!("queries/transmissions.sql")),
    };
    let items: Vec<TransmissionRow> = query
        .bind(states)
        .bind(q.from)
        .bind(q.to)
        .bind(q.before)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|r| r.id))
        .flatten();
    Ok(Page { items, next_before })
}

/// The newest failed or aborted transmissions across the country.
pub async fn failures(pool: &PgPool, limit: i64) -> Result<Vec<TransmissionRow>, sqlx::Error> {
    sqlx::query_as(include_str!("queries/failures.sql"))
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(pool)
        .await
}

/// Agents of one municipality or all, revoked ones too when asked.
pub async fn agents(
    pool: &PgPool,
    ibge: Option<&str>,
    include_revoked: bool,
) -> Result<Vec<AgentRow>, sqlx::Error> {
    sqlx::query_as(include_str!("queries/agents.sql"))
        .bind(ibge)
        .bind(include_revoked)
        .fetch_all(pool)
        .await
}

/// A municipality's page; `None` when it does not exist or has not been
/// evaluated yet.
pub async fn municipality(
    pool: &PgPool,
    ibge: &str,
) -> Result<Option<MunicipalityDetail>, sqlx::Error> {
    let Some(row) = rows(pool, Some(ibge)).await?.into_iter().next() else {
        return Ok(None);
    };
    let tz: Option<String> = sqlx::query_scalar(
        "SELECT timezone FROM transmissor.municipalities WHERE ibge = $1::bpchar",
    )
    .bind(ibge)
    .fetch_one(pool)
    .await?;
    let tz = uf::time_zone(ibge, tz.and_then(|t| t.parse::<Tz>().ok()));
    let daily: Vec<DailyPoint> = sqlx::query_as(include_str!("queries/daily.sql"))
        .bind(ibge)
        .bind(tz.name())
        .bind(CHART_DAYS)
        .fetch_all(pool)
        .await?;
    let history = history(pool, ibge, None, 100).await?.items;
    let page = |state: Option<&str>, limit| TransmissionsQuery {
        ibge: Some(ibge.to_string()),
        state: state.map(str::to_string),
        limit: Some(limit),
        ..TransmissionsQuery::default()
    };
    let db = |e: TransmissionsError| match e {
        TransmissionsError::Db(e) => e,
        // The states asked for here are known ones.
        TransmissionsError::UnknownState(s) => sqlx::Error::Protocol(s),
    };
    let recent = transmissions(pool, &page(None, 50)).await.map_err(db)?;
    let errors = transmissions(pool, &page(Some("failed,aborted"), 20))
        .await
        .map_err(db)?;
    let agents = agents(pool, Some(ibge), true).await?;
    let run_requests = crate::run_requests::recent(pool, ibge, 10).await?;
    Ok(Some(MunicipalityDetail {
        run_requests,
        municipality: row,
        history,
        daily,
        recent_transmissions: recent.items,
        recent_errors: errors.items,
        agents,
    }))
}
