//! The collector's agent identity check, `identity::agent_uri_of`: every
//! data and lifecycle call is authenticated by the client certificate's
//! DER, which it parses (x509-parser) for exactly one
//! `urn:transmissor:agent:` URI SAN. rustls has verified the chain before,
//! but the parse is a decoder of its own, and the certificate's extensions
//! are the agent's to choose only through a CSR... or through a stolen or
//! mis-issued certificate, so it must hold on any bytes.
//!
//! Input: the DER.
//!
//! Asserts: never panics; an accepted certificate parses with x509-parser
//! and has exactly one URI SAN with the agent prefix, which parses to the
//! identity returned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transmissor_collector::identity::agent_uri_of;
use transmissor_proto::identity::AgentUri;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

fuzz_target!(|der: &[u8]| {
    let Ok(uri) = agent_uri_of(der) else {
        return;
    };
    let (_, cert) = X509Certificate::from_der(der).expect("accepted, so it parses");
    let san = cert
        .subject_alternative_name()
        .expect("accepted, so its SAN parses")
        .expect("accepted, so it has a SAN");
    let ids: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with("urn:transmissor:agent:") => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].parse::<AgentUri>().unwrap(), uri);
});
