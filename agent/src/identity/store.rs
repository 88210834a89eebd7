//! The agent's identity on disk, and the key and CSR behind it.
//!
//! ```text
//! <state_dir>/identity/            0700 (tightened to it if found wider)
//!   agent.key    private key (PKCS#8 PEM, ECDSA P-256), 0600, never leaves the machine
//!   agent.pem    certificate chain: the agent's certificate, then the issuing CA
//!   trust.pem    the collector's trust bundle (its root CA), and the issuing
//!                CAs the collector retired, as `TRANSMISSOR RETIRED CA` sections
//!   agent.json   agent id, municipality, collector endpoint, enrolment time
//!   agent.key.pending  a renewal's new key (0600) until that renewal succeeds,
//!                so a retry after a lost answer or a restart asks for the same key
//! ```
//! Explicit `collector.{cert,key,ca}_file` paths in the config replace the
//! first three (see [`IdentityPaths::from_config`]).
//!
//! [`load`] refuses a key file that other users may read or that another
//! user owns ([`check_key_file`]), and trusts of `trust.pem` only the root
//! `agent.json` pinned at enrollment.
//!
//! Every file is written to `<name>.tmp` (created with `create_new`, the key
//! with mode 0600 from the start), fsynced and renamed over the old one. The
//! key and the chain must change together, which two renames cannot do
//! atomically, so [`store`] first writes both as complete `<name>.next`
//! files and only then renames them into place; [`recover`] (run by
//! [`load`]) finishes or discards a swap a crash interrupted, so the key on
//! disk always matches the certificate on disk.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use transmissor_proto::identity::AgentUri;

use crate::config::{AgentConfig, IDENTITY_DIR};

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error(
        "this agent is not enrolled: {path} does not exist; enroll it with `transmissor-agent enroll --collector https://HOST:PORT --token TOKEN`"
    )]
    NotEnrolled { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("key generation: {0}")]
    Key(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> IdentityError {
    IdentityError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Where the identity files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust: PathBuf,
    /// `agent.json` (always in the identity directory).
    pub info: PathBuf,
}

impl IdentityPaths {
    /// The default layout under `<state_dir>/identity`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let dir = state_dir.join(IDENTITY_DIR);
        Self {
            cert: dir.join("agent.pem"),
            key: dir.join("agent.key"),
            trust: dir.join("trust.pem"),
            info: dir.join("agent.json"),
        }
    }

    /// The files a configuration points at (explicit paths or the defaults).
    pub fn from_config(cfg: &AgentConfig) -> Self {
        Self {
            cert: cfg.cert_file(),
            key: cfg.key_file(),
            trust: cfg.ca_file(),
            info: cfg.identity_dir().join("agent.json"),
        }
    }

    /// The files an existing identity would be lost with, if overwritten.
    pub fn existing(&self) -> Vec<&Path> {
        [&self.cert, &self.key, &self.info]
            .into_iter()
            .map(PathBuf::as_path)
            .filter(|p| p.exists())
            .collect()
    }
}

/// `agent.json`: who this agent is, as the collector said at enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: Uuid,
    pub ibge: String,
    /// The collector's `https://host:port`.
    pub collector: String,
    pub enrolled_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<DateTime<Utc>>,
    /// Last measured offset of the collector's clock (collector − agent).
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// SHA-256 (hex) of the root CA key the enrollment token pinned: every
    /// later trust bundle must still contain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_root: Option<String>,
}

/// Validity of a certificate, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

impl Validity {
    pub fn lifetime_ms(&self) -> i64 {
        (self.not_after_ms - self.not_before_ms).max(0)
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.not_after_ms).unwrap_or_default()
    }
}

/// A freshly generated key (ECDSA P-256) and the CSR carrying its public key.
#[derive(Clone)]
pub struct NewKey {
    pub key_pem: String,
    pub csr_pem: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").finish_non_exhaustive()
    }
}

/// Generates a key pair locally and a CSR for it (the collector uses only
/// the CSR's public key).
pub fn new_key() -> Result<NewKey, IdentityError> {
    let key = rcgen::KeyPair::generate().map_err(|e| IdentityError::Key(e.to_string()))?;
    with_csr(&key)
}

/// The CSR for a key already made (a renewal retried after a restart).
pub fn key_from_pem(key_pem: &str) -> Result<NewKey, IdentityError> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| IdentityError::Key(e.to_string()))?;
    with_csr(&key)
}

fn with_csr(key: &rcgen::KeyPair) -> Result<NewKey, IdentityError> {
    let csr = rcgen::CertificateParams::default()
        .serialize_request(key)
        .and_then(|c| c.pem())
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    Ok(NewKey {
        key_pem: key.serialize_pem(),
        csr_pem: csr,
    })
}

/// Where a renewal's new key waits until the renewal succeeds.
pub fn pending_key_path(paths: &IdentityPaths) -> PathBuf {
    with_suffix(&paths.key, ".pending")
}

/// Parses PEM certificates (at least one).
pub fn parse_certs(pem: &str, what: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, e))?;
    if certs.is_empty() {
        return Err(invalid(what, "no certificate in the file"));
    }
    Ok(certs)
}

/// The chain and key as rustls uses them, checking the key matches the
/// certificate.
pub fn certified_key(
    chain_pem: &str,
    key_pem: &str,
    paths: &IdentityPaths,
) -> Result<Arc<CertifiedKey>, IdentityError> {
    let chain = parse_certs(chain_pem, &paths.cert)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| invalid(&paths.key, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        invalid(
            &paths.key,
            format!(
                "does not match the certificate in {}: {e}",
                paths.cert.display()
            ),
        )
    })?;
    Ok(Arc::new(ck))
}

/// notBefore / notAfter of a certificate.
pub fn validity_of(cert: &CertificateDer<'_>) -> Result<Validity, IdentityError> {
    let (_, c) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let v = c.validity();
    Ok(Validity {
        not_before_ms: v.not_before.timestamp().saturating_mul(1000),
        not_after_ms: v.not_after.timestamp().saturating_mul(1000),
    })
}

/// The `urn:transmissor:agent:…` URI SAN of an agent certificate, if any.
pub fn agent_uri_of(cert: &CertificateDer<'_>) -> Option<AgentUri> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = c.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => u.parse().ok(),
        _ => None,
    })
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (the pin format).
pub fn spki_pin_of(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(transmissor_proto::token::spki_pin(c.public_key().raw))
}

/// The PEM label of an issuing CA the collector retired.
pub const RETIRED_SECTION: &str = "TRANSMISSOR RETIRED CA";

/// Key pins of the retired issuing CAs listed in a trust bundle (sections
/// that certificate readers skip).
pub fn retired_cas(trust_pem: &str) -> Vec<[u8; 32]> {
    let relabelled = trust_pem
        .replace("CERTIFICATE-----", "IGNORED SECTION-----")
        .replace(&format!("{RETIRED_SECTION}-----"), "CERTIFICATE-----");
    CertificateDer::pem_slice_iter(relabelled.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|c| spki_pin_of(&c))
        .collect()
}

/// Hex of a pin.
pub fn pin_hex(pin: &[u8; 32]) -> String {
    pin.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pin from its hex (as `agent.json` records it).
pub fn pin_from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// What [`load`] reads.
pub struct Loaded {
    pub certified: Arc<CertifiedKey>,
    pub trust: Vec<CertificateDer<'static>>,
    /// Key pins of retired issuing CAs (from the trust bundle).
    pub retired: Vec<[u8; 32]>,
    pub validity: Validity,
    pub info: Option<AgentInfo>,
}

fn read(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => IdentityError::NotEnrolled {
            path: path.to_path_buf(),
        },
        _ => io_err(path)(e),
    })
}

/// Loads the identity (finishing an interrupted swap first).
pub fn load(paths: &IdentityPaths) -> Result<Loaded, IdentityError> {
    recover(paths)?;
    let chain_pem = read(&paths.cert)?;
    check_key_file(&paths.key)?;
    let key_pem = read(&paths.key)?;
    let trust_pem = read(&paths.trust)?;
    let info = read_info(paths)?;
    let trust = pinned_anchors(paths, parse_certs(&trust_pem, &paths.trust)?, info.as_ref())?;
    let certified = certified_key(&chain_pem, &key_pem, paths)?;
    let validity = validity_of(&certified.cert[0])?;
    Ok(Loaded {
        certified,
        trust,
        retired: retired_cas(&trust_pem),
        validity,
        info,
    })
}

/// The roots of `trust.pem` the agent trusts: with a pin recorded at
/// enrollment, only the pinned root (any other certificate, e.g. one a
/// compromised collector sent before this check existed, is logged and
/// ignored); without one, all of them. A `trust.pem` without the pinned
/// root at all was not written by enrollment or renewal (both refuse such
/// a bundle) but edited on this machine: it is used as it is, logged, and
/// the collector's chain then fails to verify (`doctor` reports it as a
/// pin mismatch).
fn pinned_anchors(
    paths: &IdentityPaths,
    certs: Vec<CertificateDer<'static>>,
    info: Option<&AgentInfo>,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let Some(pinned) = info
        .and_then(|i| i.pinned_root.as_deref())
        .and_then(pin_from_hex)
    else {
        return Ok(certs);
    };
    let (kept, refused) = super::anchors::only_pinned(certs.clone(), &pinned);
    if kept.is_empty() {
        tracing::error!(
            path = %paths.trust.display(),
            pinned_root = %pin_hex(&pinned),
            "the trust bundle does not hold the root CA pinned at enrollment; the collector will not verify: enroll the agent again with a new token"
        );
        return Ok(certs);
    }
    for r in &refused {
        tracing::error!(
            path = %paths.trust.display(),
            subject = %r.subject,
            spki_sha256 = %r.spki_sha256,
            "the trust bundle holds a certificate that is not the pinned root CA; it is not trusted"
        );
    }
    Ok(kept)
}

/// Refuses a private key file other users may read, or one that belongs to
/// another user than the one running the agent (root, e.g. `doctor` or
/// `install`, may read the service account's key). Unix only: on Windows
/// the installer's ACLs protect the state directory.
pub fn check_key_file(path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IdentityError::NotEnrolled {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(
                path,
                format!(
                    "the private key is readable by other users (mode {mode:04o}); run `chmod 600 {}` as its owner",
                    path.display()
                ),
            ));
        }
        let running = nix::unistd::geteuid();
        if !running.is_root() && meta.uid() != running.as_raw() {
            return Err(invalid(
                path,
                format!(
                    "the private key belongs to user id {}, not to the user running the agent ({}); `chown` it to the agent's service account",
                    meta.uid(),
                    running.as_raw()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// `agent.json`, if present.
pub fn read_info(paths: &IdentityPaths) -> Result<Option<AgentInfo>, IdentityError> {
    match fs::read(&paths.info) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| invalid(&paths.info, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&paths.info)(e)),
    }
}

pub fn write_info(paths: &IdentityPaths, info: &AgentInfo) -> Result<(), IdentityError> {
    let json = serde_json::to_vec_pretty(info).map_err(|e| invalid(&paths.info, e))?;
    ensure_identity_dir(paths)?;
    write_atomic(&paths.info, &json, false).map_err(io_err(&paths.info))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a missing parent directory (0700 on unix, whatever the umask).
/// An existing one is left alone: explicit paths may point anywhere.
fn create_parent(path: &Path) -> Result<(), IdentityError> {
    let dir = parent(path);
    crate::private_fs::create_dir_all(dir).map_err(io_err(dir))
}

/// The identity directory (where `agent.json` lives, the agent's own):
/// created, or tightened to 0700 when it is open to other users.
fn ensure_identity_dir(paths: &IdentityPaths) -> Result<(), IdentityError> {
    let dir = parent(&paths.info);
    crate::private_fs::ensure_private_dir(dir).map_err(io_err(dir))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `path` atomically: `<path>.tmp` created anew (mode 0600 when
/// `secret`), written, fsynced, renamed over `path`, directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, if secret { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(parent(path))
}

/// Replaces key, chain and trust bundle so that the key on disk always
/// matches the chain on disk, even across a crash.
pub fn store(
    paths: &IdentityPaths,
    key_pem: &str,
    chain_pem: &str,
    trust_pem: &str,
) -> Result<(), IdentityError> {
    ensure_identity_dir(paths)?;
    for p in [&paths.key, &paths.cert, &paths.trust] {
        create_parent(p)?;
    }
    let next_key = with_suffix(&paths.key, ".next");
    let next_cert = with_suffix(&paths.cert, ".next");
    write_atomic(&next_key, key_pem.as_bytes(), true).map_err(io_err(&next_key))?;
    write_atomic(&next_cert, chain_pem.as_bytes(), false).map_err(io_err(&next_cert))?;
    write_atomic(&paths.trust, trust_pem.as_bytes(), false).map_err(io_err(&paths.trust))?;
    recover(paths)
}

/// Finishes (or discards) a key/chain swap that [`store`] began.
///
/// States after a crash: only `key.next` (the chain never got written) →
/// discard it; `key.next` and `cert.next` → rename both; only `cert.next`
/// (the key was already renamed) → rename it.
pub fn recover(paths: &IdentityPaths) -> Result<(), IdentityError> {
    let next_key = with_suffix(&paths.key, ".next");
    let next_cert = with_suffix(&paths.cert, ".next");
    if next_cert.exists() {
        if next_key.exists() {
            fs::rename(&next_key, &paths.key).map_err(io_err(&paths.key))?;
            sync_dir(parent(&paths.key)).map_err(io_err(&paths.key))?;
        }
        fs::rename(&next_cert, &paths.cert).map_err(io_err(&paths.cert))?;
        sync_dir(parent(&paths.cert)).map_err(io_err(&paths.cert))?;
    } else if next_key.exists() {
        fs::remove_file(&next_key).map_err(io_err(&next_key))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
