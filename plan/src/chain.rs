//! Key rotation: from the keys pinned at install, trust moves only along
//! key lists signed by the **root key**, with serials that only go up (by at
//! most [`MAX_STEP`] at a time). Agent and collector follow the same chain
//! the same way.
//!
//! Two kinds of key, kept apart:
//!
//! - the **root key** (pinned at install, kept offline) signs key lists and
//!   nothing else: a key list signed by any other key, a plan key included,
//!   is refused, and a list may not name the root as a plan key;
//! - the **plan keys** (named by the pinned config, then by the newest
//!   accepted list) sign plans and nothing else ([`crate::Kind`] separates
//!   the signatures).
//!
//! So a stolen plan key can sign plans until a root-signed list leaves it
//! out, and cannot sign itself back in. Root rotation: a list may name the
//! next root (`root = …`); it is accepted only under the current root, and
//! later lists verify under the new one. Without a pinned root no list is
//! accepted at all (the pinned plan keys stay).
//!
//! Each accepted list may raise the **floor** ([`PlanFloor`]): the lowest
//! plan version and the earliest `issued_at` a plan may have. Floors only
//! go up.

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::increments::{MAX_STEP, jumps_too_far};
use crate::keys::{PublicKey, TrustedKeys};
use crate::open::{inspect_key_list, open_key_list};
use crate::plan::{Plan, rfc3339};

/// The oldest plan agents accept, as the accepted key lists set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanFloor {
    /// Plans below this version are refused (0: no floor).
    pub min_version: u64,
    /// Plans issued before this time are refused.
    pub min_issued_at: Option<DateTime<Utc>>,
    /// The key-list serial that set the floor (for messages).
    pub serial: u64,
}

/// Why a plan is below the floor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FloorError {
    #[error("version {version} is below version {min}, the lowest plan-key list {serial} allows")]
    Version { version: u64, min: u64, serial: u64 },
    #[error(
        "version {version} was issued at {issued_at}, before {min}, the earliest plan-key list {serial} allows"
    )]
    IssuedBefore {
        version: u64,
        issued_at: String,
        min: String,
        serial: u64,
    },
}

impl PlanFloor {
    /// Refuses a plan older than the floor.
    pub fn check(&self, plan: &Plan) -> Result<(), FloorError> {
        if plan.version < self.min_version {
            return Err(FloorError::Version {
                version: plan.version,
                min: self.min_version,
                serial: self.serial,
            });
        }
        if let Some(min) = self.min_issued_at
            && plan.issued_at < min
        {
            return Err(FloorError::IssuedBefore {
                version: plan.version,
                issued_at: rfc3339(plan.issued_at),
                min: rfc3339(min),
                serial: self.serial,
            });
        }
        Ok(())
    }
}

/// The keys trusted after following a chain of key lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChain {
    /// The key key lists are verified with (`None`: no list is accepted).
    pub root: Option<PublicKey>,
    /// The keys plans are verified with now.
    pub keys: TrustedKeys,
    /// The serial of the last accepted list (0: the pinned keys).
    pub serial: u64,
    /// The oldest plan accepted now.
    pub floor: PlanFloor,
    /// Lists accepted by the last follow, with their envelopes (to store).
    pub accepted_lists: Vec<(u64, Vec<u8>)>,
    /// Lists refused by the last follow: (serial, or 0 when unreadable; reason).
    pub refused: Vec<(u64, String)>,
}

impl KeyChain {
    /// The pinned state: the root key and the plan keys of the config.
    pub fn pinned(root: Option<PublicKey>, keys: TrustedKeys) -> Self {
        Self {
            root,
            keys,
            serial: 0,
            floor: PlanFloor::default(),
            accepted_lists: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Starts at the pinned keys and follows `lists`.
    pub fn follow<'a>(
        root: Option<PublicKey>,
        keys: TrustedKeys,
        lists: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        Self::pinned(root, keys).follow_from(lists)
    }

    /// Continues from `self` (its accepted and refused lists start empty).
    pub fn follow_from<'a>(&self, lists: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut next = Self {
            accepted_lists: Vec::new(),
            refused: Vec::new(),
            ..self.clone()
        };
        for envelope in lists {
            let serial = inspect_key_list(envelope).map_or(0, |(l, _)| l.serial);
            // A list at or below the current serial is history, not an attack.
            if serial != 0 && serial <= next.serial {
                continue;
            }
            if let Err(why) = next.accept(envelope) {
                next.refused.push((serial, why));
            }
        }
        next
    }

    fn accept(&mut self, envelope: &[u8]) -> Result<(), String> {
        let Some(root) = self.root else {
            return Err("no root key is pinned (plan.root_key), so no key list is accepted; the pinned plan keys stay".into());
        };
        let roots: TrustedKeys = [root].into_iter().collect();
        let v = open_key_list(envelope, &roots).map_err(|e| {
            format!(
                "{e} (key lists are accepted only when signed by the root key {})",
                root.key_id()
            )
        })?;
        let list = v.key_list;
        if jumps_too_far(self.serial, list.serial) {
            return Err(format!(
                "serial {} jumps more than {MAX_STEP} above serial {}",
                list.serial, self.serial
            ));
        }
        if list.keys.contains(&root) {
            return Err(format!(
                "it names the root key {} as a plan key: the root key signs key lists only",
                root.key_id()
            ));
        }
        self.keys = list.trusted();
        self.serial = list.serial;
        if let Some(next_root) = list.root {
            self.root = Some(next_root);
        }
        let floor = &mut self.floor;
        if list.min_plan_version > floor.min_version {
            floor.min_version = list.min_plan_version;
            floor.serial = list.serial;
        }
        if let Some(t) = list.min_plan_issued_at
            && floor.min_issued_at.is_none_or(|m| t > m)
        {
            floor.min_issued_at = Some(t);
            floor.serial = list.serial;
        }
        self.accepted_lists.push((list.serial, envelope.to_vec()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Kind, sign};
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn pk(k: &SigningKey) -> PublicKey {
        PublicKey::from(k)
    }

    fn list_with(serial: u64, keys: &[&SigningKey], extra: &str, signer: &SigningKey) -> Vec<u8> {
        let keys: Vec<String> = keys.iter().map(|k| format!("\"{}\"", pk(k))).collect();
        let doc = format!(
            "format = 1\nserial = {serial}\nissued_at = 2026-11-30T12:00:00Z\nkeys = [{}]\n{extra}",
            keys.join(", ")
        );
        sign(Kind::KeyList, doc.as_bytes(), signer)
    }

    fn list(serial: u64, keys: &[&SigningKey], signer: &SigningKey) -> Vec<u8> {
        list_with(serial, keys, "", signer)
    }

    fn plan(version: u64, issued_at: &str) -> Plan {
        Plan::parse(
            format!(
                "format = 1\nversion = {version}\nissued_at = {issued_at}\n\
                 expires_at = 2099-01-01T00:00:00Z\nscope = \"all\"\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn trust_moves_only_along_root_signed_lists() {
        let (root, a, b, c, evil) = (key(100), key(1), key(2), key(3), key(9));
        let pinned: TrustedKeys = [pk(&a)].into_iter().collect();
        let l1 = list(1, &[&b], &root);
        let l2 = list(2, &[&c], &root);
        let forged = list(3, &[&evil], &evil);
        let chain = KeyChain::follow(Some(pk(&root)), pinned, [&l1[..], &l2[..], &forged[..]]);
        assert_eq!(chain.serial, 2);
        assert!(chain.keys.contains(&pk(&c)));
        assert!(!chain.keys.contains(&pk(&a)), "a key left out is dropped");
        assert_eq!(chain.refused.len(), 1);
        assert_eq!(chain.refused[0].0, 3);
        // Replaying an old list changes nothing and is not a refusal.
        let again = chain.follow_from([&l1[..]]);
        assert_eq!((again.serial, again.refused.len()), (2, 0));
    }

    #[test]
    fn a_plan_key_cannot_sign_a_key_list() {
        let (root, a, evil) = (key(100), key(1), key(9));
        let pinned: TrustedKeys = [pk(&a)].into_iter().collect();
        // The plan key a (stolen) signs a list that trusts the thief.
        let takeover = list(1, &[&evil], &a);
        let chain = KeyChain::follow(Some(pk(&root)), pinned.clone(), [&takeover[..]]);
        assert_eq!(chain.serial, 0);
        assert!(chain.keys.contains(&pk(&a)) && !chain.keys.contains(&pk(&evil)));
        assert_eq!(chain.refused.len(), 1);
        assert!(
            chain.refused[0].1.contains("root key"),
            "{:?}",
            chain.refused
        );
        // Without a pinned root, no list at all.
        let by_root = list(1, &[&evil], &root);
        let chain = KeyChain::follow(None, pinned, [&by_root[..]]);
        assert_eq!((chain.serial, chain.refused.len()), (0, 1));
    }

    #[test]
    fn the_root_signs_lists_only_and_rotates_itself() {
        let (root, root2, a, b) = (key(100), key(101), key(1), key(2));
        let pinned: TrustedKeys = [pk(&a)].into_iter().collect();
        // A list naming the root as a plan key is refused.
        let mixed = list(1, &[&a, &root], &root);
        let chain = KeyChain::follow(Some(pk(&root)), pinned.clone(), [&mixed[..]]);
        assert_eq!((chain.serial, chain.refused.len()), (0, 1));
        // Rotating the root: list 1 (old root) names root2; list 2 must be root2's.
        let l1 = list_with(1, &[&a], &format!("root = \"{}\"\n", pk(&root2)), &root);
        let by_old = list(2, &[&b], &root);
        let by_new = list(3, &[&b], &root2);
        let chain = KeyChain::follow(Some(pk(&root)), pinned, [&l1[..], &by_old[..], &by_new[..]]);
        assert_eq!(chain.root, Some(pk(&root2)));
        assert_eq!(chain.serial, 3);
        assert!(chain.keys.contains(&pk(&b)));
        assert_eq!(chain.refused.len(), 1);
        assert_eq!(chain.refused[0].0, 2);
    }

    #[test]
    fn serials_cannot_jump_to_the_maximum() {
        let (root, a) = (key(100), key(1));
        let pinned: TrustedKeys = [pk(&a)].into_iter().collect();
        let far = list(MAX_STEP + 1, &[&a], &root);
        let chain = KeyChain::follow(Some(pk(&root)), pinned, [&far[..]]);
        assert_eq!(chain.serial, 0);
        assert!(chain.refused[0].1.contains("jumps"), "{:?}", chain.refused);
        let near = list(MAX_STEP, &[&a], &root);
        assert_eq!(chain.follow_from([&near[..]]).serial, MAX_STEP);
    }

    #[test]
    fn floors_only_go_up_and_refuse_older_plans() {
        let (root, a) = (key(100), key(1));
        let pinned: TrustedKeys = [pk(&a)].into_iter().collect();
        let l1 = list_with(
            1,
            &[&a],
            "min_plan_version = 40\nmin_plan_issued_at = 2026-11-01T00:00:00Z\n",
            &root,
        );
        let l2 = list_with(2, &[&a], "min_plan_version = 10\n", &root);
        let chain = KeyChain::follow(Some(pk(&root)), pinned, [&l1[..], &l2[..]]);
        assert_eq!(chain.serial, 2);
        assert_eq!(chain.floor.min_version, 40);
        let floor = chain.floor;
        assert!(floor.check(&plan(40, "2026-11-01T00:00:00Z")).is_ok());
        assert!(matches!(
            floor.check(&plan(39, "2026-12-01T00:00:00Z")),
            Err(FloorError::Version { min: 40, .. })
        ));
        assert!(matches!(
            floor.check(&plan(50, "2026-10-31T23:59:59Z")),
            Err(FloorError::IssuedBefore { .. })
        ));
        assert!(
            PlanFloor::default()
                .check(&plan(1, "2020-01-01T00:00:00Z"))
                .is_ok()
        );
    }
}
