//! The one place that turns a request's client certificate into a caller.
//!
//! Every data RPC starts with [`Authenticator::authenticate`]: the leaf
//! certificate (already chain-verified by rustls against the agents' CA) must
//! carry a `urn:transmissor:agent:<ibge>:<uuid>` URI SAN, and that agent must
//! exist in `transmissor.agents`, belong to that municipality and not be
//! revoked. The check runs on every call, so a revocation takes effect on the
//! next request even over an already-open connection.

use sqlx::PgPool;
use tonic::Request;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use transmissor_proto::identity::{AgentUri, Ibge};

use crate::error::CollectorError;

/// What the TLS layer says about a request's peer.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: String,
    pub certs: Option<std::sync::Arc<Vec<rustls_pki_types::CertificateDer<'static>>>>,
}

impl Peer {
    pub fn of<T>(request: &Request<T>) -> Self {
        let info = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        Self {
            addr: info
                .and_then(|i| i.get_ref().remote_addr())
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unknown".into()),
            certs: info.and_then(|i| i.peer_certs()),
        }
    }
}

/// An authenticated agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub ibge: Ibge,
    pub agent_id: Uuid,
}

#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
}

impl Authenticator {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Authenticates the caller of `request` (see the module doc).
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, CollectorError> {
        self.authenticate_peer(Peer::of(request)).await
    }

    /// The database half of [`Self::authenticate`], for a [`Peer`] taken
    /// from the request beforehand (so it can run in a spawned task).
    pub async fn authenticate_peer(&self, peer: Peer) -> Result<Caller, CollectorError> {
        let Peer { addr: peer, certs } = peer;
        let certs = certs.ok_or_else(|| {
            tracing::warn!(%peer, "call without client certificate refused");
            CollectorError::Unauthenticated(
                "no client certificate: this call requires the agent's certificate (mutual TLS)"
                    .into(),
            )
        })?;
        let leaf = certs.first().ok_or_else(|| {
            CollectorError::Unauthenticated("empty client certificate chain".into())
        })?;
        let uri = agent_uri_of(leaf.as_ref()).inspect_err(|e| {
            tracing::warn!(%peer, error = %e, "client certificate without agent identity refused");
        })?;
        let row: Option<(String, Option<chrono::DateTime<chrono::Utc>>)> =
            sqlx::query_as("SELECT ibge, revoked_at FROM transmissor.agents WHERE id = $1")
                .bind(uri.agent_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| CollectorError::DatabaseUnavailable(e.to_string()))?;
        let refuse = |why: String| {
            tracing::warn!(%peer, agent = %uri.agent_id, ibge = %uri.ibge, reason = %why, "agent refused");
            CollectorError::PermissionDenied(why)
        };
        match row {
            None => Err(refuse(format!(
                "unknown agent {} (municipality {}): it is not registered with this collector",
                uri.agent_id, uri.ibge
            ))),
            Some((_, Some(at))) => Err(refuse(format!(
                "agent {} was revoked at {}; enroll the agent again",
                uri.agent_id,
                at.to_rfc3339()
            ))),
            Some((ibge, None)) if ibge != uri.ibge.as_str() => Err(refuse(format!(
                "agent {} is registered for municipality {ibge}, not {}",
                uri.agent_id, uri.ibge
            ))),
            Some(_) => Ok(Caller {
                ibge: uri.ibge,
                agent_id: uri.agent_id,
            }),
        }
    }
}

/// Extracts the agent identity URI from a DER certificate.
pub fn agent_uri_of(der: &[u8]) -> Result<AgentUri, CollectorError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        CollectorError::Unauthenticated(format!("client certificate does not parse: {e}"))
    })?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| {
            CollectorError::Unauthenticated(
                "client certificate has no subject alternative name with an agent identity".into(),
            )
        })?;
    let mut found = None;
    for name in &san.value.general_names {
        let GeneralName::URI(u) = name else { continue };
        if !u.starts_with("urn:transmissor:agent:") {
            continue;
        }
        if found.is_some() {
            return Err(CollectorError::Unauthenticated(
                "client certificate carries more than one agent identity".into(),
            ));
        }
        found = Some(u.parse::<AgentUri>().map_err(|e| {
            CollectorError::Unauthenticated(format!("client certificate identity: {e}"))
        })?);
    }
    found.ok_or_else(|| {
        CollectorError::Unauthenticated(
            "client certificate carries no urn:transmissor:agent identity".into(),
        )
    })
}
