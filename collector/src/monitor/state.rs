//! The states of each axis and the overall scale. Their names are stable:
//! the API, the dashboard and the alerts use them (`snake_case`).
//!
//! Every enum is ordered from best to worst, so the worst of several is
//! their `max`. The overall scale:
//!
//! | overall    | from         | why here                                                  |
//! |------------|--------------|-----------------------------------------------------------|
//! | `ok`       | all          | nothing to do                                             |
//! | `degraded` | health       | data arrives, something needs attention soon              |
//! | `late`     | data         | a run is overdue, may still come today                    |
//! | `failing`  | health       | a run ended in error after the last commit: act now       |
//! | `missing`  | data         | a business day's data is absent for a day or more         |
//! | `offline`  | connectivity | the agent is unreachable: nothing above can be fixed remotely |
//! | `inactive` | connectivity | unreachable for weeks: an abandoned installation          |
//! | `never`    | connectivity | enrolled, never reported: an installation to finish       |
//!
//! Connectivity comes last because it explains the rest (an offline
//! agent's data is late as a consequence), and `inactive` and `never` are
//! shown apart from `failing` and `offline` since they call for a different
//! kind of action (a visit, not a fix).

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal, $pt:literal;)+ }) => {
        impl $ty {
            /// The stable name (as serialized).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// The Portuguese label shown on the dashboard.
            pub fn pt_br(self) -> &'static str {
                match self {
                    $(Self::$variant => $pt,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Is the agent talking to the collector?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    Online,
    /// No heartbeat for `offline_after_intervals` heartbeat intervals.
    Offline,
    /// No heartbeat for `inactive_after`.
    Inactive,
    /// Enrolled, no heartbeat yet.
    Never,
}

named!(Connectivity {
    Online => "online", "online";
    Offline => "offline", "sem contato";
    Inactive => "inactive", "inativo";
    Never => "never", "nunca conectado";
});

/// Has every expected run been committed?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataState {
    OnTime,
    /// No commit since the latest expected slot, past `late_grace`.
    Late,
    /// No commit since an expected slot, past `missing_after`.
    Missing,
}

named!(DataState {
    OnTime => "on_time", "em dia";
    Late => "late", "atrasado";
    Missing => "missing", "ausente";
});

/// Does what arrives look right?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Ok,
    Degraded,
    /// A job's last attempt failed after its last commit.
    Failing,
}

named!(HealthState {
    Ok => "ok", "ok";
    Degraded => "degraded", "degradado";
    Failing => "failing", "com falha";
});

/// The worst of the three axes, on one scale (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    Ok,
    Degraded,
    Late,
    Failing,
    Missing,
    Offline,
    Inactive,
    Never,
}

named!(Overall {
    Ok => "ok", "ok";
    Degraded => "degraded", "degradado";
    Late => "late", "atrasado";
    Failing => "failing", "com falha";
    Missing => "missing", "ausente";
    Offline => "offline", "sem contato";
    Inactive => "inactive", "inativo";
    Never => "never", "nunca conectado";
});

impl From<Connectivity> for Overall {
    fn from(c: Connectivity) -> Self {
        match c {
            Connectivity::Online => Self::Ok,
            Connectivity::Offline => Self::Offline,
            Connectivity::Inactive => Self::Inactive,
            Connectivity::Never => Self::Never,
        }
    }
}

impl From<DataState> for Overall {
    fn from(d: DataState) -> Self {
        match d {
            DataState::OnTime => Self::Ok,
            DataState::Late => Self::Late,
            DataState::Missing => Self::Missing,
        }
    }
}

impl From<HealthState> for Overall {
    fn from(h: HealthState) -> Self {
        match h {
            HealthState::Ok => Self::Ok,
            HealthState::Degraded => Self::Degraded,
            HealthState::Failing => Self::Failing,
        }
    }
}

impl Overall {
    /// Every state, best first.
    pub const ALL: [Self; 8] = [
        Self::Ok,
        Self::Degraded,
        Self::Late,
        Self::Failing,
        Self::Missing,
        Self::Offline,
        Self::Inactive,
        Self::Never,
    ];

    /// The worst of the three axes.
    pub fn worst(c: Connectivity, d: DataState, h: HealthState) -> Self {
        Self::from(c).max(d.into()).max(h.into())
    }
}

/// The axes a transition is recorded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Connectivity,
    Data,
    Health,
    Overall,
}

named!(Axis {
    Connectivity => "connectivity", "conectividade";
    Data => "data", "dados";
    Health => "health", "saúde";
    Overall => "overall", "geral";
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_is_the_worst() {
        use Connectivity as C;
        use DataState as D;
        use HealthState as H;
        for (c, d, h, want) in [
            (C::Online, D::OnTime, H::Ok, Overall::Ok),
            (C::Online, D::OnTime, H::Degraded, Overall::Degraded),
            (C::Online, D::Late, H::Degraded, Overall::Late),
            (C::Online, D::Late, H::Failing, Overall::Failing),
            (C::Online, D::Missing, H::Failing, Overall::Missing),
            (C::Offline, D::Missing, H::Failing, Overall::Offline),
            (C::Inactive, D::Missing, H::Ok, Overall::Inactive),
            (C::Never, D::Missing, H::Failing, Overall::Never),
            (C::Offline, D::OnTime, H::Ok, Overall::Offline),
        ] {
            assert_eq!(Overall::worst(c, d, h), want, "{c} {d} {h}");
        }
    }

    #[test]
    fn names_are_stable() {
        let json = serde_json::to_string(&[DataState::OnTime, DataState::Missing]).unwrap();
        assert_eq!(json, r#"["on_time","missing"]"#);
        assert_eq!(
            serde_json::to_string(&Overall::Never).unwrap(),
            r#""never""#
        );
        for o in [
            Overall::Ok,
            Overall::Degraded,
            Overall::Late,
            Overall::Failing,
            Overall::Missing,
            Overall::Offline,
            Overall::Inactive,
            Overall::Never,
        ] {
            let back: Overall = serde_json::from_str(&format!("\"{o}\"")).unwrap();
            assert_eq!(back, o);
        }
        assert_eq!(Connectivity::Offline.pt_br(), "sem contato");
    }
}
