//! The HTTP routes and the state they share.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;

use crate::metrics::Metrics;

/// What the HTTP handlers read, taken from [`crate::app::App`].
#[derive(Clone)]
pub struct HttpState {
    /// The health probe's own connection (never queued behind loads).
    pub health_pool: PgPool,
    pub metrics: Arc<Metrics>,
    /// `[ca]` is configured, and whether its CA loaded.
    pub ca: CaState,
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
        .route("/readyz", get(super::probes::readyz));
    if with_metrics {
        r = r.route("/metrics", get(metrics));
    }
    r.with_state(state)
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
