//! Who an agent is: its municipality (IBGE code) and its agent id, written
//! into the client certificate as a URI SAN:
//!
//! ```text
//! urn:transmissor:agent:<7-digit IBGE code>:<agent uuid>
//! ```
//!
//! The collector derives the municipality from this URI only; nothing a
//! payload claims about identity is trusted.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use uuid::Uuid;

const URI_PREFIX: &str = "urn:transmissor:agent:";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("IBGE code {0:?} must be exactly 7 digits")]
    IbgeFormat(String),
    #[error("IBGE code {code} has a wrong check digit (expected {expected})")]
    IbgeCheckDigit { code: String, expected: u8 },
    #[error("not a transmissor agent URI: {0:?}")]
    UriFormat(String),
}

/// A municipality's 7-digit IBGE code, check digit verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ibge([u8; 7]);

/// Official codes whose check digit does not follow the rule (IBGE keeps them
/// for historical reasons).
const CHECK_DIGIT_EXCEPTIONS: &[&str] = &[
    "2201919", "2201988", "2202251", "2611533", "3117836", "3152131", "4305871", "5203939",
    "5203962",
];

impl Ibge {
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII digits by construction.
        std::str::from_utf8(&self.0).unwrap_or("0000000")
    }

    /// The code whose first six digits are `six`, with the check digit
    /// they call for (synthetic fleets in tests and benchmarks).
    pub fn with_check_digit(six: &str) -> Result<Self, IdentityError> {
        let b = six.as_bytes();
        if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
            return Err(IdentityError::IbgeFormat(six.to_string()));
        }
        let mut d = [0u8; 7];
        d[..6].copy_from_slice(b);
        d[6] = b'0' + Self::expected_check_digit(&d);
        Ok(Ibge(d))
    }

    /// The check digit the first six digits call for.
    fn expected_check_digit(d: &[u8; 7]) -> u8 {
        let sum: u32 = d[..6]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 2 };
                p / 10 + p % 10
            })
            .sum();
        ((10 - sum % 10) % 10) as u8
    }
}

impl FromStr for Ibge {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 7 || !b.iter().all(u8::is_ascii_digit) {
            return Err(IdentityError::IbgeFormat(s.to_string()));
        }
        let mut d = [0u8; 7];
        d.copy_from_slice(b);
        let expected = Self::expected_check_digit(&d);
        if d[6] - b'0' != expected && !CHECK_DIGIT_EXCEPTIONS.contains(&s) {
            return Err(IdentityError::IbgeCheckDigit {
                code: s.to_string(),
                expected,
            });
        }
        Ok(Ibge(d))
    }
}

impl fmt::Display for Ibge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity carried in an agent certificate's URI SAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentUri {
    pub ibge: Ibge,
    pub agent_id: Uuid,
}

impl AgentUri {
    pub fn new(ibge: Ibge, agent_id: Uuid) -> Self {
        Self { ibge, agent_id }
    }
}

impl fmt::Display for AgentUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{URI_PREFIX}{}:{}",
            self.ibge,
            self.agent_id.hyphenated()
        )
    }
}

impl FromStr for AgentUri {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::UriFormat(s.to_string());
        let rest = s.strip_prefix(URI_PREFIX).ok_or_else(bad)?;
        let (ibge, id) = rest.split_once(':').ok_or_else(bad)?;
        let ibge = ibge.parse::<Ibge>()?;
        let agent_id = Uuid::parse_str(id).map_err(|_| bad())?;
        Ok(Self { ibge, agent_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_codes_validate() {
        for c in [
            "3550308", "3304557", "5300108", "2304400", "4106902", "2927408",
        ] {
            c.parse::<Ibge>().unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        for c in CHECK_DIGIT_EXCEPTIONS {
            c.parse::<Ibge>().unwrap();
        }
    }

    #[test]
    fn check_digit_completes_six_digits() {
        assert_eq!(
            Ibge::with_check_digit("355030").unwrap().as_str(),
            "3550308"
        );
        assert!(Ibge::with_check_digit("35503").is_err());
        assert!(Ibge::with_check_digit("35503x").is_err());
    }

    #[test]
    fn bad_codes_refused() {
        assert!(matches!(
            "3550307".parse::<Ibge>(),
            Err(IdentityError::IbgeCheckDigit { expected: 8, .. })
        ));
        assert!(matches!(
            "355030".parse::<Ibge>(),
            Err(IdentityError::IbgeFormat(_))
        ));
        assert!(matches!(
            "35503o8".parse::<Ibge>(),
            Err(IdentityError::IbgeFormat(_))
        ));
    }

    #[test]
    fn uri_round_trip() {
        let u = AgentUri::new("3550308".parse().unwrap(), Uuid::new_v4());
        let s = u.to_string();
        assert!(s.starts_with("urn:transmissor:agent:3550308:"));
        assert_eq!(s.parse::<AgentUri>().unwrap(), u);
        assert!("urn:other:3550308:x".parse::<AgentUri>().is_err());
        assert!(
            format!("urn:transmissor:agent:3550307:{}", Uuid::new_v4())
                .parse::<AgentUri>()
                .is_err()
        );
    }
}
