//! The HTTP routes and the state they share, with the body limit of each
//! route (`/login` 1 KiB, a signed plan its envelope's maximum, any other
//! 16 KiB) and the headers every answer carries (HSTS over HTTPS,
//! `Cache-Control: no-store` unless the route chose its own caching).
//!
//! `/metrics` and `/readyz` are for machines on the metrics listener
//! (`http.metrics_listen`); on the people's listener they need a session.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{self, CACHE_CONTROL, STRICT_TRANSPORT_SECURITY};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sqlx::PgPool;

use super::auth::Authed;
use super::error::ApiError;
use crate::metrics::Metrics;
use crate::operators::guard::LoginGuard;

/// `POST /login`'s body: a name, a password, a path and a CSRF value.
pub const LOGIN_BODY_LIMIT: usize = 1024;
/// Any other route's body (JSON requests are small).
pub const BODY_LIMIT: usize = 16 << 10;

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
    /// The listener speaks HTTPS itself (HSTS is sent); off only behind a
    /// TLS-terminating proxy, which should send HSTS. Cookies are always
    /// `Secure` (`__Host-`).
    pub https: bool,
    /// Login throttling and the bounded hashing pool.
    pub logins: Arc<LoginGuard>,
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
        .route("/readyz", get(readyz_for_people))
        .route(
            "/login",
            get(super::auth::login_page)
                .post(super::auth::login)
                .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
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
        .route(
            "/api/v1/plans",
            post(super::api::admin::publish_plan).layer(DefaultBodyLimit::max(
                transmissor_plan::envelope::MAX_ENVELOPE_BYTES,
            )),
        )
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
        r = r.route("/metrics", get(metrics_for_people));
    }
    let https = state.https;
    // The overview of 5,570 municipalities is ~3 MB of HTML and the API
    // list more in JSON; gzip (when the client asks) makes them a tenth.
    r.layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            security_headers(https, req, next)
        }))
        .with_state(state)
}

/// HSTS over HTTPS; `no-store` on whatever did not choose its caching (the
/// API's JSON carries sessions' data and CSRF and enrollment tokens).
async fn security_headers(https: bool, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    if https {
        h.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.entry("x-content-type-options")
        .or_insert(HeaderValue::from_static("nosniff"));
    r
}

/// `/metrics` and `/readyz`, for `http.metrics_listen` (no session: keep
/// that address internal).
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(super::probes::readyz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// `/readyz` on the people's listener: with a session only.
async fn readyz_for_people(state: State<HttpState>, _authed: Authed) -> Response {
    super::probes::readyz(state).await.into_response()
}

/// `/metrics` on the people's listener (no `metrics_listen`): with a
/// session only.
async fn metrics_for_people(
    state: State<HttpState>,
    _authed: Authed,
) -> Result<Response, ApiError> {
    Ok(metrics(state).await.into_response())
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    // Before the OpenMetrics end marker, if the encoder wrote one.
    let logins = state.logins.render_metrics();
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &logins),
        None => text.push_str(&logins),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
