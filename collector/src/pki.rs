//! The collector's certificate authority: issuing server and agent
//! certificates (rcgen, ring). Agent certificates carry the identity URI of
//! [`transmissor_proto::identity`], the clientAuth EKU, a random serial and a
//! NotBefore back-dated a few minutes to tolerate clock skew.

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
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
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
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key: KeyPair::from_pem(key_pem)?,
        })
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
        Ok(params.signed_by(public_key, &self.issuer()?)?.pem())
    }
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

pub fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })
}
