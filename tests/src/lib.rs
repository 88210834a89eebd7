//! Harness for end-to-end tests across agent, collector and PostgreSQL; also
//! used by the demo and the benchmarks (`xtask`).
//!
//! | module     | responsibility                                                    |
//! |------------|-------------------------------------------------------------------|
//! | [`balancer`]| a round-robin TCP balancer in front of collector replicas       |
//! | [`netns`]  | an emulated slow link: network namespace, veth pair, `tc tbf`     |
//! | [`pg`]     | throwaway PostgreSQL clusters (system `initdb`/`pg_ctl`)          |
//! | [`pec`]    | the synthetic PEC-like schema, data generator and nominal list     |
//! | [`procs`]  | the project's binaries as real processes (to SIGKILL them)       |
//! | [`proxy`]  | a TCP proxy whose link can be cut and restored                   |
//! | [`stack`]  | a whole installation: clusters, PKI, collector, agent configs      |

pub mod balancer;
pub mod client;
pub mod netns;
pub mod pec;
pub mod pg;
pub mod procs;
pub mod proxy;
pub mod stack;
