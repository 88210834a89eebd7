//! The one place that turns a request's client certificate into a caller.
//!
//! Every data RPC starts with [`Authenticator::authenticate`]: the leaf
//! certificate (already chain-verified by rustls against the agents' CA) must
//! carry a `urn:transmissor:agent:<ibge>:<uuid>` URI SAN, and that agent must
//! exist in `transmissor.agents`, belong to that municipality and not be
//! revoked. The check runs on every call (see below for a saturated pool),
//! so a revocation takes effect on the next request even over an
//! already-open connection.
//!
//! The same query (one round trip on the auth pool, primary-key lookups)
//! also places the presented certificate among those issued to the agent
//! ([`Standing`]): once an agent has a recorded certificate, only its current
//! one authenticates, plus a superseded one during its grace period after a
//! renewal (`[enrollment] superseded_grace`, so calls on connections opened
//! before the renewal finish); a stolen key therefore dies at the owner's
//! next renewal. A chain through a retired issuing CA is refused too.
//!
//! The auth pool is small; when every connection of it is busy (a flood
//! of calls, a slow database), a call is answered from an
//! [`IdentityCache`] of recent positive results instead of queueing behind
//! the others; PostgreSQL notifications clear that cache on any identity
//! change ([`cache`]). While the pool has a connection free, the database
//! decides, so a revocation takes effect on the very next call; under
//! saturation, as soon as its notification arrives (milliseconds).
//! [`agent_of`] reads the agent from the certificate alone, so per-agent
//! admission comes before any database work.

pub mod cache;

use std::sync::Arc;

use sqlx::PgPool;
use tonic::Request;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use transmissor_proto::identity::{AgentUri, Ibge};

use crate::error::CollectorError;
use cache::ChainKey;
pub use cache::IdentityCache;

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

/// Where the presented certificate stands among those issued to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The agent's current certificate.
    Current,
    /// Replaced by a newer one, within its grace period.
    SupersededInGrace,
    /// Replaced, past its grace period: refused except to detect theft.
    Superseded,
    /// The agent has no recorded certificate (registered by `agent add` for
    /// a development certificate): the serial is not checked.
    Unrecorded,
}

/// The certificate a caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Serial as x509-parser prints it (`xx:xx:...`), as stored at issuance.
    pub serial: String,
    /// SHA-256 of the certified public key.
    pub spki_sha256: [u8; 32],
    pub standing: Standing,
}

type AuthRow = (
    String,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<String>,
    bool,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<bool>,
    bool,
);

#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    cache: Arc<IdentityCache>,
}

/// The agent a peer's certificate names, read from the certificate alone
/// (already chain-verified by rustls; no database): the key of per-agent
/// admission, taken before the caller is authenticated.
pub fn agent_of(peer: &Peer) -> Result<Uuid, CollectorError> {
    let leaf = peer.certs.as_ref().and_then(|c| c.first()).ok_or_else(|| {
        CollectorError::Unauthenticated(
            "no client certificate: this call requires the agent's certificate (mutual TLS)".into(),
        )
    })?;
    Ok(agent_uri_of(leaf.as_ref())?.agent_id)
}

impl Authenticator {
    pub fn new(pool: PgPool, cache: Arc<IdentityCache>) -> Self {
        Self { pool, cache }
    }

    /// The cache of positive results (its listener is started by the app).
    pub fn cache(&self) -> &Arc<IdentityCache> {
        &self.cache
    }

    /// Every connection of the auth pool is open and busy: a check would
    /// queue behind the others.
    fn saturated(&self) -> bool {
        self.pool.num_idle() == 0 && self.pool.size() >= self.pool.options().get_max_connections()
    }

    /// Authenticates the caller of `request` (see the module doc).
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, CollectorError> {
        self.authenticate_peer(Peer::of(request)).await
    }

    /// The database half of [`Self::authenticate`], for a [`Peer`] taken
    /// from the request beforehand (so it can run in a spawned task).
    pub async fn authenticate_peer(&self, peer: Peer) -> Result<Caller, CollectorError> {
        let addr = peer.addr.clone();
        let (caller, presented) = self.check(peer).await?;
        if presented.standing == Standing::Superseded {
            tracing::warn!(
                peer = %addr,
                agent = %caller.agent_id,
                ibge = %caller.ibge,
                serial = %presented.serial,
                "superseded agent certificate refused"
            );
            return Err(CollectorError::PermissionDenied(format!(
                "certificate {} of agent {} has been replaced by a newer one; use the current certificate",
                presented.serial, caller.agent_id
            )));
        }
        Ok(caller)
    }

    /// As [`Self::authenticate_peer`] for `Renew`, which decides itself what
    /// a superseded certificate means (a lost answer, or a second key).
    pub async fn authenticate_renewal(
        &self,
        peer: Peer,
    ) -> Result<(Caller, Presented), CollectorError> {
        self.check(peer).await
    }

    async fn check(&self, peer: Peer) -> Result<(Caller, Presented), CollectorError> {
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
        let (uri, serial, spki_sha256) = leaf_facts(leaf.as_ref()).inspect_err(|e| {
            tracing::warn!(%peer, error = %e, "client certificate without agent identity refused");
        })?;
        let key = ChainKey::of(&certs);
        if self.saturated()
            && let Some(hit) = self.cache.get(&key)
        {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let issuers: Vec<Vec<u8>> = certs[1..]
            .iter()
            .filter_map(|c| crate::ca::spki_sha256(c.as_ref()))
            .map(|k| k.to_vec())
            .collect();
        let row: Option<AuthRow> =
            sqlx::query_as(include_str!("identity/queries/authenticate.sql"))
                .bind(uri.agent_id)
                .bind(&serial)
                .bind(&issuers)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| CollectorError::DatabaseUnavailable(e.to_string()))?;
        let refuse = |why: String| {
            tracing::warn!(%peer, agent = %uri.agent_id, ibge = %uri.ibge, %serial, reason = %why, "agent refused");
            CollectorError::PermissionDenied(why)
        };
        let Some((ibge, revoked_at, current, issued, _superseded_at, in_grace, retired_issuer)) =
            row
        else {
            return Err(refuse(format!(
                "unknown agent {} (municipality {}): it is not registered with this collector",
                uri.agent_id, uri.ibge
            )));
        };
        if let Some(at) = revoked_at {
            return Err(refuse(format!(
                "agent {} was revoked at {}; enroll the agent again",
                uri.agent_id,
                at.to_rfc3339()
            )));
        }
        if ibge != uri.ibge.as_str() {
            return Err(refuse(format!(
                "agent {} is registered for municipality {ibge}, not {}",
                uri.agent_id, uri.ibge
            )));
        }
        if retired_issuer {
            return Err(refuse(format!(
                "the certificate of agent {} was issued by a retired issuing CA; enroll the agent again",
                uri.agent_id
            )));
        }
        let standing = match current {
            None => Standing::Unrecorded,
            Some(cur) if cur == serial => Standing::Current,
            Some(_) if !issued => {
                return Err(refuse(format!(
                    "certificate {serial} was not issued to agent {} by this collector",
                    uri.agent_id
                )));
            }
            Some(_) if in_grace == Some(true) => Standing::SupersededInGrace,
            Some(_) => Standing::Superseded,
        };
        let caller = Caller {
            ibge: uri.ibge,
            agent_id: uri.agent_id,
        };
        let presented = Presented {
            serial,
            spki_sha256,
            standing,
        };
        // Only standings that no clock changes: a superseded certificate's
        // grace ends by itself, so it is looked up every time.
        if let (Some(g), Standing::Current | Standing::Unrecorded) = (generation, standing) {
            self.cache.put(key, g, caller, presented.clone());
        }
        Ok((caller, presented))
    }
}

/// The identity URI, serial and public-key hash of a DER leaf certificate.
fn leaf_facts(der: &[u8]) -> Result<(AgentUri, String, [u8; 32]), CollectorError> {
    let uri = agent_uri_of(der)?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        CollectorError::Unauthenticated(format!("client certificate does not parse: {e}"))
    })?;
    Ok((
        uri,
        cert.raw_serial_as_string(),
        transmissor_proto::token::spki_pin(cert.public_key().raw),
    ))
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
