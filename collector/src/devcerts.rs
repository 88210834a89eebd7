//! `dev-certs`: a development PKI in one directory (CA, server certificate,
//! one agent certificate per municipality). Until enrollment with one-time
//! tokens exists, this is how agents get their certificates.
//!
//! Layout written under `dir`:
//! ```text
//! ca.pem ca.key            the CA (key 0600)
//! server.pem server.key    the collector's certificate (localhost, 127.0.0.1, ::1 + --server-name)
//! agents/<ibge>/agent.pem agent.key agent.id
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

use transmissor_proto::identity::{AgentUri, Ibge};

use crate::pki::{Ca, PkiError, write_private, write_public};

pub struct DevAgent {
    pub ibge: Ibge,
    pub agent_id: Uuid,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct DevPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub agents: Vec<DevAgent>,
}

const DAY: Duration = Duration::from_secs(86_400);

pub fn generate(dir: &Path, server_names: &[String], ibges: &[Ibge]) -> Result<DevPki, PkiError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| PkiError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca = Ca::generate(
        &format!(
            "transmissor development CA {}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        3650 * DAY,
    )?;
    write_public(&dir.join("ca.pem"), &ca.cert_pem)?;
    write_private(&dir.join("ca.key"), &ca.key_pem())?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(server_names.iter().cloned());
    let server = ca.issue_server(&names, 365 * DAY)?;
    write_public(&dir.join("server.pem"), &server.cert_pem)?;
    write_private(&dir.join("server.key"), &server.key_pem)?;

    let mut agents = Vec::new();
    for &ibge in ibges {
        let adir = dir.join("agents").join(ibge.as_str());
        std::fs::create_dir_all(&adir).map_err(io(&adir))?;
        let agent_id = Uuid::new_v4();
        let issued = ca.issue_agent(&AgentUri::new(ibge, agent_id), 30 * DAY)?;
        write_public(&adir.join("agent.pem"), &issued.cert_pem)?;
        write_private(&adir.join("agent.key"), &issued.key_pem)?;
        write_public(&adir.join("ca.pem"), &ca.cert_pem)?;
        write_public(&adir.join("agent.id"), &format!("{agent_id}\n"))?;
        agents.push(DevAgent {
            ibge,
            agent_id,
            cert: adir.join("agent.pem"),
            key: adir.join("agent.key"),
        });
    }
    Ok(DevPki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        agents,
    })
}
