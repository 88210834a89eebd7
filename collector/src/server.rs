//! `serve`: the gRPC listener with its TLS, services, health and ordered
//! shutdown. Takes an already-bound listener so tests can use port 0.

use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use transmissor_proto::pb::agent_lifecycle_server::AgentLifecycleServer;
use transmissor_proto::pb::enrollment_server::EnrollmentServer;
use transmissor_proto::pb::transmission_server::TransmissionServer;

use crate::enroll::Enroller;
use crate::heartbeats::Heartbeats;
use crate::lifecycle::{EnrollmentService, LifecycleService};
use crate::tls::RevokedAgents;

use tonic::service::interceptor::InterceptedService;

use crate::admission::{self, Admission};
use crate::config::CollectorConfig;
use crate::health;
use crate::identity::Authenticator;
use crate::load::Loader;
use crate::plans::PublishedPlans;
use crate::service::TransmissionService;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(
        "the control schema is missing or out of date: run `transmissor-collector migrate` first"
    )]
    NotMigrated,
    #[error("CA: {0}")]
    Ca(#[from] crate::ca::CaError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot read the published plans: {0}")]
    Plans(String),
}

/// HTTP/2 windows large enough to keep a 4 MiB batch moving on a fast link.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// What `prepare` checked and built, ready to serve.
pub struct Prepared {
    pub tls: Arc<rustls::ServerConfig>,
    pub pool: PgPool,
    /// Small pool used only by the per-call identity check.
    pub auth_pool: PgPool,
    /// One connection for the health probe: it asks whether the database
    /// answers, so it must never queue behind loads for a pooled connection
    /// (found by the scale test: a burst of commits made a probe on the
    /// load pool time out and the collector report NOT_SERVING).
    pub health_pool: PgPool,
    pub revoked: Arc<RevokedAgents>,
    pub enroller: Option<Arc<Enroller>>,
}

/// Checks everything that can be checked before binding: TLS files, the CA,
/// the database and its schema.
pub async fn prepare(cfg: &CollectorConfig) -> Result<Prepared, ServeError> {
    tls::install_crypto_provider();
    let revoked = Arc::new(RevokedAgents::default());
    let tls_config = tls::server_config(&cfg.tls, revoked.clone())?;
    let pool = crate::db::connect(&cfg.database).await?;
    let applied: Option<(i64,)> =
        sqlx::query_as("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
    let latest = crate::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if applied.map(|(v,)| v) != Some(latest) {
        return Err(ServeError::NotMigrated);
    }
    crate::db::ensure_schemas(&pool, &cfg.load.target_schema).await?;
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM transmissor.agents WHERE revoked_at IS NOT NULL")
            .fetch_all(&pool)
            .await
            .map_err(crate::db::DbError::from)?;
    revoked.replace(ids.into_iter().collect());
    let enroller = match &cfg.ca {
        Some(ca) => {
            let loaded = crate::ca::load(&ca.dir)?;
            let own_pool =
                crate::db::connect_sized(&cfg.database, cfg.enrollment.database_connections)
                    .await?;
            Some(Arc::new(Enroller::new(
                own_pool,
                Arc::new(loaded),
                ca,
                &cfg.enrollment,
            )))
        }
        None => None,
    };
    let auth_pool =
        crate::db::connect_sized(&cfg.database, crate::db::AUTH_POOL_CONNECTIONS).await?;
    let health_pool = crate::db::connect_sized(&cfg.database, 1).await?;
    Ok(Prepared {
        tls: tls_config,
        pool,
        auth_pool,
        health_pool,
        revoked,
        enroller,
    })
}

/// Serves until `shutdown` is cancelled, then drains in-flight calls for at
/// most `server.drain_timeout` and closes the pool.
pub async fn run(
    cfg: &CollectorConfig,
    prepared: Prepared,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let Prepared {
        tls: tls_config,
        pool,
        auth_pool,
        health_pool,
        revoked,
        enroller,
    } = prepared;
    let addr = listener.local_addr().ok();
    let background = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(revoked.watch(pool.clone(), Duration::from_secs(2), background.clone()));
    let limits = &cfg.limits;
    let heartbeats = Arc::new(Heartbeats::new(limits.max_heartbeat_runs));
    tasks.spawn(
        heartbeats
            .clone()
            .run(pool.clone(), Duration::from_secs(1), background.clone()),
    );
    {
        let (pool, stop) = (pool.clone(), background.clone());
        let failure_window = cfg.enrollment.failure_window;
        tasks.spawn(async move {
            loop {
                if let Err(e) = crate::enroll::audit_expired_tokens(&pool).await {
                    tracing::warn!(error = %e, "cannot audit expired tokens");
                }
                if let Err(e) = crate::enroll::prune_attempts(&pool, failure_window).await {
                    tracing::warn!(error = %e, "cannot prune enrollment failure counters");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        });
    }
    let plans = PublishedPlans::load(pool.clone(), cfg.plans.allow_local_jobs)
        .await
        .map_err(|e| ServeError::Plans(crate::pg_error::describe(&e)))?;
    tasks.spawn(
        plans
            .clone()
            .run(cfg.plans.refresh_every, background.clone()),
    );
    let auth = Authenticator::new(auth_pool.clone());
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(health::watch(
        reporter,
        health_pool.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));

    let loader = Loader::new(pool.clone(), &cfg.load, limits);
    tasks.spawn(loader.clone().run_reaper(
        limits.stale_transmission_after,
        limits.reap_every,
        background.clone(),
    ));

    // Every service's message limit is explicit; tonic's default is never
    // relied upon. Enrollment and lifecycle carry tokens, CSRs and
    // heartbeats: small.
    let max_msg = cfg.load.max_message_bytes.as_u64() as usize;
    let small = limits.max_small_message_bytes.as_u64() as usize;
    let enroller_at_stop = enroller.clone();
    let enrollment = EnrollmentServer::new(EnrollmentService::new(enroller.clone()))
        .max_decoding_message_size(small)
        .max_encoding_message_size(small);
    // The lifecycle and data services need a client certificate: a call
    // without one is refused from its headers, before its body is read.
    let lifecycle = InterceptedService::new(
        AgentLifecycleServer::new(LifecycleService::new(
            auth.clone(),
            enroller,
            heartbeats,
            plans.clone(),
        ))
        .max_decoding_message_size(small)
        // Answers may carry a signed plan (at most its envelope limit) and
        // the key lists an agent lacks.
        .max_encoding_message_size(transmissor_proto::limits::LIFECYCLE_MAX_ENCODED_BYTES),
        admission::require_certificate,
    );
    let svc = InterceptedService::new(
        TransmissionServer::new(TransmissionService::new(
            auth,
            loader,
            Arc::new(Admission::new(limits)),
            plans,
        ))
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(max_msg),
        admission::require_certificate,
    );

    // The accept loop stops with `accept_stop`; in-flight calls then drain.
    let accept_stop = CancellationToken::new();
    let incoming = tls::incoming(listener, tls_config, &cfg.server, accept_stop.clone());
    tracing::info!(addr = ?addr, "collector listening (gRPC, mutual TLS 1.3)");

    let drain = cfg.server.drain_timeout;
    let signal = {
        let shutdown = shutdown.clone();
        let accept_stop = accept_stop.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no new connections, draining in-flight calls");
            accept_stop.cancel();
        }
    };
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_connection_age(cfg.server.max_connection_age)
        .max_connection_age_grace(limits.connection_age_grace)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_calls_per_connection)
        .timeout(limits.request_timeout)
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_header_list_size(16 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_service)
        .add_service(enrollment)
        .add_service(lifecycle)
        .add_service(svc)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), signal);

    let result = tokio::select! {
        r = server => r.map_err(ServeError::from),
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(timeout = ?drain, "drain deadline passed; closing remaining calls");
            Ok(())
        }
    };
    let _ = health_task.await;
    // Background work stops after the last call has drained (heartbeats flush once more).
    background.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some(e) = &enroller_at_stop {
        e.close().await;
    }
    auth_pool.close().await;
    health_pool.close().await;
    pool.close().await;
    tracing::info!("collector stopped");
    result
}
