//! transmissor-collector: knows each municipality by its client certificate,
//! loads the analytic PostgreSQL exactly once, records every transmission.
//!
//! | module       | responsibility                                                   |
//! |--------------|------------------------------------------------------------------|
//! | [`admission`]| who may start work now: certificate from headers, per-agent slots, decompression budget |
//! | [`ca`]       | the CA directory: offline root, issuing CA, rotation, server cert |
//! | [`enroll`]   | one-time tokens, enrollment, renewal, rate limits                |
//! | [`heartbeats`]| latest state per agent, written in batches                      |
//! | [`health`]   | each municipality's health stored: the evaluation pass, history, reads for the API |
//! | [`audit`]    | the append-only audit log                                        |
//! | [`config`]   | strict, versioned TOML configuration; secrets from file/env       |
//! | [`db`]       | connection pool with pinned session settings; embedded migrations |
//! | [`tls`]      | TLS 1.3 listener config (ring), handshakes, failure reasons       |
//! | [`identity`] | client certificate → authenticated agent (the one check per call) |
//! | [`grpc`]     | the agents' front door: `Transmission`, `Enrollment`, `AgentLifecycle`, health |
//! | [`http`]     | the people's front door: probes, metrics, JSON API, dashboard      |
//! | [`metrics`]  | Prometheus metrics, one registry                                 |
//! | [`monitor`]  | each municipality's health: three axes, overall, reasons, transitions (pure) |
//! | [`alerts`]   | webhook alerts on overall transitions: reminders, digests, rate limit, retries |
//! | [`load`]     | begin / batch / commit / abort / status against PostgreSQL       |
//! | [`error`]    | error type and its single mapping to gRPC status                 |
//! | [`pg_error`] | database errors as text without data values (by SQLSTATE)        |
//! | [`app`]      | `prepare` (checks before binding), the parts assembled once, `run` (serve, drain, stop in order) |
//! | [`status`]   | the per-municipality status report                               |
//! | [`registry`] | municipalities and agents: add, list, revoke                     |
//! | [`operators`]| people: roles, Argon2id passwords, sessions                      |
//! | [`pki`]      | the CA: issuing server and agent certificates                    |
//! | [`plans`]    | signed central plans: publish, serve, authorize `Begin` by them   |
//! | [`run_requests`]| operators' "run now" (retry), handed to agents in heartbeat answers |
//! | [`devcerts`] | a development PKI in a directory                                 |

/// `format!` for SQL whose dynamic parts are validated names quoted with
/// `quote_ident`/`quote_literal` or numbers only (audited at each use).
macro_rules! audited_sql {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}

pub mod admission;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod ca;
pub mod config;
pub mod db;
pub mod devcerts;
pub mod enroll;
pub mod error;
pub mod grpc;
pub mod health;
pub mod heartbeats;
pub mod http;
pub mod identity;
pub mod load;
pub mod metrics;
pub mod monitor;
pub mod operators;
pub mod pg_error;
pub mod pki;
pub mod plans;
pub mod registry;
pub mod run_requests;
pub mod status;
pub mod tls;
