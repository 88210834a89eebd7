//! `cargo xtask compare`: how long a transmission takes, next to the
//! fastest thing PostgreSQL itself offers for the same copy.
//!
//! It times the transmission of the synthetic visit table
//! `tb_fat_visita_domiciliar` (1,000,000 rows by default) on loopback:
//! `transmissor-agent run --once` from start to exit — extract, spool, mTLS
//! gRPC, collector, committed snapshot — next to the anchor
//! `psql -c "COPY ... TO STDOUT" | psql -c "COPY ... FROM STDIN"` between the
//! same two servers.
//!
//! The comparison is meant to be fair: both methods copy the same table
//! between the same two PostgreSQL servers, in the same run, on durable
//! settings (fsync and synchronous_commit on, as in production); the anchor's
//! target is a plain table without indexes, like the collector's snapshot
//! partitions; both servers are checkpointed before every timed run; the runs
//! alternate (anchor, transmissor, anchor, ...) so that drift hits both; and
//! the median of `--repeat` runs is reported. The ratio
//! `transmissor / copy pipe` is the price of what the pipe does not do
//! (spooling, compression, TLS, exactly-once commit, partition swap).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::pec::Scale;
use transmissor_tests::pg::ClusterOptions;
use transmissor_tests::stack::{ANALYTIC_DB, Job, Stack, StackOptions};

#[derive(Args)]
pub struct CompareArgs {
    /// Rows in the visit table.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    visits: u64,
    /// Timed runs of each method (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

const MUNICIPALITY: (&str, &str) = ("3550308", "São Paulo");
const TABLE: &str = "tb_fat_visita_domiciliar";
const ANCHOR_TABLE: &str = "anchor.tb_fat_visita_domiciliar";

pub fn run(args: CompareArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| compare(args))
}

async fn compare(args: CompareArgs) -> Result<()> {
    let (n, repeat) = (args.visits, args.repeat);
    println!("==> starting PostgreSQL clusters (durable: fsync and synchronous_commit on)");
    let mut stack = Stack::with_options(
        &[MUNICIPALITY],
        StackOptions {
            cluster: ClusterOptions {
                fast: false,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let m = stack.munis.first().context("no municipality")?.clone();

    println!("==> loading {n} synthetic visits into {}", m.db);
    let t = Instant::now();
    let scale = Scale {
        visits: n,
        citizens: 50_000,
        care: 1_000,
    };
    stack.load_pec(&m, 1000, &scale).await?;
    let src = stack.source.connect(&m.db).await?;
    src.batch_execute(&format!("VACUUM ANALYZE {TABLE}"))
        .await
        .context("VACUUM ANALYZE")?;
    expect_rows(&src, &format!("SELECT count(*) FROM {TABLE}"), n, "source").await?;
    println!("    loaded in {:.1}s", t.elapsed().as_secs_f64());
    let version: String = src
        .query_one("SELECT current_setting('server_version')", &[])
        .await?
        .get(0);
    let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!("    machine: nproc {cpus}, PostgreSQL {version}");

    // The anchor's target: the PEC tables in schema `anchor`, the visit
    // table without its primary key (the collector's partitions have none).
    let analytic = stack.analytic_client().await?;
    analytic
        .batch_execute(&format!(
            "CREATE SCHEMA anchor; SET search_path = anchor;\n{}\n\
             ALTER TABLE {ANCHOR_TABLE} DROP CONSTRAINT {TABLE}_pkey; RESET search_path",
            transmissor_tests::pec::SCHEMA_SQL
        ))
        .await
        .context("creating the anchor's target table")?;

    println!("==> starting the collector on {}", stack.collector_addr);
    stack.start_collector().await?;
    let job = Job::new(
        "visitas",
        "snapshot",
        TABLE,
        &format!("SELECT * FROM {TABLE}"),
    );
    let cfg = stack.agent_config(&m, &[job], "")?;

    println!("==> {repeat} timed run(s) of each method, alternating");
    let (mut pipe_s, mut tx_s) = (Vec::new(), Vec::new());
    for i in 1..=repeat {
        analytic
            .batch_execute(&format!("TRUNCATE {ANCHOR_TABLE}"))
            .await?;
        checkpoint(&src, &analytic).await?;
        let s = copy_pipe(&stack, &m.db, TABLE, ANCHOR_TABLE, false)?;
        expect_rows(
            &analytic,
            &format!("SELECT count(*) FROM {ANCHOR_TABLE}"),
            n,
            "anchor",
        )
        .await?;
        println!("    run {i}/{repeat}  copy pipe    {s:>8.2}s");
        pipe_s.push(s);

        checkpoint(&src, &analytic).await?;
        let t = Instant::now();
        let mut agent = stack.spawn_agent(&cfg, &format!("agent-compare-{i}.log"))?;
        let status = agent.wait(Duration::from_secs(3600)).await?;
        let s = t.elapsed().as_secs_f64();
        if !status.success() {
            bail!(
                "transmissor-agent failed ({status}); log:\n{}",
                agent.log_text()
            );
        }
        let got: i64 = analytic
            .query_one(
                &format!("SELECT count(*) FROM analytic.{TABLE} WHERE _ibge = $1"),
                &[&m.ibge.as_str()],
            )
            .await?
            .get(0);
        if got != n as i64 {
            bail!(
                "transmissor: analytic.{TABLE} has {got} rows for {}, expected {n}",
                m.ibge
            );
        }
        println!("    run {i}/{repeat}  transmissor  {s:>8.2}s");
        tx_s.push(s);
    }

    let row = analytic
        .query_opt(
            "SELECT rows, raw_bytes, compressed_bytes FROM transmissor.transmissions \
             WHERE ibge = $1 AND job = 'visitas' AND state = 'committed' ORDER BY id DESC LIMIT 1",
            &[&m.ibge.as_str()],
        )
        .await?
        .context("no committed transmission in transmissor.transmissions")?;
    let (rows, raw, compressed): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));

    let (pipe, tx) = (median(&pipe_s), median(&tx_s));
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "\n{TABLE}: {n} rows, loopback, durable servers (fsync on), median of {repeat}\n\
         machine: nproc {cpus}, PostgreSQL {version}\n\
         last transmission: {rows} rows, {raw} raw bytes, {compressed} compressed bytes ({:.1}x)\n",
        raw as f64 / compressed.max(1) as f64
    );
    println!(
        "{:<26} {:>10} {:>12}  runs (s)",
        "method", "median (s)", "rows/s"
    );
    for (name, med, runs) in [
        ("psql COPY | psql COPY", pipe, &pipe_s),
        ("transmissor (end to end)", tx, &tx_s),
    ] {
        let rate = n as f64 / med;
        println!("{name:<26} {med:>10.2} {rate:>12.0}  {}", fmt(runs));
    }
    println!("transmissor / copy pipe: {:.2}x\n", tx / pipe);
    println!("RESULT copy_pipe_s={pipe:.3}");
    println!("RESULT transmissor_s={tx:.3}");
    println!("RESULT e2e_over_copy_pipe={:.3}", tx / pipe);
    println!("RESULT rows={n}");

    println!("==> stopping the collector and the clusters");
    stack.stop_collector().await?;
    drop(stack);
    Ok(())
}

/// Times `psql -c "COPY t TO STDOUT" | psql -c "COPY anchor.t FROM STDIN"`
/// (in binary format when `binary`).
pub(crate) fn copy_pipe(
    stack: &Stack,
    db: &str,
    table: &str,
    anchor: &str,
    binary: bool,
) -> Result<f64> {
    let format = if binary { " (FORMAT binary)" } else { "" };
    let t = Instant::now();
    let mut producer = stack
        .source
        .psql_command(db)
        .arg("-c")
        .arg(format!("COPY {table} TO STDOUT{format}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning psql (COPY TO STDOUT)")?;
    let pipe = producer.stdout.take().context("psql's stdout")?;
    // The Command (holding the pipe's read end) is dropped right after spawn,
    // so the producer sees a broken pipe if the consumer dies.
    let consumer = {
        let mut cmd = stack.analytic.psql_command(ANALYTIC_DB);
        cmd.arg("-c")
            .arg(format!("COPY {anchor} FROM STDIN{format}"))
            .stdin(pipe)
            .stdout(Stdio::null())
            .spawn()
    };
    let mut consumer = match consumer {
        Ok(c) => c,
        Err(e) => {
            let _ = producer.kill();
            let _ = producer.wait();
            return Err(e).context("spawning psql (COPY FROM STDIN)");
        }
    };
    let in_status = consumer
        .wait()
        .context("waiting for psql (COPY FROM STDIN)")?;
    let out_status = producer
        .wait()
        .context("waiting for psql (COPY TO STDOUT)")?;
    let s = t.elapsed().as_secs_f64();
    if !out_status.success() || !in_status.success() {
        bail!("copy pipe failed: COPY TO STDOUT {out_status}, COPY FROM STDIN {in_status}");
    }
    Ok(s)
}

pub(crate) async fn checkpoint(
    a: &tokio_postgres::Client,
    b: &tokio_postgres::Client,
) -> Result<()> {
    a.batch_execute("CHECKPOINT").await.context("CHECKPOINT")?;
    b.batch_execute("CHECKPOINT").await.context("CHECKPOINT")?;
    Ok(())
}

pub(crate) async fn expect_rows(
    c: &tokio_postgres::Client,
    sql: &str,
    n: u64,
    what: &str,
) -> Result<()> {
    let got: i64 = c
        .query_one(sql, &[])
        .await
        .context(what.to_string())?
        .get(0);
    if got != n as i64 {
        bail!("{what}: {got} rows, expected {n}");
    }
    Ok(())
}

pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let k = v.len() / 2;
    match v.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => v[k],
        _ => (v[k - 1] + v[k]) / 2.0,
    }
}
