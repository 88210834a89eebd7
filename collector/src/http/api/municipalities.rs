//! `GET /api/v1/municipalities` (states and last transmission per job,
//! filtered and sorted like the overview), `GET /api/v1/municipalities/{ibge}`
//! (the municipality page's data), and its transmissions and state history
//! by page; `GET .../run-requests`, its newest run requests (retries).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::ApiQuery;
use crate::health::read::{self, TransmissionsQuery};
use crate::health::view::{
    HistoryEntry, MunicipalityDetail, Overview, OverviewQuery, Page, TransmissionRow,
};
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::router::HttpState;
use crate::run_requests::RunRequestRow;

pub async fn list(
    State(state): State<HttpState>,
    _authed: Authed,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    Ok(Json(read::overview(&state.web_pool, &query).await?))
}

fn checked(ibge: &str) -> Result<&str, ApiError> {
    if ibge.len() == 7 && ibge.bytes().all(|b| b.is_ascii_digit()) {
        Ok(ibge)
    } else {
        Err(ApiError::bad_request(
            "an IBGE code is 7 digits, e.g. 3550308",
        ))
    }
}

pub async fn one(
    State(state): State<HttpState>,
    _authed: Authed,
    Path(ibge): Path<String>,
) -> Result<Json<MunicipalityDetail>, ApiError> {
    read::municipality(&state.web_pool, checked(&ibge)?)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no evaluated municipality {ibge}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The cursor: `next_before` of the previous page.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

pub async fn transmissions(
    State(state): State<HttpState>,
    _authed: Authed,
    Path(ibge): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<TransmissionRow>>, ApiError> {
    let q = TransmissionsQuery {
        ibge: Some(checked(&ibge)?.to_string()),
        before: page.before,
        limit: page.limit,
        ..TransmissionsQuery::default()
    };
    Ok(Json(read::transmissions(&state.web_pool, &q).await?))
}

pub async fn history(
    State(state): State<HttpState>,
    _authed: Authed,
    Path(ibge): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let ibge = checked(&ibge)?;
    Ok(Json(
        read::history(
            &state.web_pool,
            ibge,
            page.before,
            page.limit.unwrap_or(100),
        )
        .await?,
    ))
}

/// `GET /api/v1/municipalities/{ibge}/run-requests`: the newest 50 run
/// requests (retries), pending, taken or expired.
pub async fn run_requests(
    State(state): State<HttpState>,
    _authed: Authed,
    Path(ibge): Path<String>,
) -> Result<Json<Vec<RunRequestRow>>, ApiError> {
    Ok(Json(
        crate::run_requests::recent(&state.web_pool, checked(&ibge)?, 50).await?,
    ))
}
