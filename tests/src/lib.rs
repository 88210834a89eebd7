//! Harness for end-to-end tests across agent, collector and PostgreSQL; also
//! used by the demo and the benchmarks (`xtask`).
//!
//! | module     | responsibility                                                    |
//! |------------|-------------------------------------------------------------------|
//! | [`balancer`]| a round-robin TCP balancer in front of collector replicas       |
//! | [`http`]   | a minimal HTTP/1.1 client for the collector's HTTP side      |
//! | [`identities`]| enrolling, renewing and calling with chosen certificates |
//! | [`installer`]| a temporary root for the Linux installer, tree snapshots        |
//! | [`fidelity`]| the fidelity data set: every tricky type and value, per server version |
//! | [`locales`]| the OS locales that make a server speak Spanish, French, German |
//! | [`netns`]  | an emulated slow link: network namespace, veth pair, `tc tbf`     |
//! | [`operators`]| operators added with the real CLI, logins over HTTPS            |
//! | [`fleet`]  | a synthetic national fleet written straight into the control schema |
//! | [`pg`]     | throwaway PostgreSQL clusters (the system's server, or PostgreSQL 10 to 18 from the embedded distributions) |
//! | [`pec`]    | the synthetic PEC-like schema, data generator and nominal list     |
//! | [`plans`]  | signed plans: real signer, real publication, a compromised collector |
//! | [`procs`]  | the project's binaries as real processes (to SIGKILL them)       |
//! | [`proxy`]  | a TCP proxy whose link can be cut and restored                   |
//! | [`raw_h2`] | a raw HTTP/2 client without a certificate (unfinished bodies)     |
//! | [`stack`]  | a whole installation: clusters, PKI, collector, agent configs      |
//! | [`webhook`]| a webhook receiver recording what alerts send                    |
//! | [`wire_meter`]| a TCP relay counting the bytes and time clients send through it |

pub mod balancer;
pub mod client;
pub mod fidelity;
pub mod fleet;
pub mod http;
pub mod identities;
pub mod installer;
pub mod locales;
pub mod netns;
pub mod operators;
pub mod pec;
pub mod pg;
pub mod plans;
pub mod procs;
pub mod proxy;
pub mod raw_h2;
pub mod stack;
pub mod webhook;
pub mod wire_meter;
