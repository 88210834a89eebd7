//! `--hostile`: phase 1 again, with one compromised agent (a valid
//! certificate) and one anonymous host attacking the collector the whole
//! time, to show that the normal agents are unaffected: their
//! transmissions commit and their heartbeat latency stays within the
//! calm run's noise.
//!
//! The compromised agent, in `WORKERS` loops each: `Begin` with 100,000
//! columns; `Begin` with catalog types (`regclass`); as many open
//! transmissions as its quota allows, each fed 64 MiB-declared batches of
//! zeros (decompressed in full, then refused by `COPY`); decompression
//! bombs into other agents' transmission ids; `Commit` declaring
//! `u32::MAX` batches; bursts of 64 concurrent `Status` calls; heartbeats
//! with 10,000 job statuses. The anonymous host (no client certificate)
//! opens connections that send a `PutBatch` announcing 30 MiB and never
//! finish it, and TCP connections that never start TLS.
//!
//! What every attack got back is counted by status code and printed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_proto::pb;
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::transmission_client::TransmissionClient;
use transmissor_tests::stack::Stack;

use super::agents::Agent;
use super::heartbeat::{self, Outcome, Plan};

/// Concurrent loops of each attack.
const WORKERS: usize = 2;
/// Connections the anonymous host keeps open at once.
const ANONYMOUS_CONNECTIONS: usize = 64;

/// Outcome of each attack, by status code.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    fn add<T>(&self, attack: &str, r: &Result<T, tonic::Status>) {
        let code = match r {
            Ok(_) => "OK (accepted)".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(format!("{attack:<34} {code}")).or_default() += 1;
    }

    fn note(&self, what: String) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(what).or_default() += 1;
    }
}

/// Runs phase 1 for `normal` while `hostile` and an anonymous host attack.
pub async fn run(
    stack: &Stack,
    normal: &[Agent],
    hostile: &Agent,
    pid: &str,
    plan: &Plan,
) -> Result<Outcome> {
    println!(
        "==> phase 1 again, under attack: agent {} (municipality {}) is compromised, and a host without a certificate joins in",
        hostile.id, hostile.ibge
    );
    let stop = CancellationToken::new();
    let tally = Tally::default();
    let mut attacks = JoinSet::new();
    for _ in 0..WORKERS {
        let (ch, t, s) = (hostile.channel.clone(), tally.clone(), stop.clone());
        attacks.spawn(attack_loop(ch, t, s));
    }
    for _ in 0..ANONYMOUS_CONNECTIONS / 2 {
        let (t, s) = (tally.clone(), stop.clone());
        let ca = stack.pki.ca_cert.clone();
        let addr = stack.collector_addr;
        attacks.spawn(async move { anonymous_loop(addr, ca, t, s).await });
    }
    let outcome = heartbeat::run(stack, normal, pid, plan).await;
    stop.cancel();
    while attacks.join_next().await.is_some() {}
    println!("    what the attacks got back:");
    let m = tally.0.lock().unwrap_or_else(|p| p.into_inner());
    for (what, n) in m.iter() {
        println!("    {n:>8}  {what}");
    }
    outcome
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
        tally.add("Begin, 100,000 columns", &r);
        let r = c
            .begin(begin("probe", vec![column("x".into(), "regclass")]))
            .await;
        tally.add("Begin, regclass column", &r);
        // Open transmissions up to the quota, then feed them huge batches.
        let r = c
            .begin(begin("open", vec![column("x".into(), "integer")]))
            .await;
        if let Ok(ok) = &r {
            own.push(ok.get_ref().transmission_id);
        }
        tally.add("Begin, one more open transmission", &r);
        if let Some(&id) = own.last() {
            let mut b = big.clone();
            b.transmission_id = id;
            b.seq = seq;
            seq += 1;
            let r = c.put_batch(b).await;
            tally.add("PutBatch, 64 MiB of zeros", &r);
            let r = c
                .commit(pb::CommitRequest {
                    transmission_id: id,
                    total_batches: u32::MAX,
                    total_rows: 1,
                    digest: String::new(),
                    ..Default::default()
                })
                .await;
            tally.add("Commit, u32::MAX batches", &r);
        }
        for victim in 1..=4i64 {
            let mut b = bomb.clone();
            b.transmission_id = victim;
            let r = c.put_batch(b).await;
            tally.add("PutBatch, bomb, another's id", &r);
        }
        let burst: Vec<_> = (0..64)
            .map(|_| {
                let mut c = c.clone();
                async move { c.status(pb::StatusRequest { transmission_id: 1 }).await }
            })
            .collect();
        for r in futures::future::join_all(burst).await {
            tally.add("Status, 64 at once", &r);
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
        tally.add("Heartbeat, 10,000 job statuses", &r);
    }
}

/// The anonymous host: a `PutBatch` announcing 30 MiB over a connection
/// without a certificate, and a TCP connection that never starts TLS.
async fn anonymous_loop(
    addr: std::net::SocketAddr,
    ca: std::path::PathBuf,
    tally: Tally,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let idle = tokio::net::TcpStream::connect(addr).await;
        match half_sent_batch(addr, &ca).await {
            Ok(status) => tally.note(format!(
                "{:<34} grpc-status {status}",
                "anonymous PutBatch, body unsent"
            )),
            Err(e) => tally.note(format!("{:<34} {e}", "anonymous PutBatch, body unsent")),
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        drop(idle);
    }
}

async fn half_sent_batch(addr: std::net::SocketAddr, ca: &std::path::Path) -> Result<String> {
    use transmissor_tests::raw_h2;
    let send = raw_h2::connect_without_certificate(addr, ca).await?;
    let mut send = send.ready().await?;
    let req = raw_h2::grpc_request("/transmissor.v1.Transmission/PutBatch");
    let (resp, mut body) = send.send_request(req, false)?;
    body.send_data(raw_h2::unfinished_message(), false)?;
    let resp = tokio::time::timeout(Duration::from_secs(30), resp).await??;
    Ok(raw_h2::grpc_status(&resp).unwrap_or_else(|| "none".into()))
}
