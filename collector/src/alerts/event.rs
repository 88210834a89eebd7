//! What the evaluator hands over: one overall-state change of a
//! municipality.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::monitor::{Change, Overall, Transition};

/// One overall-state change of a municipality (or, for
/// [`Alerts::restore`](super::Alerts::restore), its current state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEvent {
    /// The IBGE code, 7 digits.
    pub ibge: String,
    /// The municipality's name.
    pub name: String,
    /// Its state, two letters (`SP`).
    pub uf: String,
    /// The previous state; `None` on the first evaluation, which alerts
    /// when it finds a bad state and stays silent when it finds `ok`.
    pub from: Option<Overall>,
    pub to: Overall,
    /// When the change was derived.
    pub at: DateTime<Utc>,
    /// Why, in English (the transition's reasons).
    pub reason: String,
    /// Why, in Portuguese.
    pub reason_pt_br: String,
}

impl AlertEvent {
    /// The event for an overall transition of `ibge`; `None` for the other
    /// axes (alerts follow the overall state only).
    pub fn from_transition(
        ibge: impl Into<String>,
        name: impl Into<String>,
        uf: impl Into<String>,
        t: &Transition,
    ) -> Option<Self> {
        let Change::Overall { from, to } = t.change else {
            return None;
        };
        Some(Self {
            ibge: ibge.into(),
            name: name.into(),
            uf: uf.into(),
            from,
            to,
            at: t.at,
            reason: t.reason.clone(),
            reason_pt_br: t.reason_pt_br.clone(),
        })
    }

    /// The municipality's dashboard page, when the IBGE code is well formed.
    pub(crate) fn url(&self, dashboard: Option<&str>) -> Option<String> {
        let base = dashboard?;
        let plain = !self.ibge.is_empty() && self.ibge.bytes().all(|b| b.is_ascii_digit());
        plain.then(|| format!("{base}m/{}", self.ibge))
    }
}
