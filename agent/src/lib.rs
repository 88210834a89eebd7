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
//! | [`transport`] | rustls (TLS 1.3, client certificate) + tonic channel            |
//! | [`retry`]     | retriable-or-not classification; full-jitter backoff            |
//! | [`upload`]    | begin / put batches (windowed) / commit, resumable              |
//! | [`run`]       | one run: recover the spool, extract and upload every job        |
//! | [`schedule`]  | when the long-running agent runs                                 |

pub mod config;
pub mod extract;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod source;
pub mod spool;
pub mod transport;
pub mod upload;
