//! Operators' requests to run a municipality's jobs now (a retry), carried
//! to the agent by the heartbeat it already sends: no connection is opened
//! towards the municipality, and nothing runs that its signed plan does not
//! define.
//!
//! An operator asks ([`request`]: stored, audited with their name, notified);
//! every collector keeps the pending requests in memory ([`RunRequests`],
//! refreshed on that notification), so a heartbeat costs no query; each
//! heartbeat answer carries its municipality's pending requests until the
//! agent reports them taken (the next heartbeat), which stores who took them
//! and when. An agent that sees one id twice (an answer lost on the way)
//! runs it once. A request no agent takes within [`TTL`] expires, and the
//! municipality page shows it so.
//!
//! Requests are bounded per municipality: one pending per job (or for
//! every job), and at most [`MAX_PER_WINDOW`] per [`WINDOW`], checked under
//! a per-municipality advisory lock so concurrent requests cannot both
//! pass.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use transmissor_proto::identity::Ibge;
use transmissor_proto::pb;

use crate::audit;
use crate::plans::PublishedPlans;

/// The channel [`request`] notifies on commit.
pub const NOTIFY_CHANNEL: &str = "transmissor_run_requests";

/// How long a request waits for its agent (an agent offline longer than
/// this would otherwise run a stale retry days later).
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// Most requests one municipality gets per [`WINDOW`]: a script (or a
/// stolen operator session) cannot make its agent run job after job, while
/// an operator retrying a few jobs by hand is never refused.
pub const MAX_PER_WINDOW: i64 = 12;
/// The window of [`MAX_PER_WINDOW`].
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Most requests pending per municipality handed out at once (an agent
/// runs each job once however many ask for it).
const MAX_PER_ANSWER: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RunRequestError {
    #[error("no municipality {0} is registered")]
    UnknownMunicipality(Ibge),
    #[error(
        "job {job:?} is not in the plan published for {ibge} (its jobs: {known})",
        known = .known.join(", ")
    )]
    UnknownJob {
        ibge: Ibge,
        job: String,
        known: Vec<String>,
    },
    #[error(transparent)]
    InvalidJob(#[from] transmissor_proto::names::NameError),
    #[error(
        "request {id} for {ibge} ({job}) is still pending: its agent runs it at its next heartbeat"
    )]
    AlreadyPending { id: i64, ibge: Ibge, job: String },
    #[error(
        "{ibge} got {MAX_PER_WINDOW} run requests in the last {} minutes; retry later",
        WINDOW.as_secs() / 60
    )]
    TooMany { ibge: Ibge },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One stored request, as the API and the municipality page show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRequestRow {
    pub id: i64,
    pub ibge: String,
    /// Absent: every job.
    pub job: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub taken_at: Option<DateTime<Utc>>,
    /// The agent that took it.
    pub taken_by: Option<Uuid>,
    /// `pending`, `taken` or `expired`.
    pub status: String,
}

/// Stores a request for `ibge` (`job`: one job of its plan; `None`: every
/// job), audited as `actor`, and notifies every collector.
pub async fn request(
    pool: &PgPool,
    plans: &PublishedPlans,
    ibge: Ibge,
    job: Option<&str>,
    actor: &str,
) -> Result<RunRequestRow, RunRequestError> {
    if let Some(job) = job {
        transmissor_proto::names::check_plain("job", job)?;
        // With a plan published for the municipality, only its jobs (the
        // agent would refuse another one anyway; this says so at once).
        if let Some(plan) = plans.latest_for(ibge.as_str()).and_then(|p| p.plan.clone()) {
            let known: Vec<String> = plan.jobs.iter().map(|j| j.name.clone()).collect();
            if !known.iter().any(|k| k == job) {
                return Err(RunRequestError::UnknownJob {
                    ibge,
                    job: job.to_string(),
                    known,
                });
            }
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query(include_str!("run_requests/lock.sql"))
        .bind(ibge.as_str())
        .execute(&mut *tx)
        .await?;
    let (pending, recent): (Option<i64>, i64) =
        sqlx::query_as(include_str!("run_requests/admit.sql"))
            .bind(ibge.as_str())
            .bind(job)
            .bind(WINDOW.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
    if let Some(id) = pending {
        return Err(RunRequestError::AlreadyPending {
            id,
            ibge,
            job: job.unwrap_or("every job").to_string(),
        });
    }
    if recent >= MAX_PER_WINDOW {
        tracing::warn!(%ibge, %actor, recent, "run request refused: too many for the municipality");
        return Err(RunRequestError::TooMany { ibge });
    }
    let row: Option<RunRequestRow> = sqlx::query_as(include_str!("run_requests/insert.sql"))
        .bind(ibge.as_str())
        .bind(job)
        .bind(actor)
        .bind(TTL.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(RunRequestError::UnknownMunicipality(ibge));
    };
    audit::record(
        &mut tx,
        audit::Event {
            actor: actor.to_string(),
            action: audit::action::RUN_REQUESTED,
            ibge: Some(row.ibge.clone()),
            detail: serde_json::json!({ "request": row.id, "job": row.job }),
            ..audit::Event::default()
        },
    )
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(row.id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(ibge = %row.ibge, request = row.id, job = row.job.as_deref().unwrap_or("*"), %actor, "run requested");
    Ok(row)
}

/// A municipality's newest `limit` requests, newest first.
pub async fn recent(
    pool: &PgPool,
    ibge: &str,
    limit: i64,
) -> Result<Vec<RunRequestRow>, sqlx::Error> {
    sqlx::query_as(include_str!("run_requests/recent.sql"))
        .bind(ibge)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Most ids of one heartbeat's report stored (an agent takes at most
/// [`MAX_PER_ANSWER`] per answer).
const MAX_REPORTED: usize = 64;

/// A pending request and when it expires.
#[derive(Clone)]
struct Pending {
    request: pb::RunRequest,
    expires_at: DateTime<Utc>,
}

/// The pending requests of every municipality, in memory.
pub struct RunRequests {
    pool: PgPool,
    pending: RwLock<HashMap<String, Vec<Pending>>>,
}

impl RunRequests {
    pub async fn load(pool: PgPool) -> Result<Arc<Self>, sqlx::Error> {
        let this = Arc::new(Self {
            pool,
            pending: RwLock::default(),
        });
        this.refresh().await?;
        Ok(this)
    }

    /// Reads the pending requests again (a handful at most, by a partial
    /// index).
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<(i64, String, Option<String>, DateTime<Utc>)> =
            sqlx::query_as(include_str!("run_requests/pending.sql"))
                .fetch_all(&self.pool)
                .await?;
        let mut pending: HashMap<String, Vec<Pending>> = HashMap::new();
        for (id, ibge, job, expires_at) in rows {
            pending.entry(ibge).or_default().push(Pending {
                request: pb::RunRequest {
                    id: id as u64,
                    job: job.unwrap_or_default(),
                },
                expires_at,
            });
        }
        *self.pending.write().unwrap_or_else(|p| p.into_inner()) = pending;
        Ok(())
    }

    /// Keeps the copy current until `stop` (see [`crate::db::follow`]).
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        crate::db::follow::follow(
            &self.pool,
            NOTIFY_CHANNEL,
            "run requests",
            every,
            stop,
            || self.refresh(),
        )
        .await;
    }

    /// What a heartbeat answer carries for `ibge`: its pending requests
    /// not yet expired.
    pub fn for_municipality(&self, ibge: &str) -> Vec<pb::RunRequest> {
        let now = Utc::now();
        let pending = self.pending.read().unwrap_or_else(|p| p.into_inner());
        pending
            .get(ibge)
            .map(|v| {
                v.iter()
                    .filter(|p| p.expires_at > now)
                    .take(MAX_PER_ANSWER)
                    .map(|p| p.request.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The agent `agent` of `ibge` reports `ids` taken: stored (only that
    /// municipality's requests not taken yet, whatever this collector's
    /// copy holds: the answer may have come from another replica) and no
    /// longer handed out. On a database error they stay pending and are
    /// handed out again; the agent runs each id once.
    pub async fn taken(&self, ibge: &str, agent: Uuid, ids: &[u64]) {
        let ids: Vec<i64> = ids
            .iter()
            .take(MAX_REPORTED)
            .filter_map(|id| i64::try_from(*id).ok())
            .collect();
        if ids.is_empty() {
            return;
        }
        let stored: Result<Vec<i64>, sqlx::Error> =
            sqlx::query_scalar(include_str!("run_requests/taken.sql"))
                .bind(&ids)
                .bind(ibge)
                .bind(agent)
                .fetch_all(&self.pool)
                .await;
        match stored {
            Ok(stored) => {
                if !stored.is_empty() {
                    tracing::info!(%ibge, %agent, requests = ?stored, "run requests taken by the agent");
                }
                let mut pending = self.pending.write().unwrap_or_else(|p| p.into_inner());
                if let Some(mine) = pending.get_mut(ibge) {
                    mine.retain(|p| !ids.contains(&(p.request.id as i64)));
                    if mine.is_empty() {
                        pending.remove(ibge);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%ibge, error = %crate::pg_error::describe(&e), "cannot record run requests taken; they are sent again")
            }
        }
    }
}
