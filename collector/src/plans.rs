//! Central extraction plans on the collector: it **stores and serves**
//! signed plans and plan-key lists, byte for byte, and uses what a plan
//! defines to refuse a `Begin` for a job, target or mode the plan published
//! for that municipality does not define. It never holds a signing key and
//! cannot alter a plan: every agent verifies each byte against the plan keys
//! pinned at install (`transmissor_plan`). It stores and authorizes only
//! plans that verify under `[plans] keys` (moved by key lists signed by
//! `[plans] root_key`), so a forged envelope authorizes no target.
//!
//! | module        | responsibility                                                 |
//! |---------------|----------------------------------------------------------------|
//! | [`publish`]   | `plan publish`: checks an envelope and stores it (no signing)   |
//! | [`published`] | the published plans in memory: per-municipality lookup, `Begin` authorization, refresh |
//! | [`trust`]     | the pinned plan and root keys, the key chain, what a plan must pass |

pub mod publish;
pub mod published;
pub mod trust;

pub use published::{PublishedPlan, PublishedPlans};
pub use trust::PlanTrust;
