//! The signed envelope around a plan or a key list.
//!
//! ```text
//! transmissor-signed v1
//! kind: plan
//! key: <key id, 16 lowercase hex>
//! signature: <base64 of 64 bytes>
//!
//! <exact payload bytes until EOF>
//! ```
//!
//! The signature covers `b"transmissor signed <kind> v1\n\0" || payload`:
//! the payload bytes exactly as they are, never re-serialised, behind a
//! prefix naming the kind, so that a key-list signature can never pass as
//! a plan's or the reverse. The `key:` line is only a hint to find the
//! key; a wrong hint finds no key or the wrong one, and then the signature
//! fails. Verification is `verify_strict` (no malleable signatures, no
//! weak keys).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use thiserror::Error;

use crate::keys::{PublicKey, TrustedKeys};

/// First line of every envelope.
pub const MAGIC: &str = "transmissor-signed v1\n";

/// Largest envelope accepted.
pub const MAX_ENVELOPE_BYTES: usize = 4 << 20;

/// What a signed document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Plan,
    KeyList,
}

impl Kind {
    /// The name on the `kind:` line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::KeyList => "key-list",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        match name {
            "plan" => Some(Kind::Plan),
            "key-list" => Some(Kind::KeyList),
            _ => None,
        }
    }

    /// The domain-separation prefix of the signed message.
    fn prefix(self) -> Vec<u8> {
        format!("transmissor signed {} v1\n\0", self.name()).into_bytes()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("not a signed document (it does not start with \"transmissor-signed v1\")")]
    NotSigned,
    #[error("malformed signed document: {0}")]
    Malformed(String),
    #[error("signed by key {key_id}, which is not trusted")]
    UnknownKey { key_id: String },
    #[error("the signature by key {key_id} does not match: the document was altered or forged")]
    BadSignature { key_id: String },
    #[error("expected a signed {expected}, found a signed {found}")]
    WrongKind { expected: Kind, found: Kind },
    #[error("signed document is larger than {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge,
}

/// Signs `payload` as a document of `kind`; returns the whole envelope.
pub fn sign(kind: Kind, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let signature = key.sign(&message(kind, payload));
    let header = format!(
        "{MAGIC}kind: {}\nkey: {}\nsignature: {}\n\n",
        kind.name(),
        PublicKey::from(key).key_id(),
        STANDARD.encode(signature.to_bytes())
    );
    let mut out = header.into_bytes();
    out.extend_from_slice(payload);
    out
}

fn message(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut m = kind.prefix();
    m.extend_from_slice(payload);
    m
}

/// A parsed, not yet verified, envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub kind: Kind,
    /// The signer's key id as the envelope claims it (a hint).
    pub key_id: String,
    pub signature: [u8; 64],
    pub payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parses the header strictly; does not verify anything.
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        let Some(mut rest) = bytes.strip_prefix(MAGIC.as_bytes()) else {
            if bytes.starts_with(b"transmissor-signed ") {
                return Err(malformed(
                    "unsupported envelope version: this version reads \"transmissor-signed v1\""
                        .into(),
                ));
            }
            return Err(EnvelopeError::NotSigned);
        };
        let kind = header(&mut rest, "kind")?;
        let kind = Kind::from_name(kind)
            .ok_or_else(|| malformed(format!("unknown kind {:?}", short(kind))))?;
        let key_id = header(&mut rest, "key")?;
        if key_id.len() != 16
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed(format!(
                "key id {:?} is not 16 lowercase hex digits",
                short(key_id)
            )));
        }
        let key_id = key_id.to_string();
        let signature = header(&mut rest, "signature")?;
        let signature: [u8; 64] = STANDARD
            .decode(signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed("the signature is not the base64 of 64 bytes".into()))?;
        let payload = rest
            .strip_prefix(b"\n")
            .ok_or_else(|| malformed("expected an empty line after the signature".into()))?;
        if payload.is_empty() {
            return Err(malformed("the payload is empty".into()));
        }
        Ok(Envelope {
            kind,
            key_id,
            signature,
            payload,
        })
    }

    /// Verifies the signature with the trusted key the envelope names;
    /// returns the payload. Does not check the kind (see [`Self::verify_as`]).
    pub fn verify(&self, keys: &TrustedKeys) -> Result<&'a [u8], EnvelopeError> {
        let key = keys
            .get(&self.key_id)
            .ok_or_else(|| EnvelopeError::UnknownKey {
                key_id: self.key_id.clone(),
            })?;
        key.verifying_key()
            .verify_strict(
                &message(self.kind, self.payload),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| EnvelopeError::BadSignature {
                key_id: self.key_id.clone(),
            })?;
        Ok(self.payload)
    }

    /// Checks the kind, then verifies.
    pub fn verify_as(&self, expected: Kind, keys: &TrustedKeys) -> Result<&'a [u8], EnvelopeError> {
        self.expect_kind(expected)?;
        self.verify(keys)
    }

    pub(crate) fn expect_kind(&self, expected: Kind) -> Result<(), EnvelopeError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(EnvelopeError::WrongKind {
                expected,
                found: self.kind,
            })
        }
    }
}

/// Takes one `name: value\n` header line off the front of `rest`.
fn header<'a>(rest: &mut &'a [u8], name: &str) -> Result<&'a str, EnvelopeError> {
    let end = rest
        .iter()
        .take(200)
        .position(|&b| b == b'\n')
        .ok_or_else(|| malformed(format!("expected a {name:?} header line")))?;
    let line = std::str::from_utf8(&rest[..end])
        .map_err(|_| malformed(format!("the {name:?} header line is not UTF-8")))?;
    let value = line
        .strip_prefix(name)
        .and_then(|l| l.strip_prefix(": "))
        .ok_or_else(|| {
            malformed(format!(
                "expected the {name:?} header, found {:?}",
                short(line)
            ))
        })?;
    *rest = &rest[end + 1..];
    Ok(value)
}

fn malformed(message: String) -> EnvelopeError {
    EnvelopeError::Malformed(message)
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trusted(keys: &[&SigningKey]) -> TrustedKeys {
        keys.iter().map(|k| PublicKey::from(*k)).collect()
    }

    #[test]
    fn round_trip() {
        let k = key(1);
        let signed = sign(Kind::Plan, b"format = 1\n", &k);
        let text = std::str::from_utf8(&signed).unwrap();
        assert!(text.starts_with("transmissor-signed v1\nkind: plan\nkey: "));
        assert!(text.ends_with("\n\nformat = 1\n"));
        let env = Envelope::parse(&signed).unwrap();
        assert_eq!(env.kind, Kind::Plan);
        assert_eq!(env.key_id, PublicKey::from(&k).key_id());
        assert_eq!(env.verify(&trusted(&[&k])).unwrap(), b"format = 1\n");
        assert_eq!(
            env.verify_as(Kind::Plan, &trusted(&[&key(2), &k])).unwrap(),
            b"format = 1\n"
        );
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let k = key(1);
        let mut signed = sign(Kind::Plan, b"version = 1\n", &k);
        let last = signed.len() - 2;
        signed[last] = b'2';
        let env = Envelope::parse(&signed).unwrap();
        assert!(matches!(
            env.verify(&trusted(&[&k])),
            Err(EnvelopeError::BadSignature { .. })
        ));
    }

    #[test]
    fn other_key_is_unknown() {
        let signed = sign(Kind::Plan, b"x", &key(1));
        let env = Envelope::parse(&signed).unwrap();
        assert!(matches!(
            env.verify(&trusted(&[&key(2)])),
            Err(EnvelopeError::UnknownKey { .. })
        ));
        assert!(matches!(
            env.verify(&TrustedKeys::new()),
            Err(EnvelopeError::UnknownKey { .. })
        ));
    }

    #[test]
    fn kinds_are_separated() {
        let k = key(1);
        let signed = sign(Kind::KeyList, b"x", &k);
        let env = Envelope::parse(&signed).unwrap();
        assert_eq!(
            env.verify_as(Kind::Plan, &trusted(&[&k])),
            Err(EnvelopeError::WrongKind {
                expected: Kind::Plan,
                found: Kind::KeyList
            })
        );
        // Relabelling the kind breaks the signature.
        let relabelled = String::from_utf8(signed)
            .unwrap()
            .replace("kind: key-list", "kind: plan");
        let env = Envelope::parse(relabelled.as_bytes()).unwrap();
        assert!(matches!(
            env.verify(&trusted(&[&k])),
            Err(EnvelopeError::BadSignature { .. })
        ));
    }

    #[test]
    fn strict_parsing() {
        assert_eq!(
            Envelope::parse(b"format = 1\n"),
            Err(EnvelopeError::NotSigned)
        );
        assert_eq!(Envelope::parse(b""), Err(EnvelopeError::NotSigned));
        assert_eq!(
            Envelope::parse(&vec![b' '; MAX_ENVELOPE_BYTES + 1]),
            Err(EnvelopeError::TooLarge)
        );
        let good = String::from_utf8(sign(Kind::Plan, b"x", &key(1))).unwrap();
        let id = PublicKey::from(&key(1)).key_id();
        for bad in [
            good.replace("kind: plan", "kind: Plan"),
            good.replace("kind: plan", "kind:plan"),
            good.replace("kind: plan\n", ""),
            good.replace(&id, &id.to_uppercase()),
            good.replace(&id, &id[..15]),
            good.replace("signature: ", "signature: AA"),
            good.replace("\n\nx", "\nx"),
            good.replace("\n\nx", "\n\n"),
            good.replace("transmissor-signed v1", "transmissor-signed v2"),
        ] {
            assert!(Envelope::parse(bad.as_bytes()).is_err(), "{bad:?} parsed");
        }
        // Header order is fixed.
        let lines: Vec<&str> = good.lines().collect();
        let swapped = format!(
            "{}\n{}\n{}\n{}\n\nx",
            lines[0], lines[2], lines[1], lines[3]
        );
        assert!(matches!(
            Envelope::parse(swapped.as_bytes()),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
