//! Each municipality's health, derived on the server (issue #11): pure
//! logic over typed facts with an injected `now`, no I/O.
//!
//! | file                        | responsibility                                                  |
//! |-----------------------------|-----------------------------------------------------------------|
//! | `monitor/state.rs`          | the states of each axis, the overall scale and its ordering     |
//! | `monitor/facts.rs`          | typed inputs: a municipality, its jobs, the fleet               |
//! | `monitor/thresholds.rs`     | `[monitor]`: thresholds with defaults, validated                |
//! | `monitor/calendar.rs`       | Brazilian business days: Easter, national and municipal holidays |
//! | `monitor/expect.rs`         | the latest slot of a schedule that falls on a business day      |
//! | `monitor/anomaly.rs`        | row counts against the municipality's own history (median, MAD) |
//! | `monitor/reason.rs`         | typed reasons with English and Portuguese texts                 |
//! | `monitor/derive.rs`         | facts → [`Health`] on three axes plus overall                   |
//! | `monitor/transition.rs`     | changes of state between two derivations, for history and alerts |
//! | `monitor/derive_tests.rs`   | table-driven tests of `derive` and `transitions`                |
//!
//! Three axes, each ordered best to worst, and the overall state, their
//! worst ([`Overall`] documents the scale):
//!
//! - connectivity: `online`, `offline`, `inactive`, `never`;
//! - data (worst over the jobs): `on_time`, `late`, `missing`, judged on
//!   the latest expected slot on a business day (national calendar, the
//!   optional Carnival and Corpus Christi, the municipality's holidays);
//! - health: `ok`, `degraded` (row anomaly, schema drift, certificate
//!   expiring, plan refused or expired, PEC behind), `failing` (a job's
//!   last attempt ended badly after its last commit).
//!
//! The caller gathers [`MunicipalityFacts`] and [`FleetFacts`], calls
//! [`derive`] with the municipality's time zone and the current time, and
//! stores the [`transitions`] from the previous [`Health`].

pub mod anomaly;
pub mod calendar;
mod derive;
pub mod expect;
mod facts;
mod reason;
mod state;
mod thresholds;
mod transition;

#[cfg(test)]
mod derive_tests;

pub use anomaly::{AnomalyRule, RowAnomaly, row_anomaly};
pub use calendar::{Calendar, Holiday, easter_sunday, national_holidays};
pub use derive::{Health, derive};
pub use expect::latest_expected_slot;
pub use facts::{Attempt, FleetFacts, JobFacts, MunicipalityFacts, Outcome};
pub use reason::{MAX_TEXT_CHARS, Reason};
pub use state::{Axis, Connectivity, DataState, HealthState, Overall};
pub use thresholds::{Thresholds, ThresholdsError};
pub use transition::{Change, Transition, transitions};
