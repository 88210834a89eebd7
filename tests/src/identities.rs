//! Enrolling and renewing by hand over gRPC, for the identity tests: CSRs,
//! `Enroll` / `Renew` / authenticated calls with chosen certificates,
//! identities saved to files, raw TLS alerts and the audit log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use rcgen::{CertificateParams, KeyPair};
use tonic::{Code, Status};

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::enrollment_client::EnrollmentClient;

use crate::client;
use crate::stack::Stack;

/// A new key and a CSR for it.
pub fn plain_csr() -> Result<(KeyPair, String)> {
    let key = KeyPair::generate()?;
    let csr = csr_for(&key)?;
    Ok((key, csr))
}

/// Another CSR for an existing key.
pub fn csr_for(key: &KeyPair) -> Result<String> {
    Ok(CertificateParams::default().serialize_request(key)?.pem()?)
}

/// `Enroll` at `endpoint` (no client certificate).
pub async fn enroll_at(
    endpoint: &str,
    trust: &Path,
    token: &str,
    csr: &str,
) -> Result<pb::EnrollResponse, Status> {
    let channel =
        client::channel(endpoint, trust, None).map_err(|e| Status::internal(e.to_string()))?;
    enroll_on(channel, token, csr).await
}

/// `Enroll` over an existing channel.
pub async fn enroll_on(
    channel: tonic::transport::Channel,
    token: &str,
    csr: &str,
) -> Result<pb::EnrollResponse, Status> {
    EnrollmentClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: token.into(),
            csr_pem: csr.into(),
            hostname: "pec-server".into(),
            agent_version: "test".into(),
            os: "linux".into(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn enroll(s: &Stack, token: &str, csr: &str) -> Result<pb::EnrollResponse, Status> {
    enroll_at(&s.endpoint(), &s.server_trust, token, csr).await
}

/// `Renew` over a new connection presenting (chain, key).
pub async fn renew(
    s: &Stack,
    identity: (&Path, &Path),
    csr: &str,
) -> Result<pb::RenewResponse, Status> {
    let channel = client::channel(&s.endpoint(), &s.server_trust, Some(identity))
        .map_err(|e| Status::internal(e.to_string()))?;
    AgentLifecycleClient::new(channel)
        .renew(pb::RenewRequest {
            csr_pem: csr.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// The code of an authenticated call (`Status` of a transmission that does
/// not exist) over a new connection: `NotFound` means authenticated.
pub async fn call_code(s: &Stack, identity: (&Path, &Path)) -> Result<(Code, String)> {
    let mut c = client::transmission(&s.endpoint(), &s.server_trust, Some(identity))?;
    Ok(
        match c.status(pb::StatusRequest { transmission_id: 1 }).await {
            Ok(_) => (Code::Ok, String::new()),
            Err(e) => (e.code(), e.message().to_string()),
        },
    )
}

/// Writes an enrolled identity to files; returns (chain, key) paths.
pub fn save(dir: &Path, name: &str, chain: &str, key: &KeyPair) -> Result<(PathBuf, PathBuf)> {
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, chain)?;
    std::fs::write(&k, key.serialize_pem())?;
    Ok((c, k))
}

/// The DER of a chain's first certificate.
pub fn leaf(chain_pem: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    Ok(
        rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .ok_or_else(|| anyhow::anyhow!("empty chain"))??
            .to_vec(),
    )
}

/// What a raw TLS connection presenting (cert, key) reads back: the alert
/// that ended the handshake, or how many bytes came.
pub async fn raw_alert(s: &Stack, cert: &Path, key: &Path) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = client::tls(&s.server_trust, Some((cert, key)))?;
    let tcp = tokio::net::TcpStream::connect(s.collector_addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    Ok(
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await? {
            Ok(n) => format!("read {n} bytes, no alert"),
            Err(e) => format!("{e:?}"),
        },
    )
}

/// Every audit action, oldest first.
pub async fn audit_actions(s: &Stack) -> Result<Vec<String>> {
    let c = s.analytic_client().await?;
    Ok(
        c.query("SELECT action FROM transmissor.audit_log ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    )
}
