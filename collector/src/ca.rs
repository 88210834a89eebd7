//! The collector's CA directory: an online issuing CA under an offline root.
//!
//! ```text
//! <dir>/root.pem            root CA certificate: what agents and the collector trust
//! <dir>/issuing.pem/.key    current issuing CA (signed by the root): signs
//!                           agent and server certificates (key 0600)
//! <dir>/previous/*.pem      earlier issuing CAs, kept for the record
//! <dir>/server.pem/.key     the collector's certificate: leaf, issuing CA, root
//! ```
//!
//! The root key never lives in this directory: `ca init --root-key-out`
//! writes it (0600) to a path outside it, to be moved offline; it is needed
//! again only by `ca rotate --root-key`. A collector host that is broken
//! into yields the issuing key (revocable: rotate and `ca retire`), not the
//! root every agent pins. [`load`] refuses to serve while a `root.key` lies
//! in the directory.
//!
//! Agents and the collector anchor trust at the **root**, so rotating the
//! issuing CA (`ca rotate`) needs no re-enrollment: certificates from the old
//! and the new issuing CA both verify, and agents move to the new one at
//! their next renewal. Enrollment tokens pin the root's public key.
//!
//! Should an issuing CA's key leak, `ca retire --fingerprint` puts it on a
//! deny-list ([`retired`]) that the collector's client verifier honours at
//! once and agents receive with their next trust bundle.
//!
//! Lifetimes are bounded: agent certificates at most
//! [`MAX_AGENT_CERT_LIFETIME`], enrollment tokens at most [`MAX_TOKEN_TTL`]
//! (checked when the config is read and by `token issue --ttl`), and no
//! certificate outlives the CA that signs it (`pki.rs`).

pub mod retired;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::{Ca, PkiError, check_private_key_file, write_private, write_public};

const ROOT_LIFETIME: Duration = Duration::from_secs(20 * 365 * 86_400);
const ISSUING_LIFETIME: Duration = Duration::from_secs(3 * 365 * 86_400);
const SERVER_LIFETIME: Duration = Duration::from_secs(398 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already holds a CA; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{0} is the root CA's private key and must not stay on the collector: move it offline (e.g. removable media kept locked away; `ca rotate --root-key` needs it), then start again"
    )]
    RootKeyOnline(PathBuf),
    #[error(
        "{key} is inside the CA directory {dir}, which the collector serves from: write the root key somewhere else (offline media)"
    )]
    RootKeyInside { key: PathBuf, dir: PathBuf },
    #[error("{0} already exists; refusing to overwrite a key")]
    KeyExists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The CA as the collector uses it while serving.
pub struct LoadedCa {
    pub root_pem: String,
    /// SHA-256 of the root's SubjectPublicKeyInfo (what tokens pin).
    pub pin: [u8; 32],
    pub issuing: Ca,
}

impl LoadedCa {
    /// Certificates an agent should trust for the collector.
    pub fn trust_bundle(&self) -> String {
        self.root_pem.clone()
    }

    /// The trust bundle followed by the retired issuing CAs, each as a
    /// `TRANSMISSOR RETIRED CA` PEM section (ignored by PEM readers that
    /// look for certificates; the agent refuses a collector chain through
    /// any of them).
    pub fn trust_bundle_with_retired(&self, retired_pems: &[String]) -> String {
        let mut out = self.trust_bundle();
        for pem in retired_pems {
            out.push_str(&retired::as_retired_section(pem));
        }
        out
    }

    /// An agent's chain: its leaf then the issuing CA.
    pub fn chain_for(&self, leaf_pem: &str) -> String {
        format!("{leaf_pem}{}", self.issuing.cert_pem)
    }
}

/// SPKI pin of the first certificate in a PEM text.
pub fn pin_of_pem(pem: &str, path: &Path) -> Result<[u8; 32], CaError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| CaError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(transmissor_proto::token::spki_pin(cert.public_key().raw))
}

/// SHA-256 of a DER certificate's SubjectPublicKeyInfo (None if it does
/// not parse).
pub fn spki_sha256(der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(transmissor_proto::token::spki_pin(cert.public_key().raw))
}

/// An issuing CA of the directory: the current one or an earlier one.
#[derive(Debug, Clone)]
pub struct IssuingCa {
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub fingerprint: [u8; 32],
    pub subject: String,
    pub not_after: String,
    pub cert_pem: String,
    pub current: bool,
}

/// The current issuing CA then the earlier ones (`previous/*.pem`).
pub fn issuing_cas(dir: &Path) -> Result<Vec<IssuingCa>, CaError> {
    let mut paths = vec![dir.join("issuing.pem")];
    if let Ok(entries) = std::fs::read_dir(dir.join("previous")) {
        let mut earlier: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        earlier.sort();
        paths.extend(earlier);
    }
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let pem = read(path)?;
        let invalid = |message: String| CaError::Invalid {
            path: path.clone(),
            message,
        };
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let (_, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
        out.push(IssuingCa {
            fingerprint: transmissor_proto::token::spki_pin(cert.public_key().raw),
            subject: cert.subject().to_string(),
            not_after: cert.validity().not_after.to_string(),
            cert_pem: pem,
            current: i == 0,
        });
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// What `init` and `rotate` made.
pub struct CaFiles {
    pub root_cert: PathBuf,
    pub root_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub pin: [u8; 32],
}

/// Whether `path` would lie inside `dir` (both made absolute; `dir` exists).
fn inside(path: &Path, dir: &Path) -> Result<bool, CaError> {
    let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = std::fs::canonicalize(parent).map_err(io(parent))?;
    Ok(parent.starts_with(&dir))
}

/// Creates the CA directory: root, issuing CA and the server certificate
/// for `server_names` (plus localhost). The root key goes to `root_key_out`
/// (0600), which must lie outside `dir` and not exist yet.
pub fn init(dir: &Path, root_key_out: &Path, server_names: &[String]) -> Result<CaFiles, CaError> {
    if dir.join("root.pem").exists() {
        return Err(CaError::Exists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir.join("previous")).map_err(io(dir))?;
    if let Some(parent) = root_key_out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if inside(root_key_out, dir)? {
        return Err(CaError::RootKeyInside {
            key: root_key_out.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    if root_key_out.exists() {
        return Err(CaError::KeyExists(root_key_out.to_path_buf()));
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let root = Ca::generate(
        &format!("transmissor root CA {}", &suffix[..8]),
        ROOT_LIFETIME,
    )?;
    write_private(root_key_out, &root.key_pem())?;
    write_public(&dir.join("root.pem"), &root.cert_pem)?;
    new_issuing(dir, &root, root_key_out, server_names)
}

/// Replaces the issuing CA (the root key is needed) and re-issues the
/// server certificate; earlier issuing CAs stay valid under the root.
pub fn rotate(dir: &Path, root_key: &Path, server_names: &[String]) -> Result<CaFiles, CaError> {
    let root = Ca::from_pem(&read(&dir.join("root.pem"))?, &read(root_key)?)?;
    let current = dir.join("issuing.pem");
    if current.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let kept = dir.join("previous").join(format!("issuing-{stamp}.pem"));
        std::fs::create_dir_all(dir.join("previous")).map_err(io(dir))?;
        std::fs::rename(&current, &kept).map_err(io(&current))?;
    }
    new_issuing(dir, &root, root_key, server_names)
}

fn new_issuing(
    dir: &Path,
    root: &Ca,
    root_key: &Path,
    server_names: &[String],
) -> Result<CaFiles, CaError> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let issuing = root.issue_intermediate(
        &format!("transmissor issuing CA {}", &suffix[..8]),
        ISSUING_LIFETIME,
    )?;
    write_public(&dir.join("issuing.pem"), &issuing.cert_pem)?;
    write_private(&dir.join("issuing.key"), &issuing.key_pem)?;
    let issuing = Ca::from_pem(&issuing.cert_pem, &issuing.key_pem)?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(server_names.iter().cloned());
    let server = issuing.issue_server(&names, SERVER_LIFETIME)?;
    // The chain includes the root so an enrolling agent finds the pinned key.
    write_public(
        &dir.join("server.pem"),
        &format!("{}{}{}", server.cert_pem, issuing.cert_pem, root.cert_pem),
    )?;
    write_private(&dir.join("server.key"), &server.key_pem)?;
    Ok(CaFiles {
        root_cert: dir.join("root.pem"),
        root_key: root_key.to_path_buf(),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        pin: pin_of_pem(&root.cert_pem, &dir.join("root.pem"))?,
    })
}

/// Loads the root and the current issuing CA for serving. Refused while
/// the root key lies in `dir`, or when `issuing.key` is readable by others
/// or not owned by the running user.
pub fn load(dir: &Path) -> Result<LoadedCa, CaError> {
    let root_key = dir.join("root.key");
    if root_key.exists() {
        return Err(CaError::RootKeyOnline(root_key));
    }
    let root_path = dir.join("root.pem");
    let root_pem = read(&root_path)?;
    let issuing_key = dir.join("issuing.key");
    check_private_key_file(&issuing_key).map_err(|e| CaError::Invalid {
        path: issuing_key.clone(),
        message: e.to_string(),
    })?;
    let issuing = Ca::from_pem(&read(&dir.join("issuing.pem"))?, &read(&issuing_key)?)?;
    Ok(LoadedCa {
        pin: pin_of_pem(&root_pem, &root_path)?,
        root_pem,
        issuing,
    })
}

/// Default lifetime of agent certificates: municipal links go down for days.
pub const DEFAULT_AGENT_CERT_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// Longest agent certificate lifetime `[ca] agent_cert_lifetime` may set: a
/// stolen agent key is usable at most this long without a revocation.
pub const MAX_AGENT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// A token validity as `token issue --ttl` takes it: a duration
/// ("72h", "7d") above zero and at most [`MAX_TOKEN_TTL`].
pub fn parse_token_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(format!(
            "{s} is not allowed: a token is valid for more than zero and at most {}",
            humantime::format_duration(MAX_TOKEN_TTL)
        ));
    }
    Ok(ttl)
}

/// Longest validity of an enrollment token (`[ca] token_ttl`, `token issue
/// --ttl`, and the HTTP API's own 720 hours).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_key_is_written_outside_and_refused_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        // Inside the CA directory: refused before anything is made.
        let e = init(&dir, &dir.join("root.key"), &[])
            .err()
            .expect("refused");
        assert!(matches!(e, CaError::RootKeyInside { .. }), "{e}");
        assert!(!dir.join("root.pem").exists());

        let offline = tmp.path().join("offline/root.key");
        let files = init(&dir, &offline, &[]).unwrap();
        assert_eq!(files.root_key, offline);
        assert!(!dir.join("root.key").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&offline).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = load(&dir).unwrap();
        assert_eq!(loaded.pin, files.pin);

        // Back beside the issuing key: the collector refuses to serve.
        std::fs::copy(&offline, dir.join("root.key")).unwrap();
        let e = load(&dir).err().expect("refused").to_string();
        assert!(
            e.contains(&dir.join("root.key").display().to_string()),
            "{e}"
        );
        assert!(e.contains("offline"), "{e}");
        std::fs::remove_file(dir.join("root.key")).unwrap();

        // Rotation takes the offline key; an existing key is never overwritten.
        rotate(&dir, &offline, &[]).unwrap();
        load(&dir).unwrap();
        let e = init(&tmp.path().join("ca2"), &offline, &[])
            .err()
            .expect("refused");
        assert!(matches!(e, CaError::KeyExists(_)), "{e}");
    }

    #[test]
    fn token_ttls_are_bounded() {
        assert_eq!(
            parse_token_ttl("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(parse_token_ttl("30d").unwrap(), MAX_TOKEN_TTL);
        for bad in ["31d", "0s", "forever"] {
            assert!(parse_token_ttl(bad).is_err(), "{bad}");
        }
        assert!(
            parse_token_ttl("31d")
                .unwrap_err()
                .contains("at most 30days")
        );
    }
}
