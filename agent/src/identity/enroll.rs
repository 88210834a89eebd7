//! `transmissor-agent enroll`: from a one-time token to a stored identity.
//!
//! 1. The token is parsed (a malformed one is refused before any network).
//! 2. An existing identity is never overwritten without `--force` (checked
//!    before the token is spent).
//! 3. A key is generated locally; only a CSR carrying its public key is sent.
//! 4. The collector is verified by the token's CA pin alone
//!    ([`crate::identity::pin::PinnedVerifier`]); no CA file is needed.
//! 5. The returned chain must belong to the generated key and name the
//!    token's municipality, and the trust bundle must hold the pinned CA key;
//!    only that root (and the retired-CA sections) is stored as `trust.pem`,
//!    any other certificate of the bundle is refused and logged
//!    ([`crate::identity::anchors`]).
//! 6. Key (0600), chain, trust bundle and `agent.json` are written atomically.
//!
//! The token is a secret: it is never logged, printed or put in an error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;
use tonic::Code;
use uuid::Uuid;

use transmissor_proto::identity::{AgentUri, Ibge};
use transmissor_proto::pb;
use transmissor_proto::pb::enrollment_client::EnrollmentClient;
use transmissor_proto::token::{Token, TokenError};

use crate::identity::anchors;
use crate::identity::clock::{self, SKEW_WARN_MS};
use crate::identity::pin::{PinMismatch, PinnedVerifier};
use crate::identity::{self, AgentInfo, IdentityError, IdentityPaths};
use crate::pipeline::transport::{self, TransportError, explain};

#[derive(Debug, Error)]
pub enum EnrollError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "this agent is already enrolled ({0}); to replace its identity, run enroll again with --force"
    )]
    AlreadyEnrolled(String),
    #[error(transparent)]
    PinMismatch(#[from] PinMismatch),
    #[error("the collector refused the token: {0}")]
    TokenRefused(String),
    #[error("too many enrollment attempts: wait a few minutes and try again ({0})")]
    TooManyAttempts(String),
    #[error("the collector refused the certificate request: {0}")]
    BadRequest(String),
    #[error(
        "enrollment failed: {0}. If the collector received the request the token may be spent; if enrolling again says it was already used, ask the central team for a new token"
    )]
    Failed(String),
    #[error("the collector's answer is unusable: {0}")]
    Response(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// What `enroll` needs. The token stays out of `Debug`.
#[derive(Clone)]
pub struct EnrollOptions {
    /// `https://host:port` of the collector.
    pub collector: String,
    /// The one-time token, as pasted.
    pub token: String,
    pub paths: IdentityPaths,
    /// Name to verify in the collector's certificate (default: the host).
    pub server_name: Option<String>,
    /// Replace an existing identity.
    pub force: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollOptions")
            .field("collector", &self.collector)
            .field("paths", &self.paths)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

impl EnrollOptions {
    pub fn new(collector: &str, token: &str, paths: IdentityPaths) -> Self {
        Self {
            collector: collector.to_string(),
            token: token.to_string(),
            paths,
            server_name: None,
            force: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A successful enrollment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: Uuid,
    pub ibge: Ibge,
    pub not_after: DateTime<Utc>,
    pub clock_offset_ms: i64,
    pub paths: IdentityPaths,
}

impl fmt::Display for Enrolled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "enrolled: agent {} of municipality (IBGE) {}",
            self.agent_id, self.ibge
        )?;
        writeln!(
            f,
            "certificate valid until {} (renewed automatically while `transmissor-agent run` runs)",
            self.not_after.to_rfc3339_opts(SecondsFormat::Secs, true)
        )?;
        let dir = self.paths.info.parent().unwrap_or(&self.paths.info);
        writeln!(f, "identity stored in {}", dir.display())?;
        if self.clock_offset_ms.abs() > SKEW_WARN_MS {
            writeln!(
                f,
                "WARNING: {}; fix its time synchronisation (NTP)",
                clock::describe(self.clock_offset_ms)
            )?;
        }
        Ok(())
    }
}

/// This machine's name, for the collector's records.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

fn call_error(status: tonic::Status, verifier: &PinnedVerifier) -> EnrollError {
    if verifier.pin_mismatched() {
        return verifier.mismatch_error().into();
    }
    let msg = status.message().to_string();
    match status.code() {
        Code::PermissionDenied => EnrollError::TokenRefused(msg),
        Code::ResourceExhausted => EnrollError::TooManyAttempts(msg),
        Code::InvalidArgument => EnrollError::BadRequest(msg),
        _ => EnrollError::Failed(explain(&status)),
    }
}

/// Enrolls this agent with the collector and stores its identity.
pub async fn enroll(opts: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let token: Token = opts.token.parse()?;
    transport::host_port(&opts.collector)?;
    let existing = opts.paths.existing();
    if !existing.is_empty() && !opts.force {
        let list: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        return Err(EnrollError::AlreadyEnrolled(list.join(", ")));
    }
    let new = identity::new_key()?;
    let verifier = Arc::new(PinnedVerifier::new(token.pin, &opts.collector));
    let channel = transport::connect_lazy(
        verifier.client_config().map_err(TransportError::from)?,
        &opts.collector,
        opts.server_name.clone(),
        opts.connect_timeout,
        opts.request_timeout,
    )?;
    let mut client = EnrollmentClient::new(channel)
        .max_decoding_message_size(transport::LIFECYCLE_MAX_MESSAGE)
        .max_encoding_message_size(transport::LIFECYCLE_MAX_MESSAGE);
    tracing::info!(collector = %opts.collector, ibge = %token.ibge, token_id = %token.id, "enrolling");
    let req = pb::EnrollRequest {
        token: token.to_string(),
        csr_pem: new.csr_pem.clone(),
        hostname: hostname(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        os: crate::heartbeat::os(),
    };
    let sent = clock::now_unix_ms();
    let resp = client
        .enroll(req)
        .await
        .map_err(|s| call_error(s, &verifier))?
        .into_inner();
    let received = clock::now_unix_ms();
    let offset = clock::offset_ms(sent, received, resp.collector_time_unix_ms);
    if offset.abs() > SKEW_WARN_MS {
        tracing::warn!(clock_offset_ms = offset, "{}", clock::describe(offset));
    }

    // Check the answer before writing anything.
    let bad = |m: String| EnrollError::Response(m);
    let agent_id = Uuid::parse_str(&resp.agent_id)
        .map_err(|_| bad(format!("agent id {:?}", resp.agent_id)))?;
    let ibge: Ibge = resp.ibge.parse().map_err(|e| bad(format!("{e}")))?;
    if ibge != token.ibge {
        return Err(bad(format!(
            "municipality {ibge} instead of the token's {}",
            token.ibge
        )));
    }
    let certified = identity::certified_key(&resp.certificate_chain_pem, &new.key_pem, &opts.paths)
        .map_err(|e| bad(e.to_string()))?;
    if identity::agent_uri_of(&certified.cert[0]) != Some(AgentUri::new(ibge, agent_id)) {
        return Err(bad(
            "the certificate does not carry this agent's identity".into()
        ));
    }
    let validity = identity::validity_of(&certified.cert[0])?;
    // Exactly the pinned root is trusted from now on: any other certificate
    // of the bundle is refused (a collector must not add trust anchors).
    let anchors = anchors::select(&resp.trust_bundle_pem, &[token.pin])
        .map_err(|_| bad("the trust bundle does not hold the CA key pinned by the token".into()))?;
    anchors.log_refused("enrollment");

    identity::store(
        &opts.paths,
        &new.key_pem,
        &resp.certificate_chain_pem,
        &anchors.pem,
    )?;
    // A renewal key of an earlier identity has no use any more.
    let _ = std::fs::remove_file(identity::pending_key_path(&opts.paths));
    identity::write_info(
        &opts.paths,
        &AgentInfo {
            agent_id,
            ibge: ibge.to_string(),
            collector: opts.collector.clone(),
            enrolled_at: Utc::now(),
            renewed_at: None,
            clock_offset_ms: offset,
            pinned_root: Some(identity::pin_hex(&token.pin)),
        },
    )?;
    tracing::info!(%agent_id, %ibge, not_after = %validity.not_after(), "agent enrolled");
    Ok(Enrolled {
        agent_id,
        ibge,
        not_after: validity.not_after(),
        clock_offset_ms: offset,
        paths: opts.paths.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &std::path::Path, token: &str) -> EnrollOptions {
        EnrollOptions::new(
            "https://127.0.0.1:1",
            token,
            IdentityPaths::in_state_dir(dir),
        )
    }

    #[tokio::test]
    async fn malformed_token_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let secretish = "txe1.3550308.0123456789abcdef.c2VjcmV0.notbase64!!";
        let e = enroll(&opts(dir.path(), secretish)).await.unwrap_err();
        assert!(matches!(e, EnrollError::Token(TokenError::Format)));
        let s = e.to_string();
        assert!(s.contains("copy the whole line"), "{s}");
        assert!(!s.contains("c2VjcmV0"), "{s}");
        let e = enroll(&opts(dir.path(), "txe1.3550307.0123456789abcdef.a.b"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("check digit"), "{e}");
        assert!(!format!("{:?}", opts(dir.path(), secretish)).contains("c2VjcmV0"));
    }

    #[tokio::test]
    async fn existing_identity_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let paths = IdentityPaths::in_state_dir(dir.path());
        std::fs::create_dir_all(paths.key.parent().unwrap()).unwrap();
        std::fs::write(&paths.key, "x").unwrap();
        let token = Token::generate("3550308".parse().unwrap(), [0; 32]).to_string();
        let e = enroll(&opts(dir.path(), &token)).await.unwrap_err();
        assert!(matches!(e, EnrollError::AlreadyEnrolled(_)), "{e}");
        assert!(e.to_string().contains("--force"));
        assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), "x");
    }
}
