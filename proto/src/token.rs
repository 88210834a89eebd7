//! One-time enrollment tokens: one string municipal IT pastes.
//!
//! ```text
//! txe1.<ibge>.<token id: 16 hex>.<secret: 43 base64url>.<pin: 43 base64url>
//! ```
//! The collector stores only a SHA-256 of the secret. The pin is the
//! base64url SHA-256 of the collector CA's SubjectPublicKeyInfo: the agent
//! trusts the collector from its very first connection by finding a
//! certificate with that key in the chain the server presents — no CA file
//! to copy, no trust on first use.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::identity::{Ibge, IdentityError};

const PREFIX: &str = "txe1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "this is not an enrollment token (expected txe1.<ibge>.<id>.<secret>.<pin>); copy the whole line printed by `transmissor-collector token issue`"
    )]
    Format,
    #[error("enrollment token: {0}")]
    Ibge(#[from] IdentityError),
}

/// A parsed enrollment token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub ibge: Ibge,
    /// Public id (what the collector looks the token up by).
    pub id: String,
    /// The secret (32 random bytes).
    pub secret: [u8; 32],
    /// SHA-256 of the CA's SubjectPublicKeyInfo.
    pub pin: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("Token")
            .field("ibge", &self.ibge)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A new token with a random id and secret.
    pub fn generate(ibge: Ibge, pin: [u8; 32]) -> Self {
        let id: [u8; 8] = rand::random();
        Self {
            ibge,
            id: hex::encode(id),
            secret: rand::random(),
            pin,
        }
    }

    /// What the collector stores: SHA-256 of the secret.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}.{}",
            self.ibge,
            self.id,
            URL_SAFE_NO_PAD.encode(self.secret),
            URL_SAFE_NO_PAD.encode(self.pin)
        )
    }
}

fn b64_32(s: &str) -> Result<[u8; 32], TokenError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or(TokenError::Format)
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let [prefix, ibge, id, secret, pin] = parts.as_slice() else {
            return Err(TokenError::Format);
        };
        if *prefix != PREFIX || id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Format);
        }
        Ok(Self {
            ibge: ibge.parse()?,
            id: id.to_ascii_lowercase(),
            secret: b64_32(secret)?,
            pin: b64_32(pin)?,
        })
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (DER), for pinning.
pub fn spki_pin(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_secret_in_debug() {
        let t = Token::generate("3550308".parse().unwrap(), [7u8; 32]);
        let s = t.to_string();
        assert!(s.starts_with("txe1.3550308."));
        assert_eq!(s.parse::<Token>().unwrap(), t);
        let secret_b64 = URL_SAFE_NO_PAD.encode(t.secret);
        assert!(!format!("{t:?}").contains(&secret_b64));
        assert_ne!(t.secret_hash(), t.secret);
    }

    #[test]
    fn malformed_tokens_refused() {
        let good = Token::generate("3550308".parse().unwrap(), [1u8; 32]).to_string();
        for bad in [
            "",
            "txe1",
            &good.replace("txe1", "txe2"),
            &good.replace("3550308", "3550307"),
            &good[..good.len() - 2],
            &format!("{good}.x"),
        ] {
            assert!(bad.parse::<Token>().is_err(), "{bad}");
        }
        assert!(matches!(
            good.replace("3550308", "3550307").parse::<Token>(),
            Err(TokenError::Ibge(_))
        ));
    }
}
