//! The JSON API (`/api/v1/...`), described in `api/openapi.yaml` (served
//! at `/api/v1/openapi.yaml`). Every route needs a session; writes need
//! the role and the CSRF token, and are audited with the operator's name.
//!
//! | file                  | routes                                                       |
//! |-----------------------|--------------------------------------------------------------|
//! | `api.rs`              | `me`, agent revocation                                       |
//! | `api/query.rs`        | query strings parsed strictly, errors in the one JSON shape  |
//! | `api/municipalities.rs` | municipalities with states; one municipality, its transmissions and history |
//! | `api/fleet.rs`        | agents, transmissions by state and time, failures            |
//! | `api/admin.rs`        | writes by role: tokens (operator); plans, operators (admin)  |
//! | `api/openapi.rs`      | the OpenAPI document                                         |

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Authed;
use super::error::ApiError;
use super::router::HttpState;
use crate::operators::Role;

pub mod admin;
pub mod fleet;
pub mod municipalities;
pub mod openapi;
mod query;

pub use query::ApiQuery;

#[derive(Serialize)]
pub struct Me {
    name: String,
    role: Role,
    /// Echo it in `X-CSRF-Token` on writes.
    csrf_token: String,
}

/// `GET /api/v1/me`: who is logged in, and the session's CSRF token.
pub async fn me(authed: Authed) -> Json<Me> {
    Json(Me {
        name: authed.0.name.clone(),
        role: authed.0.role,
        csrf_token: authed.0.csrf.clone(),
    })
}

#[derive(Deserialize, Default)]
pub struct RevokeBody {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
pub struct Revoked {
    agent_id: Uuid,
    ibge: String,
}

/// `POST /api/v1/agents/{id}/revoke` (operator): revokes one agent.
pub async fn revoke_agent(
    State(state): State<HttpState>,
    authed: Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    body: Option<Json<RevokeBody>>,
) -> Result<Json<Revoked>, ApiError> {
    authed.require_write(Role::Operator, &headers)?;
    let reason: String = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "revoked by an operator".into())
        .chars()
        .take(200)
        .collect();
    let revoked =
        crate::registry::revoke(&state.web_pool, Some(id), None, &reason, &authed.actor()).await?;
    let Some((agent_id, ibge)) = revoked.into_iter().next() else {
        return Err(ApiError::not_found(format!("no active agent {id}")));
    };
    Ok(Json(Revoked { agent_id, ibge }))
}
