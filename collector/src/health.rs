//! Each municipality's health, stored and served (issue #11): the I/O
//! around the pure [`crate::monitor`].
//!
//! | file                  | responsibility                                                     |
//! |-----------------------|--------------------------------------------------------------------|
//! | `health/evaluator.rs` | the periodic pass: gather, derive, store changes and transitions   |
//! | `health/memory.rs`    | each job's recent transmissions in memory, updated incrementally   |
//! | `health/gather.rs`    | set-based reads: municipalities with agents, drift, transmissions  |
//! | `health/store.rs`     | current state and history: read under the lock, write what changed |
//! | `health/read.rs`      | what the API and the dashboard read                                |
//! | `health/view.rs`      | the read models both return                                        |
//! | `health/uf.rs`        | UF and default time zone from the IBGE code                        |
//! | `health/queries/`     | the SQL                                                            |

pub mod evaluator;
mod gather;
pub mod memory;
pub mod read;
mod store;
pub mod uf;
pub mod view;

pub use evaluator::{Evaluator, OverallChange, PassReport};

use crate::metrics::{ExpiryLabel, Metrics, StateLabel};
use crate::monitor::Overall;

/// Sets the health gauges from one pass.
pub fn record_metrics(metrics: &Metrics, report: &PassReport) {
    for state in Overall::ALL {
        let n = report.by_state.get(&state).copied().unwrap_or(0);
        metrics
            .municipalities
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    for (expires, n) in ["expired", "under_7d", "under_30d", "later"]
        .into_iter()
        .zip(report.certificates)
    {
        metrics
            .agent_certificates
            .get_or_create(&ExpiryLabel { expires })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    metrics.agents_spool_used_bytes.set(report.spool_used_bytes);
    metrics
        .health_evaluation_seconds
        .observe(report.duration.as_secs_f64());
    metrics
        .health_transitions
        .inc_by(u64::try_from(report.transitions).unwrap_or(0));
}

/// Hands a pass's overall transitions to the alerts; on the first pass
/// that wrote, first the states stored before it (so reminders continue
/// after a restart).
pub fn hand_to_alerts(alerts: &crate::alerts::Alerts, report: &PassReport) {
    let event = |c: &OverallChange| crate::alerts::AlertEvent {
        ibge: c.ibge.clone(),
        name: c.name.clone(),
        uf: c.uf.to_string(),
        from: c.from,
        to: c.to,
        at: c.at,
        reason: c.reason.clone(),
        reason_pt_br: c.reason_pt_br.clone(),
    };
    if let Some(current) = &report.restored {
        alerts.restore(current.iter().map(event).collect());
    }
    if !report.overall_changes.is_empty() {
        alerts.notify(report.overall_changes.iter().map(event).collect());
    }
}

/// What the alert counters last showed, so the metrics move by the
/// difference (they only grow).
#[derive(Debug, Default)]
pub struct AlertCounts([u64; 4]);

impl AlertCounts {
    pub fn record(&mut self, metrics: &Metrics, stats: &crate::alerts::AlertStats) {
        let now = [
            stats.sent(),
            stats.digests(),
            stats.failed(),
            stats.dropped(),
        ];
        for ((outcome, new), old) in ["sent", "digest", "failed", "dropped"]
            .into_iter()
            .zip(now)
            .zip(self.0.iter_mut())
        {
            if new > *old {
                metrics
                    .alerts
                    .get_or_create(&crate::metrics::OutcomeLabel { outcome })
                    .inc_by(new - *old);
                *old = new;
            }
        }
    }
}
