//! `serve`: the gRPC listener with its TLS, services, health and ordered
//! shutdown. Takes an already-bound listener so tests can use port 0.

use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use transmissor_proto::pb::transmission_server::TransmissionServer;

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
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// HTTP/2 windows large enough to keep a 4 MiB batch moving on a fast link.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// Checks everything that can be checked before binding: TLS files, the
/// database and its schema. Returns what `run` needs.
pub async fn prepare(
    cfg: &CollectorConfig,
) -> Result<(std::sync::Arc<rustls::ServerConfig>, PgPool), ServeError> {
    tls::install_crypto_provider();
    let tls_config = tls::server_config(&cfg.tls)?;
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
    Ok((tls_config, pool))
}

/// Serves until `shutdown` is cancelled, then drains in-flight calls for at
/// most `server.drain_timeout` and closes the pool.
pub async fn run(
    cfg: &CollectorConfig,
    tls_config: std::sync::Arc<rustls::ServerConfig>,
    pool: PgPool,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().ok();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(health::watch(
        reporter,
        pool.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));

    let max_msg = cfg.load.max_message_bytes.as_u64() as usize;
    let svc = TransmissionServer::new(TransmissionService::new(
        Authenticator::new(pool.clone()),
        Loader::new(
            pool.clone(),
            cfg.load.target_schema.clone(),
            cfg.load.max_batch_raw_bytes.as_u64(),
        ),
    ))
    .max_decoding_message_size(max_msg)
    .max_encoding_message_size(max_msg);

    // The accept loop stops with `accept_stop`; in-flight calls then drain.
    let accept_stop = CancellationToken::new();
    let incoming = tls::incoming(
        listener,
        tls_config,
        cfg.server.handshake_timeout,
        accept_stop.clone(),
    );
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
    pool.close().await;
    tracing::info!("collector stopped");
    result
}
