//! transmissor-agent: runs next to a municipal PEC database, extracts the
//! configured jobs in a read-only snapshot, spools zstd batches and uploads
//! them to the collector over mutual TLS, resuming after any failure.
//!
//! | module        | responsibility                                                  |
//! |---------------|-----------------------------------------------------------------|
//! | [`config`]    | strict, versioned TOML configuration; secrets from file/env      |
//! | [`source`]    | read-only session with pinned settings; column description      |
//! | [`extract`]   | snapshot transaction, `COPY TO STDOUT` → batches → spool         |
//! | [`spool`]     | crash-safe on-disk batches (format and invariants in its doc)   |
//! | [`private_fs`] | owner-only directories (0700) and files (0600), whatever the umask |
//! | [`transport`] | rustls (TLS 1.3, client certificate) + tonic channel            |
//! | [`retry`]     | retriable-or-not classification; full-jitter backoff            |
//! | [`upload`]    | begin / put batches (windowed) / commit, resumable              |
//! | [`run`]       | one run: recover the spool, extract and upload every job        |
//! | [`schedule`]  | when the long-running agent runs                                 |
//! | [`identity`]  | key, certificate chain, trust bundle and agent.json on disk      |
//! | [`enroll`]    | one-time token → key generated here, CSR, identity stored        |
//! | [`pin`]       | verifying the collector by the token's CA pin (enrollment only)  |
//! | [`credentials`] | hot-swappable client certificate and trust bundle for rustls   |
//! | [`renew`]     | renewal at 50–75% of the lifetime, timed on the collector's clock |
//! | [`heartbeat`] | periodic status to the collector; shared agent status           |
//! | [`clock`]     | offset to the collector's clock, on the monotonic clock         |
//! | [`diagnose`]  | failed calls explained in sentences municipal IT can act on     |

pub mod clock;
pub mod config;
pub mod credentials;
pub mod diagnose;
pub mod enroll;
pub mod extract;
pub mod heartbeat;
pub mod identity;
pub mod pin;
pub mod private_fs;
pub mod renew;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod source;
pub mod spool;
#[cfg(test)]
mod testpki;
pub mod transport;
pub mod upload;
