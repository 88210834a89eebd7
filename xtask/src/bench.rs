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
//! 5. the same over an emulated slow link: the municipal server and the agent
//!    run in a network namespace joined to the host by a veth pair shaped
//!    with `tc tbf` to 20 Mbit/s each way (see `transmissor_tests::netns`),
//!    on a smaller dataset (`--slow-care`, `--slow-visits`); the agent
//!    chooses its zstd level itself (`zstd_level = "auto"`, its default).
//!    Where namespaces cannot be made (not root, no iproute2) the command
//!    says why, skips it and prints `NaN` for its result.
//! 6. in each setting, the automatic zstd level against the forced levels
//!    1, 3, 9 and 19 (`--level-repeat` runs each, alternating; `--levels
//!    none` skips it), with the levels the agent picked; and on loopback,
//!    an upload under a bandwidth cap (`--cap-mbit`, `--cap-rows`) whose
//!    bytes are counted on the wire by a relay ([`levels`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::netns::SlowLink;
use transmissor_tests::pec::Scale;
use transmissor_tests::pg::ClusterOptions;
use transmissor_tests::stack::{Job, Municipality, Stack, StackOptions};

use crate::compare::{checkpoint, copy_pipe, expect_rows, median};

mod levels;

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
    /// Individual-care rows for the slow-link runs.
    #[arg(long, default_value_t = 100_000)]
    slow_care: u64,
    /// Visit rows for the slow-link runs.
    #[arg(long, default_value_t = 100_000)]
    slow_visits: u64,
    /// Link rate for the slow-link runs, Mbit/s.
    #[arg(long, default_value_t = 20)]
    slow_mbit: u32,
    /// Timed runs of each zstd level variant (auto, 1, 3, 9, 19) per table.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..))]
    level_repeat: u32,
    /// The upload cap of the loopback cap run, Mbit/s (0: no cap run).
    #[arg(long, default_value_t = 5)]
    cap_mbit: u32,
    /// Visit rows the cap run uploads.
    #[arg(long, default_value_t = 100_000)]
    cap_rows: u64,
    /// Run only one of the two settings.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Force the agent's zstd level in the main runs (default: "auto").
    #[arg(long, value_parser = clap::value_parser!(i32).range(-7..=19))]
    zstd_level: Option<i32>,
    /// The agent's `[source] copy_format` (binary: where every column allows it).
    #[arg(long, default_value = "text", value_parser = ["text", "binary"])]
    copy_format: String,
    /// Skip the slow incumbent variant (postgres_fdw default batch size), for
    /// quick experiments; its figures are then missing from the report.
    #[arg(long)]
    skip_fdw_default: bool,
    /// Keep the loopback setting's working directory (configs, agent and
    /// collector logs) here instead of a temporary directory.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    Loopback,
    SlowLink,
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

/// Where the methods run: loopback, or across the slow link.
struct Setting {
    label: String,
    stack: Stack,
    m: Municipality,
    rows: BTreeMap<&'static str, u64>,
    /// Runs the agent inside the municipality's network namespace.
    agent_prefix: Vec<String>,
    /// The collector as the agent reaches it (`None`: the stack's endpoint).
    endpoint: Option<String>,
    /// Extra agent TOML.
    agent_extra: String,
    /// `[source] copy_format` of the agent.
    copy_format: String,
    skip_fdw_default: bool,
}

/// What one setting measured.
struct Measured {
    /// times[table][method] = seconds per run
    times: BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>,
    agent_rss: f64,
    agent_cpu: Vec<f64>,
    collector_rss: f64,
    /// (compressed, raw) batch bytes of the committed transmissions.
    wire: (i64, i64),
}

impl Measured {
    fn total(&self, method: &str) -> f64 {
        self.times
            .values()
            .map(|by| median(by.get(method).map(Vec::as_slice).unwrap_or(&[])))
            .sum()
    }

    /// Sum over tables of the faster of the two pipes.
    fn best_pipe(&self) -> f64 {
        self.times
            .values()
            .map(|by| median(&by[METHODS[0]]).min(median(&by[METHODS[1]])))
            .sum()
    }
}

async fn transmit(setting: &Setting, table: &str, log: &str) -> Result<Run> {
    let job = Job::new(
        "bench",
        "snapshot",
        table,
        &format!("SELECT * FROM {table}"),
    );
    transmit_with(
        setting,
        job,
        &setting.agent_extra,
        setting.endpoint.as_deref(),
        log,
    )
    .await
}

/// Runs the agent once for `job`, with `extra` agent TOML and the
/// collector at `endpoint` (`None`: the stack's).
async fn transmit_with(
    setting: &Setting,
    job: Job,
    extra: &str,
    endpoint: Option<&str>,
    log: &str,
) -> Result<Run> {
    let stack = &setting.stack;
    let cfg = stack.agent_config(&setting.m, &[job], extra)?;
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        text.replacen(
            "[source]\n",
            &format!("[source]\ncopy_format = \"{}\"\n", setting.copy_format),
            1,
        ),
    )?;
    if let Some(endpoint) = endpoint {
        // Across the link: the collector's address there, its certificate's name.
        let text = std::fs::read_to_string(&cfg)?;
        let from = format!("endpoint = \"{}\"", stack.endpoint());
        if !text.contains(&from) {
            bail!("agent config without {from}");
        }
        std::fs::write(
            &cfg,
            text.replace(
                &from,
                &format!("endpoint = \"{endpoint}\"\nserver_name = \"localhost\""),
            ),
        )?;
    }
    let t = Instant::now();
    let mut agent = stack.spawn_agent_via(&setting.agent_prefix, &cfg, log)?;
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

fn durable() -> ClusterOptions {
    ClusterOptions {
        fast: false,
        ..Default::default()
    }
}

/// Loads the dataset, makes the anchor targets and the incumbent's foreign
/// tables (`fdw_host`: the analytic server as the source server reaches
/// it), and starts the collector.
async fn prepare(mut stack: Stack, scale: &Scale, fdw_host: &str) -> Result<(Stack, Municipality)> {
    let m = stack.munis.first().context("no municipality")?.clone();
    println!(
        "==> loading {} individual-care rows and {} visits into {}",
        scale.care, scale.visits, m.db
    );
    let t = Instant::now();
    stack.load_pec(&m, 1000, scale).await?;
    let src = stack.source.connect(&m.db).await?;
    for ((table, _), n) in TABLES.iter().zip([scale.care, scale.visits]) {
        src.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
        expect_rows(&src, &format!("SELECT count(*) FROM {table}"), n, "source").await?;
    }
    println!("    loaded in {:.1}s", t.elapsed().as_secs_f64());

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
           OPTIONS (host '{fdw_host}', port '{p}', dbname 'analytic', batch_size '1000');
         CREATE SERVER centraldefault FOREIGN DATA WRAPPER postgres_fdw
           OPTIONS (host '{fdw_host}', port '{p}', dbname 'analytic');
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
    Ok((stack, m))
}

async fn measure(setting: &Setting, repeat: u32) -> Result<Measured> {
    let (stack, m) = (&setting.stack, &setting.m);
    let src = stack.source.connect(&m.db).await?;
    let analytic = stack.analytic_client().await?;
    let collector_pid = stack
        .collector
        .as_ref()
        .and_then(|p| p.pid())
        .context("collector pid")?;
    let mut out = Measured {
        times: BTreeMap::new(),
        agent_rss: 0.0,
        agent_cpu: Vec::new(),
        collector_rss: f64::NAN,
        wire: (0, 0),
    };
    let tag = if setting.agent_prefix.is_empty() {
        ""
    } else {
        "slow "
    };
    println!(
        "==> {}: {repeat} timed run(s) of each method and table, alternating",
        setting.label
    );
    for i in 1..=repeat {
        for (table, pk) in TABLES {
            let n = setting.rows[table];
            let anchor = format!("anchor.{table}");
            let entry = out.times.entry(table).or_default();
            for (method, binary) in [(METHODS[0], false), (METHODS[1], true)] {
                analytic
                    .batch_execute(&format!("TRUNCATE {anchor}"))
                    .await?;
                checkpoint(&src, &analytic).await?;
                let s = copy_pipe(stack, &m.db, table, &anchor, binary)?;
                expect_rows(
                    &analytic,
                    &format!("SELECT count(*) FROM {anchor}"),
                    n,
                    method,
                )
                .await?;
                println!("    {tag}run {i} {table:<30} {method:<32} {s:>8.2}s");
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
                if setting.skip_fdw_default && method == METHODS[3] {
                    continue;
                }
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
                    "    {tag}run {i} {table:<30} {method:<32} {s:>8.2}s (measured {measured:.2}s)"
                );
                entry.entry(method).or_default().push(s);
            }
            checkpoint(&src, &analytic).await?;
            let log = format!("agent-bench-{tag}{i}-{table}.log").replace(' ', "");
            let r = transmit(setting, table, &log).await?;
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
                "    {tag}run {i} {table:<30} {:<32} {:>8.2}s (agent peak RSS {:.0} MiB, CPU {:.2}s)",
                METHODS[4], r.seconds, r.peak_rss_mib, r.cpu_s
            );
            entry.entry(METHODS[4]).or_default().push(r.seconds);
            out.agent_rss = out.agent_rss.max(r.peak_rss_mib);
            out.agent_cpu.push(r.cpu_s);
        }
    }
    out.collector_rss = sample(collector_pid).map_or(f64::NAN, |s| s.0);
    let r = analytic
        .query_one(
            "SELECT coalesce(sum(compressed_bytes), 0)::int8, coalesce(sum(raw_bytes), 0)::int8 \
             FROM transmissor.transmissions WHERE state = 'committed'",
            &[],
        )
        .await?;
    out.wire = (r.get(0), r.get(1));
    Ok(out)
}

fn report(setting: &Setting, m: &Measured, repeat: u32) {
    println!("\n{}: median of {repeat}", setting.label);
    println!(
        "{:<30} {:<32} {:>10} {:>12}",
        "table", "method", "median (s)", "rows/s"
    );
    for (table, by_method) in &m.times {
        for method in METHODS {
            let med = median(by_method.get(method).map(Vec::as_slice).unwrap_or(&[]));
            println!(
                "{table:<30} {method:<32} {med:>10.2} {:>12.0}",
                setting.rows[table] as f64 / med
            );
        }
    }
    println!(
        "both tables: best copy pipe {:.2}s, postgres_fdw batch 1000 {:.2}s, transmissor {:.2}s",
        m.best_pipe(),
        m.total(METHODS[2]),
        m.total(METHODS[4])
    );
    println!(
        "agent peak RSS {:.0} MiB, agent CPU {:.2}s per run (median), collector peak RSS {:.0} MiB",
        m.agent_rss,
        median(&m.agent_cpu),
        m.collector_rss
    );
    println!(
        "wire: {} compressed bytes for {} raw COPY bytes ({:.3})",
        m.wire.0,
        m.wire.1,
        m.wire.0 as f64 / m.wire.1.max(1) as f64
    );
}

async fn loopback(args: &BenchArgs) -> Result<Setting> {
    println!(
        "==> loopback: starting PostgreSQL clusters (durable: fsync and synchronous_commit on)"
    );
    let stack = Stack::with_options(
        &[MUNICIPALITY],
        StackOptions {
            cluster: durable(),
            dir: args.keep.clone(),
            ..Default::default()
        },
    )
    .await?;
    let scale = Scale {
        visits: args.visits,
        citizens: 50_000,
        care: args.care,
    };
    let (stack, m) = prepare(stack, &scale, "127.0.0.1").await?;
    Ok(Setting {
        label: "loopback".into(),
        stack,
        m,
        rows: BTreeMap::from([(TABLES[0].0, args.care), (TABLES[1].0, args.visits)]),
        agent_prefix: Vec::new(),
        endpoint: None,
        agent_extra: args
            .zstd_level
            .map(|l| format!("[spool]\nzstd_level = {l}\n"))
            .unwrap_or_default(),
        copy_format: args.copy_format.clone(),
        skip_fdw_default: args.skip_fdw_default,
    })
}

async fn slow_link(args: &BenchArgs, link: &SlowLink) -> Result<Setting> {
    println!(
        "==> slow link: source PostgreSQL and agent in network namespace {} ({}), {} Mbit/s tbf each way to the host ({})",
        link.netns, link.ns_ip, link.rate_mbit, link.host_ip
    );
    let source = ClusterOptions {
        netns: Some(link.netns.clone()),
        host: Some(link.ns_ip.clone()),
        hba_extra: vec![link.hba_line()],
        ..durable()
    };
    let analytic = ClusterOptions {
        listen_extra: vec![link.host_ip.clone()],
        hba_extra: vec![link.hba_line()],
        ..durable()
    };
    let stack = Stack::with_options(
        &[MUNICIPALITY],
        StackOptions {
            cluster: analytic,
            source_cluster: Some(source),
            collector_listen_all: true,
            ..Default::default()
        },
    )
    .await?;
    let scale = Scale {
        visits: args.slow_visits,
        citizens: 20_000,
        care: args.slow_care,
    };
    let (stack, m) = prepare(stack, &scale, &link.host_ip).await?;
    let endpoint = format!("https://{}:{}", link.host_ip, stack.collector_addr.port());
    Ok(Setting {
        label: format!("slow link ({} Mbit/s)", link.rate_mbit),
        stack,
        m,
        rows: BTreeMap::from([
            (TABLES[0].0, args.slow_care),
            (TABLES[1].0, args.slow_visits),
        ]),
        agent_prefix: link.exec_prefix(),
        endpoint: Some(endpoint),
        agent_extra: args
            .zstd_level
            .map(|l| format!("[spool]\nzstd_level = {l}\n"))
            .unwrap_or_default(),
        copy_format: args.copy_format.clone(),
        skip_fdw_default: args.skip_fdw_default,
    })
}

async fn bench(args: BenchArgs) -> Result<()> {
    let repeat = args.repeat;
    let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());
    let mut lines = Vec::new();

    if args.only != Some(Only::SlowLink) {
        let mut setting = loopback(&args).await?;
        let m = measure(&setting, repeat).await?;
        let version: String = setting
            .stack
            .analytic_client()
            .await?
            .query_one("SELECT current_setting('server_version')", &[])
            .await?
            .get(0);
        println!("\nmachine: nproc {cpus}, PostgreSQL {version}; durable servers");
        report(&setting, &m, repeat);
        let e2e = m.total(METHODS[4]);
        let fdw = m.total(METHODS[2]);
        let all_rows: u64 = setting.rows.values().sum();
        lines.extend([
            format!("e2e_over_best_copy_pipe={:.3}", e2e / m.best_pipe()),
            format!("e2e_over_fdw_batch1000={:.3}", e2e / fdw),
            format!("fdw_batch1000_over_e2e={:.3}", fdw / e2e),
            format!("agent_peak_rss_mib={:.1}", m.agent_rss),
            format!("agent_cpu_seconds={:.2}", median(&m.agent_cpu)),
            format!("collector_peak_rss_mib={:.1}", m.collector_rss),
            format!(
                "wire_bytes_over_raw={:.3}",
                m.wire.0 as f64 / m.wire.1.max(1) as f64
            ),
            format!("rows_per_second={:.0}", all_rows as f64 / e2e),
        ]);
        lines.extend(levels::compare(&setting, args.level_repeat, "").await?);
        if args.cap_mbit > 0 {
            lines.extend(levels::cap_run(&setting, args.cap_mbit, args.cap_rows).await?);
        }
        setting.stack.stop_collector().await?;
    }

    if args.only != Some(Only::Loopback) {
        match SlowLink::create(args.slow_mbit) {
            Err(e) => {
                println!("\nslow link skipped: cannot make network namespaces here ({e:#})");
                lines.push("slowlink_e2e_over_best_copy_pipe=NaN".into());
            }
            Ok(link) => {
                let mut setting = slow_link(&args, &link).await?;
                let m = measure(&setting, repeat).await?;
                report(&setting, &m, repeat);
                let e2e = m.total(METHODS[4]);
                lines.extend([
                    format!(
                        "slowlink_e2e_over_best_copy_pipe={:.3}",
                        e2e / m.best_pipe()
                    ),
                    format!(
                        "slowlink_e2e_over_fdw_batch1000={:.3}",
                        e2e / m.total(METHODS[2])
                    ),
                    format!(
                        "slowlink_wire_bytes_over_raw={:.3}",
                        m.wire.0 as f64 / m.wire.1.max(1) as f64
                    ),
                    format!("slowlink_agent_peak_rss_mib={:.1}", m.agent_rss),
                ]);
                lines.extend(levels::compare(&setting, args.level_repeat, "slowlink_").await?);
                setting.stack.stop_collector().await?;
                drop(setting);
                drop(link);
            }
        }
    }

    println!();
    for l in lines {
        println!("RESULT {l}");
    }
    Ok(())
}
