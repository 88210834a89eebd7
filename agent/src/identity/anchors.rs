//! What the agent trusts of the collector's trust bundle: exactly the root
//! CA its enrollment token pinned, and the retired-CA deny-list.
//!
//! The collector sends a trust bundle with every enrollment and renewal:
//! its root CA certificate and, as `TRANSMISSOR RETIRED CA` sections, the
//! issuing CAs it retired (`ca retire`). Issuing CAs rotate under the same
//! root (`ca rotate`), so a legitimate bundle never needs a second root. A
//! compromised collector could otherwise add a root of its own to the
//! bundle and keep impersonating the collector after it has been recovered;
//! [`select`] therefore keeps only certificates whose public key is an
//! allowed pin (the token's pin, recorded as `agent.json`'s `pinned_root`),
//! refuses every other certificate (named in [`Anchors::refused`] so the
//! caller can log it), and keeps the retired sections verbatim (a deny-list
//! only ever removes trust). The text it returns is what `trust.pem` holds.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;

use crate::identity::{RETIRED_SECTION, pin_hex, retired_cas, spki_pin_of};

#[derive(Debug, Error)]
pub enum AnchorError {
    #[error(
        "the collector's trust bundle does not contain the pinned root CA ({pinned}); the current credentials are kept"
    )]
    PinnedRootMissing { pinned: String },
}

/// A certificate of the bundle that is not an allowed root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The certificate's subject (a CA name, never personal data).
    pub subject: String,
    /// SHA-256 (hex) of its public key.
    pub spki_sha256: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (key SHA-256 {})", self.subject, self.spki_sha256)
    }
}

/// The trust bundle reduced to what the agent trusts.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// The text to store as `trust.pem`: the pinned root, then the retired
    /// sections, each exactly as the collector sent it.
    pub pem: String,
    /// Certificates of the bundle that were not trusted.
    pub refused: Vec<Refused>,
}

impl Anchors {
    /// Logs each refused certificate at error level.
    pub fn log_refused(&self, during: &'static str) {
        for r in &self.refused {
            tracing::error!(
                during,
                subject = %r.subject,
                spki_sha256 = %r.spki_sha256,
                "the collector's trust bundle carries a certificate that is not the pinned root CA; it is refused and not trusted"
            );
        }
    }
}

/// One `-----BEGIN <label>----- … -----END <label>-----` block of a PEM
/// text, with the line ending that follows it (`\r\n` where the PEM was
/// written on Windows), so a kept bundle is the collector's bytes.
struct Block<'a> {
    label: &'a str,
    text: &'a str,
}

/// The PEM blocks of a text, in order (anything between them is dropped).
fn blocks(text: &str) -> Vec<Block<'_>> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(at) = text[rest..].find(BEGIN).map(|i| rest + i) {
        let label_start = at + BEGIN.len();
        let Some(label_len) = text[label_start..].find("-----") else {
            break;
        };
        let label = &text[label_start..label_start + label_len];
        let end_marker = format!("-----END {label}-----");
        let Some(mut end) = text[label_start..]
            .find(&end_marker)
            .map(|i| label_start + i + end_marker.len())
        else {
            break;
        };
        for eol in ["\r\n", "\n"] {
            if text[end..].starts_with(eol) {
                end += eol.len();
                break;
            }
        }
        out.push(Block {
            label,
            text: &text[at..end],
        });
        rest = end;
    }
    out
}

/// Appends a block, ending its line if the bundle did not.
fn push_block(pem: &mut String, block: &str) {
    pem.push_str(block);
    if !block.ends_with('\n') {
        pem.push('\n');
    }
}

fn subject_of(der: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "(unparsable certificate)".into())
}

/// Keeps, of `bundle_pem`, the certificates whose key is one of `allowed`
/// (each once) and the retired-CA sections; every other certificate is
/// refused. At least one allowed root must be present.
pub fn select(bundle_pem: &str, allowed: &[[u8; 32]]) -> Result<Anchors, AnchorError> {
    let mut pem = String::new();
    let mut kept: Vec<[u8; 32]> = Vec::new();
    let mut refused = Vec::new();
    for b in blocks(bundle_pem) {
        if b.label == "CERTIFICATE" {
            let Ok(der) = CertificateDer::from_pem_slice(b.text.as_bytes()) else {
                refused.push(Refused {
                    subject: "(unparsable certificate)".into(),
                    spki_sha256: String::new(),
                });
                continue;
            };
            match spki_pin_of(&der) {
                Some(pin) if allowed.contains(&pin) => {
                    if !kept.contains(&pin) {
                        kept.push(pin);
                        push_block(&mut pem, b.text);
                    }
                }
                pin => refused.push(Refused {
                    subject: subject_of(&der),
                    spki_sha256: pin.as_ref().map(pin_hex).unwrap_or_default(),
                }),
            }
        } else if b.label == RETIRED_SECTION && !retired_cas(b.text).is_empty() {
            push_block(&mut pem, b.text);
        }
    }
    if kept.is_empty() {
        return Err(AnchorError::PinnedRootMissing {
            pinned: allowed.iter().map(pin_hex).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(Anchors { pem, refused })
}

/// Of the certificates of a stored trust bundle, those whose key is `pinned`
/// (what [`crate::identity::load`] trusts when `agent.json` records the pin).
pub fn only_pinned(
    certs: Vec<CertificateDer<'static>>,
    pinned: &[u8; 32],
) -> (Vec<CertificateDer<'static>>, Vec<Refused>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for c in certs {
        match spki_pin_of(&c) {
            Some(p) if &p == pinned => kept.push(c),
            p => refused.push(Refused {
                subject: subject_of(&c),
                spki_sha256: p.as_ref().map(pin_hex).unwrap_or_default(),
            }),
        }
    }
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::testpki::Ca;

    fn pin(ca: &Ca) -> [u8; 32] {
        spki_pin_of(&CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn only_the_pinned_root_and_the_retired_sections_are_kept() {
        let root = Ca::root("root");
        let issuing = root.issuing("issuing");
        let usurper = Ca::root("usurper");
        let retired = issuing
            .pem
            .replace("CERTIFICATE-----", &format!("{RETIRED_SECTION}-----"));

        // The legitimate bundle is kept byte for byte.
        let legit = format!("{}{retired}", root.pem);
        let a = select(&legit, &[pin(&root)]).unwrap();
        assert_eq!(a.pem, legit);
        assert!(a.refused.is_empty());

        // An extra root (before or after the pinned one) is refused by name.
        for bundle in [
            format!("{}{}{retired}", usurper.pem, root.pem),
            format!("{}{}{}{retired}", root.pem, usurper.pem, root.pem),
        ] {
            let a = select(&bundle, &[pin(&root)]).unwrap();
            assert_eq!(a.pem, legit, "only the pinned root and the deny-list");
            assert_eq!(a.refused.len(), 1, "{:?}", a.refused);
            assert!(a.refused[0].subject.contains("usurper"), "{}", a.refused[0]);
            assert_eq!(a.refused[0].spki_sha256, pin_hex(&pin(&usurper)));
            assert_eq!(retired_cas(&a.pem), vec![pin(&issuing)]);
        }

        // Without the pinned root: refused as a whole.
        let e = select(&usurper.pem, &[pin(&root)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not contain the pinned root CA"),
            "{e}"
        );
        assert!(e.to_string().contains(&pin_hex(&pin(&root))), "{e}");
    }

    #[test]
    fn stored_anchors_are_filtered_by_the_pin() {
        let root = Ca::root("root");
        let usurper = Ca::root("usurper");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(format!("{}{}", root.pem, usurper.pem).as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let (kept, refused) = only_pinned(certs.clone(), &pin(&root));
        assert_eq!(kept, vec![certs[0].clone()]);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].subject.contains("usurper"));
    }
}
