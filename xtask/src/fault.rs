//! `cargo xtask fault`: a bounded fault campaign against the real system.
//!
//! Setup. The harness starts an analytic and a source PostgreSQL cluster
//! (fsync off, but `synchronous_commit = on`: a server crash loses nothing
//! it acknowledged, which is what a process crash without a power cut
//! guarantees), a development PKI, `transmissor-collector serve` (release
//! build) and a TCP [`Proxy`] in front of it; the agent's endpoint is the
//! proxy. One municipality's source holds `--rows` rows in `grande`; the
//! agent has a `snapshot` job (the whole table) and an `append` job (every
//! 10th row) and cuts 16 KiB batches so an upload lasts long enough to hit.
//! A baseline transmission creates the targets and measures the snapshot
//! job's size, which places the faults.
//!
//! Rounds. Each round changes the source a little (seeded inserts, updates
//! and deletes), then strikes one fault at one random point of a
//! transmission. The kinds are dealt in shuffled cycles, so every kind
//! comes up once in the first six rounds:
//! 1. `collector-kill`: SIGKILL of the collector after a random number of
//!    batches is held (0 = before `Begin`, all = about to commit), restarted
//!    after a random outage;
//! 2. `agent-kill`: SIGKILL of the agent after a random number of batches is
//!    spooled (during extraction) or held (during upload, up to the commit);
//! 3. `analytic-restart`: the analytic server crashes (immediate stop) or
//!    is stopped for a random while, mid-upload or mid-commit (an analyst's
//!    open transaction holds the snapshot target, so the commit is caught
//!    waiting inside its transaction);
//! 4. `network-cut`: the proxy drops every live connection and refuses new
//!    ones for 2–6 s, after a random number of batches is held;
//! 5. `spool-full`: the agent runs with a random `spool.max_bytes` between
//!    10% and 102% of the snapshot job's size (it must stop with "spool
//!    full": in the snapshot job, or near the top of the range in the
//!    append job extracted while the snapshot still waits in the spool); the
//!    limit is then restored;
//! 6. `corrupt-spool`: the collector is killed mid-upload, the agent is
//!    killed once the snapshot job is fully spooled, and bytes are flipped
//!    in one spooled batch the collector does not hold (header or frame);
//!    the agent must notice (CRC), abort that transmission and deliver a
//!    fresh extraction.
//!
//! Recovery is the system's own: the run the fault hit is left to finish
//! when it is still alive, then `transmissor-agent run --once` is run until
//! it exits 0 with an empty spool (at most [`MAX_RUNS`] runs); nothing is
//! deleted by hand unless a round already failed (then the spool is cleared
//! to rebuild a known state).
//!
//! Checks after each round, with byte comparisons rather than counts: the
//! municipality's snapshot slice equals the source (COPY text dump); every
//! append transmission committed in the round holds exactly the source's
//! list, and across all rounds the rows per `_transmission_id` are those of
//! the committed transmissions (nothing doubled, nothing from a failed or
//! aborted one); no open transmission, staging table or stray partition is
//! left; the collector process still runs (it reconnects to its database
//! by itself); the fault's own signs (the "spool full" stop, the
//! transmission aborted for corruption). A concurrent reader polls the targets all along
//! and must only ever see the snapshot before or after the round, and only
//! whole append transmissions.
//!
//! A failed check is printed under its round and the campaign goes on.
//! It ends after `--rounds` rounds or, once every kind has had its round,
//! when another round (at the mean round time so far) would pass
//! `--duration`, whichever comes first. `--seed` replays the same choices
//! (kinds, points, outages, flipped bytes, source changes); `--only` limits
//! the kinds. The last lines are `RESULT fault_rounds=N` and
//! `RESULT fault_failures=N`; the command fails when a round failed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use transmissor_tests::pg::ClusterOptions;
use transmissor_tests::procs::Proc;
use transmissor_tests::proxy::Proxy;
use transmissor_tests::stack::{Job, Municipality, Stack, StackOptions, copy_dump};

#[derive(Args)]
pub struct FaultArgs {
    /// Rounds to run (one fault each).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Time budget (e.g. 5m, 90s): once every kind has had its round, no
    /// round starts that would, at the mean round time so far, end after it.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of every random choice (printed at start; default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Rows in the source table.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(i64).range(1000..))]
    rows: i64,
    /// Only these fault kinds (repeat or comma-separate; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Kind>,
    /// Working directory for configs, logs and spools (emptied first;
    /// default: target/fault).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const MUNICIPALITY: (&str, &str) = ("3550308", "São Paulo");
const SNAPSHOT_QUERY: &str = "SELECT id, payload, valor FROM grande";
const LIST_QUERY: &str = "SELECT id, payload FROM grande WHERE id % 10 = 0";
const SPOOL_TUNING: &str = "[spool]\nbatch_raw_bytes = \"16KiB\"\n";
/// Agent runs allowed after a fault before the round counts as failed.
const MAX_RUNS: u32 = 4;
/// One agent run (its retries give up after 120 s, see the harness config).
const RUN_TIMEOUT: Duration = Duration::from_secs(200);
/// Waiting for a fault's trigger point.
const MARK_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(10);

pub fn run(args: FaultArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| campaign(args))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Kind {
    /// SIGKILL of the collector during an upload.
    CollectorKill,
    /// SIGKILL of the agent during extraction or upload.
    AgentKill,
    /// Crash or stop of the analytic server mid-upload or mid-commit.
    AnalyticRestart,
    /// The link to the collector cut for a few seconds.
    NetworkCut,
    /// A spool limit below the snapshot job's size.
    SpoolFull,
    /// Bytes flipped in a spooled batch.
    CorruptSpool,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::CollectorKill,
        Kind::AgentKill,
        Kind::AnalyticRestart,
        Kind::NetworkCut,
        Kind::SpoolFull,
        Kind::CorruptSpool,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::CollectorKill => "collector-kill",
            Kind::AgentKill => "agent-kill",
            Kind::AnalyticRestart => "analytic-restart",
            Kind::NetworkCut => "network-cut",
            Kind::SpoolFull => "spool-full",
            Kind::CorruptSpool => "corrupt-spool",
        }
    }
}

/// The kinds of `rounds` rounds: shuffled cycles of `kinds` (all when empty).
fn schedule(rng: &mut StdRng, rounds: u32, kinds: &[Kind]) -> Vec<Kind> {
    let kinds = if kinds.is_empty() {
        &Kind::ALL[..]
    } else {
        kinds
    };
    let mut out = Vec::new();
    while out.len() < rounds as usize {
        let mut cycle = kinds.to_vec();
        cycle.shuffle(rng);
        out.extend(cycle);
    }
    out.truncate(rounds as usize);
    out
}

/// What a round's fault did, for its report line.
struct Strike {
    /// Since the agent run it hit started.
    at: Option<Duration>,
    what: String,
}

impl Strike {
    fn describe(&self) -> String {
        match self.at {
            Some(at) => format!("t+{:.2}s {}", at.as_secs_f64(), self.what),
            None => self.what.clone(),
        }
    }
}

/// What an injected fault leaves for recovery and the checks.
struct Injected {
    strike: Strike,
    /// The agent run the fault hit, when it is still running.
    running: Option<Proc>,
    /// Problems already seen while injecting (the fault's expected signs).
    problems: Vec<String>,
    /// Run id whose snapshot transmission must end aborted for corruption.
    corrupted_run: Option<String>,
}

impl Injected {
    fn new(at: Option<Duration>, what: String, running: Option<Proc>) -> Self {
        Self {
            strike: Strike { at, what },
            running,
            problems: Vec::new(),
            corrupted_run: None,
        }
    }
}

/// One round's result.
struct RoundReport {
    kind: Kind,
    strike: String,
    runs: Option<u32>,
    problems: Vec<String>,
    secs: f64,
}

/// A polled condition that marks when a fault strikes.
#[derive(Clone, Copy)]
enum Mark {
    /// Batch files in the agent's spool.
    Spooled(u64),
    /// Batches the collector holds for open transmissions.
    Held(i64),
    /// The snapshot commit waits for a lock inside its transaction.
    CommitWaiting,
}

/// The state at the start of a round.
struct RoundStart {
    /// `(count, sum(id))` of the visible snapshot slice.
    visible: (i64, i64),
    /// The same of the source after this round's change.
    source: (i64, i64),
    /// Highest transmission id so far.
    max_tid: i64,
}

async fn campaign(args: FaultArgs) -> Result<()> {
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("==> fault campaign: seed {seed} (replay with --seed {seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = schedule(&mut rng, args.rounds, &args.only);
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    println!("    rounds: {}", names.join(", "));
    let mut c = Campaign::start(&args, rng).await?;
    let mut reports = Vec::new();
    // The first cycle deals every kind once: it always runs.
    let cycle = kinds.iter().collect::<BTreeSet<_>>().len();
    for (i, kind) in kinds.iter().enumerate() {
        let budget = (i >= cycle).then_some(args.duration);
        if let Some(mean) = budget.and_then(|b| over_budget(&reports, started.elapsed(), b)) {
            println!(
                "==> stopping: another round (mean {:.0} s) would pass --duration {}",
                mean.as_secs_f64(),
                humantime::format_duration(args.duration)
            );
            break;
        }
        let report = c.round(i as u32 + 1, *kind).await;
        print_round(i + 1, kinds.len(), &report);
        let failed = !report.problems.is_empty();
        reports.push(report);
        if failed && let Err(e) = c.repair().await {
            println!("    cannot rebuild a known state, campaign stopped: {e:#}");
            break;
        }
    }
    c.finish().await?;
    summarize(&reports, started.elapsed())
}

/// The mean round time when one more round would end past `budget`.
fn over_budget(done: &[RoundReport], elapsed: Duration, budget: Duration) -> Option<Duration> {
    if done.is_empty() {
        return None;
    }
    let mean =
        Duration::from_secs_f64(done.iter().map(|r| r.secs).sum::<f64>() / done.len() as f64);
    (elapsed + mean > budget).then_some(mean)
}

fn print_round(n: usize, of: usize, r: &RoundReport) {
    let runs = r.runs.map_or("-".into(), |n| n.to_string());
    let verdict = if r.problems.is_empty() { "ok" } else { "FAIL" };
    println!(
        "round {n:>2}/{of}  {:<16}  {:<58}  recovery runs {runs:>1}  {verdict:<4}  {:>6.1}s",
        r.kind.name(),
        r.strike,
        r.secs
    );
    for p in &r.problems {
        println!("      - {p}");
    }
}

fn summarize(reports: &[RoundReport], wall: Duration) -> Result<()> {
    let mut by_kind: BTreeMap<Kind, (u32, u32)> = BTreeMap::new();
    for r in reports {
        let e = by_kind.entry(r.kind).or_default();
        e.0 += 1;
        e.1 += u32::from(!r.problems.is_empty());
    }
    let failures = reports.iter().filter(|r| !r.problems.is_empty()).count();
    println!("\nsummary ({:.0} s wall):", wall.as_secs_f64());
    for kind in Kind::ALL {
        let (n, f) = by_kind.get(&kind).copied().unwrap_or_default();
        let note = if n == 0 { "  (not exercised)" } else { "" };
        println!("    {:<16} {n:>2} rounds, {f} failed{note}", kind.name());
    }
    println!("RESULT fault_rounds={}", reports.len());
    println!("RESULT fault_failures={failures}");
    if failures > 0 {
        bail!("{failures} of {} fault rounds failed", reports.len());
    }
    Ok(())
}

fn jobs() -> Vec<Job> {
    vec![
        Job::new("grande", "snapshot", "grande", SNAPSHOT_QUERY),
        Job::new("lista", "append", "grande_lista", LIST_QUERY),
    ]
}

struct Campaign {
    stack: Stack,
    m: Municipality,
    proxy: Proxy,
    rng: StdRng,
    reader: Reader,
    /// For polling the trigger points; reopened after a server restart.
    probe: Option<Client>,
    /// The snapshot job's last committed size: batches, compressed bytes.
    batches: i64,
    compressed: i64,
    /// Agent runs so far (names their logs).
    agent_runs: u32,
}

impl Campaign {
    async fn start(args: &FaultArgs, rng: StdRng) -> Result<Self> {
        let dir = args
            .dir
            .clone()
            .unwrap_or_else(|| crate::setup::workspace_root().join("target/fault"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        println!("==> starting PostgreSQL clusters, PKI, collector and proxy");
        println!(
            "    work directory (logs, configs, spool): {}",
            dir.display()
        );
        let opts = StackOptions {
            dir: Some(dir),
            cluster: ClusterOptions {
                extra: vec![("synchronous_commit".into(), "on".into())],
                ..Default::default()
            },
            ..Default::default()
        };
        let mut stack = Stack::with_options(&[MUNICIPALITY], opts).await?;
        let m = stack.munis[0].clone();
        load_source(&stack, &m, args.rows).await?;
        stack.start_collector().await?;
        let proxy = Proxy::start(stack.collector_addr).await?;
        let reader = Reader::idle();
        let mut c = Self {
            stack,
            m,
            proxy,
            rng,
            reader,
            probe: None,
            batches: 0,
            compressed: 0,
            agent_runs: 0,
        };
        c.baseline().await?;
        c.reader = Reader::start(&c.stack, &c.m);
        Ok(c)
    }

    /// A first, undisturbed transmission: creates the targets and measures
    /// the snapshot job.
    async fn baseline(&mut self) -> Result<()> {
        let t = Instant::now();
        self.write_config(None)?;
        let mut agent = self.spawn_agent("baseline")?;
        let ok = wait_agent(&mut agent).await?;
        if !ok {
            bail!("the baseline run failed:\n{}", tail(&agent.log_text(), 30));
        }
        let analytic = self.stack.analytic_client().await?;
        let r = analytic
            .query_one(
                "SELECT batches::int8, compressed_bytes FROM transmissor.transmissions \
                 WHERE job = 'grande' AND state = 'committed' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await?;
        (self.batches, self.compressed) = (r.get(0), r.get(1));
        let problems = self.check_targets(0).await?;
        if !problems.is_empty() {
            bail!("the baseline transmission is wrong: {problems:?}");
        }
        println!(
            "==> baseline transmission: {} snapshot batches, {} compressed bytes, {:.1} s",
            self.batches,
            self.compressed,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        self.reader.stop().await;
        self.stack.stop_collector().await
    }

    /// Runs one round; any error of the harness counts as a failed round.
    async fn round(&mut self, n: u32, kind: Kind) -> RoundReport {
        let t = Instant::now();
        let mut report = RoundReport {
            kind,
            strike: "-".into(),
            runs: None,
            problems: Vec::new(),
            secs: 0.0,
        };
        if let Err(e) = self.round_inner(n, kind, &mut report).await {
            report.problems.push(format!("{e:#}"));
        }
        report.secs = t.elapsed().as_secs_f64();
        report
    }

    async fn round_inner(&mut self, n: u32, kind: Kind, report: &mut RoundReport) -> Result<()> {
        let start = self.begin_round(n).await?;
        let injected = match kind {
            Kind::CollectorKill => self.collector_kill(n).await?,
            Kind::AgentKill => self.agent_kill(n).await?,
            Kind::AnalyticRestart => self.analytic_restart(n).await?,
            Kind::NetworkCut => self.network_cut(n).await?,
            Kind::SpoolFull => self.spool_full(n).await?,
            Kind::CorruptSpool => self.corrupt_spool(n).await?,
        };
        report.strike = injected.strike.describe();
        report.problems.extend(injected.problems);
        report.runs = Some(self.recover(n, injected.running).await?);
        if !self.stack.collector.as_mut().is_some_and(Proc::is_running) {
            report.problems.push("the collector process exited".into());
        }
        if let Some(run) = &injected.corrupted_run {
            report
                .problems
                .extend(self.check_corruption_noticed(run).await?);
        }
        report
            .problems
            .extend(self.check_targets(start.max_tid).await?);
        report.problems.extend(
            self.reader
                .check(&[start.visible, start.source], self)
                .await?,
        );
        Ok(())
    }

    /// Changes the source and tells the reader which snapshot states are
    /// allowed during the round.
    async fn begin_round(&mut self, n: u32) -> Result<RoundStart> {
        let analytic = self.stack.analytic_client().await?;
        let visible = visible_slice(&analytic, &self.m).await?;
        let max_tid: i64 = analytic
            .query_one(
                "SELECT coalesce(max(id), 0) FROM transmissor.transmissions",
                &[],
            )
            .await?
            .get(0);
        let src = self.stack.source.connect(&self.m.db).await?;
        src.batch_execute(&mutation_sql(&mut self.rng, n)).await?;
        let r = src
            .query_one(
                "SELECT count(*), coalesce(sum(id), 0)::int8 FROM grande",
                &[],
            )
            .await?;
        self.reader.reset();
        Ok(RoundStart {
            visible,
            source: (r.get(0), r.get(1)),
            max_tid,
        })
    }

    // ---- the faults -------------------------------------------------------

    /// A random batch count from `from` up to `pct`% of the snapshot job's
    /// batches (about 100% is just before the commit).
    fn point(&mut self, from: i64, pct: i64) -> i64 {
        let upto = (self.batches * pct / 100).max(from);
        self.rng.random_range(from..=upto)
    }

    async fn collector_kill(&mut self, n: u32) -> Result<Injected> {
        let k = self.point(0, 99);
        let outage = Duration::from_millis(self.rng.random_range(0..1500));
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        let held = self.held().await.unwrap_or(-1);
        self.stack.kill_collector();
        tokio::time::sleep(outage).await;
        self.stack.start_collector().await?;
        let what = format!(
            "{held} batches held{}; down {} ms",
            late(reached),
            outage.as_millis()
        );
        Ok(Injected::new(Some(at), what, Some(agent)))
    }

    async fn agent_kill(&mut self, n: u32) -> Result<Injected> {
        let extracting = self.rng.random_bool(0.5);
        let k = self.point(1, 99);
        let mark = if extracting {
            Mark::Spooled(k as u64)
        } else {
            Mark::Held(k)
        };
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, mark).await?;
        let at = t.elapsed();
        agent.kill();
        let spooled = spooled_batches(&self.spool_dir());
        let held = self.held().await.unwrap_or(-1);
        let phase = if extracting {
            "extracting"
        } else {
            "uploading"
        };
        let what = format!(
            "{phase}: {spooled} batches spooled, {held} held{}",
            late(reached)
        );
        Ok(Injected::new(Some(at), what, None))
    }

    async fn analytic_restart(&mut self, n: u32) -> Result<Injected> {
        let mid_commit = self.rng.random_bool(0.5);
        let crash = self.rng.random_bool(0.5);
        let down = Duration::from_millis(self.rng.random_range(500..3000));
        let k = self.point(1, 99);
        // An analyst's open transaction on the snapshot target: the commit
        // waits for it inside its own transaction.
        let blocker = if mid_commit {
            let b = self.stack.analytic_client().await?;
            b.batch_execute("BEGIN; LOCK TABLE analytic.grande IN ACCESS SHARE MODE")
                .await?;
            Some(b)
        } else {
            None
        };
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let mark = if mid_commit {
            Mark::CommitWaiting
        } else {
            Mark::Held(k)
        };
        let reached = self.wait_mark(&mut agent, mark).await?;
        let at = t.elapsed();
        let held = self.held().await.unwrap_or(-1);
        self.restart_analytic(crash, down)?;
        drop(blocker);
        self.probe = None;
        let point = if mid_commit {
            "mid-commit".to_string()
        } else {
            format!("{held} batches held")
        };
        let how = if crash {
            "crash (immediate stop)".to_string()
        } else {
            format!("stopped {} ms", down.as_millis())
        };
        let what = format!("{point}{}; {how}", late(reached));
        Ok(Injected::new(Some(at), what, Some(agent)))
    }

    fn restart_analytic(&mut self, crash: bool, down: Duration) -> Result<()> {
        let analytic = &mut self.stack.analytic;
        tokio::task::block_in_place(|| {
            if crash {
                return analytic.crash_restart();
            }
            analytic.stop()?;
            std::thread::sleep(down);
            analytic.start_again()
        })
        .context("restarting the analytic server")
    }

    async fn network_cut(&mut self, n: u32) -> Result<Injected> {
        let k = self.point(0, 99);
        let cut = Duration::from_millis(self.rng.random_range(2000..6000));
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let reached = self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        let held = self.held().await.unwrap_or(-1);
        let before = self.proxy.dropped();
        self.proxy.cut();
        tokio::time::sleep(cut).await;
        self.proxy.restore();
        let dropped = self.proxy.dropped() - before;
        let what = format!(
            "{held} batches held{}; cut {} ms, {dropped} connections dropped",
            late(reached),
            cut.as_millis()
        );
        Ok(Injected::new(Some(at), what, Some(agent)))
    }

    async fn spool_full(&mut self, n: u32) -> Result<Injected> {
        let limit = self
            .rng
            .random_range(self.compressed / 10..=self.compressed * 102 / 100);
        self.write_config(Some(limit))?;
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        let ok = wait_agent(&mut agent).await;
        self.write_config(None)?;
        let ok = ok?;
        let pct = 100 * limit / self.compressed.max(1);
        let what = format!(
            "max_bytes {limit} ({pct}% of the snapshot job); the run ended after {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let mut injected = Injected::new(None, what, None);
        if ok {
            injected
                .problems
                .push("the run with a small spool exited 0".into());
        }
        if !agent.log_text().contains("spool full") {
            injected
                .problems
                .push(format!("no \"spool full\" in {}", agent.log.display()));
        }
        Ok(injected)
    }

    async fn corrupt_spool(&mut self, n: u32) -> Result<Injected> {
        let k = self.point(1, 80);
        let mut agent = self.spawn_agent(&format!("r{n:02}"))?;
        let t = Instant::now();
        self.wait_mark(&mut agent, Mark::Held(k)).await?;
        let at = t.elapsed();
        self.stack.kill_collector();
        let spooled = self.wait_snapshot_spooled(&mut agent).await;
        agent.kill();
        let Some(job) = spooled else {
            self.stack.start_collector().await?;
            bail!(
                "the snapshot job never finished spooling (agent log {})",
                agent.log.display()
            );
        };
        let run = dir_name(job.parent().unwrap_or(&job));
        let held = self.held_seqs(&run).await?;
        let flipped = self.flip_unheld_batch(&job, &held)?;
        self.stack.start_collector().await?;
        let mut injected = Injected::new(Some(at), flipped, None);
        injected.corrupted_run = Some(run);
        Ok(injected)
    }

    /// Waits (bounded) until the snapshot job's spool directory has
    /// `done.json`; returns that directory.
    async fn wait_snapshot_spooled(&mut self, agent: &mut Proc) -> Option<PathBuf> {
        let deadline = Instant::now() + MARK_TIMEOUT;
        while Instant::now() < deadline && agent.is_running() {
            let done = job_dirs(&self.spool_dir())
                .into_iter()
                .find(|d| dir_name(d) == "grande" && d.join("done.json").exists());
            if done.is_some() {
                return done;
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }

    /// Flips 1 to 4 bytes of a random batch the collector does not hold
    /// (in its header or its frame); describes what it did.
    fn flip_unheld_batch(&mut self, job: &Path, held: &BTreeSet<u32>) -> Result<String> {
        let files = batch_files(job);
        let unheld: Vec<&(u32, PathBuf)> =
            files.iter().filter(|(s, _)| !held.contains(s)).collect();
        let Some(&(seq, path)) = unheld.choose(&mut self.rng) else {
            bail!(
                "all {} spooled batches were already held; nothing to corrupt",
                files.len()
            );
        };
        let mut bytes = std::fs::read(path)?;
        let in_header = self.rng.random_bool(0.25);
        let range = if in_header { 0..36 } else { 36..bytes.len() };
        let flips = self.rng.random_range(1..=4);
        for _ in 0..flips {
            let at = self.rng.random_range(range.clone());
            bytes[at] ^= self.rng.random_range(1..=255u8);
        }
        std::fs::write(path, &bytes)?;
        let part = if in_header { "header" } else { "frame" };
        Ok(format!(
            "batch {seq} of {} spooled ({} held): {flips} byte(s) flipped in its {part}",
            files.len(),
            held.len()
        ))
    }

    // ---- recovery -----------------------------------------------------------

    /// Lets the run the fault hit finish, then runs the agent until a run
    /// exits 0 with an empty spool; returns how many runs that took after
    /// the faulted one.
    async fn recover(&mut self, n: u32, running: Option<Proc>) -> Result<u32> {
        if let Some(mut agent) = running
            && wait_agent(&mut agent).await?
            && job_dirs(&self.spool_dir()).is_empty()
        {
            return Ok(0);
        }
        for i in 1..=MAX_RUNS {
            let mut agent = self.spawn_agent(&format!("r{n:02}-recovery{i}"))?;
            if wait_agent(&mut agent).await? && job_dirs(&self.spool_dir()).is_empty() {
                return Ok(i);
            }
        }
        bail!(
            "the agent did not recover in {MAX_RUNS} runs; spool holds {:?}",
            job_dirs(&self.spool_dir())
        )
    }

    /// After a failed round: the link up, the collector running, the normal
    /// config, an empty spool and one clean run.
    async fn repair(&mut self) -> Result<()> {
        self.proxy.restore();
        let running = self.stack.collector.as_mut().is_some_and(Proc::is_running);
        if !running {
            self.stack.kill_collector();
            self.stack.start_collector().await?;
        }
        self.write_config(None)?;
        let spool = self.spool_dir();
        if spool.exists() {
            std::fs::remove_dir_all(&spool)?;
        }
        let mut agent = self.spawn_agent("repair")?;
        if !wait_agent(&mut agent).await? {
            bail!("the repair run failed:\n{}", tail(&agent.log_text(), 20));
        }
        Ok(())
    }

    // ---- checks -------------------------------------------------------------

    /// Every check of the targets and the control schema; `after` is the
    /// highest transmission id before the round.
    async fn check_targets(&self, after: i64) -> Result<Vec<String>> {
        let analytic = self.stack.analytic_client().await?;
        let src = self.stack.source.connect(&self.m.db).await?;
        let mut problems = self.check_snapshot(&analytic, &src).await?;
        problems.extend(check_round_appends(&analytic, &src, after).await?);
        problems.extend(check_append_totals(&analytic).await?);
        problems.extend(check_leftovers(&analytic).await?);
        Ok(problems)
    }

    async fn check_snapshot(&self, analytic: &Client, src: &Client) -> Result<Vec<String>> {
        let s = copy_dump(src, &format!("{SNAPSHOT_QUERY} ORDER BY id")).await?;
        let target = format!(
            "SELECT id, payload, valor FROM analytic.grande WHERE _ibge = '{}' ORDER BY id",
            self.m.ibge
        );
        let t = copy_dump(analytic, &target).await?;
        if s == t {
            return Ok(Vec::new());
        }
        let (sv, tv) = (
            source_state(src).await?,
            visible_slice(analytic, &self.m).await?,
        );
        Ok(vec![format!(
            "snapshot slice differs from the source: target (count, sum) {tv:?}, {} bytes; \
             source {sv:?}, {} bytes; first difference at line {}",
            t.len(),
            s.len(),
            first_diff_line(&s, &t)
        )])
    }

    /// The snapshot transmission of the corrupted run ended aborted with the
    /// corruption as its reason.
    async fn check_corruption_noticed(&self, run: &str) -> Result<Vec<String>> {
        let analytic = self.stack.analytic_client().await?;
        let row = analytic
            .query_opt(
                "SELECT state, coalesce(error, '') FROM transmissor.transmissions \
                 WHERE run_id::text = $1 AND job = 'grande'",
                &[&run],
            )
            .await?;
        let Some(row) = row else {
            return Ok(vec![format!("no transmission for the corrupted run {run}")]);
        };
        let (state, error): (String, String) = (row.get(0), row.get(1));
        if state == "aborted" && error.contains("corrupted") {
            return Ok(Vec::new());
        }
        Ok(vec![format!(
            "the corrupted run's snapshot transmission is {state} ({error}), not aborted for corruption"
        )])
    }

    // ---- the agent and its spool -------------------------------------------

    /// Writes the agent config (endpoint: the proxy), with a spool limit if given.
    fn write_config(&self, max_bytes: Option<i64>) -> Result<PathBuf> {
        let mut extra = SPOOL_TUNING.to_string();
        if let Some(b) = max_bytes {
            extra.push_str(&format!("max_bytes = {b}\n"));
        }
        let path = self.stack.agent_config(&self.m, &jobs(), &extra)?;
        let text = std::fs::read_to_string(&path)?;
        let direct = format!("endpoint = \"{}\"", self.stack.endpoint());
        let proxied = format!(
            "endpoint = \"https://127.0.0.1:{}\"\nserver_name = \"localhost\"",
            self.proxy.addr.port()
        );
        if !text.contains(&direct) {
            bail!("the agent config has no line {direct}");
        }
        std::fs::write(&path, text.replace(&direct, &proxied))?;
        Ok(path)
    }

    fn config_path(&self) -> PathBuf {
        self.agent_dir().join("agent.toml")
    }

    fn agent_dir(&self) -> PathBuf {
        self.stack.dir.join(format!("agent-{}", self.m.ibge))
    }

    fn spool_dir(&self) -> PathBuf {
        self.agent_dir().join("state/spool")
    }

    fn spawn_agent(&mut self, tag: &str) -> Result<Proc> {
        self.agent_runs += 1;
        let log = format!("agent-{:03}-{tag}.log", self.agent_runs);
        self.stack.spawn_agent(&self.config_path(), &log)
    }

    // ---- trigger points -----------------------------------------------------

    /// Polls until `mark` is reached (true) or the agent exits first
    /// (false: the fault then strikes late); bounded by [`MARK_TIMEOUT`].
    async fn wait_mark(&mut self, agent: &mut Proc, mark: Mark) -> Result<bool> {
        let deadline = Instant::now() + MARK_TIMEOUT;
        while Instant::now() < deadline {
            if self.reached(mark).await {
                return Ok(true);
            }
            if !agent.is_running() {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
        bail!(
            "the fault's trigger point was not reached in {MARK_TIMEOUT:?} (agent log {})",
            agent.log.display()
        )
    }

    async fn reached(&mut self, mark: Mark) -> bool {
        match mark {
            Mark::Spooled(k) => spooled_batches(&self.spool_dir()) >= k,
            Mark::Held(k) => self.held().await.is_some_and(|h| h >= k),
            Mark::CommitWaiting => self
                .probe_i64(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'transmissor-collector' \
                     AND wait_event_type = 'Lock' AND query LIKE '%DETACH PARTITION%'",
                )
                .await
                .is_some_and(|w| w > 0),
        }
    }

    /// Batches held for open transmissions.
    async fn held(&mut self) -> Option<i64> {
        self.probe_i64(
            "SELECT count(*) FROM transmissor.batches b JOIN transmissor.transmissions t \
             ON t.id = b.transmission_id WHERE t.state = 'open'",
        )
        .await
    }

    /// Sequence numbers the collector holds for a run's snapshot job.
    async fn held_seqs(&self, run: &str) -> Result<BTreeSet<u32>> {
        let analytic = self.stack.analytic_client().await?;
        let rows = analytic
            .query(
                "SELECT b.seq FROM transmissor.batches b JOIN transmissor.transmissions t \
                 ON t.id = b.transmission_id WHERE t.run_id::text = $1 AND t.job = 'grande'",
                &[&run],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
    }

    async fn probe_i64(&mut self, sql: &str) -> Option<i64> {
        if self.probe.is_none() {
            self.probe = self.stack.analytic_client().await.ok();
        }
        let r = self.probe.as_ref()?.query_one(sql, &[]).await;
        match r {
            Ok(row) => Some(row.get(0)),
            Err(_) => {
                self.probe = None;
                None
            }
        }
    }
}

fn late(reached: bool) -> &'static str {
    if reached { "" } else { " (agent had exited)" }
}

/// Waits for an agent run (bounded); true when it exited 0.
async fn wait_agent(agent: &mut Proc) -> Result<bool> {
    match agent.wait(RUN_TIMEOUT).await {
        Ok(status) => Ok(status.success()),
        Err(_) => {
            agent.kill();
            bail!(
                "agent run did not end within {RUN_TIMEOUT:?}; log {}:\n{}",
                agent.log.display(),
                tail(&agent.log_text(), 20)
            )
        }
    }
}

// ---- the source -------------------------------------------------------------

async fn load_source(stack: &Stack, m: &Municipality, rows: i64) -> Result<()> {
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(&format!(
        "CREATE TABLE grande AS SELECT g::int8 AS id, repeat(md5(g::text), 2) AS payload, \
         (g * 1.5)::numeric(14,2) AS valor FROM generate_series(1, {rows}) g; \
         ALTER TABLE grande ADD PRIMARY KEY (id)"
    ))
    .await?;
    stack.grant_reader(&m.db).await
}

/// A small seeded change: new rows, changed rows, deleted rows.
fn mutation_sql(rng: &mut StdRng, round: u32) -> String {
    let inserts = rng.random_range(200..2000);
    let upd_mod = rng.random_range(50..400);
    let upd_rem = rng.random_range(0..upd_mod);
    let del_mod = rng.random_range(200..1000);
    let del_rem = rng.random_range(0..del_mod);
    format!(
        "INSERT INTO grande SELECT m + g, md5('r{round}-' || (m + g)), ((m + g) * 0.25)::numeric(14,2) \
           FROM (SELECT coalesce(max(id), 0) AS m FROM grande) s, generate_series(1, {inserts}) g; \
         UPDATE grande SET payload = md5(payload || 'r{round}'), valor = valor + {round} \
           WHERE id % {upd_mod} = {upd_rem}; \
         DELETE FROM grande WHERE id % {del_mod} = {del_rem}"
    )
}

async fn source_state(src: &Client) -> Result<(i64, i64)> {
    let r = src
        .query_one(
            "SELECT count(*), coalesce(sum(id), 0)::int8 FROM grande",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// `(count, sum(id))` of the municipality's visible snapshot slice.
async fn visible_slice(analytic: &Client, m: &Municipality) -> Result<(i64, i64)> {
    let r = analytic
        .query_one(
            "SELECT count(*), coalesce(sum(id), 0)::int8 FROM analytic.grande WHERE _ibge = $1",
            &[&m.ibge.as_str()],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

// ---- checks on the analytic side ----------------------------------------------

/// Every append transmission committed after `after` holds exactly the
/// source's list (the source does not change within a round); at least one.
async fn check_round_appends(analytic: &Client, src: &Client, after: i64) -> Result<Vec<String>> {
    let ids: Vec<i64> = analytic
        .query(
            "SELECT id FROM transmissor.transmissions WHERE job = 'lista' AND state = 'committed' \
             AND id > $1 ORDER BY id",
            &[&after],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(vec!["no append transmission committed".into()]);
    }
    let list = copy_dump(src, &format!("{LIST_QUERY} ORDER BY id")).await?;
    let mut problems = Vec::new();
    for id in ids {
        let q = format!(
            "SELECT id, payload FROM analytic.grande_lista WHERE _transmission_id = {id} ORDER BY id"
        );
        let got = copy_dump(analytic, &q).await?;
        if got != list {
            problems.push(format!(
                "append transmission {id} differs from the source list: {} vs {} bytes, first difference at line {}",
                got.len(),
                list.len(),
                first_diff_line(&list, &got)
            ));
        }
    }
    Ok(problems)
}

/// Rows per transmission in the append target equal the committed
/// transmissions' rows: none doubled, none partial, none from failed ones.
async fn check_append_totals(analytic: &Client) -> Result<Vec<String>> {
    let in_target = append_counts(analytic).await?;
    let committed = committed_appends(analytic).await?;
    if in_target == committed {
        return Ok(Vec::new());
    }
    let extra: Vec<_> = in_target.difference(&committed).collect();
    let missing: Vec<_> = committed.difference(&in_target).collect();
    Ok(vec![format!(
        "append target (transmission, rows) differ from the committed transmissions: \
         in the target only {extra:?}; committed only {missing:?}"
    )])
}

async fn append_counts(analytic: &Client) -> Result<BTreeSet<(i64, i64)>> {
    let rows = analytic
        .query(
            "SELECT _transmission_id, count(*) FROM analytic.grande_lista GROUP BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn committed_appends(analytic: &Client) -> Result<BTreeSet<(i64, i64)>> {
    let rows = analytic
        .query(
            "SELECT id, rows FROM transmissor.transmissions WHERE job = 'lista' AND state = 'committed'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// No open transmission, staging table or detached partition is left.
async fn check_leftovers(analytic: &Client) -> Result<Vec<String>> {
    let count = |sql: &'static str| async move {
        analytic
            .query_one(sql, &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    };
    let open = count("SELECT count(*) FROM transmissor.transmissions WHERE state = 'open'").await?;
    let staging =
        count("SELECT count(*) FROM pg_tables WHERE schemaname = 'transmissor_staging'").await?;
    let parts =
        count("SELECT count(*) FROM pg_tables WHERE schemaname = 'transmissor_parts'").await?;
    let mut problems = Vec::new();
    if open > 0 {
        problems.push(format!("{open} transmission(s) left open"));
    }
    if staging > 0 {
        problems.push(format!("{staging} staging table(s) left"));
    }
    if parts != 1 {
        problems.push(format!(
            "{parts} snapshot partitions for one municipality (expected 1)"
        ));
    }
    Ok(problems)
}

fn first_diff_line(a: &[u8], b: &[u8]) -> usize {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    a[..at].iter().filter(|&&c| c == b'\n').count() + 1
}

// ---- the spool on disk ----------------------------------------------------------

/// `<spool>/<run>/<job>` directories.
fn job_dirs(spool: &Path) -> Vec<PathBuf> {
    let subdirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    };
    subdirs(spool).iter().flat_map(|r| subdirs(r)).collect()
}

/// A job directory's batch files by sequence number.
fn batch_files(job: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(job)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "batch"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    out.sort();
    out
}

fn spooled_batches(spool: &Path) -> u64 {
    job_dirs(spool)
        .iter()
        .map(|d| batch_files(d).len() as u64)
        .sum()
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- the concurrent reader ------------------------------------------------------

/// What the reader saw since its last reset.
#[derive(Default)]
struct Seen {
    /// `(count, sum(id))` of the snapshot slice.
    snapshot: BTreeSet<(i64, i64)>,
    /// `(transmission, rows)` in the append target.
    appended: BTreeSet<(i64, i64)>,
    polls: u64,
}

/// Polls the targets as an analyst would, all campaign long, reconnecting
/// after server restarts.
struct Reader {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reader {
    fn idle() -> Self {
        Self {
            seen: Arc::default(),
            stop: Arc::default(),
            task: None,
        }
    }

    fn start(stack: &Stack, m: &Municipality) -> Self {
        let mut r = Self::idle();
        let (seen, stop) = (r.seen.clone(), r.stop.clone());
        let connect = stack.analytic.url(transmissor_tests::stack::ANALYTIC_DB);
        let ibge = m.ibge.as_str().to_string();
        r.task = Some(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&connect, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    poll_until_error(&client, &ibge, &seen, &stop).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        r
    }

    fn reset(&self) {
        if let Ok(mut s) = self.seen.lock() {
            *s = Seen::default();
        }
    }

    /// Problems with what was seen since the reset: a snapshot state other
    /// than `allowed`, an append transmission seen with other than its
    /// committed rows.
    async fn check(&self, allowed: &[(i64, i64)], c: &Campaign) -> Result<Vec<String>> {
        let seen = std::mem::take(
            &mut *self
                .seen
                .lock()
                .map_err(|_| anyhow::anyhow!("reader lock"))?,
        );
        let analytic = c.stack.analytic_client().await?;
        let committed = committed_appends(&analytic).await?;
        let mut problems = Vec::new();
        if seen.polls == 0 {
            problems.push("the concurrent reader never completed a poll".into());
        }
        let partial: Vec<_> = seen
            .snapshot
            .iter()
            .filter(|s| !allowed.contains(s))
            .collect();
        if !partial.is_empty() {
            problems.push(format!(
                "a reader saw snapshot states {partial:?}; allowed {allowed:?}"
            ));
        }
        let partial: Vec<_> = seen.appended.difference(&committed).collect();
        if !partial.is_empty() {
            problems.push(format!("a reader saw partial appends {partial:?}"));
        }
        Ok(problems)
    }

    async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn poll_until_error(client: &Client, ibge: &str, seen: &Mutex<Seen>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let snapshot = client
            .query_one(
                "SELECT count(*), coalesce(sum(id), 0)::int8 FROM analytic.grande WHERE _ibge = $1",
                &[&ibge],
            )
            .await;
        let appended = client
            .query(
                "SELECT _transmission_id, count(*) FROM analytic.grande_lista GROUP BY 1",
                &[],
            )
            .await;
        let (Ok(snapshot), Ok(appended)) = (snapshot, appended) else {
            return;
        };
        if let Ok(mut s) = seen.lock() {
            s.snapshot.insert((snapshot.get(0), snapshot.get(1)));
            s.appended
                .extend(appended.iter().map(|r| (r.get(0), r.get(1))));
            s.polls += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
