//! `cargo xtask scale`: many agents against one collector process.
//!
//! Method. The harness starts an analytic and a source PostgreSQL cluster, a
//! development PKI and `transmissor-collector serve` (release build) on
//! 127.0.0.1. From the development CA this process issues `--agents` agent
//! certificates (ECDSA P-256, one synthetic municipality each: IBGE prefix
//! `900000 + i` and its computed check digit), registers the municipalities
//! and agents with two `INSERT ... SELECT FROM unnest(...)`, and gives each
//! agent its own rustls configuration (TLS 1.3, ALPN h2) and its own lazily
//! connecting channel: each agent is one TCP + TLS connection presenting its
//! own certificate, as real agents are.
//!
//! 1. Heartbeats: agent `i` sends its first `AgentLifecycle.Heartbeat` at
//!    `ramp · i / N` (spreading the handshakes), then one every
//!    `--heartbeat-every` ±20 % until `--duration` has passed. Each agent's
//!    first call carries its TCP and TLS handshake and is reported apart; the
//!    heartbeat p50/p99 (and `RESULT scale_heartbeat_p99_ms`) are of the
//!    other calls, also split into those sent while transmissions ran and
//!    the rest.
//! 2. Transmissions, overlapping the heartbeats: when the ramp ends,
//!    `--transmissions` distinct agents at once each run `Begin` → 2 or 3
//!    `PutBatch` (20 COPY text rows each, zstd, CRC-32C; one in flight) →
//!    `Commit`, in `snapshot` mode into `analytic.scale_t`. The rows per
//!    municipality are then checked in the analytic database; a difference
//!    counts as an error.
//!
//! Collector CPU (utime + stime) and peak RSS (VmHWM) come from
//! `/proc/<pid>`, the load generator's CPU from `/proc/self` and the whole
//! machine's (PostgreSQL included) from `/proc/stat`, over the load phase.
//!
//! Limits. Load generator, collector and PostgreSQL share this machine's
//! cores (as does anything else running), so latencies are an upper bound
//! for a collector with a machine of its own. The clusters run with fsync
//! off and the collector's pool has 16 connections (harness defaults). All
//! transmissions load one target, so their `Begin` and `Commit` queue on its
//! advisory lock (the worst case for the pool).
//! Heartbeat bodies are minimal. Each side holds one socket per agent, so
//! `--agents` is bounded by the file-descriptor limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::Rng;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tonic::transport::Channel;
use uuid::Uuid;

use transmissor_agent::transport::connect_lazy;
use transmissor_collector::pki::Ca;
use transmissor_proto::identity::{AgentUri, Ibge};
use transmissor_proto::pb::agent_lifecycle_client::AgentLifecycleClient;
use transmissor_proto::pb::transmission_client::TransmissionClient;
use transmissor_proto::pb::{self, Mode, State};
use transmissor_proto::{batch, checksum};
use transmissor_tests::stack::{Stack, StackOptions};

#[derive(Args)]
pub struct ScaleArgs {
    /// Agent identities: one certificate, municipality and TLS connection each.
    #[arg(long, default_value_t = 5570, value_parser = clap::value_parser!(u32).range(1..=99_999))]
    agents: u32,
    /// How long the agents heartbeat (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Heartbeat period of each agent (±20% jitter).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat_every: Duration,
    /// Agents start over this time (at most half of --duration).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ramp: Duration,
    /// Concurrent small snapshot transmissions from as many distinct agents,
    /// started when the ramp ends.
    #[arg(long, default_value_t = 650)]
    transmissions: u32,
    /// Keep the configs, certificates and logs in DIR (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const ROWS_PER_BATCH: u64 = 20;
const TARGET: &str = "scale_t";
const FIRST: &str = "first call";

pub fn run(args: ScaleArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| scale(args))
}

struct Agent {
    ibge: Ibge,
    id: Uuid,
    /// Its own connection: lazily opened, with its own certificate.
    channel: Channel,
}

/// Per call: (start in s after t0, latency in ms); errors by call and status.
#[derive(Default)]
struct Stats {
    calls: BTreeMap<&'static str, Vec<(f64, f64)>>,
    errors: BTreeMap<String, u64>,
    committed: Vec<(Ibge, u64)>,
}

impl Stats {
    fn ok(&mut self, call: &'static str, t0: Instant, t: Instant) {
        let sample = ((t - t0).as_secs_f64(), t.elapsed().as_secs_f64() * 1e3);
        self.calls.entry(call).or_default().push(sample);
    }
    fn error(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }
    fn merge(&mut self, o: Stats) {
        for (k, v) in o.calls {
            self.calls.entry(k).or_default().extend(v);
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.committed.extend(o.committed);
    }
    /// Latencies (ms) of `call` whose start satisfies `when`.
    fn ms(&self, call: &str, when: impl Fn(f64) -> bool) -> Vec<f64> {
        let all = self.calls.get(call).map(Vec::as_slice).unwrap_or_default();
        all.iter().filter(|s| when(s.0)).map(|s| s.1).collect()
    }
}

/// One prepared transmission: its batches and what Commit must carry.
struct Payload {
    ibge: Ibge,
    batches: Vec<pb::PutBatchRequest>,
    rows: u64,
    digest: String,
}

async fn scale(args: ScaleArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let (n, ntx) = (args.agents as usize, args.transmissions as usize);
    let (every, ramp) = (args.heartbeat_every, args.ramp.min(args.duration / 2));
    println!("==> starting PostgreSQL clusters and the development PKI");
    let opts = StackOptions {
        dir: args.dir.clone(),
        ..Default::default()
    };
    let mut stack = Stack::with_options(&[], opts).await?;
    println!("    work directory: {}", stack.dir.display());

    let t = std::time::Instant::now();
    // 127.0.0.1 (not "localhost", which may resolve to ::1 first); the name checked is localhost.
    let endpoint = format!("https://127.0.0.1:{}", stack.collector_addr.port());
    let agents = issue_agents(&stack.dir.join("pki"), &endpoint, n).await?;
    println!("==> issued {n} agent certificates in {:.2?}", t.elapsed());
    register(&stack, &agents).await?;
    let payloads = (agents.iter().take(ntx).enumerate())
        .map(|(i, a)| payload(a.ibge, 2 + i as u32 % 2))
        .collect::<Result<Vec<_>>>()?;

    println!("==> starting the collector on {}", stack.collector_addr);
    stack.start_collector().await?;
    let pid = (stack.collector.as_ref().and_then(|p| p.pid()))
        .context("the collector has no pid")?
        .to_string();

    println!(
        "==> {n} agents heartbeat every {every:?} for {:?}, started over {ramp:?}; \
         {ntx} transmissions start at {ramp:?}",
        args.duration
    );
    let before = (cpu_ticks(&pid)?, cpu_ticks("self")?, machine_ticks()?);
    let t0 = Instant::now();
    let end = t0 + args.duration;
    let mut tasks = JoinSet::new();
    for (i, a) in agents.iter().enumerate() {
        let start = t0 + ramp.mul_f64(i as f64 / n as f64);
        tasks.spawn(heartbeats(a.channel.clone(), t0, start, end, every));
    }
    for (a, p) in agents.iter().zip(payloads) {
        tasks.spawn(transmit(a.channel.clone(), p, t0, t0 + ramp));
    }
    let mut stats = Stats::default();
    while let Some(r) = tasks.join_next().await {
        stats.merge(r.context("load task")?);
    }
    let load_s = t0.elapsed().as_secs_f64();
    let after = (cpu_ticks(&pid)?, cpu_ticks("self")?, machine_ticks()?);
    let rss_mib = peak_rss_kib(&pid)? as f64 / 1024.0;
    drop(agents);

    let bad = verify(&stack, &stats.committed).await?;
    if bad > 0 {
        let what = "municipalities whose analytic rows differ";
        stats.errors.insert(what.into(), bad);
    }
    println!("==> stopping the collector");
    (stack.stop_collector().await).context("stopping the collector")?;

    // The window in which transmissions ran, in s after t0.
    let tx_calls = ["Begin", "PutBatch", "Commit"].map(|c| stats.calls.get(c));
    let tx_end = (tx_calls.iter().flatten().flat_map(|v| v.iter()))
        .map(|(at, ms)| at + ms / 1e3)
        .fold(0.0, f64::max);
    let during = |at: f64| at >= ramp.as_secs_f64() && at <= tx_end;
    let mut heartbeats = stats.ms("Heartbeat", |_| true);
    let hb99 = pct(&mut heartbeats, 0.99);
    let mut batches = stats.ms("PutBatch", |_| true);
    let b99 = pct(&mut batches, 0.99);
    let nerr: u64 = stats.errors.values().sum();
    // /proc counts in USER_HZ, 100 per second on Linux.
    let cpu = |a: u64, b: u64| (a - b) as f64 / 100.0;
    let (col_cpu, gen_cpu) = (cpu(after.0, before.0), cpu(after.1, before.1));
    let busy = (after.2.0 - before.2.0) as f64 / (after.2.1 - before.2.1).max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    println!("==> results ({n} agents, one certificate and TLS connection each)");
    let all = |_: f64| true;
    let hb_tx = stats.ms("Heartbeat", during);
    let hb_other = stats.ms("Heartbeat", |at| !during(at));
    let rows = [
        ("heartbeat", heartbeats),
        ("heartbeat, transmissions running", hb_tx),
        ("heartbeat, other times", hb_other),
        ("first call (TCP+TLS+heartbeat)", stats.ms(FIRST, all)),
        ("Begin", stats.ms("Begin", all)),
        ("PutBatch", batches),
        ("Commit", stats.ms("Commit", all)),
    ];
    for (label, mut v) in rows {
        let (len, p50, p99) = (v.len(), pct(&mut v, 0.5), pct(&mut v, 0.99));
        println!("    {label:<36} {len:>7} ok  p50 {p50:>7.1} ms  p99 {p99:>7.1} ms");
    }
    let verified = stats.committed.len().saturating_sub(bad as usize);
    println!("    transmissions committed and checked  {verified} of {ntx}");
    println!("    errors                               {nerr}");
    for (what, count) in &stats.errors {
        println!("      {count:>8}  {what}");
    }
    let (col, gen_) = (100.0 * col_cpu / load_s, 100.0 * gen_cpu / load_s);
    println!(
        "    collector       CPU {col_cpu:.1} s ({col:.0}% of a core), peak RSS {rss_mib:.1} MiB"
    );
    println!("    load generator  CPU {gen_cpu:.1} s ({gen_:.0}% of a core)");
    let busy = 100.0 * busy;
    println!("    machine         {busy:.0}% busy of {cores} cores (all processes)");
    let total = started.elapsed().as_secs_f64();
    println!("    duration        load {load_s:.1} s, total {total:.1} s");
    println!("RESULT scale_agents={n}");
    println!("RESULT scale_heartbeat_p99_ms={hb99:.1}");
    println!("RESULT scale_batch_p99_ms={b99:.1}");
    println!("RESULT scale_errors={nerr}");
    println!("RESULT scale_collector_rss_mib={rss_mib:.1}");
    Ok(())
}

/// IBGE code `900000 + i` and its check digit (rule in `proto/src/identity.rs`).
fn synthetic_ibge(i: usize) -> Result<Ibge> {
    let prefix = format!("{:06}", 900_000 + i);
    let digit = |(k, c): (usize, u8)| {
        let p = u32::from(c - b'0') * if k % 2 == 0 { 1 } else { 2 };
        p / 10 + p % 10
    };
    let sum: u32 = prefix.bytes().enumerate().map(digit).sum();
    Ok(format!("{prefix}{}", (10 - sum % 10) % 10).parse()?)
}

/// Issues `n` agent certificates from the stack's development CA, on all cores.
async fn issue_agents(pki: &Path, endpoint: &str, n: usize) -> Result<Vec<Agent>> {
    let read = |f: &str| {
        let p = pki.join(f);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let ca_pem = read("ca.pem")?;
    let ca = Ca::from_pem(&ca_pem, &read("ca.key")?).context("loading the development CA")?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.context("CA certificate PEM")?)?;
    }
    let shared = Arc::new((ca, Arc::new(roots), endpoint.to_string()));
    let workers = std::thread::available_parallelism().map_or(2, |c| c.get());
    let mut handles = Vec::new();
    for w in 0..workers {
        let shared = shared.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            (w * n / workers..(w + 1) * n / workers)
                .map(|i| issue_one(&shared.0, &shared.1, &shared.2, i))
                .collect::<Result<Vec<_>>>()
        }));
    }
    let mut agents = Vec::with_capacity(n);
    for h in handles {
        agents.extend(h.await.context("certificate worker")??);
    }
    Ok(agents)
}

/// One agent: certificate, TLS configuration and channel (the blocking
/// pool runs inside the runtime's context, which the channel needs).
fn issue_one(ca: &Ca, roots: &Arc<RootCertStore>, endpoint: &str, i: usize) -> Result<Agent> {
    let (ibge, id) = (synthetic_ibge(i)?, Uuid::new_v4());
    let issued = ca.issue_agent(&AgentUri::new(ibge, id), Duration::from_secs(86_400))?;
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("agent certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).context("agent key PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let (connect, request) = (Duration::from_secs(10), Duration::from_secs(30));
    let name = Some("localhost".to_string());
    let channel = connect_lazy(Arc::new(cfg), endpoint, name, connect, request)?;
    Ok(Agent { ibge, id, channel })
}

/// Registers all municipalities and agents with two statements.
async fn register(stack: &Stack, agents: &[Agent]) -> Result<()> {
    let c = stack.analytic_client().await?;
    let ibges: Vec<String> = agents.iter().map(|a| a.ibge.to_string()).collect();
    let names: Vec<String> = ibges.iter().map(|i| format!("Sintético {i}")).collect();
    let ids: Vec<Uuid> = agents.iter().map(|a| a.id).collect();
    let sql = "INSERT INTO transmissor.municipalities (ibge, name) \
               SELECT * FROM unnest($1::text[], $2::text[])";
    (c.execute(sql, &[&ibges, &names]).await).context("registering municipalities")?;
    let sql =
        "INSERT INTO transmissor.agents (id, ibge) SELECT * FROM unnest($1::uuid[], $2::text[])";
    (c.execute(sql, &[&ids, &ibges]).await).context("registering agents")?;
    Ok(())
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
        let now_ms = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
            .map_or(0, |d| d.as_millis() as i64);
        let req = pb::HeartbeatRequest {
            agent_version: "xtask-scale".into(),
            os: "linux".into(),
            certificate_not_after_unix_ms: now_ms + 86_400_000,
            agent_time_unix_ms: now_ms,
            ..Default::default()
        };
        let t = Instant::now();
        match client.heartbeat(req).await {
            Ok(_) => stats.ok(if k == 0 { FIRST } else { "Heartbeat" }, t0, t),
            Err(s) => stats.error(format!("Heartbeat {:?}", s.code())),
        }
        let jitter = rand::rng().random_range(0.8..=1.2);
        next = (next + every.mul_f64(jitter)).max(Instant::now());
    }
    stats
}

/// `nb` batches of [`ROWS_PER_BATCH`] COPY text rows for `scale_t (id integer, v text)`.
fn payload(ibge: Ibge, nb: u32) -> Result<Payload> {
    let mut digest = checksum::TransmissionDigest::new();
    let mut batches = Vec::new();
    for seq in 1..=nb {
        let first = u64::from(seq - 1) * ROWS_PER_BATCH;
        let raw: String = (first..first + ROWS_PER_BATCH)
            .map(|id| format!("{id}\tmunicipality {ibge} row {id}\n"))
            .collect();
        let crc32c = checksum::crc32c(raw.as_bytes());
        digest.add(seq, ROWS_PER_BATCH, crc32c);
        let data = batch::compress(raw.as_bytes(), 3).context("zstd")?.into();
        let (rows, raw_len, transmission_id) = (ROWS_PER_BATCH, raw.len() as u64, 0);
        batches.push(pb::PutBatchRequest {
            transmission_id,
            seq,
            rows,
            raw_len,
            crc32c,
            data,
        });
    }
    let (rows, digest) = (u64::from(nb) * ROWS_PER_BATCH, digest.finish());
    Ok(Payload {
        ibge,
        batches,
        rows,
        digest,
    })
}

/// Begin → PutBatch… → Commit for one agent, at `at`.
async fn transmit(ch: Channel, p: Payload, t0: Instant, at: Instant) -> Stats {
    sleep_until(at).await;
    let mut stats = Stats::default();
    match transmit_calls(TransmissionClient::new(ch), &p, t0, &mut stats).await {
        Ok(()) => stats.committed.push((p.ibge, p.rows)),
        Err(e) => stats.error(e),
    }
    stats
}

async fn transmit_calls(
    mut c: TransmissionClient<Channel>,
    p: &Payload,
    t0: Instant,
    stats: &mut Stats,
) -> Result<(), String> {
    let code = |call: &'static str| move |s: tonic::Status| format!("{call} {:?}", s.code());
    let column = |name: &str, ty: &str| pb::Column {
        name: name.into(),
        source_type: ty.into(),
        target_type: ty.into(),
    };
    let begin = pb::BeginRequest {
        run_id: Uuid::new_v4().to_string(),
        job: "scale".into(),
        mode: Mode::Snapshot as i32,
        target: TARGET.into(),
        columns: vec![column("id", "integer"), column("v", "text")],
        plan_version: "xtask-scale".into(),
        agent_version: "xtask-scale".into(),
        ..Default::default()
    };
    let t = Instant::now();
    let id = c.begin(begin).await.map_err(code("Begin"))?.into_inner();
    let id = id.transmission_id;
    stats.ok("Begin", t0, t);
    for b in &p.batches {
        let mut req = b.clone();
        req.transmission_id = id;
        let t = Instant::now();
        c.put_batch(req).await.map_err(code("PutBatch"))?;
        stats.ok("PutBatch", t0, t);
    }
    let commit = pb::CommitRequest {
        transmission_id: id,
        total_batches: p.batches.len() as u32,
        total_rows: p.rows,
        digest: p.digest.clone(),
    };
    let t = Instant::now();
    let r = c.commit(commit).await.map_err(code("Commit"))?.into_inner();
    stats.ok("Commit", t0, t);
    if r.state != State::Committed as i32 || r.rows != p.rows {
        return Err(format!(
            "Commit answered state {} and {} rows",
            r.state, r.rows
        ));
    }
    Ok(())
}

/// How many committed municipalities' row counts in the analytic target differ.
async fn verify(stack: &Stack, committed: &[(Ibge, u64)]) -> Result<u64> {
    let expect = |(ibge, rows): &(Ibge, u64)| (ibge.to_string(), *rows as i64);
    let mut expected: BTreeMap<String, i64> = committed.iter().map(expect).collect();
    if expected.is_empty() {
        return Ok(0);
    }
    let sql = format!("SELECT _ibge::text, count(*) FROM analytic.{TARGET} GROUP BY 1");
    let c = stack.analytic_client().await?;
    let rows = (c.query(&sql, &[]).await).context("counting the analytic rows")?;
    let mut bad = 0;
    for r in rows {
        let (ibge, count): (String, i64) = (r.get(0), r.get(1));
        bad += u64::from(expected.remove(&ibge) != Some(count));
    }
    Ok(bad + expected.len() as u64)
}

/// Nearest-rank percentile `p` (0..1); 0 when empty.
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// `count` numbers from `skip` on in a whitespace-separated line.
fn numbers(line: &str, skip: usize, count: usize) -> Result<Vec<u64>> {
    let v = (line
        .split_whitespace()
        .skip(skip)
        .take(count)
        .map(str::parse))
    .collect::<Result<Vec<u64>, _>>()
    .with_context(|| format!("not numbers: {line:?}"))?;
    if v.len() != count {
        bail!("too few fields: {line:?}");
    }
    Ok(v)
}

/// utime + stime of a process (`self` or a pid), in clock ticks.
fn cpu_ticks(pid: &str) -> Result<u64> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // After "pid (comm)" comes field 3; utime and stime are fields 14 and 15.
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    Ok(numbers(after_comm, 11, 2)?.iter().sum())
}

/// (busy, total) clock ticks of the whole machine (`cpu` line of /proc/stat).
fn machine_ticks() -> Result<(u64, u64)> {
    let stat = read("/proc/stat")?;
    let v = numbers(stat.lines().next().unwrap_or_default(), 1, 8)?;
    let total: u64 = v.iter().sum();
    Ok((total - v[3] - v[4], total))
}

/// Peak resident set size (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: &str) -> Result<u64> {
    let status = read(&format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"));
    Ok(numbers(line.context("no VmHWM in /proc/<pid>/status")?, 1, 1)?[0])
}
