//! Writes that need more than `viewer`, each with the session's CSRF token
//! and audited with the operator's name: issuing an enrollment token for a
//! municipality with no live agent and asking an agent to run now
//! (`operator`); re-enrolling a municipality that has a live agent,
//! publishing a signed plan and managing operators (`admin`).
//! The same actions as the CLI's `token issue`, `plan publish` and
//! `operator add/list/disable`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::error::CollectorError;
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::router::HttpState;
use crate::operators::{self, OperatorError, OperatorRow, Role};
use crate::plans::publish::{PublishError, Published};
use crate::run_requests::{RunRequestError, RunRequestRow};

/// Longest token validity an operator may ask for.
const MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    ibge: String,
    /// Hours of validity (default: `[ca] token_ttl`; at most 30 days).
    hours: Option<u64>,
}

#[derive(Serialize)]
pub struct IssuedToken {
    /// Give this to the municipality's IT (shown once, stored as a hash).
    token: String,
    ibge: String,
    expires_in_seconds: u64,
}

fn collector_error(e: CollectorError) -> ApiError {
    match e {
        CollectorError::Database(db) => ApiError::database(&db),
        CollectorError::FailedPrecondition(m) | CollectorError::InvalidArgument(m) => {
            ApiError::bad_request(m)
        }
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            other.to_string(),
        ),
    }
}

/// `POST /api/v1/tokens` (operator): a one-time enrollment token. When the
/// municipality has a live (unrevoked) agent the token would re-enroll it,
/// putting a new machine in its place: that needs an admin (an operator
/// may revoke the agent first, which is audited and visible).
pub async fn issue_token(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
    Json(req): Json<TokenRequest>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    authed.require_write(Role::Operator, &headers)?;
    let Some(issuer) = state.tokens else {
        return Err(ApiError::bad_request(
            "this collector has no [ca] section: it cannot issue enrollment tokens",
        ));
    };
    let ibge: transmissor_proto::identity::Ibge = req
        .ibge
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{e}")))?;
    if !authed.0.role.allows(Role::Admin) {
        let live: i64 = sqlx::query_scalar(include_str!("queries/live_agents.sql"))
            .bind(ibge.as_str())
            .fetch_one(&state.web_pool)
            .await?;
        if live > 0 {
            return Err(ApiError::forbidden(format!(
                "municipality {ibge} has a live agent: re-enrolling it needs the admin role \
                 (or revoke the agent first)"
            )));
        }
    }
    let ttl = req.hours.map_or(issuer.ttl, |h| {
        std::time::Duration::from_secs(h.saturating_mul(3600))
    });
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(ApiError::bad_request("hours must be between 1 and 720"));
    }
    let token = crate::enroll::issue_token(&state.web_pool, issuer.pin, ibge, ttl, &authed.actor())
        .await
        .map_err(collector_error)?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token: token.to_string(),
            ibge: ibge.to_string(),
            expires_in_seconds: ttl.as_secs(),
        }),
    ))
}

/// `POST /api/v1/plans` (admin): the body is a signed envelope exactly as
/// `transmissor-plan sign` wrote it; published as is (never altered).
pub async fn publish_plan(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    authed.require_write(Role::Admin, &headers)?;
    let published = crate::plans::publish::publish(
        &state.web_pool,
        &body,
        state.plan_keys.as_deref(),
        &authed.actor(),
    )
    .await
    .map_err(|e| match e {
        PublishError::Database(db) => ApiError::database(&db),
        other => ApiError::bad_request(other.to_string()),
    })?;
    Ok((StatusCode::CREATED, Json(published)))
}

fn operator_error(e: OperatorError) -> ApiError {
    match e {
        OperatorError::Database(db) => ApiError::database(&db),
        OperatorError::NotFound(_) => ApiError::not_found(e.to_string()),
        OperatorError::LastAdmin(_) => ApiError::conflict(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// `GET /api/v1/operators` (admin).
pub async fn list_operators(
    State(state): State<HttpState>,
    authed: Authed,
) -> Result<Json<Vec<OperatorRow>>, ApiError> {
    authed.require(Role::Admin)?;
    Ok(Json(operators::list(&state.web_pool).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    name: String,
    role: Role,
    password: String,
}

#[derive(Serialize)]
pub struct Added {
    id: i64,
    name: String,
}

/// `POST /api/v1/operators` (admin).
pub async fn add_operator(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
    Json(req): Json<NewOperator>,
) -> Result<(StatusCode, Json<Added>), ApiError> {
    authed.require_write(Role::Admin, &headers)?;
    let id = operators::add(
        &state.web_pool,
        &req.name,
        req.role,
        &req.password,
        &authed.actor(),
    )
    .await
    .map_err(operator_error)?;
    Ok((StatusCode::CREATED, Json(Added { id, name: req.name })))
}

/// `POST /api/v1/operators/{name}/disable` (admin): also ends their sessions.
pub async fn disable_operator(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authed.require_write(Role::Admin, &headers)?;
    operators::disable(&state.web_pool, &name, &authed.actor())
        .await
        .map_err(operator_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunRequestBody {
    /// One job of the municipality's plan; absent: every job.
    job: Option<String>,
}

/// `POST /api/v1/municipalities/{ibge}/run-requests` (operator): the
/// municipality's agent runs now (a retry), at its next heartbeat.
pub async fn request_run(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
    Path(ibge): Path<String>,
    body: Option<Json<RunRequestBody>>,
) -> Result<(StatusCode, Json<RunRequestRow>), ApiError> {
    authed.require_write(Role::Operator, &headers)?;
    let ibge: transmissor_proto::identity::Ibge = ibge
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let job = body.and_then(|Json(b)| b.job).filter(|j| !j.is_empty());
    let row = crate::run_requests::request(
        &state.web_pool,
        &state.plans,
        ibge,
        job.as_deref(),
        &authed.actor(),
    )
    .await
    .map_err(|e| match e {
        RunRequestError::Database(db) => ApiError::database(&db),
        RunRequestError::UnknownMunicipality(_) => ApiError::not_found(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })?;
    // This collector hands it out at once (others follow the notification).
    if let Err(e) = state.run_requests.refresh().await {
        tracing::warn!(error = %crate::pg_error::describe(&e), "cannot refresh the run requests");
    }
    Ok((StatusCode::ACCEPTED, Json(row)))
}
