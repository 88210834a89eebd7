//! `transmissor-collector plan publish`: stores a signed plan or plan-key
//! list as it is. The collector cannot sign, so it cannot make or change a
//! plan. It stores only what verifies: a plan signed by a current plan key
//! (`plans.keys`, moved along the published key lists), not below the
//! floor, its version above the newest and at most
//! [`transmissor_plan::increments::MAX_STEP`] above it; a key list signed
//! by the root key (`plans.root_key`). Without `plans.keys` nothing is
//! published.

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use thiserror::Error;

use transmissor_plan::{KeyChain, Kind, OpenError, Scope};

use super::trust::{PlanTrust, plan_refusal};

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

/// The chain now: the pinned keys, moved along every published key list
/// the root key signed.
async fn current_chain(pool: &PgPool, trust: &PlanTrust) -> Result<KeyChain, PublishError> {
    let lists: Vec<(i64, Vec<u8>)> = sqlx::query_as(include_str!("queries/key_lists_load.sql"))
        .fetch_all(pool)
        .await?;
    Ok(trust.chain(lists.iter().map(|(_, e)| e.as_slice())))
}

/// Publishes `envelope` (a signed plan or plan-key list) as `actor` (the
/// audit log's name for who did it). `trust`: `plans.keys` and
/// `plans.root_key`; `None` (no `plans.keys`) refuses everything.
pub async fn publish(
    pool: &PgPool,
    envelope: &[u8],
    trust: Option<&PlanTrust>,
    actor: &str,
) -> Result<Published, PublishError> {
    let kind = transmissor_plan::Envelope::parse(envelope)
        .map_err(OpenError::from)?
        .kind;
    let Some(trust) = trust else {
        return Err(PublishError::Refused(
            "plans.keys is not set in this collector's config: it publishes only plans it can verify (list the central team's plan public keys)".into(),
        ));
    };
    let chain = current_chain(pool, trust).await?;
    let actor = actor.to_string();
    let mut tx = pool.begin().await?;
    let published = match kind {
        Kind::Plan => {
            let v = transmissor_plan::open_plan(envelope, &chain.keys)?;
            let (plan, key_id) = (v.plan, v.key_id);
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
            let newest: Option<i64> =
                sqlx::query_scalar(include_str!("queries/plans_newest_version.sql"))
                    .fetch_one(&mut *tx)
                    .await?;
            let newest = newest.unwrap_or(0);
            if version > newest
                && let Some(why) = plan_refusal(&chain, &plan, newest as u64)
            {
                return Err(PublishError::Refused(why));
            }
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
                return Err(PublishError::Refused(format!(
                    "plan version {version} is not above the newest published version {newest}: plan versions only go up (agents refuse an older or reused one)"
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
                        "verified": true,
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
            if trust.root.is_none() {
                return Err(PublishError::Refused(
                    "plans.root_key is not set in this collector's config: key lists are published only when the root key verifies them".into(),
                ));
            }
            // The same checks as an agent's: signed by the current root,
            // a serial step of at most MAX_STEP, the root not a plan key.
            let next = chain.follow_from([envelope]);
            if let Some((_, why)) = next.refused.first() {
                return Err(PublishError::Refused(format!("key list refused: {why}")));
            }
            let (list, key_id) = transmissor_plan::inspect_key_list(envelope)?;
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
                        "verified": true,
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
