//! TLS for the gRPC listener: TLS 1.3 only, `ring` provider, client
//! certificates verified against the agents' CA.
//!
//! Client certificates are *optional at the TLS layer* and required by
//! [`crate::identity`] for every data RPC: a caller without a certificate then
//! gets a precise `UNAUTHENTICATED` status instead of an opaque handshake
//! failure, and the (future) enrollment RPC can share the port. A certificate
//! that does not chain to the CA still fails the handshake; the reason rustls
//! gives is logged at warn level.
//!
//! [`incoming`] admits connections ([`accept`]): per-source budgets of
//! connections and handshakes ([`budget`]), a first-byte deadline before a
//! handshake slot is taken, a small budget of connections without a client
//! certificate, cut when idle ([`cutoff`]), and, when configured, a PROXY
//! protocol header first ([`proxy_protocol`]). Certificates issued by a
//! retired issuing CA (`ca retire`) fail the handshake like revoked agents.

pub mod accept;
pub mod budget;
pub mod cutoff;
pub mod proxy_protocol;

pub use accept::{ConnectionsRefused, HandshakeFailures, incoming};

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Pem { path: String, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
    #[error(transparent)]
    KeyFile(#[from] crate::pki::PkiError),
}

/// The server's private key (`[tls] key_file`), refused when other users
/// may read it or it belongs to another user.
fn server_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    crate::pki::check_private_key_file(path)?;
    load_key(path)
}

/// Installs the process-wide crypto provider (ring). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Agents revoked and issuing CAs retired in the database, refreshed every
/// few seconds; consulted by every TLS handshake (the per-call check in
/// [`crate::identity`] covers connections that were already open).
#[derive(Debug, Default)]
pub struct RevokedAgents {
    agents: std::sync::RwLock<std::collections::HashSet<uuid::Uuid>>,
    /// SHA-256 of the SubjectPublicKeyInfo of each retired issuing CA.
    retired_cas: std::sync::RwLock<std::collections::HashSet<[u8; 32]>>,
}

impl RevokedAgents {
    pub fn contains(&self, id: &uuid::Uuid) -> bool {
        self.agents.read().map(|s| s.contains(id)).unwrap_or(false)
    }

    pub fn replace(&self, ids: std::collections::HashSet<uuid::Uuid>) {
        if let Ok(mut s) = self.agents.write() {
            *s = ids;
        }
    }

    /// Whether a certificate among `chain` belongs to a retired issuing CA.
    pub fn names_retired_ca(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Ok(retired) = self.retired_cas.read() else {
            return false;
        };
        !retired.is_empty()
            && chain
                .iter()
                .filter_map(|c| crate::ca::spki_sha256(c.as_ref()))
                .any(|k| retired.contains(&k))
    }

    pub fn replace_retired_cas(&self, keys: std::collections::HashSet<[u8; 32]>) {
        if let Ok(mut s) = self.retired_cas.write() {
            *s = keys;
        }
    }

    async fn refresh(&self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        let ids = sqlx::query_scalar::<_, uuid::Uuid>(
            "SELECT id FROM transmissor.agents WHERE revoked_at IS NOT NULL",
        )
        .fetch_all(pool)
        .await?;
        self.replace(ids.into_iter().collect());
        let keys: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT spki_sha256 FROM transmissor.retired_cas")
                .fetch_all(pool)
                .await?;
        self.replace_retired_cas(
            keys.iter()
                .filter_map(|k| k.as_slice().try_into().ok())
                .collect(),
        );
        Ok(())
    }

    /// Reloads the set from `transmissor.agents` every `every` until `stop`.
    pub async fn watch(
        self: Arc<Self>,
        pool: sqlx::PgPool,
        every: Duration,
        stop: CancellationToken,
    ) {
        loop {
            if let Err(e) = self.refresh(&pool).await {
                tracing::warn!(error = %e, "cannot refresh the revoked agents and retired CAs");
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Chain verification by webpki, then: a revoked agent's certificate, or one
/// presented through a retired issuing CA, fails the handshake with
/// `CertificateError::Revoked`.
#[derive(Debug)]
struct RevocationChecking {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    revoked: Arc<RevokedAgents>,
}

impl rustls::server::danger::ClientCertVerifier for RevocationChecking {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Ok(uri) = crate::identity::agent_uri_of(end_entity.as_ref())
            && self.revoked.contains(&uri.agent_id)
        {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        if self.revoked.names_retired_ca(intermediates) {
            tracing::warn!("client certificate from a retired issuing CA refused");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the server configuration from the configured files.
pub fn server_config(
    cfg: &TlsConfig,
    revoked: Arc<RevokedAgents>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&cfg.ca_file)? {
        roots.add(ca)?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = Arc::new(RevocationChecking {
        inner: webpki,
        revoked,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&cfg.cert_file)?, server_key(&cfg.key_file)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption: a resumed session would skip the client
    // certificate checks (expiry, revocation) that every handshake must make.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The HTTP side's TLS 1.3 config: the same server certificate, no client
/// certificate (people log in), HTTP/1.1 and HTTP/2.
pub fn http_server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(load_certs(&cfg.cert_file)?, server_key(&cfg.key_file)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Logs a refused handshake; returns its reason class (a metric label).
pub(crate) fn log_handshake_failure(peer: SocketAddr, e: &io::Error) -> &'static str {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = rustls_error
        .map(describe_rustls_error)
        .unwrap_or_else(|| e.to_string());
    tracing::warn!(%peer, %reason, "tls handshake refused");
    rustls_error.map_or("io", failure_class)
}

/// A small, fixed set of reason classes for metrics.
pub fn failure_class(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate_not_yet_valid",
            C::UnknownIssuer => "unknown_ca",
            C::Revoked => "certificate_revoked",
            _ => "invalid_certificate",
        },
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "protocol",
    }
}

/// A short, operator-readable reason for a failed handshake.
pub fn describe_rustls_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "client certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "client certificate not valid yet (check the agent's clock)".into()
            }
            C::UnknownIssuer => "client certificate from an unknown CA".into(),
            C::Revoked => "client certificate revoked".into(),
            C::BadSignature => "client certificate has a bad signature".into(),
            other => format!("invalid client certificate: {other:?}"),
        },
        rustls::Error::PeerIncompatible(p) => {
            format!("client incompatible: {p:?} (TLS 1.3 is required)")
        }
        other => other.to_string(),
    }
}
