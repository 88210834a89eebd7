//! Opening signed documents: envelope, signature, kind, then content.
//!
//! Agents use [`open_plan`] and [`open_key_list`], which verify against the
//! keys the agent trusts. The collector stores and serves signed plans but
//! is not a trust anchor: it may use [`inspect_plan`] to show what a plan
//! says, which verifies nothing and must never decide what runs.

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::doc::DocError;
use crate::envelope::{Envelope, EnvelopeError, Kind};
use crate::key_list::KeyList;
use crate::keys::TrustedKeys;
use crate::plan::Plan;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error(transparent)]
    Envelope(EnvelopeError),
    /// Signed, but the plan inside does not validate (e.g. an older agent
    /// reading a newer format).
    #[error("signed plan is not valid: {0}")]
    Plan(DocError),
    #[error("signed key list is not valid: {0}")]
    KeyList(DocError),
}

impl From<EnvelopeError> for OpenError {
    fn from(e: EnvelopeError) -> Self {
        OpenError::Envelope(e)
    }
}

/// A plan whose signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPlan {
    pub plan: Plan,
    /// The key that signed it.
    pub key_id: String,
    /// SHA-256 of the whole envelope, as received.
    pub sha256: [u8; 32],
}

/// A key list whose signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKeyList {
    pub key_list: KeyList,
    pub key_id: String,
    pub sha256: [u8; 32],
}

/// Parses the envelope, verifies it with `keys`, checks it holds a plan,
/// and parses the plan.
pub fn open_plan(bytes: &[u8], keys: &TrustedKeys) -> Result<VerifiedPlan, OpenError> {
    let env = Envelope::parse(bytes)?;
    let payload = env.verify_as(Kind::Plan, keys)?;
    let plan = Plan::parse(payload).map_err(OpenError::Plan)?;
    Ok(VerifiedPlan {
        plan,
        key_id: env.key_id,
        sha256: Sha256::digest(bytes).into(),
    })
}

/// Like [`open_plan`], for a key list.
pub fn open_key_list(bytes: &[u8], keys: &TrustedKeys) -> Result<VerifiedKeyList, OpenError> {
    let env = Envelope::parse(bytes)?;
    let payload = env.verify_as(Kind::KeyList, keys)?;
    let key_list = KeyList::parse(payload).map_err(OpenError::KeyList)?;
    Ok(VerifiedKeyList {
        key_list,
        key_id: env.key_id,
        sha256: Sha256::digest(bytes).into(),
    })
}

/// The plan inside an envelope and the key id it claims, WITHOUT checking
/// the signature. For the collector, which stores and serves plans but is
/// not what agents trust: what it shows is informational, and agents verify
/// every plan themselves with [`open_plan`].
pub fn inspect_plan(bytes: &[u8]) -> Result<(Plan, String), OpenError> {
    let env = Envelope::parse(bytes)?;
    env.expect_kind(Kind::Plan)?;
    let plan = Plan::parse(env.payload).map_err(OpenError::Plan)?;
    Ok((plan, env.key_id))
}

/// Like [`inspect_plan`], for a key list: nothing is verified.
pub fn inspect_key_list(bytes: &[u8]) -> Result<(KeyList, String), OpenError> {
    let env = Envelope::parse(bytes)?;
    env.expect_kind(Kind::KeyList)?;
    let list = KeyList::parse(env.payload).map_err(OpenError::KeyList)?;
    Ok((list, env.key_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::sign;
    use crate::keys::PublicKey;
    use ed25519_dalek::SigningKey;

    const PLAN: &str = r#"format = 1
version = 7
issued_at = 2026-11-30T12:00:00Z
expires_at = 2027-03-01T00:00:00Z
scope = "all"

[[jobs]]
name = "equipes"
target = "tb_dim_equipe"
mode = "snapshot"
sql = "SELECT * FROM tb_dim_equipe"
schedule = { cron = "0 3 * * 1-5" }
"#;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trusted(k: &SigningKey) -> TrustedKeys {
        [PublicKey::from(k)].into_iter().collect()
    }

    #[test]
    fn opens_a_signed_plan() {
        let k = key(1);
        let signed = sign(Kind::Plan, PLAN.as_bytes(), &k);
        let v = open_plan(&signed, &trusted(&k)).unwrap();
        assert_eq!(v.plan.version, 7);
        assert_eq!(v.key_id, PublicKey::from(&k).key_id());
        assert_eq!(v.sha256, <[u8; 32]>::from(Sha256::digest(&signed)));
        let (plan, key_id) = inspect_plan(&signed).unwrap();
        assert_eq!((plan, key_id), (v.plan, v.key_id));
    }

    #[test]
    fn refusals() {
        let k = key(1);
        assert_eq!(
            open_plan(PLAN.as_bytes(), &trusted(&k)),
            Err(OpenError::Envelope(EnvelopeError::NotSigned))
        );
        let list = format!(
            "format = 1\nserial = 1\nissued_at = 2026-11-30T12:00:00Z\nkeys = [\"{}\"]\n",
            PublicKey::from(&k)
        );
        let signed_list = sign(Kind::KeyList, list.as_bytes(), &k);
        assert!(matches!(
            open_plan(&signed_list, &trusted(&k)),
            Err(OpenError::Envelope(EnvelopeError::WrongKind { .. }))
        ));
        assert!(inspect_plan(&signed_list).is_err());
        assert_eq!(
            open_key_list(&signed_list, &trusted(&k))
                .unwrap()
                .key_list
                .serial,
            1
        );
        // Signed but invalid content.
        let bad = sign(Kind::Plan, b"format = 2\n", &k);
        assert!(matches!(
            open_plan(&bad, &trusted(&k)),
            Err(OpenError::Plan(_))
        ));
    }
}
