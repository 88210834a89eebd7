//! Key rotation: from the keys pinned at install, trust moves only along
//! key lists each signed by a key trusted before it, with serials that only
//! go up. Agent and collector follow the same chain the same way.

use crate::keys::TrustedKeys;
use crate::open::{inspect_key_list, open_key_list};

/// The keys trusted after following a chain of key lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChain {
    /// The keys plans are verified with now.
    pub keys: TrustedKeys,
    /// The serial of the last accepted list (0: the pinned keys).
    pub serial: u64,
    /// Lists accepted by the last follow, with their envelopes (to store).
    pub accepted_lists: Vec<(u64, Vec<u8>)>,
    /// Lists refused by the last follow: (serial, or 0 when unreadable; reason).
    pub refused: Vec<(u64, String)>,
}

impl KeyChain {
    /// Starts at `keys` (pinned, or stored with `serial`) and follows `lists`.
    pub fn follow<'a>(
        keys: TrustedKeys,
        serial: u64,
        lists: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        let start = Self {
            keys,
            serial,
            accepted_lists: Vec::new(),
            refused: Vec::new(),
        };
        start.follow_from_self(lists)
    }

    /// Continues from `self` (its accepted and refused lists start empty).
    pub fn follow_from<'a>(&self, lists: impl IntoIterator<Item = &'a [u8]>) -> Self {
        Self {
            keys: self.keys.clone(),
            serial: self.serial,
            accepted_lists: Vec::new(),
            refused: Vec::new(),
        }
        .follow_from_self(lists)
    }

    fn follow_from_self<'a>(mut self, lists: impl IntoIterator<Item = &'a [u8]>) -> Self {
        for envelope in lists {
            match open_key_list(envelope, &self.keys) {
                Ok(v) if v.key_list.serial > self.serial => {
                    self.keys = v.key_list.trusted();
                    self.serial = v.key_list.serial;
                    self.accepted_lists
                        .push((v.key_list.serial, envelope.to_vec()));
                }
                // Already followed (or older): nothing to do.
                Ok(_) => {}
                Err(e) => {
                    let serial = inspect_key_list(envelope).map_or(0, |(l, _)| l.serial);
                    // A list at or below the current serial is history, not an attack.
                    if serial == 0 || serial > self.serial {
                        self.refused.push((serial, e.to_string()));
                    }
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Kind, sign};
    use crate::keys::PublicKey;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn list(serial: u64, keys: &[&SigningKey], signer: &SigningKey) -> Vec<u8> {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("\"{}\"", PublicKey::from(*k)))
            .collect();
        let doc = format!(
            "format = 1\nserial = {serial}\nissued_at = 2026-11-30T12:00:00Z\nkeys = [{}]\n",
            keys.join(", ")
        );
        sign(Kind::KeyList, doc.as_bytes(), signer)
    }

    #[test]
    fn trust_moves_only_along_signed_lists() {
        let (a, b, c, evil) = (key(1), key(2), key(3), key(9));
        let pinned: TrustedKeys = [PublicKey::from(&a)].into_iter().collect();
        let l1 = list(1, &[&b], &a);
        let l2 = list(2, &[&c], &b);
        let forged = list(3, &[&evil], &evil);
        let chain = KeyChain::follow(pinned.clone(), 0, [&l1[..], &l2[..], &forged[..]]);
        assert_eq!(chain.serial, 2);
        assert!(chain.keys.contains(&PublicKey::from(&c)));
        assert!(
            !chain.keys.contains(&PublicKey::from(&a)),
            "a key left out is dropped"
        );
        assert_eq!(chain.refused.len(), 1);
        assert_eq!(chain.refused[0].0, 3);
        // A list signed by a key no longer trusted (a, after rotation) is refused.
        let stale = list(3, &[&evil], &a);
        let next = chain.follow_from([&stale[..]]);
        assert_eq!(next.serial, 2);
        assert_eq!(next.refused.len(), 1);
        // Replaying an old list changes nothing and is not a refusal.
        let again = chain.follow_from([&l1[..]]);
        assert_eq!((again.serial, again.refused.len()), (2, 0));
    }
}
