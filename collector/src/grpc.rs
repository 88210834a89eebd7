//! The agents' front door: gRPC over mutual TLS 1.3.
//!
//! | module           | responsibility                                                  |
//! |------------------|-----------------------------------------------------------------|
//! | [`transmission`] | `Transmission`: begin, batches, commit, status, abort (thin; work in [`crate::load`]) |
//! | [`lifecycle`]    | `Enrollment` (no client certificate) and `AgentLifecycle` (renew, heartbeat, fetch plan) |
//! | [`health`]       | `grpc.health.v1`, driven by real database reachability          |
//!
//! Errors become statuses in one place, [`crate::error`].

pub mod health;
pub mod lifecycle;
pub mod transmission;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use transmissor_proto::pb::agent_lifecycle_server::AgentLifecycleServer;
use transmissor_proto::pb::enrollment_server::EnrollmentServer;
use transmissor_proto::pb::transmission_server::TransmissionServer;

use crate::admission;
use crate::app::App;
use crate::config::CollectorConfig;
use crate::tls;
use lifecycle::{EnrollmentService, LifecycleService};
use transmission::TransmissionService;

/// HTTP/2 windows large enough to keep a 4 MiB batch moving on a fast link.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// `grpc.health.v1` messages: a service name and a status, both short.
const HEALTH_MAX_MESSAGE: usize = 1024;

/// Serves the gRPC services on `listener` until `accept_stop`, then lets
/// in-flight calls finish.
pub async fn serve(
    cfg: &CollectorConfig,
    app: &App,
    tls_config: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    accept_stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let limits = &cfg.limits;
    // Every service's message limit is explicit; tonic's default is never
    // relied upon. Enrollment and lifecycle carry tokens, CSRs and
    // heartbeats: small.
    let max_msg = cfg.load.max_message_bytes.as_u64() as usize;
    let small = limits.max_small_message_bytes.as_u64() as usize;
    let enrollment = EnrollmentServer::new(EnrollmentService::new(
        app.enroller.clone(),
        app.metrics.clone(),
    ))
    .max_decoding_message_size(small)
    .max_encoding_message_size(small);
    // The lifecycle and data services need a client certificate: a call
    // without one is refused from its headers, before its body is read.
    let lifecycle = InterceptedService::new(
        AgentLifecycleServer::new(LifecycleService::new(
            app.auth.clone(),
            app.enroller.clone(),
            app.heartbeats.clone(),
            app.plans.clone(),
            app.run_requests.clone(),
            app.admission.clone(),
            app.metrics.clone(),
        ))
        .max_decoding_message_size(small)
        // Answers may carry a signed plan (at most its envelope limit) and
        // the key lists an agent lacks.
        .max_encoding_message_size(transmissor_proto::limits::LIFECYCLE_MAX_ENCODED_BYTES),
        admission::require_certificate,
    );
    let transmission = InterceptedService::new(
        TransmissionServer::new(TransmissionService::new(
            app.auth.clone(),
            app.loader.clone(),
            app.admission.clone(),
            app.plans.clone(),
            app.metrics.clone(),
        ))
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(max_msg),
        admission::require_certificate,
    );
    let addr = listener.local_addr().ok();
    let incoming = tls::incoming(
        listener,
        tls_config,
        &cfg.server,
        accept_stop.clone(),
        app.metrics.tls_failures.clone(),
        app.metrics.connections_refused.clone(),
    );
    tracing::info!(addr = ?addr, "collector listening (gRPC, mutual TLS 1.3)");
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_connection_age(cfg.server.max_connection_age)
        .max_connection_age_grace(limits.connection_age_grace)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_calls_per_connection)
        .timeout(limits.request_timeout)
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_header_list_size(16 * 1024)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .add_service(
            health_service
                .max_decoding_message_size(HEALTH_MAX_MESSAGE)
                .max_encoding_message_size(HEALTH_MAX_MESSAGE),
        )
        .add_service(enrollment)
        .add_service(lifecycle)
        .add_service(transmission)
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), accept_stop.cancelled())
        .await
}
