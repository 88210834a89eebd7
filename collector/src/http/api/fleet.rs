//! Across the country: `GET /api/v1/agents`, `GET /api/v1/transmissions`
//! (by state and time range, paged), `GET /api/v1/failures`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::ApiQuery;
use crate::health::read::{self, TransmissionsQuery};
use crate::health::view::{AgentRow, Page, TransmissionRow};
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::router::HttpState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsQuery {
    pub ibge: Option<String>,
    #[serde(default)]
    pub include_revoked: bool,
}

pub async fn agents(
    State(state): State<HttpState>,
    _authed: Authed,
    ApiQuery(q): ApiQuery<AgentsQuery>,
) -> Result<Json<Vec<AgentRow>>, ApiError> {
    Ok(Json(
        read::agents(&state.web_pool, q.ibge.as_deref(), q.include_revoked).await?,
    ))
}

pub async fn transmissions(
    State(state): State<HttpState>,
    _authed: Authed,
    ApiQuery(q): ApiQuery<TransmissionsQuery>,
) -> Result<Json<Page<TransmissionRow>>, ApiError> {
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    Ok(Json(read::transmissions(&state.web_pool, &q).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailuresQuery {
    pub limit: Option<i64>,
}

pub async fn failures(
    State(state): State<HttpState>,
    _authed: Authed,
    ApiQuery(q): ApiQuery<FailuresQuery>,
) -> Result<Json<Vec<TransmissionRow>>, ApiError> {
    Ok(Json(
        read::failures(&state.web_pool, q.limit.unwrap_or(100)).await?,
    ))
}
