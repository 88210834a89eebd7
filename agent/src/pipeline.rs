//! The data path: from the municipal database to the collector.
//!
//! | module        | responsibility                                                |
//! |---------------|---------------------------------------------------------------|
//! | [`source`]    | read-only session with pinned settings; column description    |
//! | [`extract`]   | snapshot transaction, `COPY TO STDOUT` → batches → spool       |
//! | [`incremental`] | upsert jobs: the watermark a snapshot proves, the bound read |
//! | [`minimise`]  | a plan job's personal-data policy: checked, query wrapped      |
//! | [`pseudonym`] | pseudonymised fields rewritten in each COPY row (HMAC-SHA256)  |
//! | [`spool`]     | crash-safe on-disk batches (format and invariants in its doc) |
//! | [`upload`]    | begin / put batches (windowed) / commit, resumable            |
//! | [`transport`] | rustls (TLS 1.3, client certificate) + tonic channel          |
//! | [`bandwidth`] | the `[upload]` cap by time of day, paced on the socket        |
//! | [`level`]     | the zstd level per batch, from link and compression speeds    |
//! | [`retry`]     | retriable-or-not classification; full-jitter backoff          |
//!
//! Batch framing (zstd frame, CRC-32C, row counts) is shared with the
//! collector and lives in `transmissor_proto::batch`.

pub mod bandwidth;
pub mod extract;
pub mod incremental;
pub mod level;
pub mod minimise;
pub mod pseudonym;
pub mod retry;
pub mod source;
pub mod spool;
pub mod transport;
pub mod upload;
