//! Raw gRPC clients with chosen TLS identities, for feeding the collector
//! crafted (and bad) requests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::Channel;

use transmissor_proto::pb::transmission_client::TransmissionClient;

/// TLS 1.3 client config trusting `ca`, presenting `identity` if given.
pub fn tls(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

pub fn channel(endpoint: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Channel> {
    Ok(transmissor_agent::pipeline::transport::connect_lazy(
        tls(ca, identity)?,
        endpoint,
        None,
        Duration::from_secs(5),
        Duration::from_secs(30),
    )?)
}

/// A client with generous message limits (the collector's limits are what is tested).
pub fn transmission(
    endpoint: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<TransmissionClient<Channel>> {
    Ok(TransmissionClient::new(channel(endpoint, ca, identity)?)
        .max_encoding_message_size(256 << 20)
        .max_decoding_message_size(256 << 20))
}

/// A `PutBatch` of `raw` (COPY rows), zstd-compressed, with its length and
/// CRC-32C.
pub fn batch(id: i64, seq: u32, raw: &[u8], rows: u64) -> transmissor_proto::pb::PutBatchRequest {
    transmissor_proto::pb::PutBatchRequest {
        transmission_id: id,
        seq,
        rows,
        raw_len: raw.len() as u64,
        crc32c: transmissor_proto::checksum::crc32c(raw),
        data: transmissor_proto::batch::compress(raw, 3)
            .expect("zstd compresses in memory")
            .into(),
    }
}
