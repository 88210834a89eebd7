//! Central plans on the agent: the running plan, verified against the plan
//! keys pinned at install (moved only by key lists the pinned root key
//! signed), and what happens to a plan the collector offers.
//!
//! | module     | responsibility                                                   |
//! |------------|------------------------------------------------------------------|
//! | [`fetch`]  | `FetchPlan` over mutual TLS when a heartbeat says the version changed |
//! | [`verify`] | signature, kind, version order, scope and expiry of an offered plan |
//! | [`store`]  | the accepted plan, highest version and key lists on disk (atomic)  |
//!
//! [`PlanKeeper`] ties them: it starts from the pinned root and plan keys,
//! follows the accepted key lists, re-verifies the stored plan, and accepts
//! or refuses offers. A refused or expired plan never stops the running
//! one; the refusal is logged and reported in every heartbeat until a plan
//! is accepted. A key list that drops the running plan's key, or raises
//! the floor above it, does stop it (as a restart would): that is how a
//! stolen plan key's plans are withdrawn.

pub mod fetch;
pub mod store;
pub mod verify;

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use transmissor_plan::{KeyChain, Plan, PublicKey, TrustedKeys};

use store::{PlanStore, StoreError};
use verify::{Accepted, Refusal, Verdict};

/// The plan an agent runs.
#[derive(Debug)]
pub struct RunningPlan {
    pub plan: Plan,
    pub key_id: String,
    pub sha256: [u8; 32],
}

/// What the heartbeat reports about plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanReport {
    pub version: u64,
    pub expired: bool,
    pub refusal: Option<String>,
    pub key_list_serial: u64,
}

struct State {
    chain: KeyChain,
    running: Option<Arc<RunningPlan>>,
    accepted: Option<Accepted>,
    refusal: Option<String>,
    /// The advertised version last refused: not fetched again until the
    /// advertisement or the keys change.
    refused_version: Option<u64>,
}

pub struct PlanKeeper {
    pinned: TrustedKeys,
    ibge: String,
    store: PlanStore,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

/// What [`PlanKeeper::offer`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum OfferOutcome {
    Accepted(u64),
    Unchanged,
    Refused(Refusal),
    /// The collector has no plan for this municipality.
    NoPlan,
}

impl PlanKeeper {
    /// Loads the stored state and verifies it again from the pinned `root`
    /// key and plan keys `pinned`.
    pub fn open(
        pinned: TrustedKeys,
        root: Option<PublicKey>,
        ibge: &str,
        store: PlanStore,
    ) -> Result<Self, StoreError> {
        let lists = store.key_lists()?;
        let chain = KeyChain::follow(root, pinned.clone(), lists.iter().map(Vec::as_slice));
        for (serial, why) in &chain.refused {
            tracing::warn!(serial, reason = %why, "stored plan-key list does not verify; ignored");
        }
        let mut accepted = store.accepted()?;
        let mut running = None;
        let mut refusal = None;
        if let Some(envelope) = store.current()? {
            match transmissor_plan::open_plan(&envelope, &chain.keys) {
                Ok(v) if chain.floor.check(&v.plan).is_err() => {
                    let why = chain.floor.check(&v.plan).unwrap_err();
                    refusal = Some(format!(
                        "stored plan is below the floor ({why}); no plan runs"
                    ));
                }
                Ok(v) if v.plan.applies_to(ibge) => {
                    let a = Accepted {
                        version: v.plan.version,
                        sha256: v.sha256,
                    };
                    if accepted.is_none_or(|x| x.version < a.version) {
                        accepted = Some(a);
                    }
                    running = Some(Arc::new(RunningPlan {
                        plan: v.plan,
                        key_id: v.key_id,
                        sha256: v.sha256,
                    }));
                }
                Ok(v) => {
                    refusal = Some(format!(
                        "stored plan {} is not for municipality {ibge}; no plan runs",
                        v.plan.version
                    ));
                }
                Err(e) => {
                    let why = Refusal::from(e);
                    refusal = Some(format!("stored plan does not verify ({why}); no plan runs"));
                }
            }
            if let Some(r) = &refusal {
                tracing::error!(reason = %r, "stored plan refused");
            }
        }
        let version = running.as_ref().map_or(0, |r| r.plan.version);
        Ok(Self {
            pinned,
            ibge: ibge.to_string(),
            store,
            state: Mutex::new(State {
                chain,
                running,
                accepted,
                refusal,
                refused_version: None,
            }),
            changed: watch::channel(version).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn running(&self) -> Option<Arc<RunningPlan>> {
        self.lock().running.clone()
    }

    /// Fires with the running version whenever another plan is accepted.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn key_list_serial(&self) -> u64 {
        self.lock().chain.serial
    }

    pub fn report(&self, now: DateTime<Utc>) -> PlanReport {
        let s = self.lock();
        PlanReport {
            version: s.running.as_ref().map_or(0, |r| r.plan.version),
            expired: s.running.as_ref().is_some_and(|r| r.plan.is_expired(now)),
            refusal: s.refusal.clone(),
            key_list_serial: s.chain.serial,
        }
    }

    /// Whether the advertisement calls for a fetch.
    pub fn should_fetch(&self, ad: fetch::Advertised) -> bool {
        let s = self.lock();
        if ad.key_list_serial > s.chain.serial {
            return true;
        }
        let running = s.running.as_ref().map_or(0, |r| r.plan.version);
        ad.plan_version != 0
            && ad.plan_version != running
            && s.refused_version != Some(ad.plan_version)
    }

    /// Takes what the collector served: key lists first (each must verify
    /// under the keys trusted before it), then the plan.
    /// `advertised`: the version the heartbeat announced (a refused one is
    /// not fetched again until the announcement or the keys change).
    pub fn offer(
        &self,
        plan_envelope: &[u8],
        key_lists: &[Vec<u8>],
        advertised: u64,
        now: DateTime<Utc>,
    ) -> Result<OfferOutcome, StoreError> {
        let mut s = self.lock();
        let mut key_refusal = None;
        if !key_lists.is_empty() {
            let before = s.chain.serial;
            let next = KeyChain::follow_from(&s.chain, key_lists.iter().map(Vec::as_slice));
            for (serial, why) in &next.refused {
                tracing::error!(serial, reason = %why, "plan-key list refused; the current plan keys stay");
                key_refusal = Some(format!("plan-key list {serial} refused: {why}"));
            }
            for (serial, envelope) in &next.accepted_lists {
                self.store.add_key_list(*serial, envelope)?;
                tracing::info!(serial, "plan-key list accepted");
            }
            if next.serial != before {
                s.refused_version = None;
            }
            s.chain = next;
            if s.chain.serial != before {
                self.withdraw_if_untrusted(&mut s);
            }
        }
        if plan_envelope.is_empty() {
            if let Some(r) = key_refusal {
                s.refusal = Some(r);
            }
            return Ok(OfferOutcome::NoPlan);
        }
        let outcome = match verify::judge(plan_envelope, &s.chain, &self.ibge, s.accepted, now) {
            Ok(Verdict::Same) => OfferOutcome::Unchanged,
            Ok(Verdict::New(v)) => {
                let a = Accepted {
                    version: v.plan.version,
                    sha256: v.sha256,
                };
                self.store.accept(plan_envelope, a)?;
                tracing::info!(version = a.version, key = %v.key_id, jobs = v.plan.jobs.len(), "plan accepted");
                s.accepted = Some(a);
                s.running = Some(Arc::new(RunningPlan {
                    plan: v.plan,
                    key_id: v.key_id,
                    sha256: v.sha256,
                }));
                s.refusal = None;
                s.refused_version = None;
                self.changed.send_replace(a.version);
                OfferOutcome::Accepted(a.version)
            }
            Err(why) => {
                let offered = transmissor_plan::inspect_plan(plan_envelope)
                    .map(|(p, _)| p.version)
                    .ok();
                tracing::error!(offered = ?offered, reason = %why, running = ?s.running.as_ref().map(|r| r.plan.version), "plan refused; the running plan goes on");
                s.refusal = Some(match offered {
                    Some(v) => format!("plan {v} refused: {why}"),
                    None => format!("plan refused: {why}"),
                });
                s.refused_version = Some(advertised);
                OfferOutcome::Refused(why)
            }
        };
        if let Some(r) = key_refusal {
            s.refusal = Some(match s.refusal.take() {
                Some(plan) => format!("{r}; {plan}"),
                None => r,
            });
        }
        Ok(outcome)
    }

    /// After the keys moved: stops the running plan when its key is no
    /// longer trusted or it is below the new floor, as a restart would.
    fn withdraw_if_untrusted(&self, s: &mut State) {
        let Some(running) = &s.running else {
            return;
        };
        let why = if s.chain.keys.get(&running.key_id).is_none() {
            format!(
                "the plan-key list {} no longer trusts key {}",
                s.chain.serial, running.key_id
            )
        } else if let Err(e) = s.chain.floor.check(&running.plan) {
            e.to_string()
        } else {
            return;
        };
        let version = running.plan.version;
        tracing::error!(version, reason = %why, "running plan withdrawn; no plan runs until a trusted one is accepted");
        s.running = None;
        s.refusal = Some(format!("plan {version} withdrawn: {why}"));
        self.changed.send_replace(0);
    }

    /// The pinned keys (for `check`).
    pub fn pinned(&self) -> &TrustedKeys {
        &self.pinned
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
