//! Enrollment with one-time tokens, and renewal.
//!
//! A token is single use, expires, is stored only as a SHA-256 of its
//! secret, and carries the pin of the root CA's key (so the agent trusts the
//! collector from its first byte). Consuming it is one atomic `UPDATE ...
//! WHERE consumed_at IS NULL AND expires_at > now()`. The certificate issued
//! ignores everything the CSR asks for except its public key: the URI SAN
//! (municipality from the token, a new agent id), clientAuth EKU, not a CA,
//! random serial, NotBefore back-dated, lifetime from the config.
//! Failed attempts are rate-limited per source address and per municipality.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;
use x509_parser::prelude::{FromDer, X509Certificate};

use transmissor_proto::identity::{AgentUri, Ibge};
use transmissor_proto::pb;
use transmissor_proto::token::Token;

use crate::audit::{self, action};
use crate::ca::LoadedCa;
use crate::error::CollectorError;
use crate::identity::Caller;

/// Failed attempts allowed per address and per municipality per window.
pub const MAX_FAILED_ATTEMPTS: i64 = 10;
const WINDOW_MINUTES: i32 = 15;

pub struct Enroller {
    pool: PgPool,
    ca: Arc<LoadedCa>,
    cert_lifetime: Duration,
    backdate: Duration,
    revoke_previous: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A signed leaf: PEM, serial (hex) and validity.
struct Signed {
    pem: String,
    serial: String,
    not_before: chrono::DateTime<chrono::Utc>,
    not_after: chrono::DateTime<chrono::Utc>,
}

impl Enroller {
    pub fn new(
        pool: PgPool,
        ca: Arc<LoadedCa>,
        cert_lifetime: Duration,
        backdate: Duration,
        revoke_previous: bool,
    ) -> Self {
        Self {
            pool,
            ca,
            cert_lifetime,
            backdate,
            revoke_previous,
        }
    }

    async fn failures_since(&self, column: &str, value: &str) -> Result<i64, CollectorError> {
        let sql = if column == "ibge" {
            "SELECT count(*) FROM transmissor.enrollment_attempts WHERE ibge = $1 AND NOT ok \
             AND at > now() - make_interval(mins => $2)"
        } else {
            "SELECT count(*) FROM transmissor.enrollment_attempts WHERE source_addr = $1 AND NOT ok \
             AND at > now() - make_interval(mins => $2)"
        };
        Ok(sqlx::query_scalar(sql)
            .bind(value)
            .bind(WINDOW_MINUTES)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn check_rate(&self, addr: &str, ibge: Option<&str>) -> Result<(), CollectorError> {
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
        if self.failures_since("source_addr", host).await? >= MAX_FAILED_ATTEMPTS {
            return Err(CollectorError::RateLimited(format!(
                "too many failed enrollment attempts from {host}; wait {WINDOW_MINUTES} minutes"
            )));
        }
        if let Some(ibge) = ibge
            && self.failures_since("ibge", ibge).await? >= MAX_FAILED_ATTEMPTS
        {
            return Err(CollectorError::RateLimited(format!(
                "too many failed enrollment attempts for municipality {ibge}; wait {WINDOW_MINUTES} minutes"
            )));
        }
        Ok(())
    }

    async fn record_attempt(&self, addr: &str, ibge: Option<&str>, ok: bool) {
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
        let r = sqlx::query("INSERT INTO transmissor.enrollment_attempts (source_addr, ibge, ok) VALUES ($1, $2, $3)")
            .bind(host)
            .bind(ibge)
            .bind(ok)
            .execute(&self.pool)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot record an enrollment attempt");
        }
    }

    /// Signs a certificate for `uri` with the CSR's public key (and nothing
    /// else from the CSR).
    fn sign(&self, uri: &AgentUri, csr_pem: &str) -> Result<Signed, CollectorError> {
        let csr = crate::pki::parse_csr(csr_pem).map_err(|e| {
            CollectorError::InvalidArgument(format!(
                "the certificate request does not parse or its signature is wrong: {e}"
            ))
        })?;
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
            pem,
        })
    }

    pub async fn enroll(
        &self,
        addr: &str,
        req: pb::EnrollRequest,
    ) -> Result<pb::EnrollResponse, CollectorError> {
        self.check_rate(addr, None).await?;
        let token: Token = match req.token.parse() {
            Ok(t) => t,
            Err(e) => {
                self.record_attempt(addr, None, false).await;
                return Err(CollectorError::InvalidArgument(e.to_string()));
            }
        };
        let ibge = token.ibge.to_string();
        self.check_rate(addr, Some(&ibge)).await?;
        if token.pin != self.ca.pin {
            return self.refuse(addr, &token, "this token was issued by another collector (its CA pin does not match this collector's CA)".into()).await;
        }
        let agent_id = Uuid::new_v4();
        let uri = AgentUri::new(token.ibge, agent_id);
        let signed = match self.sign(&uri, &req.csr_pem) {
            Ok(s) => s,
            Err(e) => {
                self.record_attempt(addr, Some(&ibge), false).await;
                return Err(e);
            }
        };

        let mut tx = self.pool.begin().await?;
        // One enrollment at a time per municipality, so that revoking the
        // previous agents never misses a concurrent one.
        sqlx::query("SELECT 1 FROM transmissor.municipalities WHERE ibge = $1 FOR UPDATE")
            .bind(&ibge)
            .execute(&mut *tx)
            .await?;
        let consumed: Option<String> = sqlx::query_scalar(
            "UPDATE transmissor.enrollment_tokens SET consumed_at = now(), consumed_from = $3 \
             WHERE id = $1 AND secret_sha256 = $2 AND ibge = $4 AND consumed_at IS NULL AND expires_at > now() \
             RETURNING ibge::text",
        )
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
                 WHERE ibge = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id",
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
        self.store_certificate(&mut tx, agent_id, &signed, "enroll")
            .await?;
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
        self.record_attempt(addr, Some(&ibge), true).await;
        tracing::info!(%addr, %ibge, agent = %agent_id, serial = %signed.serial, "agent enrolled");
        Ok(pb::EnrollResponse {
            agent_id: agent_id.to_string(),
            ibge,
            certificate_chain_pem: self.ca.chain_for(&signed.pem),
            trust_bundle_pem: self.ca.trust_bundle(),
            collector_time_unix_ms: now_ms(),
        })
    }

    async fn refuse(
        &self,
        addr: &str,
        token: &Token,
        why: String,
    ) -> Result<pb::EnrollResponse, CollectorError> {
        self.record_attempt(addr, Some(token.ibge.as_str()), false)
            .await;
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
            Some((hash, ibge, consumed, expires)) if hash == token.secret_hash() && ibge == token.ibge.as_str() => {
                if let Some(at) = consumed {
                    format!("this enrollment token was already used (at {}); ask the central team for a new token", at.to_rfc3339())
                } else {
                    format!("this enrollment token expired at {}; ask the central team for a new token", expires.to_rfc3339())
                }
            }
            _ => "unknown enrollment token: check that it was copied whole, or ask the central team for a new one".into(),
        })
    }

    async fn store_certificate(
        &self,
        conn: &mut sqlx::PgConnection,
        agent_id: Uuid,
        s: &Signed,
        reason: &str,
    ) -> Result<(), CollectorError> {
        sqlx::query(
            "INSERT INTO transmissor.certificates (serial, agent_id, not_before, not_after, reason) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.serial)
        .bind(agent_id)
        .bind(s.not_before)
        .bind(s.not_after)
        .bind(reason)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// A new certificate for an authenticated agent's fresh key.
    pub async fn renew(
        &self,
        caller: Caller,
        addr: &str,
        csr_pem: &str,
    ) -> Result<pb::RenewResponse, CollectorError> {
        let signed = self.sign(&AgentUri::new(caller.ibge, caller.agent_id), csr_pem)?;
        let mut tx = self.pool.begin().await?;
        self.store_certificate(&mut tx, caller.agent_id, &signed, "renew")
            .await?;
        audit::record(
            &mut tx,
            audit::Event {
                actor: audit::agent_actor(caller.agent_id),
                action: action::AGENT_RENEWED,
                ibge: Some(caller.ibge.to_string()),
                agent_id: Some(caller.agent_id),
                source_addr: Some(addr.to_string()),
                detail: serde_json::json!({ "serial": signed.serial, "not_after": signed.not_after }),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(agent = %caller.agent_id, ibge = %caller.ibge, serial = %signed.serial, "agent certificate renewed");
        Ok(pb::RenewResponse {
            certificate_chain_pem: self.ca.chain_for(&signed.pem),
            trust_bundle_pem: self.ca.trust_bundle(),
            collector_time_unix_ms: now_ms(),
        })
    }
}

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
        sqlx::query_scalar("SELECT name FROM transmissor.municipalities WHERE ibge = $1")
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
