//! [`derive`]: a municipality's facts → its [`Health`] at `now`.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::anomaly::row_anomaly;
use super::calendar::Calendar;
use super::expect::latest_expected_slot;
use super::facts::{FleetFacts, JobFacts, MunicipalityFacts};
use super::reason::{Reason, agent_text};
use super::state::{Axis, Connectivity, DataState, HealthState, Overall};
use super::thresholds::Thresholds;

/// A municipality's health at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub connectivity: Connectivity,
    pub data: DataState,
    pub health: HealthState,
    /// The worst of the three.
    pub overall: Overall,
    /// Connectivity first, then data and health reasons in job order.
    pub reasons: Vec<Reason>,
}

impl Health {
    /// The reasons of one axis (for [`Axis::Overall`], those as bad as the
    /// overall state).
    pub fn reasons_of(&self, axis: Axis) -> impl Iterator<Item = &Reason> {
        self.reasons.iter().filter(move |r| match axis {
            Axis::Overall => r.severity() == self.overall,
            _ => r.axis() == axis,
        })
    }

    /// The state of `axis`, by its stable name.
    pub fn state_name(&self, axis: Axis) -> &'static str {
        match axis {
            Axis::Connectivity => self.connectivity.as_str(),
            Axis::Data => self.data.as_str(),
            Axis::Health => self.health.as_str(),
            Axis::Overall => self.overall.as_str(),
        }
    }
}

/// Derives the health of one municipality whose local time zone is `tz`,
/// at `now`. Pure: everything comes from the arguments.
pub fn derive(
    facts: &MunicipalityFacts,
    fleet: &FleetFacts,
    thresholds: &Thresholds,
    tz: Tz,
    now: DateTime<Utc>,
) -> Health {
    let mut reasons = Vec::new();

    let connectivity = connectivity(facts, thresholds, now, &mut reasons);

    let calendar = Calendar {
        extra: facts.extra_holidays.clone(),
        include_optional: thresholds.include_optional_holidays,
    };
    let mut data = DataState::OnTime;
    for job in &facts.jobs {
        if let Some(r) = job_data(job, facts, &calendar, thresholds, tz, now) {
            data = data.max(match r {
                Reason::Missing { .. } => DataState::Missing,
                _ => DataState::Late,
            });
            reasons.push(r);
        }
    }

    let before = reasons.len();
    for job in &facts.jobs {
        job_health(job, thresholds, &mut reasons);
    }
    municipality_health(facts, fleet, thresholds, now, &mut reasons);
    let health = reasons[before..]
        .iter()
        .map(|r| match r {
            Reason::Failing { .. } => HealthState::Failing,
            _ => HealthState::Degraded,
        })
        .max()
        .unwrap_or(HealthState::Ok);

    Health {
        connectivity,
        data,
        health,
        overall: Overall::worst(connectivity, data, health),
        reasons,
    }
}

fn connectivity(
    facts: &MunicipalityFacts,
    t: &Thresholds,
    now: DateTime<Utc>,
    reasons: &mut Vec<Reason>,
) -> Connectivity {
    let Some(since) = facts.last_heartbeat else {
        reasons.push(Reason::Never {
            enrolled_at: facts.enrolled_at,
        });
        return Connectivity::Never;
    };
    // A heartbeat "in the future" (clock skew) counts as now.
    let silent = (now - since).to_std().unwrap_or_default();
    if silent > t.inactive_after {
        reasons.push(Reason::Inactive { since });
        Connectivity::Inactive
    } else if silent > t.offline_after(facts.heartbeat_interval) {
        reasons.push(Reason::Offline { since });
        Connectivity::Offline
    } else {
        Connectivity::Online
    }
}

/// `Missing` or `Late` for one job, or nothing when on time.
///
/// The slot checked for lateness is the latest expected one at or before
/// `now − jitter − late_grace`, so a run that never started is caught as
/// well as one that failed; for missing, `now − jitter − missing_after`.
fn job_data(
    job: &JobFacts,
    facts: &MunicipalityFacts,
    calendar: &Calendar,
    t: &Thresholds,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<Reason> {
    let schedule = job.schedule.as_ref()?;
    let since = job
        .expected_since
        .map_or(facts.enrolled_at, |s| s.max(facts.enrolled_at));
    let overdue = |delay: std::time::Duration| {
        let back = TimeDelta::from_std(schedule.jitter.saturating_add(delay)).ok()?;
        let at = now.checked_sub_signed(back)?;
        latest_expected_slot(schedule, tz, calendar, at)
            .filter(|slot| *slot >= since)
            .filter(|slot| job.last_commit.is_none_or(|c| c < *slot))
    };
    if let Some(slot) = overdue(t.missing_after) {
        return Some(Reason::Missing {
            job: job.job.clone(),
            slot,
            last_commit: job.last_commit,
        });
    }
    overdue(t.late_grace).map(|slot| Reason::Late {
        job: job.job.clone(),
        slot,
        last_commit: job.last_commit,
    })
}

/// Failing (last attempt after the last commit ended badly) and row-count
/// anomalies of one job.
fn job_health(job: &JobFacts, t: &Thresholds, reasons: &mut Vec<Reason>) {
    if let Some(a) = &job.last_attempt
        && a.outcome.is_failure()
        && job.last_commit.is_none_or(|c| a.at > c)
    {
        reasons.push(Reason::Failing {
            job: job.job.clone(),
            outcome: a.outcome,
            error: a.error.as_deref().and_then(agent_text),
        });
    }
    if job.last_commit.is_some()
        && let Some(latest) = job.latest_rows
        && let Some(a) = row_anomaly(latest, &job.row_history, &t.rows)
    {
        reasons.push(Reason::row_anomaly(&job.job, a));
    }
}

fn municipality_health(
    facts: &MunicipalityFacts,
    fleet: &FleetFacts,
    t: &Thresholds,
    now: DateTime<Utc>,
    reasons: &mut Vec<Reason>,
) {
    reasons.extend(
        facts
            .schema_drift
            .iter()
            .filter_map(|text| agent_text(text))
            .map(|text| Reason::SchemaDrift { text }),
    );
    if let Some(at) = facts.cert_not_after {
        if at <= now {
            reasons.push(Reason::CertExpired { at });
        } else if (at - now).to_std().is_ok_and(|left| left <= t.cert_warning) {
            reasons.push(Reason::CertExpiring { at });
        }
    }
    if let Some(text) = &facts.plan_refusal {
        reasons.push(Reason::PlanRefused {
            text: agent_text(text).unwrap_or_default(),
        });
    }
    if facts.plan_expired {
        reasons.push(Reason::PlanExpired);
    }
    if let (Some(have), Some(expected)) = (facts.pec_version, fleet.expected_pec())
        && have < expected
    {
        reasons.push(Reason::PecBehind { have, expected });
    }
}
