//! The Quick start demo: everything on this machine, nothing else needed.
//!
//! 1. starts two throwaway PostgreSQL clusters (sources, analytic);
//! 2. creates a synthetic PEC-like database for each of 3 municipalities;
//! 3. creates the collector's CA (`ca init`) and starts `transmissor-collector serve`
//!    (which accepts only jobs of published plans);
//! 4. makes a plan key and signs the example plan
//!    (`plan/examples/pec-reference.plan.toml`: a raw fact table, two
//!    dimensions, a nominal-list join and an incremental `upsert` job) with `transmissor-plan`, in a
//!    directory apart from the collector's, as on the central team's offline
//!    signing machine; publishes it with `transmissor-collector plan publish`;
//! 5. enrolls each municipality's agent with a one-time token
//!    (`token issue` → `transmissor-agent enroll`), the way municipal IT does,
//!    in central mode: its config pins the plan key and holds no SQL;
//! 6. runs `transmissor-agent run --now` for each municipality: the agent
//!    fetches the plan over mutual TLS, verifies it and runs its jobs;
//! 7. prints `transmissor-collector status`, `plan list`, `agent list` and
//!    `audit`, checks row counts against the sources;
//! 8. waits for the health evaluation and prints each municipality's state
//!    from the JSON API, the dashboard's address and a login (an operator
//!    made with `transmissor-collector operator add`); then stops everything
//!    (or keeps it running with --keep).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use transmissor_tests::pec::Scale;
use transmissor_tests::plans::PlanKey;
use transmissor_tests::procs::Proc;
use transmissor_tests::stack::{Stack, StackOptions};

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

/// The example plan, as the README shows it.
pub const EXAMPLE_PLAN: &str = include_str!("../../plan/examples/pec-reference.plan.toml");

/// The example plan dated from now (valid 90 days), so the demo never runs
/// an expired plan.
fn dated_example_plan() -> String {
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    EXAMPLE_PLAN
        .lines()
        .map(|l| {
            if l.starts_with("issued_at = ") {
                format!("issued_at = {}", fmt(now))
            } else if l.starts_with("expires_at = ") {
                format!("expires_at = {}", fmt(now + chrono::Duration::days(90)))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The demo's operator.
const OPERATOR: &str = "central";

/// Adds an operator, waits for the health evaluation, prints each
/// municipality's state as the API gives it; returns the dashboard's
/// address and login, to print last.
async fn show_health(stack: &Stack, http_port: u16) -> Result<String> {
    use transmissor_tests::operators::{add_operator, login, wait_http};
    // A fresh password each run (the demo's throwaway installation only).
    let password = format!("demo-{}", uuid::Uuid::new_v4().simple());
    add_operator(stack, OPERATOR, "admin", &password)?;
    let http = format!("127.0.0.1:{http_port}").parse()?;
    let trust = stack.server_trust.clone();
    wait_http(http).await?;
    let cookie = login(http, &trust, OPERATOR, &password)
        .await?
        .context("the demo operator cannot log in")?;
    println!("==> health of each municipality (GET /api/v1/municipalities)");
    let fetch = || async {
        let r = transmissor_tests::http::request(
            http,
            "GET",
            "/api/v1/municipalities",
            &[("Cookie", &cookie)],
            "",
            Some(&trust),
        )
        .await?;
        anyhow::Ok(serde_json::from_str::<serde_json::Value>(&r.body)?)
    };
    // Evaluated after the agents' heartbeats and transmissions landed.
    let evaluated = transmissor_tests::pg::wait_until(Duration::from_secs(60), || async {
        fetch().await.is_ok_and(|v| {
            v["rows"].as_array().is_some_and(|rows| {
                rows.len() == MUNICIPALITIES.len()
                    && rows
                        .iter()
                        .all(|r| r["connectivity"] == "online" && r["last_rows"].as_i64() > Some(0))
            })
        })
    })
    .await;
    let overview = fetch().await?;
    if !evaluated {
        println!("    (not evaluated yet)");
    }
    for row in overview["rows"].as_array().into_iter().flatten() {
        let reasons: Vec<String> = row["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["kind"].as_str().unwrap_or("").to_string())
            .collect();
        println!(
            "    {} {:<12} {:<9} rows {:>7}  {}",
            row["ibge"].as_str().unwrap_or(""),
            row["name"].as_str().unwrap_or(""),
            row["overall"].as_str().unwrap_or(""),
            row["last_rows"].as_i64().unwrap_or(0),
            reasons.join(", ")
        );
    }
    Ok(format!(
        "\nDashboard: https://127.0.0.1:{http_port}/  (login {OPERATOR} / {password})\n         The certificate is the demo CA's ({}): accept the browser's warning or trust that file.",
        trust.display()
    ))
}

pub fn run(args: DemoArgs) -> Result<()> {
    crate::setup::with_binaries(false, |bins| demo(args, bins))
}

async fn demo(args: DemoArgs, bins: PathBuf) -> Result<()> {
    let t0 = Instant::now();
    println!("==> starting PostgreSQL clusters (sources and analytic)");
    let http_port = transmissor_tests::pg::free_port();
    // The central team's offline signing machine: a directory of its own.
    // Its plan key is pinned in the collector's [plans] keys.
    let signer = tempfile::Builder::new()
        .prefix("transmissor-signer.")
        .tempdir()?;
    let key = PlanKey::generate(signer.path(), "plan-signing")?;
    let mut stack = Stack::with_options(
        &MUNICIPALITIES,
        StackOptions {
            dir: args.dir.clone(),
            enrollment: true,
            plans_required: true,
            plans_extra: transmissor_tests::plans::collector_plan_keys(&[&key], None),
            collector_extra_toml: format!(
                "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[monitor]\nevaluate_every = \"2s\"\n"
            ),
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
        "==> signing the example plan offline (transmissor-plan keygen / sign) in {}",
        signer.path().display()
    );
    println!("    plan public key: {}", key.public);
    let plan_text = dated_example_plan();
    let plan = transmissor_plan::Plan::parse(plan_text.as_bytes()).context("the example plan")?;
    let envelope = key.sign_plan(signer.path(), "plan", &plan_text)?;
    println!(
        "==> transmissor-collector plan publish (it stores and serves the plan; it cannot sign)"
    );
    for line in stack.publish_plan("plan", &envelope)?.lines() {
        println!("    {line}");
    }

    println!(
        "==> enrolling each agent with a one-time token (collector `token issue` → `transmissor-agent enroll`)"
    );
    let mut configs = Vec::new();
    for m in &stack.munis {
        // Central mode: the config pins the plan key and holds no SQL.
        let cfg = stack.enrolled_agent_config(
            m,
            &[],
            &format!("[plan]\nkeys = [\"{}\"]\n", key.public),
        )?;
        let printed = stack.enroll_agent(m, &cfg).await?;
        for line in printed
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains(" INFO ") && !l.contains(" WARN "))
        {
            println!("    {line}");
        }
        configs.push(cfg);
    }

    println!(
        "==> transmissor-agent run --now for each municipality: fetch the plan, verify it, run its {} jobs",
        plan.jobs.len()
    );
    let mut agents = Vec::new();
    for (m, cfg) in stack.munis.iter().zip(configs) {
        agents.push((
            m.clone(),
            cfg.clone(),
            Proc::spawn(
                "transmissor-agent",
                ["run", "--now", "--config", &cfg.display().to_string()],
                &[],
                &stack.dir.join(format!("agent-{}.log", m.ibge)),
            )?,
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
    // Each `run --now` ends with a heartbeat reporting the plan it ran; the
    // collector writes heartbeats in batches every second.
    let analytic = stack.analytic_client().await?;
    for _ in 0..50 {
        let silent: i64 = analytic
            .query_one(
                "SELECT count(*) FROM transmissor.agents WHERE revoked_at IS NULL AND plan_version IS NULL",
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
        ("plan list", vec!["plan", "list"]),
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
        for (table, source_query) in plan.jobs.iter().map(|j| {
            (
                j.target.as_str(),
                format!("SELECT count(*) FROM ({}) q", j.sql.trim()),
            )
        }) {
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
    let dashboard = show_health(&stack, http_port).await?;
    println!("==> done in {:.1}s", t0.elapsed().as_secs_f64());
    println!("{dashboard}");

    if args.keep {
        let m = &agents[0];
        println!(
            "\nEverything keeps running until you press Ctrl-C.\n\
             - analytic database:  psql -h 127.0.0.1 -p {} -U postgres {}\n\
             - status:             {} status --config {}\n\
             - run an agent again: {} run --now --config {}\n\
             - your own database:  copy {} and edit its [source] section (host, port, dbname, user,\n\
               password_file); its jobs come from the signed plan.",
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
