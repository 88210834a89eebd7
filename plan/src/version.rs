//! PEC versions (`5.3.7`, `5.5.28`) and the ranges a plan job runs on.
//!
//! A PEC installation's version is the newest `db/v<version>/` entry of
//! its Liquibase log, `tb_migracao.filename`
//! ([`pec_version_from_migration_filename`]).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use thiserror::Error;

/// At most this many numeric components (`5.5.28.1`).
pub const MAX_COMPONENTS: usize = 4;

/// A dotted numeric version of 1 to 4 components. Missing components
/// compare as 0, so `5.3` == `5.3.0` < `5.3.7` < `5.10`.
#[derive(Debug, Clone, Copy)]
pub struct PecVersion {
    parts: [u32; MAX_COMPONENTS],
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a PEC version: use 1 to 4 numbers separated by dots, e.g. \"5.3.7\"")]
pub struct VersionError {
    pub text: String,
}

impl PecVersion {
    /// The numeric components as written (1 to 4 of them).
    pub fn components(&self) -> &[u32] {
        &self.parts[..self.len]
    }
}

impl FromStr for PecVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError {
            text: s.chars().take(40).collect(),
        };
        let mut parts = [0u32; MAX_COMPONENTS];
        let mut len = 0;
        for piece in s.split('.') {
            if len == MAX_COMPONENTS
                || piece.is_empty()
                || piece.len() > 9
                || !piece.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(err());
            }
            parts[len] = piece.parse().map_err(|_| err())?;
            len += 1;
        }
        Ok(Self { parts, len })
    }
}

impl fmt::Display for PecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.components().iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Ord for PecVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts.cmp(&other.parts)
    }
}

impl PartialOrd for PecVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PecVersion {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

impl Eq for PecVersion {}

impl Hash for PecVersion {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts.hash(state);
    }
}

/// `min` inclusive, `below` exclusive; either may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub min: Option<PecVersion>,
    pub below: Option<PecVersion>,
}

impl VersionRange {
    pub fn contains(&self, v: &PecVersion) -> bool {
        self.min.is_none_or(|min| *v >= min) && self.below.is_none_or(|below| *v < below)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.min, &self.below) {
            (Some(min), Some(below)) => write!(f, ">= {min}, < {below}"),
            (Some(min), None) => write!(f, ">= {min}"),
            (None, Some(below)) => write!(f, "< {below}"),
            (None, None) => f.write_str("any"),
        }
    }
}

/// The PEC version of a `tb_migracao.filename` entry such as
/// `db/v5.5.28/changelog.xml`; `None` for any other entry. The
/// installation's version is the newest of these.
pub fn pec_version_from_migration_filename(name: &str) -> Option<PecVersion> {
    let rest = name.strip_prefix("db/v")?;
    let (version, file) = rest.split_once('/')?;
    if file.is_empty() {
        return None;
    }
    version.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> PecVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(v("5.3.7").to_string(), "5.3.7");
        assert_eq!(v("5").components(), &[5]);
        assert_eq!(v("5.5.28.1").components(), &[5, 5, 28, 1]);
        for bad in [
            "",
            "5.",
            ".5",
            "5..3",
            "5.3.a",
            "+5",
            "5.3.7.1.2",
            "1234567890",
            " 5",
        ] {
            assert!(bad.parse::<PecVersion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ordering_is_numeric() {
        assert_eq!(v("5.3"), v("5.3.0"));
        assert!(v("5.3") < v("5.3.7"));
        assert!(v("5.3.7") < v("5.5"));
        assert!(v("5.9") < v("5.10"));
        assert!(v("5.5.28") > v("5.5.3"));
    }

    #[test]
    fn ranges() {
        let r = VersionRange {
            min: Some(v("5.3.7")),
            below: Some(v("5.5")),
        };
        assert!(r.contains(&v("5.3.7")));
        assert!(r.contains(&v("5.4.99")));
        assert!(!r.contains(&v("5.5")));
        assert!(!r.contains(&v("5.5.0")));
        assert!(!r.contains(&v("5.3.6")));
        let open = VersionRange {
            min: None,
            below: None,
        };
        assert!(open.contains(&v("1")));
        assert_eq!(r.to_string(), ">= 5.3.7, < 5.5");
    }

    #[test]
    fn migration_filenames() {
        assert_eq!(
            pec_version_from_migration_filename("db/v5.5.28/changelog.xml"),
            Some(v("5.5.28"))
        );
        for other in [
            "db/changelog.xml",
            "db/v5.5.28",
            "db/v5.5.28/",
            "db/vX/changelog.xml",
            "classpath:db/v5.5.28/changelog.xml",
        ] {
            assert_eq!(pec_version_from_migration_filename(other), None, "{other}");
        }
    }
}
