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

use crate::config::CollectorConfig;
use crate::health;
use crate::identity::Authenticator;
use crate::load::Loader;
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
    let heartbeats = Arc::new(Heartbeats::default());
    tasks.spawn(
        heartbeats
            .clone()
            .run(pool.clone(), Duration::from_secs(1), background.clone()),
    );
    {
        let (pool, stop) = (pool.clone(), background.clone());
        tasks.spawn(async move {
            loop {
                if let Err(e) = crate::enroll::audit_expired_tokens(&pool).await {
                    tracing::warn!(error = %e, "cannot audit expired tokens");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        });
    }
    let auth = Authenticator::new(auth_pool.clone());
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(health::watch(
        reporter,
        health_pool.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));

    let max_msg = cfg.load.max_message_bytes.as_u64() as usize;
    let enrollment = EnrollmentServer::new(EnrollmentService::new(enroller.clone()));
    let lifecycle =
        AgentLifecycleServer::new(LifecycleService::new(auth.clone(), enroller, heartbeats));
    let svc = TransmissionServer::new(TransmissionService::new(
        auth,
        Loader::new(pool.clone(), &cfg.load),
    ))
    .max_decoding_message_size(max_msg)
    .max_encoding_message_size(max_msg);

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
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
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
    auth_pool.close().await;
    health_pool.close().await;
    pool.close().await;
    tracing::info!("collector stopped");
    result
}
