//! `--hostile`: phase 1 again, with one compromised agent (a valid
//! certificate) and anonymous hosts (`anonymous.rs`) attacking the
//! collector the whole time, to show whether the normal agents are
//! unaffected: their transmissions commit, their heartbeat and
//! new-connection latencies stay near the calm run's, no errors.
//!
//! The compromised agent, in `WORKERS` loops each: `Begin` with 100,000
//! columns; `Begin` with catalog types (`regclass`); as many open
//! transmissions as its quota allows, each fed 64 MiB-declared batches of
//! zeros (decompressed in full, then refused by `COPY`); decompression
//! bombs into other agents' transmission ids; `Commit` declaring
//! `u32::MAX` batches; bursts of 64 concurrent `Status` calls; heartbeats
//! with 10,000 job statuses. The anonymous hosts start [`WARMUP`] before
//! the phase, so that their connections are in place when it begins.
//!
//! What every attack got back is counted and printed; the collector's RSS
//! is read again [`SETTLE`] after the attacks stopped.

use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::transmission_client::TransmissionClient;

use super::agents::Agent;
use super::anonymous::{self, AttackArgs, Target};
use super::heartbeat::{self, Outcome, Plan};
use super::sys;
use super::tally::Tally;
use transmissor_tests::stack::Stack;

/// Concurrent loops of each attack of the compromised agent.
const WORKERS: usize = 2;
/// The anonymous attacks run this long before the phase starts.
const WARMUP: Duration = Duration::from_secs(3);
/// After the attacks stop, the collector's RSS is read this much later.
const SETTLE: Duration = Duration::from_secs(2);

/// The attacked phase's outcome for the normal agents, and the attacks'.
pub struct Attacked {
    pub outcome: Outcome,
    /// RESULT lines of the anonymous attacks (`anonymous::results`).
    pub attacks: Vec<(String, u64)>,
    /// The collector's RSS [`SETTLE`] after the attacks stopped, in MiB.
    pub rss_after_mib: f64,
}

impl Attacked {
    /// The RESULT lines of the attacked phase, with the ratios to `calm`.
    pub fn results(&self, calm: &Outcome) -> Vec<(String, String)> {
        let under = &self.outcome;
        let ratio = |a: f64, c: f64| format!("{:.2}", a / c.max(1e-3));
        let (hb, new) = (under.heartbeat_p99_ms, under.new_connection_p99_ms);
        let mut out = vec![
            ("errors", under.errors.to_string()),
            ("heartbeat_p99_ms", format!("{hb:.1}")),
            ("new_connection_p99_ms", format!("{new:.1}")),
            ("batch_p99_ms", format!("{:.1}", under.batch_p99_ms)),
            (
                "collector_rss_peak_mib",
                format!("{:.1}", under.rss.peak_mib),
            ),
            ("collector_rss_end_mib", format!("{:.1}", under.rss.end_mib)),
            (
                "collector_rss_after_mib",
                format!("{:.1}", self.rss_after_mib),
            ),
            ("generator_cpu_pct", format!("{:.0}", under.generator_pct)),
            ("heartbeat_p99_ratio", ratio(hb, calm.heartbeat_p99_ms)),
            (
                "new_connection_p99_ratio",
                ratio(new, calm.new_connection_p99_ms),
            ),
            (
                "rss_peak_ratio",
                ratio(under.rss.peak_mib, calm.rss.peak_mib),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (format!("scale_hostile_{k}"), v))
        .collect::<Vec<_>>();
        out.extend(self.attacks.iter().map(|(k, n)| (k.clone(), n.to_string())));
        out
    }
}

/// Runs phase 1 for `normal` while `hostile` and the anonymous hosts attack.
pub async fn run(
    stack: &Stack,
    normal: &[Agent],
    hostile: &Agent,
    pid: &str,
    plan: &Plan,
    sizes: &AttackArgs,
    target: &Target,
) -> Result<Attacked> {
    println!(
        "==> phase 1 again, under attack: agent {} (municipality {}) is compromised, and \
         anonymous hosts on 127.0.0.2-7 hold {} sockets (started {WARMUP:?} before)",
        hostile.id,
        hostile.ibge,
        sizes.sockets()
    );
    let stop = CancellationToken::new();
    let tally = Tally::default();
    let mut attacks = JoinSet::new();
    for _ in 0..WORKERS {
        let (ch, t, s) = (hostile.channel.clone(), tally.clone(), stop.clone());
        attacks.spawn(attack_loop(ch, t, s));
    }
    anonymous::spawn(&mut attacks, target, sizes, &tally, &stop)?;
    tokio::time::sleep(WARMUP).await;
    let outcome = heartbeat::run(stack, normal, pid, plan).await;
    stop.cancel();
    while attacks.join_next().await.is_some() {}
    tokio::time::sleep(SETTLE).await;
    let rss_after_mib = sys::rss_kib(pid)? as f64 / 1024.0;
    println!("    what the attacks got back:");
    tally.print();
    println!("    collector RSS {SETTLE:?} after the attacks stopped: {rss_after_mib:.1} MiB");
    Ok(Attacked {
        outcome: outcome?,
        attacks: anonymous::results(&tally),
        rss_after_mib,
    })
}

fn column(name: String, ty: &str) -> pb::Column {
    pb::Column {
        name,
        source_type: ty.into(),
        target_type: ty.into(),
        pseudonymised: false,
    }
}

fn begin(job: &str, columns: Vec<pb::Column>) -> pb::BeginRequest {
    pb::BeginRequest {
        run_id: Uuid::new_v4().to_string(),
        job: job.into(),
        mode: pb::Mode::Snapshot as i32,
        target: format!("hostile_{job}"),
        columns,
        plan_version: "hostile".into(),
        ..Default::default()
    }
}

/// A valid zstd frame of `n` zeros, declared as such.
fn zeros(id: i64, seq: u32, n: usize) -> pb::PutBatchRequest {
    let raw = vec![0u8; n];
    pb::PutBatchRequest {
        transmission_id: id,
        seq,
        rows: 1,
        raw_len: n as u64,
        crc32c: transmissor_proto::checksum::crc32c(&raw),
        data: transmissor_proto::batch::compress(&raw, 19)
            .unwrap_or_default()
            .into(),
    }
}

/// The compromised agent: every attack in turn until `stop`.
async fn attack_loop(ch: Channel, tally: Tally, stop: CancellationToken) {
    let mut c = TransmissionClient::new(ch.clone())
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let mut life = AgentLifecycleClient::new(ch).max_encoding_message_size(64 << 20);
    let wide: Vec<pb::Column> = (0..100_000)
        .map(|i| column(format!("c{i}"), "integer"))
        .collect();
    let big = zeros(0, 1, 64 << 20);
    let mut bomb = zeros(0, 1, 200 << 20);
    bomb.raw_len = 1 << 20;
    let mut own: Vec<i64> = Vec::new();
    let mut seq = 1u32;
    while !stop.is_cancelled() {
        let r = c.begin(begin("wide", wide.clone())).await;
        tally.add("compromised: Begin, 100,000 columns", &r);
        let r = c
            .begin(begin("probe", vec![column("x".into(), "regclass")]))
            .await;
        tally.add("compromised: Begin, regclass column", &r);
        // Open transmissions up to the quota, then feed them huge batches.
        let r = c
            .begin(begin("open", vec![column("x".into(), "integer")]))
            .await;
        if let Ok(ok) = &r {
            own.push(ok.get_ref().transmission_id);
        }
        tally.add("compromised: Begin, one more open transmission", &r);
        if let Some(&id) = own.last() {
            let mut b = big.clone();
            b.transmission_id = id;
            b.seq = seq;
            seq += 1;
            let r = c.put_batch(b).await;
            tally.add("compromised: PutBatch, 64 MiB of zeros", &r);
            let r = c
                .commit(pb::CommitRequest {
                    transmission_id: id,
                    total_batches: u32::MAX,
                    total_rows: 1,
                    digest: String::new(),
                    ..Default::default()
                })
                .await;
            tally.add("compromised: Commit, u32::MAX batches", &r);
        }
        for victim in 1..=4i64 {
            let mut b = bomb.clone();
            b.transmission_id = victim;
            let r = c.put_batch(b).await;
            tally.add("compromised: PutBatch, bomb, another's id", &r);
        }
        let burst: Vec<_> = (0..64)
            .map(|_| {
                let mut c = c.clone();
                async move { c.status(pb::StatusRequest { transmission_id: 1 }).await }
            })
            .collect();
        for r in futures::future::join_all(burst).await {
            tally.add("compromised: Status, 64 at once", &r);
        }
        let runs = (0..10_000)
            .map(|i| pb::JobRunStatus {
                job: format!("job{i}"),
                outcome: "failed".into(),
                error: "x".repeat(100),
                ..Default::default()
            })
            .collect();
        let r = life
            .heartbeat(pb::HeartbeatRequest {
                last_runs: runs,
                ..Default::default()
            })
            .await;
        tally.add("compromised: Heartbeat, 10,000 job statuses", &r);
    }
}
