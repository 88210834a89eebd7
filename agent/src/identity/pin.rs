//! Verifying the collector by the CA pin of an enrollment token.
//!
//! Before enrollment the agent has no CA file: the token carries the SHA-256
//! of the collector root CA's SubjectPublicKeyInfo. [`PinnedVerifier`] looks
//! in the chain the server presents for a certificate with that key, then
//! verifies the end-entity certificate (signatures, validity, server name)
//! with that certificate as the only trust anchor. Presenting the real root
//! certificate is not enough: it is public, and a leaf not signed through it
//! still fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;

/// The server's chain does not contain the pinned CA key.
#[derive(Clone, Error)]
#[error(
    "the collector at {collector} is not the one this token was issued for (its CA key does not match the token's pin)"
)]
pub struct PinMismatch {
    pub collector: String,
}

// rustls shows a custom certificate error with `Debug`: make it the sentence.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Server-certificate verifier trusting only the CA whose key hash is `pin`.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: [u8; 32],
    collector: String,
    provider: Arc<CryptoProvider>,
    mismatch: AtomicBool,
}

fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(transmissor_proto::token::spki_pin(c.public_key().raw))
}

impl PinnedVerifier {
    /// `collector` names the endpoint in the error message.
    pub fn new(pin: [u8; 32], collector: &str) -> Self {
        Self {
            pin,
            collector: collector.to_string(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            mismatch: AtomicBool::new(false),
        }
    }

    /// Whether a handshake failed because no presented certificate had the
    /// pinned key.
    pub fn pin_mismatched(&self) -> bool {
        self.mismatch.load(Ordering::Relaxed)
    }

    pub fn mismatch_error(&self) -> PinMismatch {
        PinMismatch {
            collector: self.collector.clone(),
        }
    }

    /// TLS 1.3 client configuration (ALPN h2, no client certificate).
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|c| spki_sha256(c) == Some(self.pin));
        let Some(anchor) = anchor else {
            self.mismatch.store(true, Ordering::Relaxed);
            tracing::error!(collector = %self.collector, "no certificate of the collector's chain has the key pinned by the token");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(self.mismatch_error())),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned CA: {e}")))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;
    use crate::identity::testpki::Ca;

    /// A TLS 1.3 server on 127.0.0.1:0 presenting `chain`; answers "ok".
    async fn server(chain_pem: String, key_pem: String) -> std::net::SocketAddr {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    async fn connect(
        addr: std::net::SocketAddr,
        pin: [u8; 32],
        name: &str,
    ) -> (Result<String, std::io::Error>, Arc<PinnedVerifier>) {
        let verifier = Arc::new(PinnedVerifier::new(pin, &format!("https://{addr}")));
        let connector = TlsConnector::from(verifier.client_config().unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let r = async {
            let mut tls = connector.connect(name, tcp).await?;
            let mut s = String::new();
            tls.read_to_string(&mut s).await?;
            Ok(s)
        }
        .await;
        (r, verifier)
    }

    fn error_chain(e: &std::io::Error) -> String {
        let mut out = e.to_string();
        let mut cur = std::error::Error::source(e);
        while let Some(s) = cur {
            out.push_str(&format!(": {s}"));
            cur = s.source();
        }
        out
    }

    #[tokio::test]
    async fn pinned_root_accepted_other_keys_refused() {
        let root = Ca::root("collector root");
        let issuing = root.issuing("collector issuing");
        let (leaf, leaf_key) = issuing.server(&["localhost", "127.0.0.1"]);
        let addr = server(
            format!("{leaf}{}{}", issuing.pem, root.pem),
            leaf_key.serialize_pem(),
        )
        .await;

        // The right pin connects.
        let (r, v) = connect(addr, root.pin(), "localhost").await;
        assert_eq!(r.unwrap(), "ok");
        assert!(!v.pin_mismatched());
        // Pinning the issuing CA works too (it is in the chain).
        let (r, _) = connect(addr, issuing.pin(), "127.0.0.1").await;
        assert_eq!(r.unwrap(), "ok");

        // A wrong pin fails with the sentence municipal IT reads.
        let other = Ca::root("someone else");
        let (r, v) = connect(addr, other.pin(), "localhost").await;
        let e = error_chain(&r.unwrap_err());
        assert!(v.pin_mismatched());
        assert!(
            e.contains("is not the one this token was issued for (its CA key does not match the token's pin)"),
            "{e}"
        );
        assert!(e.contains(&format!("https://{addr}")), "{e}");

        // The right pin does not excuse a wrong server name.
        let (r, v) = connect(addr, root.pin(), "coletor.example.gov.br").await;
        assert!(!v.pin_mismatched());
        let e = error_chain(&r.unwrap_err()).to_lowercase();
        assert!(
            e.contains("notvalidforname") || e.contains("not valid for name"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn impersonator_presenting_the_real_root_is_refused() {
        let root = Ca::root("collector root");
        let fake = Ca::root("impersonator");
        let (leaf, leaf_key) = fake.server(&["localhost"]);
        // The impersonator appends the genuine (public) root certificate.
        let addr = server(
            format!("{leaf}{}{}", fake.pem, root.pem),
            leaf_key.serialize_pem(),
        )
        .await;
        let (r, v) = connect(addr, root.pin(), "localhost").await;
        assert!(!v.pin_mismatched());
        let e = error_chain(&r.unwrap_err()).to_lowercase();
        assert!(
            e.contains("unknownissuer") || e.contains("unknown issuer"),
            "{e}"
        );
    }
}
