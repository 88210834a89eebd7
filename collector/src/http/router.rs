//! The HTTP routes and the state they share.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use sqlx::PgPool;

use crate::metrics::Metrics;

/// What the HTTP handlers read, taken from [`crate::app::App`].
#[derive(Clone)]
pub struct HttpState {
    /// The health probe's own connection (never queued behind loads).
    pub health_pool: PgPool,
    /// The HTTP side's own small pool (sessions, API, dashboard), so people
    /// never take connections from loads.
    pub web_pool: PgPool,
    pub session_idle: std::time::Duration,
    pub session_lifetime: std::time::Duration,
    /// `Secure` cookies (off only when the listener is plain HTTP).
    pub secure_cookies: bool,
    pub metrics: Arc<Metrics>,
    /// `[ca]` is configured, and whether its CA loaded.
    pub ca: CaState,
    /// What issuing enrollment tokens needs (`None` without `[ca]`).
    pub tokens: Option<TokenIssuer>,
    /// `plans.keys` and `plans.root_key`, to check a plan's signature
    /// before publishing it.
    pub plan_keys: Option<Arc<crate::plans::PlanTrust>>,
    /// The published plans (a retry may only name a job of the plan).
    pub plans: Arc<crate::plans::PublishedPlans>,
    /// This collector's copy of the pending run requests.
    pub run_requests: Arc<crate::run_requests::RunRequests>,
}

/// The CA pin a token carries and the default validity.
#[derive(Clone, Copy)]
pub struct TokenIssuer {
    pub pin: [u8; 32],
    pub ttl: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaState {
    NotConfigured,
    Loaded,
}

/// Every route of the main listener.
pub fn router(state: HttpState, with_metrics: bool) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(super::probes::healthz))
        .route("/readyz", get(super::probes::readyz))
        .route(
            "/login",
            get(super::auth::login_page).post(super::auth::login),
        )
        .route("/logout", post(super::auth::logout))
        .route("/api/v1/me", get(super::api::me))
        .route("/api/v1/openapi.yaml", get(super::api::openapi::document))
        .route(
            "/api/v1/municipalities",
            get(super::api::municipalities::list),
        )
        .route(
            "/api/v1/municipalities/{ibge}",
            get(super::api::municipalities::one),
        )
        .route(
            "/api/v1/municipalities/{ibge}/transmissions",
            get(super::api::municipalities::transmissions),
        )
        .route(
            "/api/v1/municipalities/{ibge}/history",
            get(super::api::municipalities::history),
        )
        .route(
            "/api/v1/municipalities/{ibge}/run-requests",
            get(super::api::municipalities::run_requests).post(super::api::admin::request_run),
        )
        .route("/api/v1/agents", get(super::api::fleet::agents))
        .route(
            "/api/v1/transmissions",
            get(super::api::fleet::transmissions),
        )
        .route("/api/v1/failures", get(super::api::fleet::failures))
        .route("/api/v1/agents/{id}/revoke", post(super::api::revoke_agent))
        .route("/api/v1/tokens", post(super::api::admin::issue_token))
        .route("/api/v1/plans", post(super::api::admin::publish_plan))
        .route(
            "/api/v1/operators",
            get(super::api::admin::list_operators).post(super::api::admin::add_operator),
        )
        .route(
            "/api/v1/operators/{name}/disable",
            post(super::api::admin::disable_operator),
        )
        .merge(super::dashboard::routes());
    if with_metrics {
        r = r.route("/metrics", get(metrics));
    }
    // The overview of 5,570 municipalities is ~3 MB of HTML and the API
    // list more in JSON; gzip (when the client asks) makes them a tenth.
    r.layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

/// Only `/metrics` (for `http.metrics_listen`).
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
