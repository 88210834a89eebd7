//! Enrollment with one-time tokens, and renewal.
//!
//! A token is single use, expires, is stored only as a SHA-256 of its
//! secret, and carries the pin of the root CA's key (so the agent trusts the
//! collector from its first byte). Consuming it is one atomic `UPDATE ...
//! WHERE consumed_at IS NULL AND expires_at > now()`. The certificate issued
//! ignores everything the CSR asks for except its public key: the URI SAN
//! (municipality from the token, a new agent id), clientAuth EKU, not a CA,
//! random serial, NotBefore back-dated, lifetime from the config.
//!
//! | module | responsibility |
//! |---|---|
//! | [`attempts`] | failed attempts, per existing token id and (coarsely) per address |
//! | [`renewal`] | `Renew`: current certificate only, rate limit, parallel chains |
//!
//! Enrollment's database work runs on a small pool of its own, apart from
//! the pool that loads data. Anonymous enrollments have their own budget
//! on it ([`EnrollmentConfig::max_concurrent_enrollments`]; beyond, a
//! call waits briefly, holding no connection, then is refused), so a flood of them never takes the connections renewals (mTLS,
//! admitted per agent) need; and an enrollment writes nothing before its
//! cheap checks pass (field lengths, token form, the CSR's parse and
//! signature).

mod attempts;
mod renewal;

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateSigningRequestParams, PublicKeyData};
use sqlx::PgPool;
use uuid::Uuid;
use x509_parser::prelude::{FromDer, X509Certificate};

use transmissor_proto::identity::{AgentUri, Ibge};
use transmissor_proto::pb;
use transmissor_proto::token::Token;

use crate::audit::{self, action};
use crate::ca::LoadedCa;
use crate::config::{CaSection, EnrollmentConfig};
use crate::error::CollectorError;

pub use attempts::prune_attempts;

pub struct Enroller {
    pool: PgPool,
    ca: Arc<LoadedCa>,
    cert_lifetime: Duration,
    backdate: Duration,
    revoke_previous: bool,
    limits: EnrollmentConfig,
    /// Enrollments in progress (anonymous callers' share of the pool).
    enrolling: Arc<tokio::sync::Semaphore>,
}

/// Longest an enrollment waits for its budget before it is refused.
const ENROLLMENT_WAIT: Duration = Duration::from_secs(5);

/// Largest CSR accepted (a PEM CSR of any key type fits in 4 KiB).
const MAX_CSR_BYTES: usize = 16 * 1024;

impl Enroller {
    /// The CA pin a token carries (so the agent can check its first contact).
    pub fn pin(&self) -> [u8; 32] {
        self.ca.pin
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A signed leaf: PEM, serial (hex), validity and public-key hash.
struct Signed {
    pem: String,
    serial: String,
    not_before: chrono::DateTime<chrono::Utc>,
    not_after: chrono::DateTime<chrono::Utc>,
    spki_sha256: [u8; 32],
}

impl Enroller {
    /// `pool` should be enrollment's own (see the module doc).
    pub fn new(
        pool: PgPool,
        ca: Arc<LoadedCa>,
        ca_cfg: &CaSection,
        limits: &EnrollmentConfig,
    ) -> Self {
        Self {
            pool,
            ca,
            cert_lifetime: ca_cfg.agent_cert_lifetime,
            backdate: ca_cfg.not_before_backdate,
            revoke_previous: ca_cfg.revoke_previous_on_enroll,
            limits: limits.clone(),
            enrolling: Arc::new(tokio::sync::Semaphore::new(
                limits.max_concurrent_enrollments.max(1) as usize,
            )),
        }
    }

    /// Closes the enroller's own pool (at shutdown, after the last call).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn window_words(&self) -> String {
        humantime::format_duration(self.limits.failure_window).to_string()
    }

    /// The CSR, its signature verified and its key algorithm consistent
    /// with its key ([`crate::pki::parse_csr`]).
    fn csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, CollectorError> {
        crate::pki::parse_csr(csr_pem).map_err(|e| {
            CollectorError::InvalidArgument(format!(
                "the certificate request does not parse or its signature is wrong: {e}"
            ))
        })
    }

    /// Signs a certificate for `uri` with the CSR's public key (and nothing
    /// else from the CSR).
    fn sign(&self, uri: &AgentUri, csr_pem: &str) -> Result<Signed, CollectorError> {
        let csr = Self::csr(csr_pem)?;
        let pem = self
            .ca
            .issuing
            .sign_agent_key_backdated(uri, &csr.public_key, self.cert_lifetime, self.backdate)
            .map_err(|e| CollectorError::Internal(e.to_string()))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|d: rustls_pki_types::CertificateDer<'static>| d)
            .map_err(|e| CollectorError::Internal(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| CollectorError::Internal(e.to_string()))?;
        let ts = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        Ok(Signed {
            serial: cert.raw_serial_as_string(),
            not_before: ts(cert.validity().not_before.timestamp()),
            not_after: ts(cert.validity().not_after.timestamp()),
            spki_sha256: transmissor_proto::token::spki_pin(
                &csr.public_key.subject_public_key_info(),
            ),
            pem,
        })
    }

    pub async fn enroll(
        &self,
        addr: &str,
        req: pb::EnrollRequest,
    ) -> Result<pb::EnrollResponse, CollectorError> {
        use crate::admission::check_len;
        check_len("hostname", &req.hostname, 255)?;
        check_len("agent_version", &req.agent_version, 100)?;
        check_len("os", &req.os, 200)?;
        check_len("csr_pem", &req.csr_pem, MAX_CSR_BYTES)?;
        // Cheap checks before any database work: the token's form and the
        // CSR (parsed again when signing).
        let token = req.token.parse::<Token>().map_err(|e| {
            tracing::warn!(%addr, error = %e, "enrollment refused: not a token");
            CollectorError::InvalidArgument(e.to_string())
        })?;
        Self::csr(&req.csr_pem)?;
        // Waiting in line holds no connection; beyond the wait, refused.
        let slot =
            tokio::time::timeout(ENROLLMENT_WAIT, self.enrolling.clone().acquire_owned()).await;
        let Ok(Ok(_slot)) = slot else {
            tracing::warn!(%addr, "enrollment refused: enrollment budget in use");
            return Err(CollectorError::Overloaded(
                "too many enrollments in progress (enrollment.max_concurrent_enrollments); retry later".into(),
            ));
        };
        let limit = self.limits.max_failures_per_address;
        let addr_key = (limit > 0).then(|| format!("addr:{}", attempts::source_of(addr)));
        if let Some(key) = &addr_key
            && !attempts::charge(&self.pool, key, limit, self.limits.failure_window).await?
        {
            tracing::warn!(%addr, "enrollment refused: too many failed attempts from this address");
            return Err(CollectorError::RateLimited(format!(
                "too many failed enrollment attempts from {}; wait {}",
                attempts::source_of(addr),
                self.window_words()
            )));
        }
        let result = self.enroll_token(addr, token, req).await;
        if result.is_ok()
            && let Some(key) = &addr_key
        {
            attempts::refund(&self.pool, key).await;
        }
        result
    }

    /// Enrollment once the per-address limit let the attempt through.
    async fn enroll_token(
        &self,
        addr: &str,
        token: Token,
        req: pb::EnrollRequest,
    ) -> Result<pb::EnrollResponse, CollectorError> {
        let ibge = token.ibge.to_string();
        // Only a token that exists is counted, against its own id: junk
        // naming a municipality blocks nothing of that municipality.
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM transmissor.enrollment_tokens WHERE id = $1")
                .bind(&token.id)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
            tracing::warn!(%addr, ibge = %token.ibge, token = %token.id, "enrollment refused: unknown token");
            return Err(CollectorError::PermissionDenied(UNKNOWN_TOKEN.into()));
        }
        let token_key = format!("token:{}", token.id);
        if !attempts::charge(
            &self.pool,
            &token_key,
            self.limits.max_failures_per_token,
            self.limits.failure_window,
        )
        .await?
        {
            tracing::warn!(%addr, %ibge, token = %token.id, "enrollment refused: too many failed attempts with this token");
            return Err(CollectorError::RateLimited(format!(
                "too many failed enrollment attempts with token {}; wait {}",
                token.id,
                self.window_words()
            )));
        }
        if token.pin != self.ca.pin {
            return self.refuse(addr, &token, "this token was issued by another collector (its CA pin does not match this collector's CA)".into()).await;
        }
        let agent_id = Uuid::new_v4();
        let uri = AgentUri::new(token.ibge, agent_id);
        let signed = self.sign(&uri, &req.csr_pem)?;

        let mut tx = self.pool.begin().await?;
        // One enrollment at a time per municipality, so that revoking the
        // previous agents never misses a concurrent one.
        sqlx::query("SELECT 1 FROM transmissor.municipalities WHERE ibge = $1::bpchar FOR UPDATE")
            .bind(&ibge)
            .execute(&mut *tx)
            .await?;
        let consumed: Option<String> =
            sqlx::query_scalar(include_str!("enroll/queries/token_consume.sql"))
                .bind(&token.id)
                .bind(token.secret_hash().as_slice())
                .bind(addr)
                .bind(&ibge)
                .fetch_optional(&mut *tx)
                .await?;
        if consumed.is_none() {
            tx.rollback().await?;
            let why = self.why_refused(&token).await?;
            let mut conn = self.pool.acquire().await?;
            audit::record(
                &mut conn,
                audit::Event {
                    actor: format!("enrollment:{addr}"),
                    action: action::TOKEN_REFUSED,
                    ibge: Some(ibge.clone()),
                    source_addr: Some(addr.to_string()),
                    detail: serde_json::json!({ "token": token.id, "reason": why }),
                    ..Default::default()
                },
            )
            .await?;
            return self.refuse(addr, &token, why).await;
        }

        sqlx::query(
            "INSERT INTO transmissor.agents (id, ibge, hostname, enrolled_from, agent_version, os) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(agent_id)
        .bind(&ibge)
        .bind(&req.hostname)
        .bind(addr)
        .bind(&req.agent_version)
        .bind(&req.os)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE transmissor.enrollment_tokens SET consumed_by = $2 WHERE id = $1")
            .bind(&token.id)
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        let actor = audit::agent_actor(agent_id);
        if self.revoke_previous {
            let replaced: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE transmissor.agents SET revoked_at = now(), revoked_reason = $3 \
                 WHERE ibge = $1::bpchar AND id <> $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(&ibge)
            .bind(agent_id)
            .bind(format!("replaced by agent {agent_id} (re-enrollment)"))
            .fetch_all(&mut *tx)
            .await?;
            for old in replaced {
                audit::record(
                    &mut tx,
                    audit::Event {
                        actor: actor.clone(),
                        action: action::AGENT_REVOKED,
                        ibge: Some(ibge.clone()),
                        agent_id: Some(old),
                        source_addr: Some(addr.to_string()),
                        detail: serde_json::json!({ "reason": "re-enrollment", "replaced_by": agent_id }),
                    },
                )
                .await?;
            }
        }
        let chain = self.ca.chain_for(&signed.pem);
        self.store_certificate(&mut tx, agent_id, &signed, "enroll", &chain)
            .await?;
        let trust = self.trust_bundle(&mut tx).await?;
        for (act, detail) in [
            (
                action::TOKEN_CONSUMED,
                serde_json::json!({ "token": token.id }),
            ),
            (
                action::AGENT_ENROLLED,
                serde_json::json!({ "serial": signed.serial, "not_after": signed.not_after, "hostname": req.hostname, "agent_version": req.agent_version }),
            ),
        ] {
            audit::record(
                &mut tx,
                audit::Event {
                    actor: actor.clone(),
                    action: act,
                    ibge: Some(ibge.clone()),
                    agent_id: Some(agent_id),
                    source_addr: Some(addr.to_string()),
                    detail,
                },
            )
            .await?;
        }
        tx.commit().await?;
        // The token is consumed: its counter has no further use.
        let _ = sqlx::query("DELETE FROM transmissor.enrollment_failures WHERE key = $1")
            .bind(&token_key)
            .execute(&self.pool)
            .await;
        tracing::info!(%addr, %ibge, agent = %agent_id, serial = %signed.serial, "agent enrolled");
        Ok(pb::EnrollResponse {
            agent_id: agent_id.to_string(),
            ibge,
            certificate_chain_pem: chain,
            trust_bundle_pem: trust,
            collector_time_unix_ms: now_ms(),
        })
    }

    /// The trust bundle for agents, retired issuing CAs included.
    async fn trust_bundle(&self, conn: &mut sqlx::PgConnection) -> Result<String, CollectorError> {
        let retired = crate::ca::retired::retired_pems(conn).await?;
        Ok(self.ca.trust_bundle_with_retired(&retired))
    }

    async fn refuse(
        &self,
        addr: &str,
        token: &Token,
        why: String,
    ) -> Result<pb::EnrollResponse, CollectorError> {
        tracing::warn!(%addr, ibge = %token.ibge, token = %token.id, reason = %why, "enrollment refused");
        Err(CollectorError::PermissionDenied(why))
    }

    /// Why a token could not be consumed, in words for municipal IT.
    async fn why_refused(&self, token: &Token) -> Result<String, CollectorError> {
        #[allow(clippy::type_complexity)]
        let row: Option<(Vec<u8>, String, Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(
                "SELECT secret_sha256, ibge::text, consumed_at, expires_at FROM transmissor.enrollment_tokens WHERE id = $1",
            )
            .bind(&token.id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some((hash, ibge, consumed, expires))
                if hash == token.secret_hash() && ibge == token.ibge.as_str() =>
            {
                if let Some(at) = consumed {
                    format!(
                        "this enrollment token was already used (at {}); ask the central team for a new token",
                        at.to_rfc3339()
                    )
                } else {
                    format!(
                        "this enrollment token expired at {}; ask the central team for a new token",
                        expires.to_rfc3339()
                    )
                }
            }
            _ => UNKNOWN_TOKEN.into(),
        })
    }

    /// Records `s` as `agent_id`'s current certificate.
    async fn store_certificate(
        &self,
        conn: &mut sqlx::PgConnection,
        agent_id: Uuid,
        s: &Signed,
        reason: &str,
        chain_pem: &str,
    ) -> Result<(), CollectorError> {
        sqlx::query(include_str!("enroll/queries/certificate_supersede.sql"))
            .bind(agent_id)
            .bind(self.limits.superseded_grace.as_secs_f64())
            .execute(&mut *conn)
            .await?;
        sqlx::query(include_str!("enroll/queries/certificate_insert.sql"))
            .bind(&s.serial)
            .bind(agent_id)
            .bind(s.not_before)
            .bind(s.not_after)
            .bind(reason)
            .bind(s.spki_sha256.as_slice())
            .bind(chain_pem)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE transmissor.agents SET cert_serial = $2 WHERE id = $1")
            .bind(agent_id)
            .bind(&s.serial)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

const UNKNOWN_TOKEN: &str = "unknown enrollment token: check that it was copied whole, or ask the central team for a new one";

/// Issues a token for `ibge`, valid for `ttl`; stores only its hash.
pub async fn issue_token(
    pool: &PgPool,
    pin: [u8; 32],
    ibge: Ibge,
    ttl: Duration,
    actor: &str,
) -> Result<Token, CollectorError> {
    let token = Token::generate(ibge, pin);
    let mut tx = pool.begin().await?;
    let known: Option<String> =
        sqlx::query_scalar("SELECT name FROM transmissor.municipalities WHERE ibge = $1::bpchar")
            .bind(ibge.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if known.is_none() {
        return Err(CollectorError::FailedPrecondition(format!(
            "municipality {ibge} is not registered: run `transmissor-collector municipality add --ibge {ibge} --name ...` first"
        )));
    }
    sqlx::query(
        "INSERT INTO transmissor.enrollment_tokens (id, ibge, secret_sha256, expires_at, issued_by) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)",
    )
    .bind(&token.id)
    .bind(ibge.as_str())
    .bind(token.secret_hash().as_slice())
    .bind(ttl.as_secs_f64())
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            actor: actor.to_string(),
            action: action::TOKEN_ISSUED,
            ibge: Some(ibge.to_string()),
            detail: serde_json::json!({ "token": token.id, "ttl_seconds": ttl.as_secs() }),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// Records `token.expired` once for every token that expired unused.
pub async fn audit_expired_tokens(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let expired: Vec<(String, String)> = sqlx::query_as(
        "UPDATE transmissor.enrollment_tokens SET expiry_audited = true \
         WHERE expires_at <= now() AND consumed_at IS NULL AND NOT expiry_audited RETURNING id, ibge::text",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (id, ibge) in &expired {
        audit::record(
            &mut tx,
            audit::Event {
                actor: "collector".into(),
                action: action::TOKEN_EXPIRED,
                ibge: Some(ibge.clone()),
                detail: serde_json::json!({ "token": id }),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(expired.len() as u64)
}
