//! Certificate requests as the collector parses them: `Enroll` and `Renew`
//! (`collector/src/enroll.rs`, `Enroller::sign`) take a PEM CSR from the
//! caller — for `Enroll`, before any certificate is presented — and call
//! `pki::parse_csr` (rcgen's `CertificateSigningRequestParams::from_der`,
//! which parses the DER with x509-parser and verifies the request's
//! signature, and a check that rcgen kept the request's key), then sign
//! the request's public key and nothing else from it with
//! `pki::Ca::sign_agent_key_backdated`, and parse the certificate back.
//! This target makes the same calls, in the same order.
//!
//! Input: `mode u8 | body`: mode & 1 == 0: `body` is the PEM text (if
//! UTF-8); otherwise `body` is the DER, wrapped here in a `CERTIFICATE
//! REQUEST` PEM block so the fuzzer spends its time on the DER.
//!
//! Asserts: never panics; a request that parses is signable (so a caller's
//! bytes can only produce `InvalidArgument`, never the collector's
//! `Internal`); the certificate carries exactly the request's public key,
//! its whole SubjectPublicKeyInfo (algorithm and curve included; this found
//! rcgen reading a P-384 key signed with SHA-256 as a P-256 key: the seeds
//! `seed-openssl-*` are such requests), and the identity the collector
//! chose, which the collector's own `identity::agent_uri_of` reads back.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use rcgen::PublicKeyData;
use transmissor_collector::identity::agent_uri_of;
use transmissor_collector::pki::{Ca, parse_csr};
use transmissor_proto::identity::AgentUri;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate("fuzz issuing CA", Duration::from_secs(86400)).unwrap())
}

fn pem_of(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    pem
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let pem = if mode & 1 == 0 {
        match std::str::from_utf8(body) {
            Ok(s) => s.to_string(),
            Err(_) => return,
        }
    } else {
        pem_of(body)
    };
    // Enroller::sign, step by step.
    let pem_in = pem;
    let Ok(csr) = parse_csr(&pem_in) else {
        return;
    };
    let uri: AgentUri = "urn:transmissor:agent:3550308:0190b4a6-7c43-7d1e-9b7a-2f6d3c1e5a01"
        .parse()
        .unwrap();
    let pem = ca()
        .sign_agent_key_backdated(
            &uri,
            &csr.public_key,
            Duration::from_secs(86400),
            Duration::from_secs(300),
        )
        .expect("a request that parses is signed");
    let der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        csr.public_key.der_bytes()
    );
    // The whole SubjectPublicKeyInfo, algorithm and curve included, is the
    // request's: the key the caller proved it holds.
    let req: rustls_pki_types::CertificateSigningRequestDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(pem_in.as_bytes()).unwrap();
    let (_, req) = X509CertificationRequest::from_der(req.as_ref()).unwrap();
    assert_eq!(
        cert.public_key().raw,
        req.certification_request_info.subject_pki.raw,
        "the certificate's key is not the request's"
    );
    assert_eq!(agent_uri_of(der.as_ref()).unwrap(), uri);
});
