//! The collector's CA directory: an offline root and an online issuing CA.
//!
//! ```text
//! <dir>/root.pem            root CA certificate: what agents and the collector trust
//! <dir>/root.key            root key (0600) — move it OFFLINE after `ca init`;
//!                           it is needed again only by `ca rotate`
//! <dir>/issuing.pem/.key    current issuing CA (signed by the root): signs
//!                           agent and server certificates (key 0600)
//! <dir>/previous/*.pem      earlier issuing CAs, kept for the record
//! <dir>/server.pem/.key     the collector's certificate: leaf, issuing CA, root
//! ```
//!
//! Agents and the collector anchor trust at the **root**, so rotating the
//! issuing CA (`ca rotate`) needs no re-enrollment: certificates from the old
//! and the new issuing CA both verify, and agents move to the new one at
//! their next renewal. Enrollment tokens pin the root's public key.
//!
//! Should an issuing CA's key leak, `ca retire --fingerprint` puts it on a
//! deny-list ([`retired`]) that the collector's client verifier honours at
//! once and agents receive with their next trust bundle.

pub mod retired;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::{Ca, PkiError, write_private, write_public};

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

/// Creates the CA directory: root, issuing CA and the server certificate
/// for `server_names` (plus localhost).
pub fn init(dir: &Path, server_names: &[String]) -> Result<CaFiles, CaError> {
    if dir.join("root.pem").exists() {
        return Err(CaError::Exists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir.join("previous")).map_err(io(dir))?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let root = Ca::generate(
        &format!("transmissor root CA {}", &suffix[..8]),
        ROOT_LIFETIME,
    )?;
    write_public(&dir.join("root.pem"), &root.cert_pem)?;
    write_private(&dir.join("root.key"), &root.key_pem())?;
    new_issuing(dir, &root, server_names)
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
    new_issuing(dir, &root, server_names)
}

fn new_issuing(dir: &Path, root: &Ca, server_names: &[String]) -> Result<CaFiles, CaError> {
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
        root_key: dir.join("root.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        pin: pin_of_pem(&root.cert_pem, &dir.join("root.pem"))?,
    })
}

/// Loads the root and the current issuing CA for serving.
pub fn load(dir: &Path) -> Result<LoadedCa, CaError> {
    let root_path = dir.join("root.pem");
    let root_pem = read(&root_path)?;
    transmissor_proto::secret::check_permissions(&dir.join("issuing.key")).map_err(|e| {
        CaError::Invalid {
            path: dir.join("issuing.key"),
            message: e.to_string(),
        }
    })?;
    let issuing = Ca::from_pem(
        &read(&dir.join("issuing.pem"))?,
        &read(&dir.join("issuing.key"))?,
    )?;
    Ok(LoadedCa {
        pin: pin_of_pem(&root_pem, &root_path)?,
        root_pem,
        issuing,
    })
}

/// Default lifetime of agent certificates: municipal links go down for days.
pub const DEFAULT_AGENT_CERT_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
