//! Test-only PKI built with rcgen: a root CA, an issuing CA, server and agent
//! certificates, shaped like the collector's (shared with the integration
//! tests through `#[path]`).

#![allow(dead_code)]

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use transmissor_proto::identity::AgentUri;

/// A certificate authority: its parameters, key and certificate.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(10 * 365 * 86400);
    p
}

impl Ca {
    /// A self-signed root.
    pub fn root(name: &str) -> Self {
        let params = ca_params(name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// An intermediate signed by this CA.
    pub fn issuing(&self, name: &str) -> Self {
        let params = ca_params(name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// SHA-256 of this CA's SubjectPublicKeyInfo (the token's pin).
    pub fn pin(&self) -> [u8; 32] {
        transmissor_proto::token::spki_pin(&self.key.subject_public_key_info())
    }

    /// A TLS server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> (String, KeyPair) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(300);
        p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(30 * 86400);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer()).unwrap();
        (cert.pem(), key)
    }

    /// An agent certificate for `public_key`, valid from `not_before` for `lifetime`.
    pub fn agent(
        &self,
        public_key: &impl PublicKeyData,
        uri: &AgentUri,
        not_before: OffsetDateTime,
        lifetime: Duration,
    ) -> String {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(uri.to_string().try_into().unwrap())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = not_before;
        p.not_after = not_before + lifetime;
        p.signed_by(public_key, &self.issuer()).unwrap().pem()
    }
}

/// A complete agent identity: (key PEM, chain PEM [agent, issuing], trust PEM [root]).
pub fn agent_identity(
    root: &Ca,
    issuing: &Ca,
    uri: &AgentUri,
    lifetime: Duration,
) -> (String, String, String) {
    let key = KeyPair::generate().unwrap();
    let leaf = issuing.agent(
        &key,
        uri,
        OffsetDateTime::now_utc() - Duration::from_secs(300),
        lifetime,
    );
    (
        key.serialize_pem(),
        format!("{leaf}{}", issuing.pem),
        root.pem.clone(),
    )
}

pub fn sample_uri() -> AgentUri {
    AgentUri::new("3550308".parse().unwrap(), uuid::Uuid::new_v4())
}
