//! Changes of state between two derivations, for the history and alerts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::derive::Health;
use super::state::{Axis, Connectivity, DataState, HealthState, Overall};

/// Which axis changed, from what (`None`: first derivation) to what.
/// Serialized flat: `{"axis": "data", "from": "on_time", "to": "late"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "axis", rename_all = "snake_case")]
pub enum Change {
    Connectivity {
        from: Option<Connectivity>,
        to: Connectivity,
    },
    Data {
        from: Option<DataState>,
        to: DataState,
    },
    Health {
        from: Option<HealthState>,
        to: HealthState,
    },
    Overall {
        from: Option<Overall>,
        to: Overall,
    },
}

impl Change {
    pub fn axis(&self) -> Axis {
        match self {
            Self::Connectivity { .. } => Axis::Connectivity,
            Self::Data { .. } => Axis::Data,
            Self::Health { .. } => Axis::Health,
            Self::Overall { .. } => Axis::Overall,
        }
    }

    /// The stable name of the previous state.
    pub fn before(&self) -> Option<&'static str> {
        match self {
            Self::Connectivity { from, .. } => from.map(Connectivity::as_str),
            Self::Data { from, .. } => from.map(DataState::as_str),
            Self::Health { from, .. } => from.map(HealthState::as_str),
            Self::Overall { from, .. } => from.map(Overall::as_str),
        }
    }

    /// The stable name of the new state.
    pub fn after(&self) -> &'static str {
        match self {
            Self::Connectivity { to, .. } => to.as_str(),
            Self::Data { to, .. } => to.as_str(),
            Self::Health { to, .. } => to.as_str(),
            Self::Overall { to, .. } => to.as_str(),
        }
    }

    fn after_pt_br(self) -> &'static str {
        match self {
            Self::Connectivity { to, .. } => to.pt_br(),
            Self::Data { to, .. } => to.pt_br(),
            Self::Health { to, .. } => to.pt_br(),
            Self::Overall { to, .. } => to.pt_br(),
        }
    }
}

/// One change of state, stored with its time and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    #[serde(flatten)]
    pub change: Change,
    pub at: DateTime<Utc>,
    /// The new state's reasons on that axis, in English, `; `-separated
    /// (`back to ok` when it has none).
    pub reason: String,
    /// The same in Portuguese.
    pub reason_pt_br: String,
}

/// One transition per axis (connectivity, data, health, overall, in that
/// order) whose state differs between `prev` and `next`; with no `prev`,
/// one per axis recording the first state. A change of reasons alone is
/// not a transition.
pub fn transitions(prev: Option<&Health>, next: &Health, at: DateTime<Utc>) -> Vec<Transition> {
    let changes = [
        Change::Connectivity {
            from: prev.map(|p| p.connectivity),
            to: next.connectivity,
        },
        Change::Data {
            from: prev.map(|p| p.data),
            to: next.data,
        },
        Change::Health {
            from: prev.map(|p| p.health),
            to: next.health,
        },
        Change::Overall {
            from: prev.map(|p| p.overall),
            to: next.overall,
        },
    ];
    changes
        .into_iter()
        .filter(|c| c.before() != Some(c.after()))
        .map(|change| {
            let (reason, reason_pt_br) = texts(next, change);
            Transition {
                change,
                at,
                reason,
                reason_pt_br,
            }
        })
        .collect()
}

fn texts(next: &Health, change: Change) -> (String, String) {
    let reasons: Vec<_> = next.reasons_of(change.axis()).collect();
    if reasons.is_empty() {
        let (en, pt) = if change.before().is_some() {
            ("back to", "voltou a")
        } else {
            ("first seen:", "primeira avaliação:")
        };
        return (
            format!("{en} {}", change.after()),
            format!("{pt} {}", change.after_pt_br()),
        );
    }
    let en: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
    let pt: Vec<String> = reasons.iter().map(|r| r.pt_br()).collect();
    (en.join("; "), pt.join("; "))
}
