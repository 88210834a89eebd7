//! Central extraction plans: a TOML file published by the central team,
//! signed offline with Ed25519, verified by every agent. The collector
//! stores and serves signed plans but can neither sign nor alter one.
//!
//! | module       | what it holds                                                          |
//! |--------------|------------------------------------------------------------------------|
//! | [`plan`]     | the plan document: [`Plan::parse`], scope, expiry                      |
//! | [`job`]      | one job: target, mode, SQL, schedule, PEC range, column policy         |
//! | [`schedule`] | cron slots in the municipality's time zone, and per-agent jitter       |
//! | [`cron`]     | a strict 5-field cron parser and its DST-safe evaluation               |
//! | [`version`]  | PEC versions (`5.5.28`), version ranges, `tb_migracao` filenames       |
//! | [`keys`]     | Ed25519 public keys, key ids, trusted key sets, plan- and root-key files |
//! | [`key_list`] | the root-signed key list used to rotate plan keys and raise the floor  |
//! | [`chain`]    | following key lists from the pinned root and plan keys; the plan floor |
//! | [`increments`] | how far versions and serials may move (at most 2^53, steps of 10^6) |
//! | [`envelope`] | the signed envelope: domain-separated signature over the exact bytes  |
//! | [`open`]     | opening a signed plan or key list (verify, check kind, parse)         |
//! | [`personal_data`] | which column names are personal data (`personal_data.toml`)      |
//! | [`output_columns`] | a job's result column names, read from its SQL (no database)    |
//! | [`lineage`]  | the source columns each result column is computed from (no database) |
//! | [`policy_check`] | the signer's check: every personal-data column, by name or by lineage, has a policy |
//! | `doc`        | strict TOML decoding and errors naming the line and the field         |
//!
//! The `transmissor-plan` binary is the offline signer (keygen, check,
//! sign, sign-keys, verify); it never talks to the network.

mod doc;

pub mod chain;
pub mod cron;
pub mod envelope;
pub mod increments;
pub mod job;
pub mod key_list;
pub mod keys;
pub mod lineage;
pub mod open;
pub mod output_columns;
pub mod personal_data;
pub mod plan;
pub mod policy_check;
pub mod schedule;
pub mod version;

pub use chain::{FloorError, KeyChain, PlanFloor};
pub use doc::DocError;
pub use ed25519_dalek::SigningKey;
pub use envelope::{Envelope, EnvelopeError, Kind, sign};
pub use job::{ColumnPolicy, JobMode, PlanJob, Upsert};
pub use key_list::{KeyList, KeyListError};
pub use keys::{KeyError, KeyRole, PublicKey, TrustedKeys};
pub use open::{
    OpenError, VerifiedKeyList, VerifiedPlan, inspect_key_list, inspect_plan, open_key_list,
    open_plan,
};
pub use personal_data::PersonalData;
pub use plan::{Plan, PlanError, Scope};
pub use policy_check::{PolicyProblem, check_personal_data};
pub use schedule::Schedule;
pub use version::{PecVersion, VersionRange, pec_version_from_migration_filename};

#[cfg(test)]
mod plan_tests;
