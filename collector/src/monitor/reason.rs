//! Why a municipality is in its state: typed reasons, each with an English
//! text ([`Display`](fmt::Display)) and a Portuguese one ([`Reason::pt_br`]).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use transmissor_plan::PecVersion;

use super::anomaly::RowAnomaly;
use super::facts::Outcome;
use super::state::{Axis, Overall};

/// Texts that come from agents (errors, refusals) are cut to this many
/// characters.
pub const MAX_TEXT_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Enrolled, no heartbeat yet.
    Never { enrolled_at: DateTime<Utc> },
    /// No heartbeat since `since`.
    Offline { since: DateTime<Utc> },
    /// No heartbeat since `since`, for longer than `inactive_after`.
    Inactive { since: DateTime<Utc> },
    /// No commit of `job` since the expected `slot`, past the late grace.
    Late {
        job: String,
        slot: DateTime<Utc>,
        last_commit: Option<DateTime<Utc>>,
    },
    /// No commit of `job` since the expected `slot`, past `missing_after`.
    Missing {
        job: String,
        slot: DateTime<Utc>,
        last_commit: Option<DateTime<Utc>>,
    },
    /// The last attempt of `job` ended badly after its last commit.
    Failing {
        job: String,
        outcome: Outcome,
        error: Option<String>,
    },
    /// The last committed row count of `job` is far from its usual.
    RowAnomaly {
        job: String,
        latest: u64,
        usual: u64,
        runs: usize,
    },
    /// The target has columns this municipality lacks.
    SchemaDrift { text: String },
    /// The agent's certificate expires at `at` (soon).
    CertExpiring { at: DateTime<Utc> },
    /// The agent's certificate expired at `at`.
    CertExpired { at: DateTime<Utc> },
    /// The agent refused its plan (`text`: its reason, may be empty).
    PlanRefused { text: String },
    /// The agent's plan has expired.
    PlanExpired,
    /// The agent's PEC is older than `expected`.
    PecBehind {
        #[serde(with = "pec_text")]
        have: PecVersion,
        #[serde(with = "pec_text")]
        expected: PecVersion,
    },
}

impl Reason {
    /// Where this reason puts the municipality on the overall scale.
    pub fn severity(&self) -> Overall {
        match self {
            Self::Never { .. } => Overall::Never,
            Self::Offline { .. } => Overall::Offline,
            Self::Inactive { .. } => Overall::Inactive,
            Self::Late { .. } => Overall::Late,
            Self::Missing { .. } => Overall::Missing,
            Self::Failing { .. } => Overall::Failing,
            Self::RowAnomaly { .. }
            | Self::SchemaDrift { .. }
            | Self::CertExpiring { .. }
            | Self::CertExpired { .. }
            | Self::PlanRefused { .. }
            | Self::PlanExpired
            | Self::PecBehind { .. } => Overall::Degraded,
        }
    }

    /// The axis this reason belongs to.
    pub fn axis(&self) -> Axis {
        match self {
            Self::Never { .. } | Self::Offline { .. } | Self::Inactive { .. } => Axis::Connectivity,
            Self::Late { .. } | Self::Missing { .. } => Axis::Data,
            _ => Axis::Health,
        }
    }

    /// The job this reason is about, if any.
    pub fn job(&self) -> Option<&str> {
        match self {
            Self::Late { job, .. }
            | Self::Missing { job, .. }
            | Self::Failing { job, .. }
            | Self::RowAnomaly { job, .. } => Some(job),
            _ => None,
        }
    }

    pub(super) fn row_anomaly(job: &str, a: RowAnomaly) -> Self {
        Self::RowAnomaly {
            job: job.to_string(),
            latest: a.latest,
            usual: a.usual,
            runs: a.runs,
        }
    }

    /// The Portuguese text (the dashboard's first language).
    pub fn pt_br(&self) -> String {
        match self {
            Self::Never { enrolled_at } => {
                format!(
                    "cadastrado em {}, nenhum sinal do agente ainda",
                    pt(enrolled_at)
                )
            }
            Self::Offline { since } => format!("sem sinal do agente desde {}", pt(since)),
            Self::Inactive { since } => {
                format!("inativo: sem sinal do agente desde {}", pt(since))
            }
            Self::Late {
                job,
                slot,
                last_commit,
            } => format!(
                "rotina {job}: atrasada, nada recebido desde o horário de {} ({})",
                pt(slot),
                pt_last(last_commit)
            ),
            Self::Missing {
                job,
                slot,
                last_commit,
            } => format!(
                "rotina {job}: ausente, nada recebido desde o horário de {} ({})",
                pt(slot),
                pt_last(last_commit)
            ),
            Self::Failing {
                job,
                outcome,
                error,
            } => format!(
                "rotina {job}: a última tentativa {}: {}",
                outcome.pt_br(),
                error.as_deref().unwrap_or("sem mensagem de erro")
            ),
            Self::RowAnomaly {
                job,
                latest,
                usual,
                runs,
            } => format!(
                "rotina {job}: {}",
                RowAnomaly {
                    latest: *latest,
                    usual: *usual,
                    runs: *runs
                }
                .pt_br()
            ),
            Self::SchemaDrift { text } => format!("divergência de esquema: {text}"),
            Self::CertExpiring { at } => format!("o certificado expira em {}", pt(at)),
            Self::CertExpired { at } => format!("o certificado expirou em {}", pt(at)),
            Self::PlanRefused { text } if text.is_empty() => "plano recusado".to_string(),
            Self::PlanRefused { text } => format!("plano recusado: {text}"),
            Self::PlanExpired => "plano expirado".to_string(),
            Self::PecBehind { have, expected } => {
                format!("PEC {have} desatualizado (esperado {expected} ou mais novo)")
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never { enrolled_at } => {
                write!(f, "enrolled {}, no heartbeat yet", en(enrolled_at))
            }
            Self::Offline { since } => write!(f, "no heartbeat since {}", en(since)),
            Self::Inactive { since } => {
                write!(f, "inactive: no heartbeat since {}", en(since))
            }
            Self::Late {
                job,
                slot,
                last_commit,
            } => write!(
                f,
                "job {job}: late, nothing committed since the {} slot ({})",
                en(slot),
                en_last(last_commit)
            ),
            Self::Missing {
                job,
                slot,
                last_commit,
            } => write!(
                f,
                "job {job}: missing, nothing committed since the {} slot ({})",
                en(slot),
                en_last(last_commit)
            ),
            Self::Failing {
                job,
                outcome,
                error,
            } => write!(
                f,
                "job {job}: last attempt {outcome}: {}",
                error.as_deref().unwrap_or("no error text")
            ),
            Self::RowAnomaly {
                job,
                latest,
                usual,
                runs,
            } => write!(
                f,
                "job {job}: {}",
                RowAnomaly {
                    latest: *latest,
                    usual: *usual,
                    runs: *runs
                }
            ),
            Self::SchemaDrift { text } => write!(f, "schema drift: {text}"),
            Self::CertExpiring { at } => write!(f, "certificate expires {}", en(at)),
            Self::CertExpired { at } => write!(f, "certificate expired {}", en(at)),
            Self::PlanRefused { text } if text.is_empty() => f.write_str("plan refused"),
            Self::PlanRefused { text } => write!(f, "plan refused: {text}"),
            Self::PlanExpired => f.write_str("plan expired"),
            Self::PecBehind { have, expected } => {
                write!(f, "pec {have} is behind {expected}")
            }
        }
    }
}

/// `text` trimmed and cut to [`MAX_TEXT_CHARS`]; `None` when empty.
pub(super) fn agent_text(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(MAX_TEXT_CHARS).collect();
    Some(if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    })
}

fn en(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn pt(t: &DateTime<Utc>) -> String {
    t.format("%d/%m/%Y %H:%M UTC").to_string()
}

fn en_last(t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("last commit {}", en(t)),
        None => "never committed".to_string(),
    }
}

fn pt_last(t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("último envio em {}", pt(t)),
        None => "nenhum envio concluído".to_string(),
    }
}

/// A [`PecVersion`] as its text (`"5.5.28"`).
mod pec_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use transmissor_plan::PecVersion;

    pub fn serialize<S: Serializer>(v: &PecVersion, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PecVersion, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
