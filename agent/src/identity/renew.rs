//! Certificate renewal: a fresh key at a random point between 50% and 75%
//! of the certificate's lifetime, over mutual TLS, swapped in without a
//! restart.
//!
//! When to renew is decided by [`plan`], a pure function of the
//! certificate's validity, the local time, the offset to the collector's
//! clock and a random fraction. The waiting itself happens on tokio's
//! monotonic clock, in steps of at most an hour, re-planned each step from
//! [`ClockSync`] (whose estimate of the collector's time advances on the
//! monotonic clock and is corrected by every Enroll / Renew / Heartbeat
//! response): a wrong or jumping wall clock cannot make the agent skip its
//! renewal.
//!
//! Failures are retried with full-jitter backoff (refusals every 15 minutes).
//! Below 20% of the lifetime left the agent warns loudly (log and heartbeat).
//! An expired certificate cannot be renewed: the agent logs exactly that and
//! how to re-enroll, and picks up a new identity written by `enroll --force`
//! without a restart.
//!
//! A renewal's answer is checked before anything is written: the
//! certificate must name this agent and match the new key, and the trust
//! bundle must still contain the root CA the enrollment token pinned
//! (`agent.json`'s `pinned_root`), else the old credentials stay. Of the
//! bundle only that root and the retired-CA sections are stored
//! ([`crate::identity::anchors`]): any other certificate is refused (logged
//! at error by subject and key hash) and never trusted. An identity
//! enrolled before the pin was recorded has no pin to go by: its new bundle
//! may only keep roots its `trust.pem` already holds, so no anchor is ever
//! added. Until a renewal succeeds, retries (also after a restart: the key
//! waits in `agent.key.pending`, 0600) reuse the same new key, so a
//! collector whose answer was lost returns the certificate it already issued
//! instead of seeing a second key renew this identity (which it refuses as
//! a stolen key).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;

use crate::config::RetryConfig;
use crate::identity::anchors::{self, AnchorError};
use crate::identity::clock::{self, ClockSync};
use crate::identity::credentials::Credentials;
use crate::identity::{self, IdentityError, IdentityPaths, Validity};
use crate::pipeline::retry::{Backoff, is_retriable};
use crate::pipeline::transport::explain;
use crate::status::AgentStatus;

/// Renewal happens at a random fraction of the lifetime in this range.
pub const RENEW_FROM: f64 = 0.50;
pub const RENEW_UNTIL: f64 = 0.75;
/// Below this fraction of the lifetime left, the agent warns loudly.
pub const WARN_BELOW: f64 = 0.20;
/// Longest single wait before re-planning.
const RECHECK: Duration = Duration::from_secs(3600);
/// Wait after the collector refused a renewal (not a transient error).
const AFTER_REFUSAL: Duration = Duration::from_secs(15 * 60);
/// How often an expired agent looks for a new identity on disk.
const EXPIRED_RECHECK: Duration = Duration::from_secs(5 * 60);
/// Least time between two renewals, should the collector issue
/// certificates already past their renewal point.
const MIN_BETWEEN: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Error)]
pub enum RenewError {
    #[error("the collector refused or failed the renewal: {}", explain(.0))]
    Call(Box<Status>),
    #[error("the collector returned an unusable certificate: {0}")]
    Response(String),
    #[error(transparent)]
    PinnedRootMissing(#[from] AnchorError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{}", expired_message(*.not_after))]
    Expired { not_after: DateTime<Utc> },
}

impl RenewError {
    /// Whether a quick retry may help.
    pub fn retriable(&self) -> bool {
        match self {
            RenewError::Call(s) => is_retriable(s.code()),
            RenewError::Identity(_) => true,
            RenewError::Response(_)
            | RenewError::PinnedRootMissing(_)
            | RenewError::Expired { .. } => false,
        }
    }
}

/// The message of an expired certificate, word for word.
pub fn expired_message(not_after: DateTime<Utc>) -> String {
    format!(
        "the agent certificate expired at {}; it cannot be renewed: enroll the agent again with a new token (transmissor-agent enroll --collector ... --token ...)",
        not_after.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// What to do about the current certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Renew after this long (zero: now).
    RenewIn(Duration),
    /// Too late: only a new enrollment helps.
    Expired,
}

/// When to renew a certificate valid over `validity`, given the local time,
/// the collector's offset to it, and a `fraction` of the lifetime (clamped
/// to [`RENEW_FROM`]..=[`RENEW_UNTIL`]). All times are Unix milliseconds.
pub fn plan(validity: Validity, local_now_ms: i64, offset_ms: i64, fraction: f64) -> Plan {
    let now = local_now_ms.saturating_add(offset_ms);
    if now >= validity.not_after_ms {
        return Plan::Expired;
    }
    let f = fraction.clamp(RENEW_FROM, RENEW_UNTIL);
    let at = validity.not_before_ms + (validity.lifetime_ms() as f64 * f) as i64;
    Plan::RenewIn(Duration::from_millis((at - now).max(0) as u64))
}

/// Fraction of the lifetime still ahead at `collector_now_ms` (0 when expired).
pub fn remaining_fraction(validity: Validity, collector_now_ms: i64) -> f64 {
    let life = validity.lifetime_ms();
    if life == 0 {
        return 0.0;
    }
    ((validity.not_after_ms - collector_now_ms) as f64 / life as f64).clamp(0.0, 1.0)
}

/// A random point of the renewal window.
pub fn random_fraction() -> f64 {
    rand::rng().random_range(RENEW_FROM..=RENEW_UNTIL)
}

/// What the renewal schedule drives (the real [`Renewer`], or a test double).
pub(crate) trait Lifecycle: Send + Sync {
    fn validity(&self) -> Validity;
    fn renew(&self) -> impl Future<Output = Result<(), RenewError>> + Send;
    /// Whether a newer identity appeared (looked at after expiry).
    fn reload(&self) -> bool;
}

/// Sleeps `d` unless cancelled first; false when cancelled.
async fn nap(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The renewal schedule, until `cancel`.
pub(crate) async fn schedule<L: Lifecycle>(
    l: &L,
    clock: &ClockSync,
    status: &AgentStatus,
    retry: &RetryConfig,
    cancel: &CancellationToken,
) {
    let mut renewed_at: Option<tokio::time::Instant> = None;
    'cert: loop {
        let fraction = random_fraction();
        let mut announced = false;
        loop {
            let v = l.validity();
            match plan(v, clock.local_now_ms(), clock.offset_ms(), fraction) {
                Plan::Expired => {
                    let msg = expired_message(v.not_after());
                    tracing::error!(not_after = %v.not_after(), "{msg}");
                    status.set_certificate_warning(Some(msg));
                    loop {
                        if !nap(EXPIRED_RECHECK, cancel).await {
                            return;
                        }
                        if l.reload() {
                            tracing::info!(not_after = %l.validity().not_after(), "a new agent certificate was found on disk; using it");
                            status.set_certificate_warning(None);
                            continue 'cert;
                        }
                    }
                }
                Plan::RenewIn(d) if d.is_zero() => {
                    let since = renewed_at.map(|t| t.elapsed()).unwrap_or(MIN_BETWEEN);
                    if since >= MIN_BETWEEN {
                        break;
                    }
                    tracing::warn!(not_after = %v.not_after(), "the new certificate is already due for renewal (short-lived or back-dated?); waiting before renewing again");
                    let left = (v.not_after_ms - clock.collector_now_ms()).max(0) as u64;
                    if !nap(
                        (MIN_BETWEEN - since).min(Duration::from_millis(left)),
                        cancel,
                    )
                    .await
                    {
                        return;
                    }
                }
                Plan::RenewIn(d) => {
                    if !announced {
                        announced = true;
                        tracing::info!(renew_in = %human(d), not_after = %v.not_after(), "next certificate renewal scheduled");
                    }
                    if !nap(d.min(RECHECK), cancel).await {
                        return;
                    }
                }
            }
        }
        let mut backoff = Backoff::new(retry.initial, retry.max);
        loop {
            let v = l.validity();
            let now = clock.collector_now_ms();
            if now >= v.not_after_ms {
                continue 'cert;
            }
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = l.renew() => r,
            };
            let e = match result {
                Ok(()) => {
                    status.set_certificate_warning(None);
                    renewed_at = Some(tokio::time::Instant::now());
                    continue 'cert;
                }
                Err(e) => e,
            };
            let delay = if e.retriable() {
                backoff.next_delay()
            } else {
                AFTER_REFUSAL.max(retry.max)
            };
            let delay = delay.min(Duration::from_millis((v.not_after_ms - now).max(0) as u64));
            let left = remaining_fraction(v, now);
            if left < WARN_BELOW {
                let w = format!(
                    "the agent certificate expires at {} ({:.0}% of its lifetime left) and renewal keeps failing: {e}",
                    v.not_after().to_rfc3339_opts(SecondsFormat::Secs, true),
                    left * 100.0
                );
                tracing::warn!(retry_in = %human(delay), "{w}");
                status.set_certificate_warning(Some(w));
            } else {
                tracing::warn!(error = %e, retry_in = %human(delay), "certificate renewal failed; retrying");
            }
            if !nap(delay, cancel).await {
                return;
            }
        }
    }
}

/// Renews the agent's certificate over mutual TLS.
#[derive(Clone)]
pub struct Renewer {
    client: AgentLifecycleClient<Channel>,
    credentials: Arc<Credentials>,
    paths: IdentityPaths,
    clock: Arc<ClockSync>,
    status: Arc<AgentStatus>,
    retry: RetryConfig,
    /// The new key of a renewal not yet answered, reused by its retries.
    pending: Arc<std::sync::Mutex<Option<identity::NewKey>>>,
}

impl Renewer {
    pub fn new(
        client: AgentLifecycleClient<Channel>,
        credentials: Arc<Credentials>,
        paths: IdentityPaths,
        clock: Arc<ClockSync>,
        status: Arc<AgentStatus>,
        retry: RetryConfig,
    ) -> Self {
        Self {
            client,
            credentials,
            paths,
            clock,
            status,
            retry,
            pending: Arc::default(),
        }
    }

    /// The new key of the renewal under way: in memory, else the one a
    /// previous process left on disk, else a new one (written 0600 first).
    fn pending_key(&self) -> Result<identity::NewKey, RenewError> {
        let mut slot = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let path = identity::pending_key_path(&self.paths);
        // A key left with permissions others may read is not reused.
        let left = identity::check_key_file(&path)
            .ok()
            .and_then(|()| std::fs::read_to_string(&path).ok())
            .and_then(|pem| identity::key_from_pem(&pem).ok());
        let k = match left {
            Some(k) => k,
            None => {
                let k = identity::new_key()?;
                identity::write_atomic(&path, k.key_pem.as_bytes(), true)
                    .map_err(|source| IdentityError::Io { path, source })?;
                k
            }
        };
        *slot = Some(k.clone());
        Ok(k)
    }

    /// The root keys a new trust bundle may hold (and must hold one of):
    /// the pin recorded at enrollment; for an identity enrolled before it
    /// was recorded, the roots its `trust.pem` already holds (so a renewal
    /// can never add one).
    fn allowed_roots(&self) -> Result<Vec<[u8; 32]>, RenewError> {
        let recorded = identity::read_info(&self.paths)?
            .and_then(|i| i.pinned_root)
            .and_then(|hex| identity::pin_from_hex(&hex));
        if let Some(pin) = recorded {
            return Ok(vec![pin]);
        }
        let pem =
            std::fs::read_to_string(&self.paths.trust).map_err(|source| IdentityError::Io {
                path: self.paths.trust.clone(),
                source,
            })?;
        Ok(identity::parse_certs(&pem, &self.paths.trust)?
            .iter()
            .filter_map(identity::spki_pin_of)
            .collect())
    }

    /// One renewal, now: fresh key, CSR, new chain stored atomically and
    /// swapped in for new connections. Returns the new validity.
    pub async fn renew_now(&self) -> Result<Validity, RenewError> {
        let new = self.pending_key()?;
        let sent = clock::now_unix_ms();
        let resp = self
            .client
            .clone()
            .renew(pb::RenewRequest {
                csr_pem: new.csr_pem.clone(),
            })
            .await
            .map_err(|s| RenewError::Call(Box::new(s)))?
            .into_inner();
        let offset = self
            .clock
            .record(sent, clock::now_unix_ms(), resp.collector_time_unix_ms);
        let bad = |e: IdentityError| RenewError::Response(e.to_string());
        let certified =
            identity::certified_key(&resp.certificate_chain_pem, &new.key_pem, &self.paths)
                .map_err(bad)?;
        let before = identity::agent_uri_of(&self.credentials.current().cert[0]);
        let after = identity::agent_uri_of(&certified.cert[0]);
        if before.is_some() && after != before {
            return Err(RenewError::Response(format!(
                "it names another agent ({after:?} instead of {before:?})"
            )));
        }
        let trust = if resp.trust_bundle_pem.trim().is_empty() {
            std::fs::read_to_string(&self.paths.trust).map_err(|source| IdentityError::Io {
                path: self.paths.trust.clone(),
                source,
            })?
        } else {
            let anchors = anchors::select(&resp.trust_bundle_pem, &self.allowed_roots()?)
                .inspect_err(|e| {
                    tracing::error!(error = %e, "renewal answer refused");
                })?;
            anchors.log_refused("renewal");
            anchors.pem
        };
        identity::store(
            &self.paths,
            &new.key_pem,
            &resp.certificate_chain_pem,
            &trust,
        )?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let _ = std::fs::remove_file(identity::pending_key_path(&self.paths));
        // Install what is durable on disk.
        let loaded = identity::load(&self.paths)?;
        self.credentials.install(&loaded)?;
        if let Some(mut info) = loaded.info {
            info.renewed_at = Some(Utc::now());
            info.clock_offset_ms = offset;
            if let Err(e) = identity::write_info(&self.paths, &info) {
                tracing::warn!(error = %e, "cannot update agent.json");
            }
        }
        tracing::info!(not_after = %loaded.validity.not_after(), "agent certificate renewed");
        Ok(loaded.validity)
    }

    /// For `run --once`: renews (one attempt) if the renewal point has
    /// passed. Ok(true) when it renewed.
    pub async fn renew_if_due(&self) -> Result<bool, RenewError> {
        let v = self.credentials.validity();
        match plan(
            v,
            self.clock.local_now_ms(),
            self.clock.offset_ms(),
            random_fraction(),
        ) {
            Plan::Expired => {
                let e = RenewError::Expired {
                    not_after: v.not_after(),
                };
                tracing::error!(not_after = %v.not_after(), "{e}");
                self.status.set_certificate_warning(Some(e.to_string()));
                Err(e)
            }
            Plan::RenewIn(d) if d.is_zero() => self.renew_now().await.map(|_| true),
            Plan::RenewIn(_) => Ok(false),
        }
    }

    /// The background renewal task of the long-running agent.
    pub async fn run(self, cancel: CancellationToken) {
        schedule(&self, &self.clock, &self.status, &self.retry, &cancel).await;
    }
}

impl Lifecycle for Renewer {
    fn validity(&self) -> Validity {
        self.credentials.validity()
    }

    async fn renew(&self) -> Result<(), RenewError> {
        self.renew_now().await.map(|_| ())
    }

    fn reload(&self) -> bool {
        self.credentials
            .reload_if_newer(&self.paths)
            .unwrap_or(false)
    }
}

#[cfg(test)]
#[path = "renew_tests.rs"]
mod tests;
