//! The agent's live TLS credentials, swappable without a restart.
//!
//! [`ClientCert`] is the client-certificate resolver and [`Trust`] the
//! server-certificate verifier of the rustls configuration every collector
//! connection uses. Both hold their current value behind a lock and are read
//! at each handshake, so after a renewal ([`Credentials::install`]) new
//! connections present the new certificate (and trust the new bundle) while
//! established HTTP/2 connections keep their TLS session and their
//! in-flight uploads.
//!
//! [`Trust`] also refuses a collector chain through an issuing CA that the
//! collector retired (`ca retire`; listed in the trust bundle received at
//! enrollment or renewal), even though it still chains to the root.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::{self, IdentityError, IdentityPaths, Loaded, Validity};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

/// Client-certificate resolver over a swappable [`CertifiedKey`].
#[derive(Debug)]
pub struct ClientCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ClientCert {
    pub fn new(certified: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(certified),
        }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        read(&self.current)
    }

    /// New handshakes present `certified` from now on.
    pub fn swap(&self, certified: Arc<CertifiedKey>) {
        write(&self.current, certified);
    }
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Server-certificate verifier over a swappable trust bundle.
#[derive(Debug)]
pub struct Trust {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<WebPkiServerVerifier>>,
    /// Key pins of retired issuing CAs.
    retired: RwLock<Arc<Vec<[u8; 32]>>>,
}

/// The collector's chain goes through a retired issuing CA.
#[derive(thiserror::Error)]
#[error("the collector presented a certificate chain through a retired issuing CA")]
pub struct RetiredIssuer;

// rustls shows a custom certificate error with `Debug`: make it the sentence.
impl std::fmt::Debug for RetiredIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

fn webpki(
    roots: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    let mut store = RootCertStore::empty();
    for c in roots {
        store.add(c.clone())?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(format!("trust bundle: {e}")))
}

impl Trust {
    pub fn new(
        roots: &[CertificateDer<'static>],
        retired: &[[u8; 32]],
    ) -> Result<Self, rustls::Error> {
        let provider = provider();
        Ok(Self {
            current: RwLock::new(webpki(roots, &provider)?),
            retired: RwLock::new(Arc::new(retired.to_vec())),
            provider,
        })
    }

    /// New handshakes verify the collector against `roots`, refusing the
    /// `retired` issuing CAs, from now on.
    pub fn replace(
        &self,
        roots: &[CertificateDer<'static>],
        retired: &[[u8; 32]],
    ) -> Result<(), rustls::Error> {
        write(&self.current, webpki(roots, &self.provider)?);
        write(&self.retired, Arc::new(retired.to_vec()));
        Ok(())
    }
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = read(&self.current).verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        )?;
        let retired = read(&self.retired);
        if !retired.is_empty()
            && intermediates
                .iter()
                .filter_map(identity::spki_pin_of)
                .any(|k| retired.contains(&k))
        {
            tracing::error!(
                "the collector's certificate chain goes through a retired issuing CA; refusing it"
            );
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(RetiredIssuer))),
            ));
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.current).verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        read(&self.current).verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client certificate, the trust bundle and the certificate's validity.
#[derive(Debug)]
pub struct Credentials {
    cert: Arc<ClientCert>,
    trust: Arc<Trust>,
    validity: RwLock<Validity>,
}

impl Credentials {
    pub fn from_loaded(loaded: &Loaded) -> Result<Self, IdentityError> {
        Ok(Self {
            cert: Arc::new(ClientCert::new(loaded.certified.clone())),
            trust: Arc::new(Trust::new(&loaded.trust, &loaded.retired).map_err(tls_err)?),
            validity: RwLock::new(loaded.validity),
        })
    }

    /// Loads the identity files.
    pub fn load(paths: &IdentityPaths) -> Result<Self, IdentityError> {
        Self::from_loaded(&identity::load(paths)?)
    }

    /// TLS 1.3 client configuration (ALPN h2) presenting the current
    /// certificate and verifying the collector against the current bundle.
    ///
    /// Session resumption is off: a resumed TLS 1.3 session carries the
    /// client certificate of the handshake it resumes, so after a renewal new
    /// connections would still present the old identity. Connections are
    /// long-lived HTTP/2, so full handshakes cost nothing noticeable.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.trust.clone())
            .with_client_cert_resolver(self.cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    pub fn validity(&self) -> Validity {
        read(&self.validity)
    }

    /// The certificate new connections present.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.cert.current()
    }

    /// Swaps in a renewed identity: new connections use it at once.
    pub fn install(&self, loaded: &Loaded) -> Result<(), IdentityError> {
        self.trust
            .replace(&loaded.trust, &loaded.retired)
            .map_err(tls_err)?;
        self.cert.swap(loaded.certified.clone());
        write(&self.validity, loaded.validity);
        Ok(())
    }

    /// Re-reads the files (e.g. after `enroll --force` while running) and
    /// installs them if they hold a later certificate. Returns whether it did.
    pub fn reload_if_newer(&self, paths: &IdentityPaths) -> Result<bool, IdentityError> {
        let loaded = identity::load(paths)?;
        if loaded.validity.not_after_ms <= self.validity().not_after_ms {
            return Ok(false);
        }
        self.install(&loaded)?;
        Ok(true)
    }
}

fn tls_err(e: rustls::Error) -> IdentityError {
    IdentityError::Certificate(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::testpki::{Ca, agent_identity, sample_uri};

    #[test]
    fn resolver_swap_changes_what_new_handshakes_get() {
        let root = Ca::root("root");
        let issuing = root.issuing("issuing");
        let dir = tempfile::tempdir().unwrap();
        let paths = IdentityPaths::in_state_dir(dir.path());
        let uri = sample_uri();
        let (k, c, t) = agent_identity(&root, &issuing, &uri, Duration::from_secs(3600));
        identity::store(&paths, &k, &c, &t).unwrap();
        let creds = Credentials::load(&paths).unwrap();
        let _config = creds.client_config().unwrap();
        let before = creds.cert.resolve(&[], &[]).unwrap();
        assert!(creds.cert.has_certs());

        let (k, c, t) = agent_identity(&root, &issuing, &uri, Duration::from_secs(7200));
        identity::store(&paths, &k, &c, &t).unwrap();
        assert!(creds.reload_if_newer(&paths).unwrap());
        let after = creds.cert.resolve(&[], &[]).unwrap();
        assert_ne!(before.cert[0], after.cert[0]);
        assert_eq!(creds.current().cert[0], after.cert[0]);
        assert_eq!(creds.validity().lifetime_ms(), 7_200_000);
        // An older certificate on disk is not installed.
        assert!(!creds.reload_if_newer(&paths).unwrap());
    }
}
