//! `cargo xtask fault`: a bounded fault campaign against the real system.
//!
//! Setup. The harness starts an analytic and a source PostgreSQL cluster
//! (fsync off, but `synchronous_commit = on`: a server crash loses nothing
//! it acknowledged, which is what a process crash without a power cut
//! guarantees), a development PKI, `transmissor-collector serve` (release
//! build; `[load] ddl_retry_for = "2s"`, so a column addition that keeps
//! giving way to an analyst is refused `UNAVAILABLE` and the agent's retry
//! of `Begin` is exercised too) and a TCP
//! [`Proxy`](transmissor_tests::proxy::Proxy) in front of it; the agent's
//! endpoint is the proxy. One municipality's source holds `--rows` rows in
//! `grande`; the agent has a `snapshot` job (`SELECT * FROM grande`: every
//! column, whatever the schema rounds made of it) into the hash-partitioned
//! target `grande`, an `append` job (every 10th row) into `grande_lista`
//! and an `upsert` job (`grande_up`, see `fault/upsert.rs`) into
//! `grande_upsert` merged by `id` from the watermark `atualizado`,
//! and cuts 16 KiB batches so an upload lasts long enough to hit. A
//! baseline transmission creates the targets and measures the snapshot
//! job's size, which places the faults (re-measured after every round).
//!
//! Rounds. Each round changes the source a little (seeded inserts, updates
//! and deletes), then strikes one fault at one random point of a
//! transmission. The kinds are dealt in shuffled cycles, so every kind
//! comes up once in the first eight rounds:
//! 1. `collector-kill`: SIGKILL of the collector after a random number of
//!    batches is held (0 = before `Begin`, all = about to commit), restarted
//!    after a random outage;
//! 2. `agent-kill`: SIGKILL of the agent after a random number of batches is
//!    spooled (during extraction) or held (during upload, up to the commit);
//! 3. `analytic-restart`: the analytic server crashes (immediate stop) or
//!    is stopped for a random while, mid-upload or mid-commit (the commit
//!    caught inside its transaction, see below; the blocker's connection
//!    dies with the server);
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
//!    fresh extraction;
//! 7. `commit-kill`: SIGKILL of the collector while its snapshot commit is
//!    caught inside its transaction; the blocker is then released while the
//!    collector is down (the orphaned backend gets its lock and must roll
//!    back: the transmission must still be open once it is gone) or, half
//!    of the time, a random moment after the collector's restart (the
//!    agent's retried commit queues behind the orphan); random outage;
//! 8. `schema-change`: the source table gains a column (random name
//!    `c_rNN`, random type among integer, text, numeric(12,2), date and
//!    boolean, seeded values, sometimes NULLs) or, when an earlier round
//!    added one, sometimes loses one of those; an "analyst" holds
//!    `BEGIN; SELECT count(*) FROM analytic.grande` open for a random
//!    0.5–4 s from the start of the agent run, so the `ADD COLUMN` has to
//!    give way to it (how often it waited, and how often `Begin` was
//!    refused as busy, is reported); one round in three also kills the
//!    collector after a random number of held batches.
//!
//! The commit is caught at one of two random places of its transaction:
//! before its `DELETE` (an extra connection holds the municipality's row of
//! `transmissor.target_slices` `FOR UPDATE`; the mark is a collector backend
//! waiting on a lock in a query on `target_slices`), or after its `DELETE` +
//! `INSERT`, at the staging table's `DROP` (once `Begin` is done, an extra
//! connection holds `LOCK TABLE transmissor_staging.t_<id> IN ACCESS SHARE
//! MODE`; the mark is a collector backend waiting on a lock in `DROP TABLE
//! transmissor_staging...`, the replaced rows uncommitted). The blocker is
//! released on every path.
//!
//! Recovery is the system's own: the run the fault hit is left to finish
//! when it is still alive, then `transmissor-agent run --once` is run until
//! it exits 0 with an empty spool (at most [`MAX_RUNS`] runs); nothing is
//! deleted by hand unless a round already failed (then the spool is cleared
//! to rebuild a known state).
//!
//! Checks after each round, with byte comparisons rather than counts: the
//! municipality's snapshot slice equals the source over the source's
//! columns (names and order from its `information_schema.columns`, COPY
//! text dumps), and the target columns the source no longer has are NULL
//! in its rows; every append transmission committed in the round holds
//! exactly the source's list, and across all rounds the rows per
//! `_transmission_id` are those of the committed transmissions (nothing
//! doubled, nothing from a failed or aborted one); the target's columns
//! are those registered in `transmissor.target_columns`, and the status
//! (`missing_columns` of the municipality's row) lists exactly the target
//! columns the source no longer sends; the municipality's
//! `target_slices` row and every row of its slice point at the last
//! committed snapshot transmission; no open transmission and no staging
//! table is left, and `transmissor_parts` holds exactly the 16 hash
//! partitions of `analytic.grande` (from `pg_inherits`); the collector
//! process still runs (it reconnects to its database by itself); the
//! fault's own signs (the "spool full" stop, the transmission aborted for
//! corruption, the new column recorded with a transmission of its round).
//! A concurrent reader polls the targets all along and must only ever see
//! the snapshot slice's `(count, sum(id))` before or after the round, and
//! only whole append transmissions.
//!
//! A failed check is printed under its round and the campaign goes on.
//! It ends after `--rounds` rounds or, once every kind has had its round,
//! when another round (at the mean round time so far) would pass
//! `--duration`, whichever comes first. `--seed` replays the same choices
//! (kinds, points, outages, flipped bytes, source and schema changes);
//! `--only` limits the kinds. The last lines are `RESULT fault_rounds=N`
//! and `RESULT fault_failures=N`; the command fails when a round failed.

mod campaign;
mod checks;
mod kinds;
mod reader;
mod source;
mod spool;
mod upsert;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use transmissor_tests::procs::Proc;

use campaign::Campaign;

#[derive(Args)]
pub struct FaultArgs {
    /// Rounds to run (one fault each).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Time budget (e.g. 15m, 90s): once every kind has had its round, no
    /// round starts that would, at the mean round time so far, end after it.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of every random choice (printed at start; default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Rows in the source table.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(1000..))]
    rows: i64,
    /// Only these fault kinds (repeat or comma-separate; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Kind>,
    /// Working directory for configs, logs and spools (emptied first;
    /// default: target/fault).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Agent runs allowed after a fault before the round counts as failed.
const MAX_RUNS: u32 = 4;

pub fn run(args: FaultArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| campaign(args))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, clap::ValueEnum)]
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
    /// SIGKILL of the collector while its commit waits inside its transaction.
    CommitKill,
    /// A column added to (or dropped from) the source while an analyst reads.
    SchemaChange,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::CollectorKill,
        Kind::AgentKill,
        Kind::AnalyticRestart,
        Kind::NetworkCut,
        Kind::SpoolFull,
        Kind::CorruptSpool,
        Kind::CommitKill,
        Kind::SchemaChange,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::CollectorKill => "collector-kill",
            Kind::AgentKill => "agent-kill",
            Kind::AnalyticRestart => "analytic-restart",
            Kind::NetworkCut => "network-cut",
            Kind::SpoolFull => "spool-full",
            Kind::CorruptSpool => "corrupt-spool",
            Kind::CommitKill => "commit-kill",
            Kind::SchemaChange => "schema-change",
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
    /// The schema round's change, checked after recovery.
    schema: Option<kinds::SchemaRound>,
}

impl Injected {
    fn new(at: Option<Duration>, what: String, running: Option<Proc>) -> Self {
        Self {
            strike: Strike { at, what },
            running,
            problems: Vec::new(),
            corrupted_run: None,
            schema: None,
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
    summarize(seed, &reports, started.elapsed())
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

fn summarize(seed: u64, reports: &[RoundReport], wall: Duration) -> Result<()> {
    let mut by_kind: BTreeMap<Kind, (u32, u32)> = BTreeMap::new();
    for r in reports {
        let e = by_kind.entry(r.kind).or_default();
        e.0 += 1;
        e.1 += u32::from(!r.problems.is_empty());
    }
    let failures = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let mean = if reports.is_empty() {
        0.0
    } else {
        reports.iter().map(|r| r.secs).sum::<f64>() / reports.len() as f64
    };
    println!(
        "\nsummary (seed {seed}, {:.0} s wall, mean round {mean:.1} s):",
        wall.as_secs_f64()
    );
    for kind in Kind::ALL {
        let (n, f) = by_kind.get(&kind).copied().unwrap_or_default();
        let note = if n == 0 { "  (not exercised)" } else { "" };
        println!("    {:<16} {n:>2} rounds, {f} failed{note}", kind.name());
    }
    println!("RESULT fault_rounds={}", reports.len());
    println!("RESULT fault_failures={failures}");
    if failures > 0 {
        bail!(
            "{failures} of {} fault rounds failed (replay with --seed {seed})",
            reports.len()
        );
    }
    Ok(())
}
