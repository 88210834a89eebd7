//! Ed25519 keys: the public key text form, key ids, the set of keys an
//! agent trusts, and the signing-key file of the central team's offline
//! signing machine.
//!
//! - public key: `ed25519:<base64 of 32 bytes>`;
//! - key id: the first 8 bytes of SHA-256 of the key bytes, lowercase hex;
//! - signing-key file: `transmissor-plan-signing-key v1\n<base64 of the
//!   32-byte seed>\n`, created with mode 0600 and never overwritten; a file
//!   readable by group or others is refused;
//! - root-key file: the same with `transmissor-plan-root-key v1`. The root
//!   key signs key lists only ([`crate::chain`]); each file kind is read
//!   only where it belongs, so the signer never signs a plan with the root
//!   key or a key list with a plan key.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

/// Text prefix of a public key.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// First line of a signing-key file.
pub const SIGNING_KEY_MAGIC: &str = "transmissor-plan-signing-key v1";

/// First line of a root-key file.
pub const ROOT_KEY_MAGIC: &str = "transmissor-plan-root-key v1";

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Signs plans.
    Plan,
    /// Signs key lists (kept offline).
    Root,
}

impl KeyRole {
    fn magic(self) -> &'static str {
        match self {
            Self::Plan => SIGNING_KEY_MAGIC,
            Self::Root => ROOT_KEY_MAGIC,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Plan => "plan signing key",
            Self::Root => "root key",
        }
    }
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{0:?} is not a public key: expected \"ed25519:\" and the base64 of 32 bytes")]
    PublicKeyText(String),
    #[error("public key {0} is not a usable Ed25519 key")]
    WeakKey(String),
    #[error("cannot read signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "signing key {path} has permissions {mode:o}; make it readable by its owner only (chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is not a transmissor-plan signing key file")]
    NotAKeyFile { path: PathBuf },
    #[error(
        "{path} is a {found}, not a {expected}: plans are signed with a plan key, key lists with the root key"
    )]
    WrongRole {
        path: PathBuf,
        found: &'static str,
        expected: &'static str,
    },
    #[error("cannot write signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw random bytes for a new key: {0}")]
    Random(String),
}

/// An Ed25519 public key a plan or key list may be signed with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// First 8 bytes of SHA-256 of the key bytes, lowercase hex (16 chars).
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

impl From<&SigningKey> for PublicKey {
    fn from(key: &SigningKey) -> Self {
        Self(key.verifying_key())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || KeyError::PublicKeyText(s.chars().take(80).collect());
        let b64 = s.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(err)?;
        let bytes: [u8; 32] = STANDARD
            .decode(b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(err)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::WeakKey(s.into()))?;
        if key.is_weak() {
            return Err(KeyError::WeakKey(s.into()));
        }
        Ok(Self(key))
    }
}

/// `ed25519:<base64>` in configuration files, parsed once.
impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.0.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// The keys an agent accepts signatures from, looked up by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    by_id: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; `false` when it was already there.
    pub fn insert(&mut self, key: PublicKey) -> bool {
        self.by_id.insert(key.key_id(), key).is_none()
    }

    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.by_id.get(key_id)
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.get(&key.key_id()) == Some(key)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.by_id.values()
    }
}

impl FromIterator<PublicKey> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = Self::new();
        for key in iter {
            keys.insert(key);
        }
        keys
    }
}

/// A new signing key from the operating system's random source.
pub fn generate_signing_key() -> Result<SigningKey, KeyError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(seed.as_mut())
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a new signing-key file with mode 0600; refuses to replace an
/// existing file.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    write_key(path, key, KeyRole::Plan)
}

/// Writes a key file of `role` (see [`write_signing_key`]).
pub fn write_key(path: &Path, key: &SigningKey, role: KeyRole) -> Result<(), KeyError> {
    let werr = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = Zeroizing::new(format!(
        "{}\n{}\n",
        role.magic(),
        STANDARD.encode(key.as_bytes())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(werr)?;
    #[cfg(unix)]
    {
        // The umask may only remove bits; still, say exactly what we want.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(werr)?;
    }
    file.write_all(text.as_bytes()).map_err(werr)?;
    file.sync_all().map_err(werr)
}

/// Reads a plan signing-key file, refusing one readable by group or
/// others, and a root-key file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    read_key(path, KeyRole::Plan)
}

/// Reads a key file of `role` (see [`read_signing_key`]); a file of the
/// other role is refused.
pub fn read_key(path: &Path, role: KeyRole) -> Result<SigningKey, KeyError> {
    let rerr = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(rerr)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(rerr)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let mut text = Zeroizing::new(String::new());
    // A key file is ~80 bytes: anything much longer is not one.
    file.take(256).read_to_string(&mut text).map_err(rerr)?;
    for other in [KeyRole::Plan, KeyRole::Root] {
        if other != role && parse_key(&text, other).is_some() {
            return Err(KeyError::WrongRole {
                path: path.to_path_buf(),
                found: other.name(),
                expected: role.name(),
            });
        }
    }
    parse_key(&text, role).ok_or_else(|| KeyError::NotAKeyFile {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
fn parse_signing_key(text: &str) -> Option<SigningKey> {
    parse_key(text, KeyRole::Plan)
}

fn parse_key(text: &str, role: KeyRole) -> Option<SigningKey> {
    let rest = text.strip_prefix(role.magic())?.strip_prefix('\n')?;
    let b64 = rest.strip_suffix('\n').unwrap_or(rest);
    if b64.contains(['\n', '\r']) {
        return None;
    }
    let bytes = Zeroizing::new(STANDARD.decode(b64).ok()?);
    let seed: &[u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(SigningKey::from_bytes(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn public_key_text_round_trip() {
        let pk = PublicKey::from(&key(1));
        let text = pk.to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.parse::<PublicKey>().unwrap(), pk);
        assert_eq!(pk.key_id().len(), 16);
        assert!(
            pk.key_id()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(pk.key_id(), PublicKey::from(&key(2)).key_id());
        for bad in [
            "",
            "ed25519:",
            "ED25519:AAAA",
            "ed25519:AAAA",
            &text[..text.len() - 2],
            &format!("{text} "),
            &text.replace("ed25519:", "rsa:"),
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?}");
        }
        // The identity point is a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("ed25519:{}", STANDARD.encode(identity));
        assert!(matches!(
            weak.parse::<PublicKey>(),
            Err(KeyError::WeakKey(_))
        ));
    }

    #[test]
    fn trusted_keys() {
        let (a, b) = (PublicKey::from(&key(1)), PublicKey::from(&key(2)));
        let keys: TrustedKeys = [a, b, a].into_iter().collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(&a.key_id()), Some(&a));
        assert!(keys.contains(&b));
        assert!(!keys.contains(&PublicKey::from(&key(3))));
    }

    #[test]
    fn signing_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.key");
        let k = generate_signing_key().unwrap();
        write_signing_key(&path, &k).unwrap();
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), k.to_bytes());
        // Never overwritten.
        assert!(matches!(
            write_signing_key(&path, &key(1)),
            Err(KeyError::Write { .. })
        ));
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), k.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let e = read_signing_key(&path).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn root_and_plan_key_files_are_not_interchangeable() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, root) = (dir.path().join("plan.key"), dir.path().join("root.key"));
        write_signing_key(&plan, &key(1)).unwrap();
        write_key(&root, &key(2), KeyRole::Root).unwrap();
        assert_eq!(read_key(&root, KeyRole::Root).unwrap().to_bytes(), [2; 32]);
        assert!(matches!(
            read_signing_key(&root),
            Err(KeyError::WrongRole { .. })
        ));
        assert!(matches!(
            read_key(&plan, KeyRole::Root),
            Err(KeyError::WrongRole { .. })
        ));
    }

    #[test]
    fn signing_key_text_is_strict() {
        let good = format!("{SIGNING_KEY_MAGIC}\n{}\n", STANDARD.encode([5u8; 32]));
        assert!(parse_signing_key(&good).is_some());
        for bad in [
            good.replace("v1", "v2"),
            good.replace('\n', "\r\n"),
            format!("{good}extra\n"),
            format!("{SIGNING_KEY_MAGIC}\n{}\n", STANDARD.encode([5u8; 31])),
            String::new(),
        ] {
            assert!(parse_signing_key(&bad).is_none(), "{bad:?}");
        }
    }
}
