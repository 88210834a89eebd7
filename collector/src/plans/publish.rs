//! `transmissor-collector plan publish`: stores a signed plan or plan-key
//! list as it is. The collector cannot sign, so it cannot make or change a
//! plan; what it checks here only catches mistakes early (a garbled file,
//! a version not above the last one, and — when `plans.keys` pins the
//! central team's keys — a signature the agents would refuse).

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use thiserror::Error;

use transmissor_plan::{Kind, OpenError, Scope, TrustedKeys};

use crate::audit;

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("database error: {}", crate::pg_error::describe(.0))]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for PublishError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// What was published, for the operator.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Published {
    Plan {
        version: u64,
        key_id: String,
        scope: String,
        jobs: usize,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    KeyList {
        serial: u64,
        key_id: String,
        keys: usize,
    },
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plan {
                version,
                key_id,
                scope,
                jobs,
                expires_at,
            } => write!(
                f,
                "plan {version} published: {jobs} jobs, scope {scope}, signed by key {key_id}, expires {}",
                expires_at.to_rfc3339()
            ),
            Self::KeyList {
                serial,
                key_id,
                keys,
            } => write!(
                f,
                "plan-key list {serial} published: {keys} keys, signed by key {key_id}"
            ),
        }
    }
}

/// The keys that verify plans now: the pinned ones, moved along every
/// published key list that verifies under the keys before it.
async fn current_keys(pool: &PgPool, pinned: &TrustedKeys) -> Result<TrustedKeys, PublishError> {
    let lists: Vec<(i64, Vec<u8>)> = sqlx::query_as(include_str!("queries/key_lists_load.sql"))
        .fetch_all(pool)
        .await?;
    let chain = transmissor_plan::KeyChain::follow(
        pinned.clone(),
        0,
        lists.iter().map(|(_, e)| e.as_slice()),
    );
    Ok(chain.keys)
}

/// Publishes `envelope` (a signed plan or plan-key list) as `actor` (the
/// audit log's name for who did it). `pinned`: the central team's plan keys
/// from `plans.keys`, when configured.
pub async fn publish(
    pool: &PgPool,
    envelope: &[u8],
    pinned: Option<&TrustedKeys>,
    actor: &str,
) -> Result<Published, PublishError> {
    let kind = transmissor_plan::Envelope::parse(envelope)
        .map_err(OpenError::from)?
        .kind;
    let trusted = match pinned {
        Some(p) => Some(current_keys(pool, p).await?),
        None => None,
    };
    let actor = actor.to_string();
    let mut tx = pool.begin().await?;
    let published = match kind {
        Kind::Plan => {
            let (plan, key_id) = match &trusted {
                Some(keys) => {
                    let v = transmissor_plan::open_plan(envelope, keys)?;
                    (v.plan, v.key_id)
                }
                None => transmissor_plan::inspect_plan(envelope)?,
            };
            let (scope_all, scope_ibge, scope) = match &plan.scope {
                Scope::All => (true, Vec::new(), "all municipalities".to_string()),
                Scope::Municipalities(set) => (
                    false,
                    set.iter().cloned().collect::<Vec<_>>(),
                    format!("{} municipalities", set.len()),
                ),
            };
            let version = i64::try_from(plan.version).map_err(|_| {
                PublishError::Refused(format!("plan version {} is too large", plan.version))
            })?;
            sqlx::query("LOCK TABLE transmissor.plans IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let inserted: Option<(i64,)> = sqlx::query_as(include_str!("queries/plan_insert.sql"))
                .bind(version)
                .bind(envelope)
                .bind(Sha256::digest(envelope).to_vec())
                .bind(&key_id)
                .bind(scope_all)
                .bind(&scope_ibge)
                .bind(plan.issued_at)
                .bind(plan.expires_at)
                .bind(&actor)
                .fetch_optional(&mut *tx)
                .await?;
            if inserted.is_none() {
                let latest: Option<i64> =
                    sqlx::query_scalar("SELECT max(version) FROM transmissor.plans")
                        .fetch_one(&mut *tx)
                        .await?;
                return Err(PublishError::Refused(format!(
                    "plan version {version} is not above the newest published version {}: plan versions only go up (agents refuse an older or reused one)",
                    latest.unwrap_or(0)
                )));
            }
            audit::record(
                &mut tx,
                audit::Event {
                    actor,
                    action: audit::action::PLAN_PUBLISHED,
                    detail: serde_json::json!({
                        "version": version, "key_id": key_id, "scope": scope,
                        "jobs": plan.jobs.len(), "sha256": hex::encode(Sha256::digest(envelope)),
                        "verified": trusted.is_some(),
                    }),
                    ..Default::default()
                },
            )
            .await?;
            Published::Plan {
                version: plan.version,
                key_id,
                scope,
                jobs: plan.jobs.len(),
                expires_at: plan.expires_at,
            }
        }
        Kind::KeyList => {
            let (list, key_id) = match &trusted {
                Some(keys) => {
                    let v = transmissor_plan::open_key_list(envelope, keys)?;
                    (v.key_list, v.key_id)
                }
                None => transmissor_plan::inspect_key_list(envelope)?,
            };
            let serial = i64::try_from(list.serial).map_err(|_| {
                PublishError::Refused(format!("key-list serial {} is too large", list.serial))
            })?;
            sqlx::query("LOCK TABLE transmissor.plan_key_lists IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let inserted: Option<(i64,)> =
                sqlx::query_as(include_str!("queries/key_list_insert.sql"))
                    .bind(serial)
                    .bind(envelope)
                    .bind(&key_id)
                    .bind(&actor)
                    .fetch_optional(&mut *tx)
                    .await?;
            if inserted.is_none() {
                return Err(PublishError::Refused(format!(
                    "key-list serial {serial} is not above the newest published serial"
                )));
            }
            audit::record(
                &mut tx,
                audit::Event {
                    actor,
                    action: audit::action::PLAN_KEYS_PUBLISHED,
                    detail: serde_json::json!({
                        "serial": serial, "key_id": key_id,
                        "keys": list.keys.iter().map(|k| k.key_id()).collect::<Vec<_>>(),
                        "verified": trusted.is_some(),
                    }),
                    ..Default::default()
                },
            )
            .await?;
            Published::KeyList {
                serial: list.serial,
                key_id,
                keys: list.keys.len(),
            }
        }
    };
    // Every collector re-reads the plans when this commits.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(super::published::NOTIFY_CHANNEL)
        .bind(match &published {
            Published::Plan { version, .. } => format!("plan {version}"),
            Published::KeyList { serial, .. } => format!("key list {serial}"),
        })
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(published)
}

/// One row of `plan list`.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct PlanRow {
    pub version: i64,
    pub key_id: String,
    pub scope_all: bool,
    pub scope_ibge: Vec<String>,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub published_at: chrono::DateTime<chrono::Utc>,
    pub published_by: String,
    pub sha256: String,
}

pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<PlanRow>, sqlx::Error> {
    sqlx::query_as(include_str!("queries/plans_list.sql"))
        .bind(limit)
        .fetch_all(pool)
        .await
}
