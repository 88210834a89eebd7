//! Admission: who may start work now. Every bound here protects the flow of
//! all municipalities from one caller, whether a compromised agent or an
//! anonymous host:
//!
//! - [`require_certificate`] refuses data and lifecycle calls without a
//!   client certificate from the request's headers, before tonic reads (up
//!   to `load.max_message_bytes` of) its body;
//! - [`Admission::call`] bounds the calls one agent runs at once, and
//!   [`Admission::batch`] the batches it has in flight, so one agent cannot
//!   hold the load pool or the decompression budget;
//! - [`DecompressBudget`] bounds decompressed batch bytes held at once over
//!   all calls.
//!
//! Limits that need the database (open transmissions, staged bytes, daily
//! transmissions) are checked in [`crate::load`]; transport limits (streams
//! per connection, timeouts, message sizes) are set in [`crate::server`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use uuid::Uuid;

use crate::config::LimitsConfig;
use crate::error::CollectorError;
use crate::identity::Peer;

/// Interceptor for every service that requires mutual TLS: a call without
/// a client certificate is refused from its headers, its body unread.
pub fn require_certificate(request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    let peer = Peer::of(&request);
    if peer.certs.as_ref().is_some_and(|c| !c.is_empty()) {
        return Ok(request);
    }
    tracing::debug!(peer = %peer.addr, "call without client certificate refused from its headers");
    Err(CollectorError::Unauthenticated(
        "no client certificate: this call requires the agent's certificate (mutual TLS)".into(),
    )
    .into())
}

/// A string from the wire, bounded before it is stored or logged (the
/// message size limit alone would let one field fill a message).
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), CollectorError> {
    if value.len() > max {
        return Err(CollectorError::InvalidArgument(format!(
            "{field} is {} bytes long; at most {max} are accepted",
            value.len()
        )));
    }
    Ok(())
}

/// Per-agent slots: calls in progress, and batches among them.
struct AgentSlots {
    calls: Arc<Semaphore>,
    batches: Arc<Semaphore>,
}

/// Per-agent concurrency, keyed by the agent a chain-verified certificate
/// names and taken before the caller is authenticated (so a flood is
/// refused without database work). Entries exist only for certificates
/// this collector's CA issued, so the map is bounded by the agents ever
/// enrolled.
pub struct Admission {
    agents: Mutex<HashMap<Uuid, Arc<AgentSlots>>>,
    max_calls: u32,
    max_batches: u32,
}

/// Held for the duration of one admitted call or batch.
#[must_use]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Admission {
    pub fn new(cfg: &LimitsConfig) -> Self {
        Self {
            agents: Mutex::new(HashMap::new()),
            max_calls: cfg.max_calls_per_agent,
            // Batches are the calls that hold decompressed data: at most
            // half of an agent's calls, so one agent holds at most half of
            // the decompression budget when the defaults are kept.
            max_batches: cfg.max_calls_per_agent.div_ceil(2),
        }
    }

    fn slots(&self, agent: Uuid) -> Arc<AgentSlots> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .entry(agent)
            .or_insert_with(|| {
                Arc::new(AgentSlots {
                    calls: Arc::new(Semaphore::new(self.max_calls as usize)),
                    batches: Arc::new(Semaphore::new(self.max_batches as usize)),
                })
            })
            .clone()
    }

    /// One more call of `agent`, or `UNAVAILABLE` when it already runs
    /// `limits.max_calls_per_agent` (the agent retries with backoff).
    pub fn call(&self, agent: Uuid) -> Result<Slot, CollectorError> {
        self.slots(agent)
            .calls
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| {
                CollectorError::Overloaded(format!(
                    "agent {agent} already has {} calls in progress (limits.max_calls_per_agent); retry later",
                    self.max_calls
                ))
            })
    }

    /// One more batch in flight for `agent`.
    pub fn batch(&self, agent: Uuid) -> Result<Slot, CollectorError> {
        self.slots(agent)
            .batches
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| {
                CollectorError::Overloaded(format!(
                    "agent {agent} already has {} batches in flight (half of limits.max_calls_per_agent); retry later",
                    self.max_batches
                ))
            })
    }
}

/// Decompressed bytes held at once over all calls, counted in KiB.
#[derive(Clone)]
pub struct DecompressBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
}

impl DecompressBudget {
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            wait,
        }
    }

    /// Reserves `bytes` (already checked against the per-batch cap) for as
    /// long as the returned slot lives; waits in line at most `wait`, then
    /// answers `UNAVAILABLE`.
    pub async fn reserve(&self, bytes: u64) -> Result<Slot, CollectorError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        match tokio::time::timeout(self.wait, self.kib.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            Ok(Err(_)) => Err(CollectorError::Internal(
                "decompression budget closed".into(),
            )),
            Err(_) => {
                tracing::warn!(
                    wanted_kib = kib,
                    budget_kib = self.total_kib,
                    "decompression budget exhausted"
                );
                Err(CollectorError::Overloaded(
                    "the collector is decompressing as much as limits.decompress_budget allows; retry later".into(),
                ))
            }
        }
    }

    /// KiB free right now (for tests and metrics).
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_gets_only_its_slots_and_others_theirs() {
        let cfg = LimitsConfig {
            max_calls_per_agent: 4,
            ..LimitsConfig::default()
        };
        let a = Admission::new(&cfg);
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let held: Vec<Slot> = (0..4).map(|_| a.call(x).unwrap()).collect();
        assert!(matches!(a.call(x), Err(CollectorError::Overloaded(_))));
        assert!(a.call(y).is_ok(), "another agent is not affected");
        drop(held);
        assert!(a.call(x).is_ok(), "slots come back when calls end");
        let batches: Vec<Slot> = (0..2).map(|_| a.batch(x).unwrap()).collect();
        assert!(a.batch(x).is_err());
        drop(batches);
    }

    #[tokio::test]
    async fn the_budget_bounds_bytes_held_and_waits_in_line() {
        let b = DecompressBudget::new(8 << 20, Duration::from_millis(50));
        let first = b.reserve(6 << 20).await.unwrap();
        assert_eq!(b.available_kib(), 2048);
        assert!(matches!(
            b.reserve(4 << 20).await,
            Err(CollectorError::Overloaded(_))
        ));
        drop(first);
        let _second = b.reserve(4 << 20).await.unwrap();
        // A request above the whole budget takes all of it rather than
        // waiting forever.
        drop(_second);
        let _all = b.reserve(u64::MAX).await.unwrap();
        assert_eq!(b.available_kib(), 0);
    }
}
