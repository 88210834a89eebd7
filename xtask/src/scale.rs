//! `cargo xtask scale`: many agents against one collector process, and the
//! national layout at the size of the country.
//!
//! Method. This program first rebuilds itself in release with the binaries
//! it starts and re-executes from that build (`scale/release.rs`): the load
//! generator's TLS clients are optimised whatever profile `cargo xtask` was
//! built in. The harness starts an analytic and a source PostgreSQL
//! cluster, a development PKI and `transmissor-collector serve` (release
//! build) on 127.0.0.1. The analytic server keeps PostgreSQL's defaults where they
//! matter here: `max_connections = 100` and `max_locks_per_transaction = 64`
//! (6,400 lock slots); like the rest of the harness it runs with fsync off
//! unless `--durable`. The collector's pools (`--pool` + the identity
//! check's 4 connections) must fit in it. From the development CA this
//! process issues `--agents` agent certificates (ECDSA P-256, one synthetic
//! municipality each: IBGE prefix `900000 + i` and its computed check
//! digit), registers the municipalities and agents with two
//! `INSERT ... SELECT FROM unnest(...)`, and gives each agent its own rustls
//! configuration (TLS 1.3, ALPN h2) and its own lazily connecting channel:
//! each agent is one TCP + TLS connection presenting its own certificate,
//! as real agents are. The phases run one after the other:
//!
//! 1. Heartbeats: agent `i` sends its first `AgentLifecycle.Heartbeat` at
//!    `ramp · i / N` (spreading the handshakes), then one every
//!    `--heartbeat-every` ±20 % until `--duration` has passed. Each agent's
//!    first call carries its TCP and TLS handshake and is reported apart; the
//!    heartbeat p50/p99 (and `RESULT scale_heartbeat_p99_ms`) are of the
//!    other calls, also split into those sent while transmissions ran and
//!    the rest. Throughout, the new-connection probe (`scale/probe.rs`) has
//!    normal agents open a fresh TCP + TLS connection for one heartbeat,
//!    4 a second (`RESULT scale_new_connection_p99_ms`), and the collector's
//!    RSS is followed (peak and end of the phase). When the ramp ends,
//!    `--transmissions` distinct agents at once
//!    each run `Begin` → 2 or 3 `PutBatch` (20 COPY text rows each, zstd,
//!    CRC-32C; one in flight) → `Commit`, in `snapshot` mode into
//!    `analytic.scale_t`; the rows per municipality are then checked.
//! 2. National load: each of `--municipalities` agents sends, over its own
//!    connection, a snapshot of `--rows` rows (one batch) to each of two
//!    targets, `scale_person` and `scale_visit` (whose `person_id` refers to
//!    a person of the same municipality); `--concurrency` transmissions in
//!    flight, the first municipality's alone (it creates the targets). Begin
//!    and Commit p50/p99 are reported and every municipality's rows checked.
//! 3. Analyst queries on a plain connection of their own, each `--repeat`
//!    times, median reported: `count(*)` of a target, a filter on one
//!    municipality, a filter on data columns over all municipalities, and
//!    the join of the two targets on `_ibge` and the person's id over all
//!    municipalities; wall time, and planning and execution time from
//!    `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON)`. A failure (such as
//!    "out of shared memory") is printed and fails the command. Then the
//!    relation locks a transaction holds after the count and after the join
//!    are read from `pg_locks`.
//! 4. One municipality's `--big-rows`-row snapshot (batches of 10,000 rows)
//!    committed `--repeat` times into `scale_person` (holding every
//!    municipality) and, alternating, into `scale_person_anchor` (holding
//!    only that municipality): the Commit RPC is timed, medians compared.
//!
//! With `--hostile`, phase 1 runs a second time right after the first
//! (calm), while the last agent, compromised, and anonymous hosts on
//! 127.0.0.2 and up attack both listeners (`scale/hostile.rs`,
//! `scale/anonymous.rs`; the HTTPS side then listens, with one operator).
//! The normal agents' heartbeat and new-connection p99, errors and the
//! collector's RSS of both runs are printed side by side as
//! `RESULT scale_hostile_*` lines, with the ratios attacked / calm, and what
//! each attack got as `RESULT scale_attack_*`.
//!
//! Collector CPU (utime + stime) and RSS (VmRSS sampled every 100 ms, and
//! VmHWM reset at each phase's start) come from `/proc/<pid>`, the load
//! generator's CPU from `/proc/self` and the whole machine's (PostgreSQL
//! included) from `/proc/stat`, per phase. A phase in which the load
//! generator used more than 80% of a core is flagged (a warning, and
//! `RESULT scale_generator_saturated=1`): its latencies are then partly the
//! generator's own.
//!
//! Limits. Load generator, collector and PostgreSQL share this machine's
//! cores (as does anything else running), so latencies are an upper bound
//! for a collector with a machine of its own. Phase 1's transmissions all
//! load one target at the same moment (the worst case for the pool).
//! Heartbeat bodies are minimal, and no agent heartbeats during phases 2-4.
//! Each side holds one socket per agent (and, with `--hostile`, the
//! attacks' sockets), so `--agents` is bounded by the file-descriptor limit.

mod agents;
mod analyst;
mod anonymous;
mod heartbeat;
mod hostile;
mod national;
mod probe;
mod release;
mod stats;
mod sys;
mod tally;
mod tx;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_collector::db::AUTH_POOL_CONNECTIONS;
use transmissor_tests::operators;
use transmissor_tests::pg::{ClusterOptions, free_port};
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
    /// Municipalities of the national load (at most --agents; 0 skips
    /// phases 2 to 4): each sends a snapshot to each of two targets.
    #[arg(long, default_value_t = 5570)]
    municipalities: u32,
    /// Rows per municipality per target in the national load.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    rows: u64,
    /// Transmissions in flight during the national load.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Rows of the one-municipality commit into the full target (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    big_rows: u64,
    /// Runs of each analyst query and of each large commit (median reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// The collector's database pool (`[database] max_connections`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=90))]
    pool: u32,
    /// Analytic server with fsync and synchronous_commit on (default: off,
    /// like the rest of the test harness).
    #[arg(long)]
    durable: bool,
    /// Run phase 1 a second time while the last agent, compromised, and
    /// anonymous hosts on 127.0.0.2 and up attack the collector (see
    /// `xtask/src/scale/hostile.rs` and `anonymous.rs`; the collector's
    /// HTTPS side listens too, with one operator); the normal agents'
    /// results of both runs are compared.
    #[arg(long)]
    hostile: bool,
    #[command(flatten)]
    attacks: anonymous::AttackArgs,
    /// Keep the configs, certificates and logs in DIR (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The analytic server's limits: PostgreSQL's defaults.
const MAX_CONNECTIONS: u32 = 100;
const MAX_LOCKS_PER_TRANSACTION: u32 = 64;
/// Connections of this process to the analytic server at most at once.
const HARNESS_CONNECTIONS: u32 = 4;
/// `superuser_reserved_connections`' default: not for the collector's role.
const RESERVED: u32 = 3;
/// The HTTP side's own pool (`[http] database_connections`' default), with
/// `--hostile` only.
const HTTP_CONNECTIONS: u32 = 4;
/// Open files besides the agents' and attacks' sockets (probe, pools,
/// logs, PostgreSQL clients).
const FD_MARGIN: usize = 256;
/// The operator whose name the login flood also tries (wrong passwords).
const OPERATOR: &str = "scale-operator";

/// Runs the scale test from an optimised build of this program
/// (`scale/release.rs`).
pub fn run(args: ScaleArgs) -> Result<()> {
    release::optimised()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(scale(args))
}

async fn scale(args: ScaleArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let (n, m) = (args.agents as usize, args.municipalities as usize);
    if args.hostile && n < 2 {
        bail!("--hostile needs at least 2 agents (one of them turns hostile)");
    }
    if m > n {
        bail!("--municipalities {m} needs as many agents; --agents is {n}");
    }
    let budget = MAX_CONNECTIONS - RESERVED;
    let http = if args.hostile { HTTP_CONNECTIONS } else { 0 };
    if args.pool + AUTH_POOL_CONNECTIONS + http + HARNESS_CONNECTIONS > budget {
        bail!(
            "--pool {} + {AUTH_POOL_CONNECTIONS} (identity check) + {http} (HTTP side) + \
             {HARNESS_CONNECTIONS} (this harness) connections do not fit in \
             max_connections = {MAX_CONNECTIONS} less {RESERVED} reserved",
            args.pool
        );
    }
    let attack_sockets = if args.hostile {
        args.attacks.sockets()
    } else {
        0
    };
    let sockets = (n + attack_sockets + FD_MARGIN) as u64;
    let limit = sys::open_files_limit()?;
    if sockets > limit {
        bail!(
            "{n} agents and {attack_sockets} attack sockets need about {sockets} open files \
             in this process and in the collector; the limit is {limit} (ulimit -n)"
        );
    }
    let repeat = args.repeat as usize;

    println!("==> starting PostgreSQL clusters and the development PKI");
    let setting = |k: &str, v: u32| (k.to_string(), v.to_string());
    let analytic = ClusterOptions {
        fast: !args.durable,
        extra: vec![
            setting("max_connections", MAX_CONNECTIONS),
            setting("max_locks_per_transaction", MAX_LOCKS_PER_TRANSACTION),
        ],
        ..Default::default()
    };
    // With --hostile the HTTPS side listens, for the anonymous attacks on it.
    let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let collector_extra_toml = match args.hostile {
        true => format!("\n[http]\nlisten = \"{http_addr}\"\n"),
        false => String::new(),
    };
    let opts = StackOptions {
        dir: args.dir.clone(),
        cluster: analytic,
        source_cluster: Some(ClusterOptions::default()),
        collector_extra_toml,
        ..Default::default()
    };
    let mut stack = Stack::with_options(&[], opts).await?;
    println!("    work directory: {}", stack.dir.display());
    set_pool(&stack, args.pool)?;
    println!(
        "    analytic server: max_connections={MAX_CONNECTIONS}, \
         max_locks_per_transaction={MAX_LOCKS_PER_TRANSACTION}, fsync {}; \
         collector pools {} + {AUTH_POOL_CONNECTIONS}",
        if args.durable { "on" } else { "off" },
        args.pool
    );

    let t = std::time::Instant::now();
    // 127.0.0.1 (not "localhost", which may resolve to ::1 first); the name checked is localhost.
    let endpoint = format!("https://127.0.0.1:{}", stack.collector_addr.port());
    let agents = agents::issue(&stack.dir.join("pki"), &endpoint, n).await?;
    println!("==> issued {n} agent certificates in {:.2?}", t.elapsed());
    agents::register(&stack, &agents).await?;

    println!("==> starting the collector on {}", stack.collector_addr);
    stack.start_collector().await?;
    let pid = (stack.collector.as_ref().and_then(|p| p.pid()))
        .context("the collector has no pid")?
        .to_string();
    let target = match args.hostile {
        true => Some(http_side(&stack, http_addr).await?),
        false => None,
    };

    let plan = heartbeat::Plan {
        duration: args.duration,
        every: args.heartbeat_every,
        ramp: args.ramp.min(args.duration / 2),
        transmissions: args.transmissions as usize,
    };
    let hb = heartbeat::run(&stack, &agents, &pid, &plan).await?;
    let mut errors = hb.errors;

    let mut results: Vec<(String, String)> = Vec::new();
    let mut result = |name: &str, value: String| results.push((name.to_string(), value));
    result(
        "scale_new_connection_p99_ms",
        format!("{:.1}", hb.new_connection_p99_ms),
    );
    result("scale_calm_errors", hb.errors.to_string());
    result(
        "scale_calm_collector_rss_peak_mib",
        format!("{:.1}", hb.rss.peak_mib),
    );
    result(
        "scale_calm_collector_rss_end_mib",
        format!("{:.1}", hb.rss.end_mib),
    );
    result(
        "scale_generator_cpu_pct",
        format!("{:.0}", hb.generator_pct),
    );
    let mut saturated = hb.saturated();
    // VmHWM is reset at each phase 1's start: the run's peak is the largest
    // of the phases' and of VmHWM at the end.
    let mut peak_mib = hb.rss.peak_mib;
    if let Some(target) = &target {
        let (normal, hostile) = agents.split_at(n - 1);
        let sizes = &args.attacks;
        let attacked = hostile::run(&stack, normal, &hostile[0], &pid, &plan, sizes, target);
        let attacked = attacked.await?;
        let under = &attacked.outcome;
        errors += under.errors;
        saturated |= under.saturated();
        peak_mib = peak_mib.max(under.rss.peak_mib);
        for (name, value) in attacked.results(&hb) {
            result(&name, value);
        }
    }
    // The latencies above are the generator's own when it was saturated.
    result("scale_generator_saturated", u8::from(saturated).to_string());
    if m > 0 {
        let plan = national::LoadPlan {
            municipalities: m,
            rows: args.rows,
            concurrency: args.concurrency as usize,
        };
        let load = national::load(&stack, &agents, &pid, &plan).await?;
        errors += load.errors;
        // The join's and the count's results are checked only when every
        // municipality's transmissions committed.
        let expected = (load.errors == 0).then_some(m as i64 * args.rows as i64);
        let analyst = analyst::run(&stack, agents[m / 2].ibge, expected, repeat).await?;
        result("scale_municipalities", m.to_string());
        result("scale_load_tx_per_s", format!("{:.1}", load.per_s));
        result("scale_begin_ms_p50", format!("{:.1}", load.begin.0));
        result("scale_begin_ms_p99", format!("{:.1}", load.begin.1));
        result("scale_commit_ms_p50", format!("{:.1}", load.commit.0));
        result("scale_commit_ms_p99", format!("{:.1}", load.commit.1));
        result("scale_analyst_count_ms", format!("{:.1}", analyst.count_ms));
        result("scale_analyst_plan_ms", format!("{:.2}", analyst.plan_ms));
        result("scale_analyst_join_ms", format!("{:.1}", analyst.join_ms));
        result("scale_count_locks", analyst.count_locks.to_string());
        if args.big_rows > 0 {
            let big = national::big(&stack, &agents[0], args.big_rows, repeat).await?;
            let k = rows_name(args.big_rows);
            result(
                &format!("scale_commit_{k}_ms"),
                format!("{:.0}", big.full_ms),
            );
            let ratio = big.full_ms / big.empty_ms.max(1e-9);
            result(
                &format!("scale_commit_{k}_over_empty"),
                format!("{ratio:.2}"),
            );
        }
    }
    let rss_mib = peak_mib.max(sys::peak_rss_kib(&pid)? as f64 / 1024.0);
    drop(agents);
    println!("==> stopping the collector");
    (stack.stop_collector().await).context("stopping the collector")?;

    let not_serving = log_summary(&stack.dir.join("collector.log"))?;
    let total = started.elapsed().as_secs_f64();
    println!("    collector peak RSS {rss_mib:.1} MiB; total {total:.1} s");
    println!("RESULT scale_agents={n}");
    println!("RESULT scale_heartbeat_p99_ms={:.1}", hb.heartbeat_p99_ms);
    println!("RESULT scale_batch_p99_ms={:.1}", hb.batch_p99_ms);
    println!("RESULT scale_errors={errors}");
    println!("RESULT scale_collector_rss_mib={rss_mib:.1}");
    for (name, value) in results {
        println!("RESULT {name}={value}");
    }
    println!("RESULT scale_health_not_serving={not_serving}");
    println!("RESULT scale_total_s={total:.0}");
    Ok(())
}

/// Waits for the HTTPS side and adds the operator [`OPERATOR`] (random
/// password, never printed); returns the anonymous attacks' target.
async fn http_side(stack: &Stack, https: SocketAddr) -> Result<anonymous::Target> {
    operators::wait_http(https).await?;
    let password = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    operators::add_operator(stack, OPERATOR, "operator", &password)?;
    println!("    HTTPS side on {https}, operator {OPERATOR}");
    Ok(anonymous::Target {
        grpc: stack.collector_addr,
        https,
        trust: stack.server_trust.clone(),
        operator: OPERATOR.to_string(),
    })
}

/// `100k` for 100,000; the number itself when not a multiple of 1,000.
fn rows_name(rows: u64) -> String {
    if rows.is_multiple_of(1000) {
        format!("{}k", rows / 1000)
    } else {
        rows.to_string()
    }
}

/// Prints the collector's warnings and errors by kind (their fields left
/// out); returns how many times it reported NOT_SERVING to health checks.
fn log_summary(path: &std::path::Path) -> Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for line in text.lines() {
        let mut words = line.split_whitespace().skip(1);
        let Some(level @ ("WARN" | "ERROR")) = words.next() else {
            continue;
        };
        let what: Vec<&str> = words.filter(|w| !w.contains('=')).collect();
        *kinds
            .entry(format!("{level:<5} {}", what.join(" ")))
            .or_default() += 1;
    }
    let n: usize = kinds.values().sum();
    println!("==> collector log: {n} WARN/ERROR lines");
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (what, count) in &kinds {
        println!("    {count:>8}  {what}");
    }
    let flips = kinds.iter().filter(|(w, _)| w.contains("not serving"));
    Ok(flips.map(|(_, c)| c).sum())
}

/// Sets the collector's pool size in the stack's collector config.
fn set_pool(stack: &Stack, pool: u32) -> Result<()> {
    let path = &stack.collector_config;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Only `[database] max_connections`: `[server]` has keys that start
    // alike (`max_connections_per_source`, `max_connections_without_…`).
    let mut found = false;
    let mut section = String::new();
    let lines: Vec<String> = (text.lines())
        .map(|l| {
            let t = l.trim();
            if t.starts_with('[') {
                section = t.to_string();
            }
            let key = t.split_once('=').map(|(k, _)| k.trim());
            if section == "[database]" && key == Some("max_connections") {
                found = true;
                format!("max_connections = {pool}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        bail!("no max_connections line in {}", path.display());
    }
    std::fs::write(path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))
}
