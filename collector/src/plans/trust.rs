//! What the collector verifies plans with: the central team's plan keys
//! and root key from `[plans]`, moved along the published key lists the
//! root key signed — the same chain every agent follows
//! ([`transmissor_plan::KeyChain`]). The collector stores and authorizes
//! only what verifies under it; agents still verify everything themselves.

use transmissor_plan::increments::{MAX_STEP, jumps_too_far};
use transmissor_plan::{KeyChain, Plan, PublicKey, TrustedKeys, VerifiedPlan};

/// The pinned keys of `[plans]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTrust {
    /// `plans.keys`: never empty.
    pub keys: TrustedKeys,
    /// `plans.root_key`: without it, no key list is published or followed.
    pub root: Option<PublicKey>,
}

impl PlanTrust {
    /// The chain from the pinned keys along `lists` (oldest first).
    pub fn chain<'a>(&self, lists: impl IntoIterator<Item = &'a [u8]>) -> KeyChain {
        KeyChain::follow(self.root, self.keys.clone(), lists)
    }
}

impl crate::config::PlansConfig {
    /// `[plans] keys` is required where plans are served; the root key
    /// is not a plan key.
    pub(crate) fn validate(&self) -> Result<(), crate::config::ConfigError> {
        if self.keys.is_empty() && !self.allow_local_jobs {
            return Err(crate::config::ConfigError::Invalid(
                "plans.keys is required: list the central team's plan public keys (`transmissor-plan keygen` prints them); without them this collector would store and serve plans it cannot verify".into(),
            ));
        }
        if let Some(root) = &self.root_key
            && self.keys.contains(root)
        {
            return Err(crate::config::ConfigError::Invalid(format!(
                "plans.root_key {} is also in plans.keys: the root key must be kept apart from the keys that sign plans",
                root.key_id()
            )));
        }
        Ok(())
    }
}

/// Why a signed plan is not what the chain allows after `newest`.
pub fn plan_refusal(chain: &KeyChain, plan: &Plan, newest: u64) -> Option<String> {
    if let Err(e) = chain.floor.check(plan) {
        return Some(e.to_string());
    }
    let previous = newest.max(chain.floor.min_version);
    jumps_too_far(previous, plan.version).then(|| {
        format!(
            "plan version {} jumps more than {MAX_STEP} above version {previous}: versions go up by small steps (agents refuse the jump)",
            plan.version
        )
    })
}

/// Opens a stored or offered envelope under `chain`: the plan when its
/// signature verifies with the current plan keys and it is not below the
/// floor.
pub fn verify(chain: &KeyChain, envelope: &[u8]) -> Result<VerifiedPlan, String> {
    let v = transmissor_plan::open_plan(envelope, &chain.keys).map_err(|e| e.to_string())?;
    chain.floor.check(&v.plan).map_err(|e| e.to_string())?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use crate::config::CollectorConfig;
    use transmissor_plan::{PublicKey, SigningKey};

    fn pk(n: u8) -> String {
        PublicKey::from(&SigningKey::from_bytes(&[n; 32])).to_string()
    }

    fn config(plans: &str) -> String {
        format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:7443\"\n[tls]\nca_file = \"ca.pem\"\n\
             cert_file = \"server.pem\"\nkey_file = \"server.key\"\n[database]\n\
             url = \"postgres://collector@127.0.0.1:5432/analytic\"\n[plans]\n{plans}"
        )
    }

    #[test]
    fn plan_keys_are_required_to_serve_plans() {
        let e = CollectorConfig::parse(&config("")).unwrap_err().to_string();
        assert!(e.contains("plans.keys is required"), "{e}");
        let c = CollectorConfig::parse(&config(&format!("keys = [\"{}\"]\n", pk(1)))).unwrap();
        let trust = c.plans.trusted().unwrap();
        assert_eq!((trust.keys.len(), trust.root), (1, None));
        // A development collector (local jobs) may go without; it then
        // publishes and authorizes no plan.
        let c = CollectorConfig::parse(&config("allow_local_jobs = true\n")).unwrap();
        assert!(c.plans.trusted().is_none());
    }

    #[test]
    fn the_root_key_is_not_a_plan_key() {
        let text = config(&format!(
            "keys = [\"{}\"]\nroot_key = \"{}\"\n",
            pk(1),
            pk(1)
        ));
        let e = CollectorConfig::parse(&text).unwrap_err().to_string();
        assert!(e.contains("plans.root_key"), "{e}");
        let text = config(&format!(
            "keys = [\"{}\"]\nroot_key = \"{}\"\n",
            pk(1),
            pk(2)
        ));
        let c = CollectorConfig::parse(&text).unwrap();
        assert_eq!(
            c.plans.trusted().unwrap().root,
            Some(pk(2).parse().unwrap())
        );
    }
}
