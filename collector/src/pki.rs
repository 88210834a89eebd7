//! The collector's certificate authority: issuing server and agent
//! certificates (rcgen, ring). Agent certificates carry the identity URI of
//! [`transmissor_proto::identity`], the clientAuth EKU, a random serial and a
//! NotBefore back-dated a few minutes to tolerate clock skew.
//!
//! No certificate outlives the CA that signs it: a NotAfter past the
//! issuer's is clamped to the issuer's (logged), and an expired issuer
//! signs nothing. [`check_private_key_file`] is the load-time check of a
//! private key file (owner-only, owned by the running user).

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use thiserror::Error;
use time::OffsetDateTime;

use transmissor_proto::identity::AgentUri;

/// How far NotBefore is moved into the past by default.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the certificate request's key does not match its signature algorithm")]
    CsrKeyAlgorithm,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the issuing CA {subject} expired at {not_after}: rotate it (`ca rotate`)")]
    IssuerExpired { subject: String, not_after: String },
    #[error("the CA certificate does not parse: {0}")]
    CaCertificate(String),
    #[error(
        "{path} is readable by other users (mode {mode:04o}); run `chmod 600 {path}` as its owner"
    )]
    KeyPermissions { path: String, mode: u32 },
    #[error(
        "{path} belongs to user id {owner}, not to the user running this process ({running}); run `chown` on it to the service account, or run as its owner"
    )]
    KeyOwner {
        path: String,
        owner: u32,
        running: u32,
    },
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    /// The certificate's subject and NotAfter: what it signs ends no later.
    subject: String,
    not_after: OffsetDateTime,
}

/// Subject and NotAfter of a PEM certificate.
fn subject_and_not_after(cert_pem: &str) -> Result<(String, OffsetDateTime), PkiError> {
    use rustls_pki_types::pem::PemObject;
    let bad = |e: String| PkiError::CaCertificate(e);
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| bad(e.to_string()))?;
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| bad(e.to_string()))?;
    Ok((cert.subject().to_string(), not_after))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    validity_with(params, lifetime, BACKDATE);
}

fn validity_with(params: &mut CertificateParams, lifetime: Duration, backdate: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - backdate;
    params.not_after = now + lifetime;
}

/// Parameters of a CA certificate that may sign `path_len` further CAs.
fn ca_params(common_name: &str, path_len: u8, lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "transmissor");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    validity(&mut params, lifetime);
    params
}

impl Ca {
    /// A new self-signed CA.
    pub fn generate(common_name: &str, lifetime: Duration) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        // Path length 1: the root may sign an issuing CA, which signs leaves.
        let cert = ca_params(common_name, 1, lifetime).self_signed(&key)?;
        Self::from_parts(cert.pem(), key)
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Self::from_parts(cert_pem.to_string(), KeyPair::from_pem(key_pem)?)
    }

    fn from_parts(cert_pem: String, key: KeyPair) -> Result<Self, PkiError> {
        let (subject, not_after) = subject_and_not_after(&cert_pem)?;
        Ok(Self {
            cert_pem,
            key,
            subject,
            not_after,
        })
    }

    /// When this CA's certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Ends `params`' validity no later than this CA's (clamped, logged);
    /// refuses when this CA has expired.
    fn bound(&self, params: &mut CertificateParams) -> Result<(), PkiError> {
        if OffsetDateTime::now_utc() >= self.not_after {
            return Err(PkiError::IssuerExpired {
                subject: self.subject.clone(),
                not_after: self.not_after.to_string(),
            });
        }
        if params.not_after > self.not_after {
            tracing::warn!(
                issuer = %self.subject,
                issuer_not_after = %self.not_after,
                asked_not_after = %params.not_after,
                "a certificate would outlive its issuing CA; its lifetime is cut to the CA's (rotate the CA: `ca rotate`)"
            );
            params.not_after = self.not_after;
        }
        Ok(())
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?)
    }

    /// An intermediate (issuing) CA signed by this one: it signs agent and
    /// server certificates and cannot sign further CAs.
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        lifetime: Duration,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(common_name, 0, lifetime);
        params.use_authority_key_identifier_extension = true;
        self.bound(&mut params)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for the given DNS names / IP addresses.
    pub fn issue_server(&self, names: &[String], lifetime: Duration) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, lifetime);
        self.bound(&mut params)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// An agent (client) certificate for `uri`, with a new key.
    pub fn issue_agent(&self, uri: &AgentUri, lifetime: Duration) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert_pem = self.sign_agent_key(uri, &key, lifetime)?;
        Ok(Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs an agent certificate for a public key the agent generated.
    pub fn sign_agent_key(
        &self,
        uri: &AgentUri,
        public_key: &impl rcgen::PublicKeyData,
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        self.sign_agent_key_backdated(uri, public_key, lifetime, BACKDATE)
    }

    /// As [`Self::sign_agent_key`], with NotBefore moved `backdate` into the past.
    pub fn sign_agent_key_backdated(
        &self,
        uri: &AgentUri,
        public_key: &impl rcgen::PublicKeyData,
        lifetime: Duration,
        backdate: Duration,
    ) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("transmissor agent {}", uri.ibge),
        );
        params.subject_alt_names = vec![SanType::URI(uri.to_string().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity_with(&mut params, lifetime, backdate);
        self.bound(&mut params)?;
        Ok(params.signed_by(public_key, &self.issuer()?)?.pem())
    }
}

/// Parses a PEM certificate request as `Enroll` and `Renew` take it from a
/// caller: the request's signature is verified, and its public key is
/// returned only when a certificate signed for it carries the very
/// SubjectPublicKeyInfo of the request. (rcgen takes the key's algorithm
/// from the request's *signature* algorithm, so a P-384 key that signs its
/// request with ecdsa-with-SHA256 would otherwise get a certificate
/// claiming a P-256 key; found by the `csr` fuzz target.)
pub fn parse_csr(csr_pem: &str) -> Result<rcgen::CertificateSigningRequestParams, PkiError> {
    use rcgen::PublicKeyData;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509CertificationRequest};

    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|_| rcgen::Error::CouldNotParseCertificationRequest)?;
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der)?;
    let (_, req) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|_| rcgen::Error::CouldNotParseCertificationRequest)?;
    if csr.public_key.subject_public_key_info() != req.certification_request_info.subject_pki.raw {
        return Err(PkiError::CsrKeyAlgorithm);
    }
    Ok(csr)
}

/// Writes a file readable by its owner only (0600), replacing any old one.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    std::io::Write::write_all(&mut f, contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Refuses a private key file that other users may read, or that belongs
/// to another user than the one running this process (unix; elsewhere the
/// ACLs of the installer apply). What `issuing.key` and `server.key` get at
/// load; for `[tls] key_file` call it before reading the key.
pub fn check_private_key_file(path: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|source| PkiError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PkiError::KeyPermissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let running = nix::unistd::geteuid().as_raw();
        if meta.uid() != running {
            return Err(PkiError::KeyOwner {
                path: path.display().to_string(),
                owner: meta.uid(),
                running,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-384 key whose request is signed with ecdsa-with-SHA256 (made with
    /// `openssl req -new -key p384.key -sha256`): rcgen reads the key as a
    /// P-256 one. Found by the `csr` fuzz target (fuzz/fuzz_targets/csr.rs).
    const P384_SIGNED_WITH_SHA256: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBBDCBiwIBADAMMQowCAYDVQQDDAF4MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE
SqGxd1g7pqBknXBkfY8P1lTbKHU2IEzFAnxJ6giFmFCUxrt9d3DoqK3AEYRZOeAs
oihzsZksTgze9UjTsmoBrUtR2YYQ3vE0zVjedKIMMKG2Qt63dos0y1TWJs86cLka
oAAwCgYIKoZIzj0EAwIDaAAwZQIxAOg+rH1pVxdyjrYnLBoZ5F0b3AH7gigi5ZGC
/jhI71S82esl6JJR+keVmH33+ex7FwIwTNcef1iTBtFSoPXYPfXfo5HvB0IUdM/n
GK2a5fVYNMKZ9IARI1YngkNB1iGfcaRb
-----END CERTIFICATE REQUEST-----
";

    #[test]
    fn csr_key_must_match_its_signature_algorithm() {
        // rcgen alone accepts it, with the wrong key algorithm.
        let csr =
            rcgen::CertificateSigningRequestParams::from_pem(P384_SIGNED_WITH_SHA256).unwrap();
        assert_eq!(csr.public_key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(matches!(
            parse_csr(P384_SIGNED_WITH_SHA256),
            Err(PkiError::CsrKeyAlgorithm)
        ));
    }

    #[test]
    fn agent_requests_parse_and_keep_their_key() {
        use rcgen::PublicKeyData;
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let pem = CertificateParams::default()
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap();
            let csr = parse_csr(&pem).unwrap();
            assert_eq!(
                csr.public_key.subject_public_key_info(),
                key.subject_public_key_info()
            );
        }
        assert!(matches!(
            parse_csr("not a request"),
            Err(PkiError::Rcgen(_))
        ));
    }

    #[test]
    fn nothing_outlives_its_issuing_ca() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let not_after = |pem: &str| {
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            X509Certificate::from_der(der.as_ref())
                .unwrap()
                .1
                .validity()
                .not_after
                .timestamp()
        };
        let root = Ca::generate("root", Duration::from_secs(365 * 86_400)).unwrap();
        let short = root
            .issue_intermediate("issuing", Duration::from_secs(3600))
            .unwrap();
        let issuing = Ca::from_pem(&short.cert_pem, &short.key_pem).unwrap();
        let ca_end = issuing.not_after().unix_timestamp();
        assert_eq!(not_after(&short.cert_pem), ca_end);
        let uri = AgentUri::new("3550308".parse().unwrap(), uuid::Uuid::new_v4());
        // Asked for 7 days under a CA that ends in an hour: clamped.
        let agent = issuing
            .issue_agent(&uri, Duration::from_secs(7 * 86_400))
            .unwrap();
        assert_eq!(not_after(&agent.cert_pem), ca_end);
        let server = issuing
            .issue_server(&["localhost".into()], Duration::from_secs(398 * 86_400))
            .unwrap();
        assert_eq!(not_after(&server.cert_pem), ca_end);
        // A shorter lifetime is kept as asked.
        let agent = issuing.issue_agent(&uri, Duration::from_secs(600)).unwrap();
        assert!(not_after(&agent.cert_pem) < ca_end);
        // An intermediate never outlives the root either.
        let long = root
            .issue_intermediate("issuing", Duration::from_secs(3 * 365 * 86_400))
            .unwrap();
        assert_eq!(not_after(&long.cert_pem), root.not_after().unix_timestamp());
    }

    #[test]
    fn an_expired_ca_signs_nothing() {
        let root = Ca::generate("root", Duration::from_secs(365 * 86_400)).unwrap();
        let mut params = ca_params("old issuing", 0, Duration::from_secs(3600));
        params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(7200);
        params.not_after = OffsetDateTime::now_utc() - Duration::from_secs(60);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &root.issuer().unwrap()).unwrap();
        let expired = Ca::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
        let uri = AgentUri::new("3550308".parse().unwrap(), uuid::Uuid::new_v4());
        let e = expired
            .issue_agent(&uri, Duration::from_secs(600))
            .err()
            .expect("refused");
        assert!(matches!(e, PkiError::IssuerExpired { .. }), "{e}");
        assert!(e.to_string().contains("ca rotate"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn private_key_files_open_to_others_or_owned_by_another_user_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("server.key");
        write_private(&key, "key").unwrap();
        check_private_key_file(&key).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_private_key_file(&key)
                .expect_err("refused")
                .to_string();
            assert!(e.contains(&format!("chmod 600 {}", key.display())), "{e}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Another owner (only root can give a file away).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
            let e = check_private_key_file(&key)
                .expect_err("refused")
                .to_string();
            assert!(e.contains("belongs to user id 65534"), "{e}");
        }
        assert!(check_private_key_file(&dir.path().join("missing.key")).is_err());
    }
}
