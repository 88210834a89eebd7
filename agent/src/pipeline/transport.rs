//! The connection to the collector: TLS 1.3 only (ring), the collector
//! verified against the trust bundle, the agent's client certificate sent
//! (both hot-swappable, see [`crate::identity::credentials`]), HTTP/2 with explicit
//! message limits and windows. Failures are explained by [`explain`].
//!
//! tonic refuses `https://` URIs unless it does TLS itself, so the endpoint
//! handed to tonic is `http://host:port` while [`connect_lazy`] performs the
//! rustls handshake on every new connection.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::transmission_client::TransmissionClient;

use crate::config::CollectorEndpoint;
pub use crate::diagnose::explain;
use crate::pipeline::bandwidth::{LinkCap, Throttled};

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("collector endpoint {0:?} is not https://host:port")]
    Endpoint(String),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// `(host, port)` of an `https://host:port` endpoint.
pub fn host_port(endpoint: &str) -> Result<(String, u16), TransportError> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| TransportError::Endpoint(endpoint.to_string()))?;
    if uri.scheme_str() != Some("https") {
        return Err(TransportError::Endpoint(endpoint.to_string()));
    }
    let host = uri
        .host()
        .ok_or_else(|| TransportError::Endpoint(endpoint.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

/// A lazily connecting channel to the configured collector over `tls`
/// (see [`crate::identity::credentials::Credentials::client_config`]); it reconnects
/// by itself after failures, and each new connection does a new handshake.
/// Every byte it writes to the socket (TLS included) is paced by `cap`.
pub fn channel(
    cfg: &CollectorEndpoint,
    tls: Arc<rustls::ClientConfig>,
    cap: Arc<LinkCap>,
) -> Result<Channel, TransportError> {
    connect_lazy_capped(
        tls,
        &cfg.endpoint,
        cfg.server_name.clone(),
        (cfg.connect_timeout, cfg.request_timeout),
        Some(cap),
    )
}

/// A lazily connecting channel over the given TLS configuration.
pub fn connect_lazy(
    tls: Arc<rustls::ClientConfig>,
    endpoint_url: &str,
    server_name: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Channel, TransportError> {
    connect_lazy_capped(
        tls,
        endpoint_url,
        server_name,
        (connect_timeout, request_timeout),
        None,
    )
}

/// As [`connect_lazy`], with the TCP stream under TLS wrapped in
/// [`Throttled`] (`cap`: `None` passes writes through).
fn connect_lazy_capped(
    tls: Arc<rustls::ClientConfig>,
    endpoint_url: &str,
    server_name: Option<String>,
    (connect_timeout, request_timeout): (Duration, Duration),
    cap: Option<Arc<LinkCap>>,
) -> Result<Channel, TransportError> {
    let (host, port) = host_port(endpoint_url)?;
    let server_name = ServerName::try_from(server_name.unwrap_or_else(|| host.clone()))
        .map_err(|_| TransportError::Endpoint(endpoint_url.to_string()))?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| TransportError::Endpoint(endpoint_url.to_string()))?
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(false)
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(32 * 1024 * 1024);
    let connector = TlsConnector::from(tls);
    let target = authority.clone();
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = target.clone();
            let cap = cap.clone();
            async move {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector
                    .connect(server_name, Throttled::new(tcp, cap))
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

/// The gRPC client with explicit message limits.
pub fn client(channel: Channel, max_message_bytes: usize) -> TransmissionClient<Channel> {
    TransmissionClient::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// The lifecycle (renewal, heartbeat) client with explicit message limits.
pub fn lifecycle_client(channel: Channel) -> AgentLifecycleClient<Channel> {
    AgentLifecycleClient::new(channel)
        // Answers may carry a signed plan.
        .max_decoding_message_size(transmissor_proto::limits::LIFECYCLE_MAX_ENCODED_BYTES)
        .max_encoding_message_size(LIFECYCLE_MAX_MESSAGE)
}

/// Lifecycle requests are small (a CSR, a status).
pub const LIFECYCLE_MAX_MESSAGE: usize = 1 << 20;
