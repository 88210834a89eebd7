//! `cargo xtask bench`: transmissor measured against what users would
//! otherwise pick, in one run, on the same two servers.
//!
//! Dataset: the synthetic PEC individual-care fact table (3,000,000 rows by
//! default) and visit table (1,000,000). Each method copies each table from
//! the source server to the analytic server, `--repeat` times (median
//! reported), alternating methods so drift hits all of them:
//!
//! 1. `psql COPY ... TO STDOUT | psql COPY ... FROM STDIN` (text) — anchor;
//! 2. the same in `FORMAT binary` — anchor;
//! 3. the incumbent, `postgres_fdw` on the municipal database pushing
//!    `INSERT INTO <foreign table> SELECT * FROM <table>` with
//!    `batch_size '1000'`, and with the default batch size (one row per round
//!    trip) on a 10% sample, projected ×10;
//! 4. transmissor end to end: `transmissor-agent run --once` (extract →
//!    spool → mTLS gRPC → collector → committed snapshot), timed from spawn to
//!    exit, with its peak RSS and CPU seconds sampled from `/proc`.
//!
//! Both servers are durable (fsync on), checkpointed before every timed run;
//! anchor targets have no indexes, like the collector's snapshot partitions.
//! "Wire bytes" are the compressed batch bytes the collector recorded (gRPC
//! and TLS framing excluded) over the raw COPY text bytes.
//!
//! The slow-link variant (network namespaces + `tc tbf` at 20 Mbit/s) is not
//! implemented yet: the command says so and prints `NaN` for its result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::pec::Scale;
use transmissor_tests::pg::ClusterOptions;
use transmissor_tests::stack::{Job, Municipality, Stack, StackOptions};

use crate::compare::{checkpoint, copy_pipe, expect_rows, median};

#[derive(Args)]
pub struct BenchArgs {
    /// Rows in the individual-care fact table.
    #[arg(long, default_value_t = 3_000_000)]
    care: u64,
    /// Rows in the visit table.
    #[arg(long, default_value_t = 1_000_000)]
    visits: u64,
    /// Timed runs of each method (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

const MUNICIPALITY: (&str, &str) = ("3550308", "São Paulo");

/// (table, primary key column)
const TABLES: [(&str, &str); 2] = [
    ("tb_fat_atendimento_individual", "co_seq_fat_atd_ind"),
    ("tb_fat_visita_domiciliar", "co_seq_fat_visita_domiciliar"),
];

const METHODS: [&str; 5] = [
    "copy text pipe",
    "copy binary pipe",
    "postgres_fdw batch_size 1000",
    "postgres_fdw default (10% x10)",
    "transmissor end to end",
];

pub fn run(args: BenchArgs) -> Result<()> {
    crate::setup::with_binaries(true, |_| bench(args))
}

/// Peak RSS (MiB) and CPU seconds of a running process, from /proc.
fn sample(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which ends with ')').
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
    Some((hwm_kib / 1024.0, ticks / 100.0))
}

struct Run {
    seconds: f64,
    peak_rss_mib: f64,
    cpu_s: f64,
}

async fn transmit(stack: &Stack, m: &Municipality, table: &str, log: &str) -> Result<Run> {
    let job = Job::new(
        "bench",
        "snapshot",
        table,
        &format!("SELECT * FROM {table}"),
    );
    let cfg = stack.agent_config(m, &[job], "")?;
    let t = Instant::now();
    let mut agent = stack.spawn_agent(&cfg, log)?;
    let pid = agent.pid().context("agent pid")?;
    let (mut rss, mut cpu) = (0.0f64, 0.0f64);
    while agent.is_running() {
        if let Some((r, c)) = sample(pid) {
            rss = rss.max(r);
            cpu = c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = agent.wait(Duration::from_secs(5)).await?;
    let seconds = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "transmissor-agent failed ({status}); log:\n{}",
            agent.log_text()
        );
    }
    Ok(Run {
        seconds,
        peak_rss_mib: rss,
        cpu_s: cpu,
    })
}

async fn bench(args: BenchArgs) -> Result<()> {
    let repeat = args.repeat;
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
    println!(
        "==> loading {} individual-care rows and {} visits into {}",
        args.care, args.visits, m.db
    );
    let t = Instant::now();
    stack
        .load_pec(
            &m,
            1000,
            &Scale {
                visits: args.visits,
                citizens: 50_000,
                care: args.care,
            },
        )
        .await?;
    let src = stack.source.connect(&m.db).await?;
    let rows: BTreeMap<&str, u64> =
        BTreeMap::from([(TABLES[0].0, args.care), (TABLES[1].0, args.visits)]);
    for (table, _) in TABLES {
        src.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
        expect_rows(
            &src,
            &format!("SELECT count(*) FROM {table}"),
            rows[table],
            "source",
        )
        .await?;
    }
    println!("    loaded in {:.1}s", t.elapsed().as_secs_f64());
    let version: String = src
        .query_one("SELECT current_setting('server_version')", &[])
        .await?
        .get(0);
    let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());

    // Anchor targets: the PEC tables in schema `anchor`, without primary keys.
    let analytic = stack.analytic_client().await?;
    let drop_pks: String = TABLES
        .iter()
        .map(|(t, _)| format!("ALTER TABLE anchor.{t} DROP CONSTRAINT {t}_pkey;"))
        .collect();
    analytic
        .batch_execute(&format!(
            "CREATE SCHEMA anchor; SET search_path = anchor;\n{}\n{drop_pks} RESET search_path",
            transmissor_tests::pec::SCHEMA_SQL
        ))
        .await
        .context("creating the anchor targets")?;
    // The incumbent: postgres_fdw on the municipal database, pushing into the centre.
    src.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw;
         CREATE SERVER central1000 FOREIGN DATA WRAPPER postgres_fdw
           OPTIONS (host '127.0.0.1', port '{p}', dbname 'analytic', batch_size '1000');
         CREATE SERVER centraldefault FOREIGN DATA WRAPPER postgres_fdw
           OPTIONS (host '127.0.0.1', port '{p}', dbname 'analytic');
         CREATE USER MAPPING FOR postgres SERVER central1000 OPTIONS (user 'postgres');
         CREATE USER MAPPING FOR postgres SERVER centraldefault OPTIONS (user 'postgres');
         CREATE SCHEMA fdw1000; CREATE SCHEMA fdwdefault;
         IMPORT FOREIGN SCHEMA anchor LIMIT TO ({t0}, {t1}) FROM SERVER central1000 INTO fdw1000;
         IMPORT FOREIGN SCHEMA anchor LIMIT TO ({t0}, {t1}) FROM SERVER centraldefault INTO fdwdefault;",
        p = stack.analytic.port,
        t0 = TABLES[0].0,
        t1 = TABLES[1].0,
    ))
    .await
    .context("setting up postgres_fdw (package postgresql-contrib)")?;

    println!("==> starting the collector on {}", stack.collector_addr);
    stack.start_collector().await?;
    let collector_pid = stack
        .collector
        .as_ref()
        .and_then(|p| p.pid())
        .context("collector pid")?;

    // times[table][method] = seconds per run
    let mut times: BTreeMap<&str, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    let (mut agent_rss, mut agent_cpu) = (0.0f64, Vec::new());
    println!("==> {repeat} timed run(s) of each method and table, alternating");
    for i in 1..=repeat {
        for (table, pk) in TABLES {
            let n = rows[table];
            let anchor = format!("anchor.{table}");
            let entry = times.entry(table).or_default();
            for (method, binary) in [(METHODS[0], false), (METHODS[1], true)] {
                analytic
                    .batch_execute(&format!("TRUNCATE {anchor}"))
                    .await?;
                checkpoint(&src, &analytic).await?;
                let s = copy_pipe(&stack, &m.db, table, &anchor, binary)?;
                expect_rows(
                    &analytic,
                    &format!("SELECT count(*) FROM {anchor}"),
                    n,
                    method,
                )
                .await?;
                println!("    run {i} {table:<30} {method:<32} {s:>8.2}s");
                entry.entry(method).or_default().push(s);
            }
            for (method, schema, filter, factor) in [
                (METHODS[2], "fdw1000", String::new(), 1.0),
                (
                    METHODS[3],
                    "fdwdefault",
                    format!(" WHERE {pk} % 10 = 0"),
                    10.0,
                ),
            ] {
                analytic
                    .batch_execute(&format!("TRUNCATE {anchor}"))
                    .await?;
                checkpoint(&src, &analytic).await?;
                let t = Instant::now();
                src.batch_execute(&format!(
                    "INSERT INTO {schema}.{table} SELECT * FROM {table}{filter}"
                ))
                .await
                .with_context(|| method.to_string())?;
                let measured = t.elapsed().as_secs_f64();
                let s = measured * factor;
                println!(
                    "    run {i} {table:<30} {method:<32} {s:>8.2}s (measured {measured:.2}s)"
                );
                entry.entry(method).or_default().push(s);
            }
            checkpoint(&src, &analytic).await?;
            let r = transmit(&stack, &m, table, &format!("agent-bench-{i}-{table}.log")).await?;
            expect_rows(
                &analytic,
                &format!(
                    "SELECT count(*) FROM analytic.{table} WHERE _ibge = '{}'",
                    m.ibge
                ),
                n,
                "transmissor",
            )
            .await?;
            println!(
                "    run {i} {table:<30} {:<32} {:>8.2}s (agent peak RSS {:.0} MiB, CPU {:.2}s)",
                METHODS[4], r.seconds, r.peak_rss_mib, r.cpu_s
            );
            entry.entry(METHODS[4]).or_default().push(r.seconds);
            agent_rss = agent_rss.max(r.peak_rss_mib);
            agent_cpu.push(r.cpu_s);
        }
    }
    let collector_rss = sample(collector_pid).map_or(f64::NAN, |s| s.0);
    let wire: (i64, i64) = {
        let r = analytic
            .query_one(
                "SELECT coalesce(sum(compressed_bytes), 0)::int8, coalesce(sum(raw_bytes), 0)::int8 \
                 FROM transmissor.transmissions WHERE state = 'committed'",
                &[],
            )
            .await?;
        (r.get(0), r.get(1))
    };

    // Report.
    println!(
        "\nmachine: nproc {cpus}, PostgreSQL {version}; loopback; durable servers; median of {repeat}"
    );
    println!(
        "{:<30} {:<32} {:>10} {:>12}",
        "table", "method", "median (s)", "rows/s"
    );
    let mut total: BTreeMap<&str, f64> = BTreeMap::new();
    for (table, by_method) in &times {
        for method in METHODS {
            let med = median(by_method.get(method).map(Vec::as_slice).unwrap_or(&[]));
            *total.entry(method).or_default() += med;
            println!(
                "{table:<30} {method:<32} {med:>10.2} {:>12.0}",
                rows[table] as f64 / med
            );
        }
    }
    let best_pipe: f64 = times
        .values()
        .map(|by| median(&by[METHODS[0]]).min(median(&by[METHODS[1]])))
        .sum();
    let e2e = total[METHODS[4]];
    let all_rows: u64 = rows.values().sum();
    println!(
        "\nboth tables: best copy pipe {best_pipe:.2}s, postgres_fdw batch 1000 {:.2}s, transmissor {e2e:.2}s",
        total[METHODS[2]]
    );
    println!(
        "agent peak RSS {agent_rss:.0} MiB, agent CPU {:.2}s per run (median), collector peak RSS {collector_rss:.0} MiB",
        median(&agent_cpu)
    );
    println!("wire: {} compressed bytes for {} raw bytes", wire.0, wire.1);
    println!("slow link (20 Mbit/s, network namespaces): not implemented yet — skipped");
    println!();
    println!("RESULT e2e_over_best_copy_pipe={:.3}", e2e / best_pipe);
    println!(
        "RESULT e2e_over_fdw_batch1000={:.3}",
        e2e / total[METHODS[2]]
    );
    println!(
        "RESULT fdw_batch1000_over_e2e={:.3}",
        total[METHODS[2]] / e2e
    );
    println!("RESULT slowlink_e2e_over_best_copy_pipe=NaN");
    println!("RESULT agent_peak_rss_mib={agent_rss:.1}");
    println!("RESULT agent_cpu_seconds={:.2}", median(&agent_cpu));
    println!("RESULT collector_peak_rss_mib={collector_rss:.1}");
    println!(
        "RESULT wire_bytes_over_raw={:.3}",
        wire.0 as f64 / wire.1.max(1) as f64
    );
    println!("RESULT rows_per_second={:.0}", all_rows as f64 / e2e);

    stack.stop_collector().await?;
    drop(stack);
    Ok(())
}
