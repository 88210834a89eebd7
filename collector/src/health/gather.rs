//! Reads what the derivation needs, set-based: one statement for every
//! municipality with its agent, one for schema drift, and transmissions
//! by time window (see [`super::memory`]).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;

use super::memory::{Memory, Seen};

/// One municipality and its current agent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MunicipalityRecord {
    pub ibge: String,
    pub name: String,
    pub timezone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub plan_refusal: Option<String>,
    pub plan_expired: bool,
    pub pec_version: Option<String>,
    pub plan_version: Option<i64>,
    pub spool_used_bytes: Option<i64>,
    pub holidays: Vec<NaiveDate>,
}

pub async fn municipalities(pool: &PgPool) -> Result<Vec<MunicipalityRecord>, sqlx::Error> {
    sqlx::query_as(include_str!("queries/municipalities.sql"))
        .fetch_all(pool)
        .await
}

/// ibge → one text per target whose columns the municipality lacks.
pub async fn schema_drift(pool: &PgPool) -> Result<HashMap<String, Vec<String>>, sqlx::Error> {
    let rows: Vec<(String, String, Vec<String>)> =
        sqlx::query_as(include_str!("queries/schema_drift.sql"))
            .fetch_all(pool)
            .await?;
    let mut drift: HashMap<String, Vec<String>> = HashMap::new();
    for (ibge, target, lacks) in rows {
        drift.entry(ibge).or_default().push(format!(
            "{target} lacks {}: {}",
            lacks.len(),
            lacks.join(", ")
        ));
    }
    Ok(drift)
}

/// Applies every transmission started since `since` (the first load),
/// streamed so the recent past of the whole country never sits in memory
/// as rows. Returns how many were read.
pub async fn load_recent(
    pool: &PgPool,
    memory: &mut Memory,
    since: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut rows = sqlx::query_as::<_, Seen>(include_str!("queries/recent_transmissions.sql"))
        .bind(since)
        .fetch(pool);
    let mut n = 0;
    while let Some(t) = rows.try_next().await? {
        memory.apply(&t);
        n += 1;
    }
    Ok(n)
}

/// Applies what finished since `since` and what is open. Returns how many
/// were read.
pub async fn load_changed(
    pool: &PgPool,
    memory: &mut Memory,
    since: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let rows: Vec<Seen> = sqlx::query_as(include_str!("queries/changed_transmissions.sql"))
        .bind(since)
        .fetch_all(pool)
        .await?;
    for t in &rows {
        memory.apply(t);
    }
    Ok(rows.len() as u64)
}
