//! `[limits]`: what any one caller may make the collector do, with the
//! defaults and the checks of their values.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::ConfigError;

/// Bounds on what any one caller can make the collector do. See
/// ARCHITECTURE.md, "Threat model and limits".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// HTTP/2 streams one connection may have open at once (advertised in
    /// SETTINGS; hyper's default would otherwise be unbounded).
    #[serde(default = "default_streams_per_connection")]
    pub max_streams_per_connection: u32,
    /// Calls served at once on one connection (further ones wait).
    #[serde(default = "default_calls_per_connection")]
    pub max_calls_per_connection: usize,
    /// Data calls one agent may have running at once, over all its
    /// connections; one more is answered `UNAVAILABLE`.
    #[serde(default = "default_calls_per_agent")]
    pub max_calls_per_agent: u32,
    /// How long any call may run before it is answered `DEADLINE_EXCEEDED`
    /// (work already started runs to its commit or rollback).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After `server.max_connection_age`, how long in-flight calls get
    /// before the connection is closed.
    #[serde(default = "default_connection_age_grace", with = "humantime_serde")]
    pub connection_age_grace: Duration,
    /// Largest message of the enrollment and lifecycle services (tokens,
    /// CSRs, heartbeats).
    #[serde(default = "default_small_message")]
    pub max_small_message_bytes: ByteSize,
    /// Job statuses one heartbeat may report.
    #[serde(default = "default_heartbeat_runs")]
    pub max_heartbeat_runs: usize,
    /// Decompressed batch bytes held at once over all calls.
    #[serde(default = "default_decompress_budget")]
    pub decompress_budget: ByteSize,
    /// Open transmissions one agent may hold.
    #[serde(default = "default_open_per_agent")]
    pub max_open_transmissions_per_agent: u32,
    /// Transmissions (of any outcome) one agent may start per day.
    #[serde(default = "default_daily_per_agent")]
    pub max_transmissions_per_agent_per_day: u32,
    /// Raw bytes one agent may hold staged in open transmissions.
    #[serde(default = "default_staged_per_agent")]
    pub max_staged_bytes_per_agent: ByteSize,
    /// Highest batch sequence number (so batches per transmission).
    #[serde(default = "default_batches_per_transmission")]
    pub max_batches_per_transmission: u32,
    /// An open transmission without a batch or `Begin` for this long is
    /// aborted and its staging table dropped (at once if its agent is
    /// revoked).
    #[serde(default = "default_stale_after", with = "humantime_serde")]
    pub stale_transmission_after: Duration,
    /// How often the reaper looks.
    #[serde(default = "default_reap_every", with = "humantime_serde")]
    pub reap_every: Duration,
    /// How long a positive identity check may answer for the database
    /// while the auth pool is saturated (identity changes clear it as soon
    /// as their notification arrives; zero: no cache).
    #[serde(default = "default_identity_cache_ttl", with = "humantime_serde")]
    pub identity_cache_ttl: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_streams_per_connection: default_streams_per_connection(),
            max_calls_per_connection: default_calls_per_connection(),
            max_calls_per_agent: default_calls_per_agent(),
            request_timeout: default_request_timeout(),
            connection_age_grace: default_connection_age_grace(),
            max_small_message_bytes: default_small_message(),
            max_heartbeat_runs: default_heartbeat_runs(),
            decompress_budget: default_decompress_budget(),
            max_open_transmissions_per_agent: default_open_per_agent(),
            max_transmissions_per_agent_per_day: default_daily_per_agent(),
            max_staged_bytes_per_agent: default_staged_per_agent(),
            max_batches_per_transmission: default_batches_per_transmission(),
            stale_transmission_after: default_stale_after(),
            reap_every: default_reap_every(),
            identity_cache_ttl: default_identity_cache_ttl(),
        }
    }
}

fn default_streams_per_connection() -> u32 {
    32
}
fn default_calls_per_connection() -> usize {
    32
}
fn default_calls_per_agent() -> u32 {
    16
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_connection_age_grace() -> Duration {
    Duration::from_secs(300)
}
fn default_small_message() -> ByteSize {
    ByteSize::kib(64)
}
fn default_heartbeat_runs() -> usize {
    64
}
fn default_decompress_budget() -> ByteSize {
    ByteSize::mib(512)
}
fn default_open_per_agent() -> u32 {
    64
}
fn default_daily_per_agent() -> u32 {
    2000
}
fn default_staged_per_agent() -> ByteSize {
    ByteSize::gib(32)
}
fn default_batches_per_transmission() -> u32 {
    100_000
}
fn default_stale_after() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_reap_every() -> Duration {
    Duration::from_secs(300)
}
fn default_identity_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

impl LimitsConfig {
    pub(super) fn validate(&self, max_batch_raw_bytes: u64) -> Result<(), ConfigError> {
        let positive = [
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
            (
                "max_calls_per_connection",
                self.max_calls_per_connection as u64,
            ),
            ("max_calls_per_agent", u64::from(self.max_calls_per_agent)),
            ("max_heartbeat_runs", self.max_heartbeat_runs as u64),
            (
                "max_open_transmissions_per_agent",
                u64::from(self.max_open_transmissions_per_agent),
            ),
            (
                "max_transmissions_per_agent_per_day",
                u64::from(self.max_transmissions_per_agent_per_day),
            ),
            (
                "max_batches_per_transmission",
                u64::from(self.max_batches_per_transmission),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!(
                "limits.{name} must be at least 1"
            )));
        }
        if self.max_batches_per_transmission > i32::MAX as u32 {
            return Err(ConfigError::Invalid(
                "limits.max_batches_per_transmission must fit a 32-bit signed integer".into(),
            ));
        }
        if self.decompress_budget.as_u64() < max_batch_raw_bytes {
            return Err(ConfigError::Invalid(
                "limits.decompress_budget must be at least load.max_batch_raw_bytes (one batch must fit)".into(),
            ));
        }
        if self.max_small_message_bytes.as_u64() < 4096 {
            return Err(ConfigError::Invalid(
                "limits.max_small_message_bytes must be at least 4KiB (a certificate request must fit)".into(),
            ));
        }
        if self.reap_every.is_zero() || self.stale_transmission_after < Duration::from_secs(60) {
            return Err(ConfigError::Invalid(
                "limits.reap_every must be positive and limits.stale_transmission_after at least 1m".into(),
            ));
        }
        Ok(())
    }
}
