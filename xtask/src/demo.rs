//! The Quick start demo: everything on this machine, nothing else needed.
//!
//! 1. starts two throwaway PostgreSQL clusters (sources, analytic);
//! 2. creates a synthetic PEC-like database for each of 3 municipalities;
//! 3. creates the collector's CA (`ca init`) and starts `transmissor-collector serve`;
//! 4. enrolls each municipality's agent with a one-time token
//!    (`token issue` → `transmissor-agent enroll`), the way municipal IT does;
//! 5. runs `transmissor-agent run --once` for each municipality, with three
//!    jobs: two `snapshot` raw-table copies and an `append` nominal list of
//!    hypertensive citizens (a multi-table join);
//! 6. prints `transmissor-collector status`, `agent list` and `audit`, checks
//!    row counts against the sources; then stops everything (or keeps it
//!    running with --keep).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::pec::{self, Scale};
use transmissor_tests::stack::{Job, Stack, StackOptions};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep everything running until Ctrl-C (to look around, or re-run agents).
    #[arg(long)]
    keep: bool,
    /// Working directory for configs, certificates, spools and logs
    /// (default: a temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rows in each municipality's visit table.
    #[arg(long, default_value_t = 20_000)]
    visits: u64,
}

const MUNICIPALITIES: [(&str, &str); 3] = [
    ("3550308", "São Paulo"),
    ("2304400", "Fortaleza"),
    ("4106902", "Curitiba"),
];

pub fn jobs() -> Vec<Job> {
    vec![
        Job::new(
            "visitas",
            "snapshot",
            "tb_fat_visita_domiciliar",
            "SELECT * FROM tb_fat_visita_domiciliar",
        ),
        Job::new(
            "atendimentos",
            "snapshot",
            "tb_fat_atendimento_individual",
            "SELECT * FROM tb_fat_atendimento_individual",
        ),
        Job::new(
            "hipertensos",
            "append",
            "lista_hipertensos",
            pec::HYPERTENSION_LIST_SQL,
        ),
    ]
}

pub fn run(args: DemoArgs) -> Result<()> {
    crate::setup::with_binaries(false, |bins| demo(args, bins))
}

async fn demo(args: DemoArgs, bins: PathBuf) -> Result<()> {
    let t0 = Instant::now();
    println!("==> starting PostgreSQL clusters (sources and analytic)");
    let mut stack = Stack::with_options(
        &MUNICIPALITIES,
        StackOptions {
            dir: args.dir.clone(),
            enrollment: true,
            ..Default::default()
        },
    )
    .await?;
    println!("    work directory: {}", stack.dir.display());

    let scale = Scale {
        visits: args.visits,
        ..Scale::demo()
    };
    for (i, m) in stack.munis.iter().enumerate() {
        println!(
            "==> creating synthetic PEC database {} for {} ({})",
            m.db, m.name, m.ibge
        );
        stack.load_pec(m, 1000 + i as u64, &scale).await?;
    }

    println!("==> starting the collector on {}", stack.collector_addr);
    stack.start_collector().await?;

    println!(
        "==> enrolling each agent with a one-time token (collector `token issue` → `transmissor-agent enroll`)"
    );
    let mut configs = Vec::new();
    for m in &stack.munis {
        let cfg = stack.enrolled_agent_config(m, &jobs(), "")?;
        let printed = stack.enroll_agent(m, &cfg).await?;
        for line in printed
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains(" INFO ") && !l.contains(" WARN "))
        {
            println!("    {line}");
        }
        configs.push(cfg);
    }

    println!("==> running one transmission per municipality (3 jobs each)");
    let mut agents = Vec::new();
    for (m, cfg) in stack.munis.iter().zip(configs) {
        agents.push((
            m.clone(),
            cfg.clone(),
            stack.spawn_agent(&cfg, &format!("agent-{}.log", m.ibge))?,
        ));
    }
    let mut failed = false;
    for (m, _, p) in &mut agents {
        let status = p.wait(Duration::from_secs(600)).await?;
        let report: Vec<String> = p
            .log_text()
            .lines()
            .filter(|l| l.contains("(run "))
            .map(|l| format!("      {l}"))
            .collect();
        println!(
            "    agent {} {}: {}",
            m.ibge,
            m.name,
            if status.success() { "ok" } else { "FAILED" }
        );
        println!("{}", report.join("\n"));
        failed |= !status.success();
    }

    println!("==> transmissor-collector status");
    let out = Command::new(bins.join("transmissor-collector"))
        .arg("status")
        .arg("--config")
        .arg(&stack.collector_config)
        .output()
        .context("transmissor-collector status")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // Each `run --once` ends with a heartbeat; the collector writes them in
    // batches every second.
    let analytic = stack.analytic_client().await?;
    for _ in 0..50 {
        let silent: i64 = analytic
            .query_one(
                "SELECT count(*) FROM transmissor.agents WHERE revoked_at IS NULL AND heartbeat_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if silent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (title, args) in [
        ("agent list", vec!["agent", "list"]),
        ("audit", vec!["audit", "--limit", "12"]),
    ] {
        println!("==> transmissor-collector {title}");
        let out = Command::new(bins.join("transmissor-collector"))
            .args(&args)
            .arg("--config")
            .arg(&stack.collector_config)
            .output()
            .with_context(|| format!("transmissor-collector {title}"))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }

    println!("==> checking the analytic database against the sources");
    let mut mismatches = 0;
    for m in &stack.munis {
        let src = stack.source.connect(&m.db).await?;
        for (table, source_query) in [
            (
                "tb_fat_visita_domiciliar",
                "SELECT count(*) FROM tb_fat_visita_domiciliar".to_string(),
            ),
            (
                "tb_fat_atendimento_individual",
                "SELECT count(*) FROM tb_fat_atendimento_individual".to_string(),
            ),
            (
                "lista_hipertensos",
                format!("SELECT count(*) FROM ({}) q", pec::HYPERTENSION_LIST_SQL),
            ),
        ] {
            let s: i64 = src.query_one(&source_query, &[]).await?.get(0);
            let a: i64 = analytic
                .query_one(
                    &format!("SELECT count(*) FROM analytic.{table} WHERE _ibge = $1"),
                    &[&m.ibge.as_str()],
                )
                .await?
                .get(0);
            let ok = s == a;
            mismatches += usize::from(!ok);
            println!(
                "    {} {:<30} source {:>8}  analytic {:>8}  {}",
                m.ibge,
                table,
                s,
                a,
                if ok { "ok" } else { "MISMATCH" }
            );
        }
    }
    println!("==> done in {:.1}s", t0.elapsed().as_secs_f64());

    if args.keep {
        let m = &agents[0];
        println!(
            "\nEverything keeps running until you press Ctrl-C.\n\
             - analytic database:  psql -h 127.0.0.1 -p {} -U postgres {}\n\
             - status:             {} status --config {}\n\
             - run an agent again: {} run --once --config {}\n\
             - your own database:  copy {} and edit its [source] section (host, port, dbname, user,\n\
               password_file) and its [[jobs]]; the collector and certificates stay the same.",
            stack.analytic.port,
            transmissor_tests::stack::ANALYTIC_DB,
            bins.join("transmissor-collector").display(),
            stack.collector_config.display(),
            bins.join("transmissor-agent").display(),
            m.1.display(),
            m.1.display(),
        );
        tokio::signal::ctrl_c().await?;
    } else {
        println!(
            "(run `cargo xtask demo --keep` to keep it running and point an agent at your own database)"
        );
    }
    println!("==> stopping the collector and the clusters");
    stack.stop_collector().await?;
    drop(stack);
    if failed || mismatches > 0 {
        bail!("the demo did not transmit everything ({mismatches} mismatches)");
    }
    Ok(())
}
