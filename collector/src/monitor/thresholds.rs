//! `[monitor]`: the thresholds health is derived with.
//!
//! ```toml
//! [monitor]
//! evaluate_every = "30s"
//! heartbeat_interval = "60s"
//! offline_after_intervals = 10
//! inactive_after = "30days"
//! late_grace = "2h"
//! missing_after = "24h"
//! cert_warning = "3days"
//! include_optional_holidays = true
//! [monitor.rows]
//! min_history = 5
//! window = 30
//! k = 4.0
//! ratio = 0.5
//! min_delta = 10
//! ```

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::anomaly::AnomalyRule;

/// A heartbeat interval of zero counts as this.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ThresholdsError {
    #[error("monitor.{0} must be positive")]
    NotPositive(&'static str),
    #[error("monitor.missing_after ({missing}) must be longer than monitor.late_grace ({late})")]
    MissingBeforeLate { missing: String, late: String },
    #[error("monitor.rows: {0}")]
    Rows(&'static str),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// How often the collector derives every municipality's health.
    #[serde(default = "default_evaluate_every", with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// The agents' heartbeat interval (`[heartbeat] interval` of their
    /// configuration; the agent's default is one minute).
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Offline after this many heartbeat intervals without one.
    #[serde(default = "default_offline_after_intervals")]
    pub offline_after_intervals: u32,
    /// Inactive after this long without a heartbeat.
    #[serde(default = "default_inactive_after", with = "humantime_serde")]
    pub inactive_after: Duration,
    /// A job is late when nothing committed since an expected slot once
    /// slot + the schedule's jitter + this has passed.
    #[serde(default = "default_late_grace", with = "humantime_serde")]
    pub late_grace: Duration,
    /// … and missing once slot + jitter + this has passed.
    #[serde(default = "default_missing_after", with = "humantime_serde")]
    pub missing_after: Duration,
    /// Warn this long before the agent's certificate expires.
    #[serde(default = "default_cert_warning", with = "humantime_serde")]
    pub cert_warning: Duration,
    /// Carnival and Corpus Christi are closed days.
    #[serde(default = "default_true")]
    pub include_optional_holidays: bool,
    #[serde(default)]
    pub rows: AnomalyRule,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            evaluate_every: default_evaluate_every(),
            heartbeat_interval: default_heartbeat_interval(),
            offline_after_intervals: default_offline_after_intervals(),
            inactive_after: default_inactive_after(),
            late_grace: default_late_grace(),
            missing_after: default_missing_after(),
            cert_warning: default_cert_warning(),
            include_optional_holidays: default_true(),
            rows: AnomalyRule::default(),
        }
    }
}

fn default_evaluate_every() -> Duration {
    Duration::from_secs(30)
}
fn default_heartbeat_interval() -> Duration {
    MIN_HEARTBEAT_INTERVAL
}
fn default_offline_after_intervals() -> u32 {
    10
}
fn default_inactive_after() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_late_grace() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_missing_after() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_cert_warning() -> Duration {
    Duration::from_secs(3 * 86_400)
}
fn default_true() -> bool {
    true
}

impl Thresholds {
    /// How long without a heartbeat makes an agent with this heartbeat
    /// interval offline.
    pub fn offline_after(&self, heartbeat_interval: Duration) -> Duration {
        heartbeat_interval
            .max(MIN_HEARTBEAT_INTERVAL)
            .saturating_mul(self.offline_after_intervals)
    }

    pub fn validate(&self) -> Result<(), ThresholdsError> {
        for (name, zero) in [
            ("evaluate_every", self.evaluate_every.is_zero()),
            ("offline_after_intervals", self.offline_after_intervals == 0),
            ("inactive_after", self.inactive_after.is_zero()),
            ("missing_after", self.missing_after.is_zero()),
        ] {
            if zero {
                return Err(ThresholdsError::NotPositive(name));
            }
        }
        if self.missing_after <= self.late_grace {
            return Err(ThresholdsError::MissingBeforeLate {
                missing: humantime::format_duration(self.missing_after).to_string(),
                late: humantime::format_duration(self.late_grace).to_string(),
            });
        }
        let r = &self.rows;
        if r.min_history < 3 || r.window < r.min_history {
            return Err(ThresholdsError::Rows(
                "min_history must be at least 3 and window at least min_history",
            ));
        }
        if !(r.k.is_finite() && r.k > 0.0 && r.ratio.is_finite() && r.ratio >= 0.0) {
            return Err(ThresholdsError::Rows(
                "k must be positive and ratio zero or positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_toml() {
        let t: Thresholds = toml::from_str("").unwrap();
        assert_eq!(t, Thresholds::default());
        assert_eq!(
            t.offline_after(Duration::from_secs(60)),
            Duration::from_secs(600)
        );
        assert_eq!(t.offline_after(Duration::ZERO), Duration::from_secs(600));
        t.validate().unwrap();
    }

    #[test]
    fn parses_durations_and_refuses_unknown_fields() {
        let t: Thresholds =
            toml::from_str("late_grace = \"90m\"\ninactive_after = \"45days\"\n[rows]\nk = 3.5\n")
                .unwrap();
        assert_eq!(t.late_grace, Duration::from_secs(5400));
        assert_eq!(t.inactive_after, Duration::from_secs(45 * 86_400));
        assert_eq!(t.rows.k, 3.5);
        assert_eq!(t.rows.window, 30);
        let e = toml::from_str::<Thresholds>("bogus = 1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = toml::from_str::<Thresholds>("[rows]\nbogus = 1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn validation() {
        let bad = [
            Thresholds {
                offline_after_intervals: 0,
                ..Thresholds::default()
            },
            Thresholds {
                missing_after: Duration::from_secs(3600),
                ..Thresholds::default()
            },
            Thresholds {
                rows: AnomalyRule {
                    min_history: 1,
                    ..AnomalyRule::default()
                },
                ..Thresholds::default()
            },
            Thresholds {
                rows: AnomalyRule {
                    k: f64::NAN,
                    ..AnomalyRule::default()
                },
                ..Thresholds::default()
            },
        ];
        for t in bad {
            assert!(t.validate().is_err(), "{t:?}");
        }
        let e = Thresholds {
            missing_after: Duration::from_secs(3600),
            ..Thresholds::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "monitor.missing_after (1h) must be longer than monitor.late_grace (2h)"
        );
    }
}
