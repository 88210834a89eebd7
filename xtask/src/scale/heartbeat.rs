//! Phase 1: every agent heartbeats; a burst of small transmissions into one
//! target overlaps them, and the new-connection probe (`probe.rs`) runs
//! throughout. The collector's RSS is followed through the phase.

use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tonic::transport::Channel;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_tests::stack::Stack;

use super::agents::Agent;
use super::probe;
use super::stats::{Stats, latency_line, pct, print_errors};
use super::sys::{Cpu, GENERATOR_SATURATED_PCT, Rss, RssWatch};
use super::tx::{self, Payload, Shape};

const ROWS_PER_BATCH: u64 = 20;
const TARGET: &str = "scale_t";
const FIRST: &str = "first call";

pub struct Plan {
    pub duration: Duration,
    pub every: Duration,
    pub ramp: Duration,
    pub transmissions: usize,
}

/// What the RESULT lines need.
pub struct Outcome {
    pub heartbeat_p99_ms: f64,
    pub new_connection_p99_ms: f64,
    pub batch_p99_ms: f64,
    /// The normal agents' errors (heartbeats, probe, transmissions, rows).
    pub errors: u64,
    pub rss: Rss,
    /// The load generator's CPU, in % of one core.
    pub generator_pct: f64,
}

impl Outcome {
    /// Whether the load generator was saturated (its latencies suspect).
    pub fn saturated(&self) -> bool {
        self.generator_pct > GENERATOR_SATURATED_PCT
    }
}

pub async fn run(stack: &Stack, agents: &[Agent], pid: &str, plan: &Plan) -> Result<Outcome> {
    let (n, ntx, every, ramp) = (agents.len(), plan.transmissions, plan.every, plan.ramp);
    let payloads = (agents.iter().take(ntx).enumerate())
        .map(|(i, a)| {
            let batches = 2 + i as u64 % 2;
            Payload::new(
                a.ibge,
                TARGET,
                Shape::Small,
                batches * ROWS_PER_BATCH,
                ROWS_PER_BATCH,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    println!(
        "==> phase 1: {n} agents heartbeat every {every:?} for {:?}, started over {ramp:?}; \
         {} transmissions into {TARGET} start at {ramp:?}",
        plan.duration,
        payloads.len()
    );
    let cpu = Cpu::start(pid)?;
    let rss = RssWatch::start(pid);
    let t0 = Instant::now();
    let end = t0 + plan.duration;
    let mut tasks = JoinSet::new();
    for (i, a) in agents.iter().enumerate() {
        let start = t0 + ramp.mul_f64(i as f64 / n as f64);
        tasks.spawn(heartbeats(a.channel.clone(), t0, start, end, every));
    }
    for k in 0..probe::PROBES {
        tasks.spawn(probe::run(agents.to_vec(), k, t0, end));
    }
    for (a, p) in agents.iter().zip(payloads) {
        let ch = a.channel.clone();
        tasks.spawn(async move {
            sleep_until(t0 + ramp).await;
            let mut stats = Stats::default();
            tx::transmit(ch, &p, t0, &mut stats).await;
            stats
        });
    }
    let mut stats = Stats::default();
    while let Some(r) = tasks.join_next().await {
        stats.merge(r.context("load task")?);
    }
    let secs = t0.elapsed().as_secs_f64();
    let used = cpu.since()?;
    let rss = rss.finish().await?;

    let c = stack.analytic_client().await?;
    let committed = stats.committed.get(TARGET).cloned().unwrap_or_default();
    let bad = tx::verify(&c, TARGET, &committed).await?;
    if bad > 0 {
        let what = "municipalities whose analytic rows differ";
        stats.errors.insert(what.into(), bad);
    }

    // The window in which transmissions ran, in s after t0.
    let tx_calls = ["Begin", "PutBatch", "Commit"].map(|c| stats.calls.get(c));
    let tx_end = (tx_calls.iter().flatten().flat_map(|v| v.iter()))
        .map(|(at, ms)| at + ms / 1e3)
        .fold(0.0, f64::max);
    let during = |at: f64| at >= ramp.as_secs_f64() && at <= tx_end;
    let mut heartbeats = stats.all("Heartbeat");
    let mut batches = stats.all("PutBatch");
    let outcome = Outcome {
        heartbeat_p99_ms: pct(&mut heartbeats, 0.99),
        new_connection_p99_ms: pct(&mut stats.all(probe::CALL), 0.99),
        batch_p99_ms: pct(&mut batches, 0.99),
        errors: stats.error_count(),
        rss,
        generator_pct: used.generator_pct(secs),
    };

    println!("==> phase 1 results ({n} agents, one certificate and TLS connection each)");
    latency_line("heartbeat", heartbeats);
    latency_line(
        "heartbeat, transmissions running",
        stats.ms("Heartbeat", during),
    );
    latency_line(
        "heartbeat, other times",
        stats.ms("Heartbeat", |at| !during(at)),
    );
    latency_line("first call (TCP+TLS+heartbeat)", stats.all(FIRST));
    latency_line(probe::CALL, stats.all(probe::CALL));
    latency_line("Begin", stats.all("Begin"));
    latency_line("PutBatch", batches);
    latency_line("Commit", stats.all("Commit"));
    let verified = committed.len().saturating_sub(bad as usize);
    println!("    transmissions committed and checked  {verified} of {ntx}");
    print_errors(&stats);
    used.print(secs);
    println!(
        "    collector       RSS peak {:.1} MiB, at the end {:.1} MiB",
        rss.peak_mib, rss.end_mib
    );
    println!("    duration        {secs:.1} s");
    Ok(outcome)
}

/// One agent's heartbeats from `start` until `end`, at most one per 0.8 period.
async fn heartbeats(
    ch: Channel,
    t0: Instant,
    start: Instant,
    end: Instant,
    every: Duration,
) -> Stats {
    let mut client = AgentLifecycleClient::new(ch);
    let mut stats = Stats::default();
    let max_calls = (end - start).as_secs_f64() / every.as_secs_f64() / 0.8 + 2.0;
    let mut next = start;
    for k in 0..max_calls as u64 {
        if next >= end {
            break;
        }
        sleep_until(next).await;
        let t = Instant::now();
        match client.heartbeat(request()).await {
            Ok(_) => stats.ok(if k == 0 { FIRST } else { "Heartbeat" }, t0, t),
            Err(s) => stats.error(format!("Heartbeat {:?}", s.code())),
        }
        let jitter = rand::rng().random_range(0.8..=1.2);
        next = (next + every.mul_f64(jitter)).max(Instant::now());
    }
    stats
}

/// A normal agent's heartbeat, minimal.
pub fn request() -> pb::HeartbeatRequest {
    let now_ms = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
        .map_or(0, |d| d.as_millis() as i64);
    pb::HeartbeatRequest {
        agent_version: "xtask-scale".into(),
        os: "linux".into(),
        certificate_not_after_unix_ms: now_ms + 86_400_000,
        agent_time_unix_ms: now_ms,
        ..Default::default()
    }
}
