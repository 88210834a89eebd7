//! transmissor-agent: runs next to a municipal PEC database, extracts the
//! jobs of its plan in a read-only snapshot, spools zstd batches and uploads
//! them to the collector over mutual TLS, resuming after any failure.
//!
//! | module         | responsibility                                                   |
//! |----------------|------------------------------------------------------------------|
//! | [`config`]     | strict, versioned TOML configuration; secrets from file/env      |
//! | [`pipeline`]   | the data path: source, extract, spool, upload, transport, retry  |
//! | [`identity`]   | identity on disk, enroll, pin, credentials, renew, clock         |
//! | [`plan`]       | central plans: fetch, verify, store; the running plan            |
//! | [`jobs`]       | what to run: the running plan's jobs, or local `[[jobs]]`        |
//! | [`job_lock`]   | one run of a job at a time, across processes (lock files)        |
//! | [`run`]        | one run: recover the spool, extract and upload the given jobs    |
//! | [`schedule`]   | when each job runs; the ledger behind catch-up                   |
//! | [`daemon`]     | the long-running agent: background tasks and the schedule loop   |
//! | [`status`]     | the state the heartbeat reports                                  |
//! | [`heartbeat`]  | periodic status to the collector                                 |
//! | [`run_requests`]| operators' "run now" requests from heartbeat answers            |
//! | [`metrics`]    | Prometheus metrics on an optional local port                      |
//! | [`diagnose`]   | failed calls explained in sentences municipal IT can act on      |
//! | [`doctor`]     | the preflight checklist, in Portuguese or English; the role SQL  |
//! | [`install`]    | `install`/`uninstall` on Linux: user, files, hardened systemd unit, `.deb` (unix only) |
//! | [`private_fs`] | owner-only directories (0700) and files (0600), whatever the umask |
//! | [`pseudonym_key`] | the secret that keys pseudonyms: made once, kept across re-enrollment |
//! | [`service`]    | the Windows service: SCM entry point, stop reports, log files    |

pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod doctor;
pub mod heartbeat;
pub mod identity;
#[cfg(unix)]
pub mod install;
pub mod job_lock;
pub mod jobs;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod private_fs;
pub mod pseudonym_key;
pub mod run;
pub mod run_requests;
pub mod schedule;
pub mod service;
pub mod status;
