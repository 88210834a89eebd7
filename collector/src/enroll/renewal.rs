//! `Renew`: a new certificate for an authenticated agent's fresh key.
//!
//! Under a lock on the agent's row:
//! - only the agent's **current** certificate renews. A renewal presented
//!   with a superseded certificate whose CSR is for the current
//!   certificate's key is the agent asking again for an answer it lost: the
//!   current chain is returned, nothing is issued. Any other renewal from a
//!   superseded certificate means two keys are renewing one identity (a
//!   stolen key, one side renewed first): refused, logged at error, written
//!   to the audit log (`agent.parallel_renewal`) and, by default
//!   (`[enrollment] revoke_on_parallel_renewal`), the agent is revoked. We
//!   revoke because which side is the thief cannot be told: whoever renewed
//!   first holds the current chain and would keep the identity otherwise;
//!   revoked, both sides stop and the municipality re-enrolls with a token.
//!   Only a holder of one of the agent's keys can trigger it.
//! - at most `max_renewals` per `renewal_window` (default: the certificate
//!   lifetime; a well agent renews about twice per lifetime). Refusals are
//!   counted on the agent's row; only the first of each window is audited,
//!   so a flood of renewals grows neither certificates nor audit rows.

use rcgen::PublicKeyData;

use transmissor_proto::identity::AgentUri;
use transmissor_proto::pb;

use super::{Enroller, now_ms};
use crate::audit::{self, action};
use crate::error::CollectorError;
use crate::identity::{Caller, Presented, Standing};

impl Enroller {
    fn renewal_window(&self) -> std::time::Duration {
        self.limits.renewal_window.unwrap_or(self.cert_lifetime)
    }

    /// A new certificate for `caller`'s fresh key (see the module doc).
    pub async fn renew(
        &self,
        caller: Caller,
        presented: Presented,
        addr: &str,
        csr_pem: &str,
    ) -> Result<pb::RenewResponse, CollectorError> {
        let csr = Self::csr(csr_pem)?;
        let csr_key = transmissor_proto::token::spki_pin(&csr.public_key.subject_public_key_info());
        let mut tx = self.pool.begin().await?;
        let current: Option<Option<String>> = sqlx::query_scalar(
            "SELECT cert_serial FROM transmissor.agents WHERE id = $1 AND revoked_at IS NULL FOR UPDATE",
        )
        .bind(caller.agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Err(CollectorError::PermissionDenied(format!(
                "agent {} was revoked; enroll the agent again",
                caller.agent_id
            )));
        };
        let is_current = match &current {
            None => presented.standing == Standing::Unrecorded,
            Some(serial) => *serial == presented.serial,
        };
        if !is_current {
            let answered: Option<Option<String>> = sqlx::query_scalar(
                "SELECT chain_pem FROM transmissor.certificates WHERE serial = $1 AND spki_sha256 = $2",
            )
            .bind(&current)
            .bind(csr_key.as_slice())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(Some(chain)) = answered {
                let trust = self.trust_bundle(&mut tx).await?;
                tx.commit().await?;
                tracing::info!(agent = %caller.agent_id, ibge = %caller.ibge, %addr, "renewal asked again; the current certificate is returned");
                return Ok(pb::RenewResponse {
                    certificate_chain_pem: chain,
                    trust_bundle_pem: trust,
                    collector_time_unix_ms: now_ms(),
                });
            }
            return Err(self
                .parallel_chain(tx, caller, &presented, current.as_deref(), addr)
                .await);
        }
        let window = self.renewal_window();
        let recent: i64 = sqlx::query_scalar(include_str!("queries/renewals_recent.sql"))
            .bind(caller.agent_id)
            .bind(window.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
        if recent >= i64::from(self.limits.max_renewals) {
            let why = format!(
                "agent {} renewed {recent} times in the last {}; renewals are limited to {} per window",
                caller.agent_id,
                humantime::format_duration(window),
                self.limits.max_renewals
            );
            return Err(self.refuse_renewal(tx, caller, addr, why).await);
        }

        let signed = self.sign(&AgentUri::new(caller.ibge, caller.agent_id), csr_pem)?;
        let chain = self.ca.chain_for(&signed.pem);
        self.store_certificate(&mut tx, caller.agent_id, &signed, "renew", &chain)
            .await?;
        audit::record(
            &mut tx,
            audit::Event {
                actor: audit::agent_actor(caller.agent_id),
                action: action::AGENT_RENEWED,
                ibge: Some(caller.ibge.to_string()),
                agent_id: Some(caller.agent_id),
                source_addr: Some(addr.to_string()),
                detail: serde_json::json!({ "serial": signed.serial, "not_after": signed.not_after, "previous": presented.serial }),
            },
        )
        .await?;
        let trust = self.trust_bundle(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(agent = %caller.agent_id, ibge = %caller.ibge, serial = %signed.serial, "agent certificate renewed");
        Ok(pb::RenewResponse {
            certificate_chain_pem: chain,
            trust_bundle_pem: trust,
            collector_time_unix_ms: now_ms(),
        })
    }

    /// Counts a refusal; true when it is the first of its window.
    async fn count_refusal(
        &self,
        conn: &mut sqlx::PgConnection,
        caller: Caller,
    ) -> Result<bool, CollectorError> {
        let n: Option<i32> = sqlx::query_scalar(include_str!("queries/renewal_refusal_count.sql"))
            .bind(caller.agent_id)
            .bind(self.renewal_window().as_secs_f64())
            .fetch_optional(conn)
            .await?;
        Ok(n == Some(1))
    }

    async fn refuse_renewal(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        caller: Caller,
        addr: &str,
        why: String,
    ) -> CollectorError {
        let r: Result<(), CollectorError> = async {
            if self.count_refusal(&mut tx, caller).await? {
                audit::record(
                    &mut tx,
                    audit::Event {
                        actor: audit::agent_actor(caller.agent_id),
                        action: action::AGENT_RENEWAL_REFUSED,
                        ibge: Some(caller.ibge.to_string()),
                        agent_id: Some(caller.agent_id),
                        source_addr: Some(addr.to_string()),
                        detail: serde_json::json!({ "reason": why, "note": "later refusals of this window are counted, not audited" }),
                    },
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            return e;
        }
        tracing::warn!(agent = %caller.agent_id, ibge = %caller.ibge, %addr, reason = %why, "renewal refused");
        CollectorError::RateLimited(why)
    }

    /// Two keys renew one identity: refuse, alert, and (by default) revoke.
    async fn parallel_chain(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        caller: Caller,
        presented: &Presented,
        current: Option<&str>,
        addr: &str,
    ) -> CollectorError {
        let revoke = self.limits.revoke_on_parallel_renewal;
        tracing::error!(
            agent = %caller.agent_id,
            ibge = %caller.ibge,
            %addr,
            presented_serial = %presented.serial,
            current_serial = current.unwrap_or("-"),
            revoke,
            "parallel renewal chain: a superseded certificate of this agent tried to renew (stolen key?)"
        );
        let r: Result<(), CollectorError> = async {
            let first = self.count_refusal(&mut tx, caller).await?;
            let revoked = if revoke {
                sqlx::query(
                    "UPDATE transmissor.agents SET revoked_at = now(), revoked_reason = $2 \
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(caller.agent_id)
                .bind("parallel renewal chain: two keys renewed this identity")
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            } else {
                false
            };
            let event = |act, detail| audit::Event {
                actor: "collector".into(),
                action: act,
                ibge: Some(caller.ibge.to_string()),
                agent_id: Some(caller.agent_id),
                source_addr: Some(addr.to_string()),
                detail,
            };
            if first || revoked {
                let detail = serde_json::json!({ "presented_serial": presented.serial, "current_serial": current, "revoked": revoked });
                audit::record(&mut tx, event(action::AGENT_PARALLEL_RENEWAL, detail)).await?;
            }
            if revoked {
                let detail = serde_json::json!({ "reason": "parallel renewal chain" });
                audit::record(&mut tx, event(action::AGENT_REVOKED, detail)).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            return e;
        }
        CollectorError::PermissionDenied(format!(
            "certificate {} of agent {} has been replaced by a newer one and cannot renew: another key renewed this identity{}",
            presented.serial,
            caller.agent_id,
            if revoke {
                "; the agent is revoked, enroll it again with a new token"
            } else {
                ""
            }
        ))
    }
}
