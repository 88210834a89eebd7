//! The new-connection probe: through a whole phase, normal agents open a
//! fresh TCP + TLS connection with their own certificate, make one
//! heartbeat on it and close it: what an agent restarting, or reconnecting
//! after a network cut, meets at the collector's door. The agents' own
//! connections stay open for the whole run, so without the probe an attack
//! on the handshake (silent sockets, a saturated accept loop) would go
//! unseen by the latencies.
//!
//! [`PROBES`] loops, each through every [`PROBES`]-th agent in turn, one new
//! connection every [`EVERY`] each (the next one starts when the previous
//! has finished, if later); the latency is from the channel's creation to
//! the heartbeat's answer, errors are counted with the normal agents'.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;

use super::agents::Agent;
use super::heartbeat::request;
use super::stats::Stats;

/// Concurrent probe loops.
pub const PROBES: usize = 4;
/// Period of each loop.
pub const EVERY: Duration = Duration::from_secs(1);
/// The latency's name in [`Stats`].
pub const CALL: &str = "new connection (TCP+TLS+heartbeat)";

/// Probe loop `k` over `agents` from `t0` until `end`.
pub async fn run(agents: Vec<Agent>, k: usize, t0: Instant, end: Instant) -> Stats {
    let mut stats = Stats::default();
    let mut next = t0 + EVERY.mul_f64(k as f64 / PROBES as f64);
    for a in agents.iter().skip(k).step_by(PROBES).cycle() {
        if next >= end {
            break;
        }
        sleep_until(next).await;
        let t = Instant::now();
        match a.fresh_channel() {
            Ok(ch) => match AgentLifecycleClient::new(ch).heartbeat(request()).await {
                Ok(_) => stats.ok(CALL, t0, t),
                Err(s) => stats.error(format!("new connection, Heartbeat {:?}", s.code())),
            },
            Err(e) => stats.error(format!("new connection, channel: {e}")),
        }
        next = (next + EVERY).max(Instant::now());
    }
    stats
}
