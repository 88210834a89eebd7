//! Whether an offered plan may replace the running one. Every check the
//! issue lists, each with a reason the agent logs and reports to the
//! collector.
//!
//! `now` is the agent's own clock, never the collector's: a collector that
//! lies about the time cannot make an expired plan current again.

use chrono::{DateTime, Utc};

use transmissor_plan::increments::{MAX_STEP, jumps_too_far};
use transmissor_plan::{EnvelopeError, FloorError, KeyChain, OpenError, VerifiedPlan};

/// Why an offered plan was refused. The running plan goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not signed: the file is not a signed plan envelope")]
    Unsigned,
    #[error("signed by an unknown key {key_id}")]
    UnknownKey { key_id: String },
    #[error("signature does not verify with key {key_id}: the plan was altered or forged")]
    BadSignature { key_id: String },
    #[error("not a plan: {0}")]
    Malformed(String),
    #[error("the signed plan is not valid: {0}")]
    Invalid(String),
    #[error("version {offered} is older than version {accepted}, already accepted")]
    Older { offered: u64, accepted: u64 },
    #[error("version {version} was already accepted with other content")]
    SameVersionOtherContent { version: u64 },
    #[error("version {version} expired at {expired_at}")]
    Expired { version: u64, expired_at: String },
    #[error("version {version} is not for municipality {ibge}")]
    NotForMunicipality { version: u64, ibge: String },
    #[error("{0}")]
    BelowFloor(FloorError),
    #[error("version {offered} jumps more than {MAX_STEP} above version {previous}")]
    TooFarAhead { offered: u64, previous: u64 },
}

impl From<OpenError> for Refusal {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Envelope(EnvelopeError::NotSigned) => Self::Unsigned,
            OpenError::Envelope(EnvelopeError::UnknownKey { key_id }) => {
                Self::UnknownKey { key_id }
            }
            OpenError::Envelope(EnvelopeError::BadSignature { key_id }) => {
                Self::BadSignature { key_id }
            }
            OpenError::Envelope(other) => Self::Malformed(other.to_string()),
            OpenError::Plan(e) => Self::Invalid(e.to_string()),
            OpenError::KeyList(e) => Self::Malformed(e.to_string()),
        }
    }
}

/// The highest version accepted so far and the hash of its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub version: u64,
    pub sha256: [u8; 32],
}

/// What an offered envelope is.
#[derive(Debug)]
pub enum Verdict {
    /// A new plan to run.
    New(VerifiedPlan),
    /// The plan already accepted, byte for byte.
    Same,
}

/// Verifies `envelope` for municipality `ibge`, against the plan keys and
/// the floor of `chain`, the highest version accepted so far and the
/// agent's own time `now`.
pub fn judge(
    envelope: &[u8],
    chain: &KeyChain,
    ibge: &str,
    accepted: Option<Accepted>,
    now: DateTime<Utc>,
) -> Result<Verdict, Refusal> {
    let verified = transmissor_plan::open_plan(envelope, &chain.keys)?;
    let plan = &verified.plan;
    chain.floor.check(plan).map_err(Refusal::BelowFloor)?;
    if let Some(a) = accepted {
        if plan.version < a.version {
            return Err(Refusal::Older {
                offered: plan.version,
                accepted: a.version,
            });
        }
        if plan.version == a.version {
            return if verified.sha256 == a.sha256 {
                Ok(Verdict::Same)
            } else {
                Err(Refusal::SameVersionOtherContent {
                    version: plan.version,
                })
            };
        }
    }
    // From the accepted version, or for a fresh agent from the floor.
    let previous = accepted
        .map_or(0, |a| a.version)
        .max(chain.floor.min_version);
    if jumps_too_far(previous, plan.version) {
        return Err(Refusal::TooFarAhead {
            offered: plan.version,
            previous,
        });
    }
    if !plan.applies_to(ibge) {
        return Err(Refusal::NotForMunicipality {
            version: plan.version,
            ibge: ibge.to_string(),
        });
    }
    if plan.is_expired(now) {
        return Err(Refusal::Expired {
            version: plan.version,
            expired_at: plan.expires_at.to_rfc3339(),
        });
    }
    Ok(Verdict::New(verified))
}
