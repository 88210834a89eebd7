//! The connection to the collector: TLS 1.3 only (ring), the collector
//! verified against the configured CA, the agent's client certificate sent,
//! HTTP/2 with explicit message limits and windows.
//!
//! tonic refuses `https://` URIs unless it does TLS itself, so the endpoint
//! handed to tonic is `http://host:port` while [`connect`] performs the
//! rustls handshake on every new connection.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use transmissor_proto::pb::transmission_client::TransmissionClient;

use crate::config::CollectorEndpoint;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("collector.endpoint {0:?} is not https://host:port")]
    Endpoint(String),
    #[error("cannot read {path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

fn pem_err(path: &std::path::Path, e: impl std::fmt::Display) -> TransportError {
    TransportError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Builds the rustls client configuration from the configured files.
pub fn client_tls(cfg: &CollectorEndpoint) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&cfg.ca_file).map_err(|e| pem_err(&cfg.ca_file, e))? {
        roots.add(ca.map_err(|e| pem_err(&cfg.ca_file, e))?)?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .and_then(|it| it.collect())
        .map_err(|e| pem_err(&cfg.cert_file, e))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| pem_err(&cfg.key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
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

/// A lazily connecting channel; it reconnects by itself after failures.
pub fn channel(cfg: &CollectorEndpoint) -> Result<Channel, TransportError> {
    connect_lazy(
        client_tls(cfg)?,
        &cfg.endpoint,
        cfg.server_name.clone(),
        cfg.connect_timeout,
        cfg.request_timeout,
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
            async move {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
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

/// Turns a connection failure into a sentence an operator can act on.
pub fn explain(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = status.source();
    while let Some(e) = cur {
        chain.push(e.to_string());
        cur = e.source();
    }
    let all = chain.join(": ").to_lowercase();
    let hint = if all.contains("unknownca")
        || all.contains("unknown issuer")
        || all.contains("unknown_ca")
    {
        "the collector does not trust this agent's certificate (issued by another CA?), or the agent does not trust the collector's (check collector.ca_file)"
    } else if all.contains("expired") {
        "a certificate has expired; check the machine's clock, then re-enroll the agent"
    } else if all.contains("notvalidforname") || all.contains("not valid for name") {
        "the collector's certificate does not match collector.endpoint (set collector.server_name?)"
    } else if all.contains("connection refused") {
        "nothing listens at collector.endpoint: is the collector running, and is the port right?"
    } else if all.contains("dns") || all.contains("failed to lookup") {
        "the collector's host name does not resolve: check collector.endpoint and DNS"
    } else if all.contains("timed out") || all.contains("deadline") {
        "the collector did not answer in time: check the network link and firewall"
    } else if all.contains("revoked") || all.contains("certificaterevoked") {
        "this agent's certificate was revoked: enroll the agent again"
    } else {
        ""
    };
    let base = if chain.is_empty() {
        format!("{}: {}", status.code(), status.message())
    } else {
        format!(
            "{}: {} ({})",
            status.code(),
            status.message(),
            chain.join(": ")
        )
    };
    if hint.is_empty() {
        base
    } else {
        format!("{base} — {hint}")
    }
}
