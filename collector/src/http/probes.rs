//! Liveness and readiness: `/healthz` answers while the process serves;
//! `/readyz` answers 200 only when the database answers, its control schema
//! is at this collector's migration, and the CA (when configured) loaded.
//! `/healthz` is public; `/readyz` (which names the database's state) is
//! on the metrics listener, or behind a session on the people's one
//! ([`super::router`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::router::{CaState, HttpState};

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

pub async fn healthz() -> Json<Health> {
    Json(Health { status: "up" })
}

#[derive(Serialize)]
pub struct Readiness {
    status: &'static str,
    database: String,
    migrations: String,
    ca: &'static str,
}

pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Readiness>) {
    let latest = crate::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    let applied: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.health_pool)
            .await;
    let (database, migrations, db_ok) = match applied {
        Ok(Some(v)) if v == latest => ("ok".to_string(), format!("{v} (current)"), true),
        Ok(v) => (
            "ok".to_string(),
            format!(
                "{} applied, this collector needs {latest}: run `transmissor-collector migrate`",
                v.unwrap_or(0)
            ),
            false,
        ),
        Err(e) => (
            format!("unreachable: {}", crate::pg_error::describe(&e)),
            "unknown".to_string(),
            false,
        ),
    };
    let ca = match state.ca {
        CaState::NotConfigured => "not configured",
        CaState::Loaded => "loaded",
    };
    let ready = db_ok;
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Readiness {
            status: if ready { "ready" } else { "not ready" },
            database,
            migrations,
            ca,
        }),
    )
}
