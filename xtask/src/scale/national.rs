//! Phase 2: every municipality sends a snapshot of two targets, with
//! bounded concurrency. Phase 4: one municipality's large snapshot commit
//! into the full target, next to the same commit into an empty one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

use transmissor_proto::identity::Ibge;
use transmissor_tests::stack::Stack;

use super::agents::Agent;
use super::stats::{Stats, latency_line, median, pct, print_errors};
use super::sys::Cpu;
use super::tx::{self, Payload, Shape};

/// The two national snapshot targets analysts join.
pub const PERSON: &str = "scale_person";
pub const VISIT: &str = "scale_visit";
/// A target with [`PERSON`]'s columns that only the large commit loads.
const ANCHOR: &str = "scale_person_anchor";
const TARGETS: [(&str, Shape); 2] = [(PERSON, Shape::Person), (VISIT, Shape::Visit)];
/// Rows per batch of the large commit's transmission.
const BIG_BATCH_ROWS: u64 = 10_000;

pub struct LoadPlan {
    pub municipalities: usize,
    pub rows: u64,
    pub concurrency: usize,
}

pub struct LoadOutcome {
    pub begin: (f64, f64),
    pub commit: (f64, f64),
    pub per_s: f64,
    pub errors: u64,
}

pub async fn load(
    stack: &Stack,
    agents: &[Agent],
    pid: &str,
    plan: &LoadPlan,
) -> Result<LoadOutcome> {
    let m = plan.municipalities.min(agents.len());
    let channels: Arc<Vec<(Ibge, Channel)>> = Arc::new(
        agents[..m]
            .iter()
            .map(|a| (a.ibge, a.channel.clone()))
            .collect(),
    );
    let total = m * TARGETS.len();
    println!(
        "==> phase 2: {m} municipalities each send a snapshot of {} rows to {PERSON} and to \
         {VISIT} ({total} transmissions, {} in flight)",
        plan.rows, plan.concurrency
    );
    let cpu = Cpu::start(pid)?;
    let t0 = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let step = (total / 10).max(1);
    let rows = plan.rows;
    let mut stats = Stats::default();
    // The first municipality alone: its Begins create the targets.
    let first = TARGETS.len().min(total);
    for k in 0..first {
        one(k, &channels, rows, t0, &mut stats).await;
        done.fetch_add(1, Ordering::Relaxed);
    }
    let next = Arc::new(AtomicUsize::new(first));
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let (next, done, chans) = (next.clone(), done.clone(), channels.clone());
        workers.spawn(async move {
            let mut stats = Stats::default();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                one(k, &chans, rows, t0, &mut stats).await;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % step == 0 && d < total {
                    let s = t0.elapsed().as_secs_f64();
                    println!(
                        "    {d:>6} of {total} transmissions in {s:.0} s ({:.0}/s)",
                        d as f64 / s
                    );
                }
            }
            stats
        });
    }
    while let Some(r) = workers.join_next().await {
        stats.merge(r.context("load worker")?);
    }
    let secs = t0.elapsed().as_secs_f64();
    let used = cpu.since()?;

    let c = stack.analytic_client().await?;
    let mut verified = 0;
    for (target, _) in TARGETS {
        let committed = stats.committed.get(target).cloned().unwrap_or_default();
        let bad = tx::verify(&c, target, &committed).await?;
        verified += committed.len().saturating_sub(bad as usize);
        if bad > 0 {
            let what = format!("municipalities whose rows in {target} differ");
            stats.errors.insert(what, bad);
        }
    }
    let p50_99 = |call: &str| {
        let mut v = stats.all(call);
        (pct(&mut v, 0.5), pct(&mut v, 0.99))
    };
    let outcome = LoadOutcome {
        begin: p50_99("Begin"),
        commit: p50_99("Commit"),
        per_s: stats.committed_count() as f64 / secs,
        errors: stats.error_count(),
    };
    println!("==> phase 2 results ({m} municipalities, 2 targets, {rows} rows each)");
    latency_line("Begin", stats.all("Begin"));
    latency_line("PutBatch", stats.all("PutBatch"));
    latency_line("Commit", stats.all("Commit"));
    println!("    transmissions committed and checked  {verified} of {total}");
    print_errors(&stats);
    used.print(secs);
    println!(
        "    duration        {secs:.1} s ({:.0} transmissions/s)",
        outcome.per_s
    );
    Ok(outcome)
}

/// Job `k`: one municipality's transmission into one target. The two
/// targets of a municipality are neighbours, so they run side by side on
/// its connection, as an agent's two jobs would.
async fn one(k: usize, chans: &[(Ibge, Channel)], rows: u64, t0: Instant, stats: &mut Stats) {
    let (ibge, ch) = chans[k / TARGETS.len()].clone();
    let (target, shape) = TARGETS[k % TARGETS.len()];
    match Payload::new(ibge, target, shape, rows, rows) {
        Ok(p) => {
            tx::transmit(ch, &p, t0, stats).await;
        }
        Err(e) => stats.error(format!("payload: {e:#}")),
    }
}

/// All rows of `analytic.<target>` and those of `ibge` (0, 0 before it exists).
async fn counts(c: &tokio_postgres::Client, target: &str, ibge: Ibge) -> Result<(i64, i64)> {
    let exists = format!("SELECT to_regclass('analytic.{target}') IS NOT NULL");
    if !c.query_one(&exists, &[]).await?.get::<_, bool>(0) {
        return Ok((0, 0));
    }
    let sql = format!("SELECT count(*), count(*) FILTER (WHERE _ibge = $1) FROM analytic.{target}");
    let r = c.query_one(&sql, &[&ibge.to_string()]).await?;
    Ok((r.get(0), r.get(1)))
}

pub struct BigOutcome {
    /// Median Commit latency (ms) into the full target and into the anchor.
    pub full_ms: f64,
    pub empty_ms: f64,
}

/// `repeat` times, alternating: `rows` rows of one municipality into the
/// anchor target (empty but for that municipality), then into [`PERSON`]
/// (all municipalities); the Commit RPCs are timed.
pub async fn big(stack: &Stack, agent: &Agent, rows: u64, repeat: usize) -> Result<BigOutcome> {
    let ibge = agent.ibge;
    println!(
        "==> phase 4: snapshot commits of {rows} rows from municipality {ibge} \
         ({} batches), {repeat} times into {ANCHOR} (empty) and into {PERSON} (full), alternating",
        rows.div_ceil(BIG_BATCH_ROWS)
    );
    let full = Payload::new(ibge, PERSON, Shape::Person, rows, BIG_BATCH_ROWS)?;
    let empty = Payload::new(ibge, ANCHOR, Shape::Person, rows, BIG_BATCH_ROWS)?;
    let raw_mib = full.raw_bytes() as f64 / (1 << 20) as f64;
    let c = stack.analytic_client().await?;
    println!(
        "    {:<4} {:<20} {:>10} {:>10} {:>11} {:>10}",
        "run", "target", "rows", "its rows", "upload ms", "commit ms"
    );
    let (mut full_ms, mut empty_ms) = (Vec::new(), Vec::new());
    let mut stats = Stats::default();
    for run in 1..=repeat {
        for (p, into) in [(&empty, &mut empty_ms), (&full, &mut full_ms)] {
            let (before, its) = counts(&c, &p.target, ibge).await?;
            let t0 = Instant::now();
            let Some(ms) = tx::transmit(agent.channel.clone(), p, t0, &mut stats).await else {
                print_errors(&stats);
                bail!("the {rows}-row transmission into {} failed", p.target);
            };
            let upload = t0.elapsed().as_secs_f64() * 1e3 - ms;
            println!(
                "    {run:<4} {:<20} {before:>10} {its:>10} {upload:>11.0} {ms:>10.0}",
                p.target
            );
            into.push(ms);
        }
    }
    for target in [ANCHOR, PERSON] {
        let (_, its) = counts(&c, target, ibge).await?;
        if its != rows as i64 {
            bail!("after the large commits {target} holds {its} rows of {ibge}, not {rows}");
        }
    }
    let out = BigOutcome {
        full_ms: median(&full_ms),
        empty_ms: median(&empty_ms),
    };
    println!(
        "    median Commit: {:.0} ms into the full target, {:.0} ms into the empty one ({:.2}×); \
         {raw_mib:.1} MiB of COPY text; PutBatch median {:.0} ms",
        out.full_ms,
        out.empty_ms,
        out.full_ms / out.empty_ms.max(1e-9),
        median(&stats.all("PutBatch"))
    );
    Ok(out)
}
