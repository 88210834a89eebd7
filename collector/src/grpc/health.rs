//! `grpc.health.v1` reflecting real readiness: SERVING only while the
//! analytic database answers; NOT_SERVING otherwise and while shutting down.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Service names whose status is reported ("" is the whole server).
const SERVICES: [&str; 2] = ["", "transmissor.v1.Transmission"];

pub async fn is_database_ready(pool: &PgPool) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool)
        )
        .await,
        Ok(Ok(1))
    )
}

/// Probes the database every `every` until `shutdown`, then reports NOT_SERVING.
pub async fn watch(
    reporter: HealthReporter,
    pool: PgPool,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut last = None;
    loop {
        let ready = is_database_ready(&pool).await;
        if last != Some(ready) {
            let status = if ready {
                tracing::info!("database reachable: serving");
                ServingStatus::Serving
            } else {
                tracing::warn!("database unreachable: not serving");
                ServingStatus::NotServing
            };
            for s in SERVICES {
                reporter.set_service_status(s, status).await;
            }
            last = Some(ready);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    for s in SERVICES {
        reporter
            .set_service_status(s, ServingStatus::NotServing)
            .await;
    }
}
