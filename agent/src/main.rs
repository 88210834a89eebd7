//! `transmissor-agent`: command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser, Subcommand};

use transmissor_agent::config::{AgentConfig, JobSourceMode};
use transmissor_agent::doctor::{self, Check, Lang};
use transmissor_agent::identity::enroll::{EnrollOptions, enroll};
use transmissor_agent::identity::renew::RenewError;
use transmissor_agent::identity::{self, IdentityPaths};
use transmissor_agent::jobs::JobSet;
use transmissor_agent::pipeline::extract;
use transmissor_agent::plan::PlanKeeper;
use transmissor_agent::plan::store::PlanStore;

/// Keeps the agent's memory close to what it holds: batch-sized buffers
/// (≥ 1 MiB) are mapped and unmapped instead of staying in glibc's heap, and
/// at most two malloc arenas are made (one per thread by default, each
/// keeping freed batch buffers). Measured with `cargo xtask bench` on
/// 1,000,000 individual-care rows, agent peak RSS: 61 MiB before the raw
/// batch buffers were recycled (`extract::copy_job`), 72 MiB with mimalloc
/// instead of glibc; with recycling, 45-47 MiB on glibc's defaults and
/// 40-42 MiB with these settings, at the same speed. Setting
/// `TRANSMISSOR_MALLOC_DEFAULTS` (any value) skips them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // An escape hatch, and what the benchmark compares against.
    if std::env::var_os("TRANSMISSOR_MALLOC_DEFAULTS").is_some() {
        return;
    }
    // SAFETY: mallopt only sets glibc malloc parameters; it is called first
    // thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
use transmissor_agent::run::Agent;
use transmissor_proto::shutdown;

#[derive(Parser)]
#[command(
    name = "transmissor-agent",
    version,
    about = "Municipal agent of transmissor"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "TRANSMISSOR_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this agent with a one-time token from the central team: a key
    /// is generated here (it never leaves this machine), and the certificate
    /// and the collector's trust bundle are stored in the state directory.
    #[command(group(ArgGroup::new("where").required(true).args(["config", "state_dir"])))]
    Enroll {
        /// The collector, https://HOST:PORT.
        #[arg(long)]
        collector: String,
        /// The token printed by `transmissor-collector token issue` (or set
        /// TRANSMISSOR_ENROLL_TOKEN, which keeps it out of the process list).
        #[arg(long, env = "TRANSMISSOR_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// The agent's configuration (its state directory and identity paths are used).
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: Option<PathBuf>,
        /// Or just the state directory (identity stored in DIR/identity).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Name to verify in the collector's certificate (default: the host of --collector).
        #[arg(long)]
        server_name: Option<String>,
        /// Replace an existing identity.
        #[arg(long)]
        force: bool,
    },
    /// Run the jobs: now (--now), or each on its schedule until stopped.
    Run {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        /// Run the jobs once now, wait for the uploads, and exit (0 when all
        /// committed). In central mode the plan is fetched first.
        #[arg(long, visible_alias = "once")]
        now: bool,
        /// With --now: only this job (repeatable).
        #[arg(long, value_name = "NAME", requires = "now")]
        job: Vec<String>,
    },
    /// Check the configuration, the mode (central plan or local jobs), the
    /// running plan, and that every job's query can be described.
    Check {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// The preflight checklist: config, database (reachable, version, PEC,
    /// the plan's tables readable, the role cannot write), certificate,
    /// collector and its pin, clock, plan, spool, service. Each item passes,
    /// warns or fails with a fix. Exit code: 0 all passed, 1 warnings, 2 a
    /// failure. The summary goes to the collector with the next heartbeat.
    Doctor {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        /// pt or en (default: the system's locale; Portuguese for pt_BR).
        #[arg(long)]
        lang: Option<Lang>,
        /// Print JSON (stable check ids and codes) instead of text.
        #[arg(long)]
        json: bool,
        /// A check not to run, by id (repeatable): config, database.connect,
        /// database.read, collector.connect, spool, service, systemd, …
        #[arg(long, value_name = "CHECK", value_parser = parse_check)]
        skip: Vec<Check>,
        /// The service's name.
        #[arg(long, default_value = transmissor_agent::doctor::service::SERVICE_NAME)]
        service: String,
    },
    /// The SQL that creates the agent's read-only database role ([source]
    /// user): SELECT on the tables the plan's queries read, nothing else.
    /// Printed for an administrator; with --apply, run once through an
    /// administrator's connection (its password asked for, never stored),
    /// then the doctor checks the result.
    DbRole {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        /// Tables to grant (repeatable; default: those the plan's queries read).
        #[arg(long, value_name = "TABLE")]
        table: Vec<String>,
        /// Run it as --admin-user (password from TRANSMISSOR_ADMIN_PASSWORD or asked for).
        #[arg(long)]
        apply: bool,
        #[arg(long, default_value = "postgres", requires = "apply")]
        admin_user: String,
    },
    /// The pseudonym key (<state_dir>/pseudonym.key), which keys the
    /// pseudonyms of the plan's `pseudonymise` columns. Moving the agent to
    /// a new machine: `export` on the old one, `import` on the new one, so
    /// the municipality's pseudonyms stay the same.
    PseudonymKey {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Install this binary as a hardened systemd service: system user,
    /// directories, config, database password, enrollment, unit, start, and
    /// the doctor. Run again it repairs; run from a newer binary it upgrades
    /// (identity, plan state and spool kept).
    #[cfg(unix)]
    Install(transmissor_agent::install::InstallArgs),
    /// Stop the service and remove what `install` made (the spool too,
    /// unless --keep-spool).
    #[cfg(unix)]
    Uninstall(transmissor_agent::install::UninstallArgs),
    /// Run as a Windows service: started by the service control manager
    /// (installer/windows/install.ps1 registers it), the jobs on their
    /// schedule until the service stops; logs to daily files.
    #[cfg(windows)]
    Service {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        /// Where the daily log files go (default: <state_dir>\logs).
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write the key to a new file (0600; never over an existing file), or
    /// to standard output with `--out -` (no file at all). Keep it as
    /// secret as the state directory.
    Export {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Make the key in FILE this agent's key. An agent that already has
    /// another key keeps it unless --replace (every pseudonym changes).
    Import {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        #[arg(long)]
        replace: bool,
    },
}

fn pseudonym_key_cmd(command: KeyCommand) -> Result<ExitCode> {
    use transmissor_agent::pseudonym_key::{self, Imported};
    match command {
        KeyCommand::Export { config, out } => {
            let cfg = AgentConfig::load(&config)?;
            if out.as_os_str() == "-" {
                pseudonym_key::export_to(&cfg.agent.state_dir, &mut std::io::stdout().lock())?;
            } else {
                pseudonym_key::export(&cfg.agent.state_dir, &out)?;
                println!("pseudonym key written to {}", out.display());
            }
        }
        KeyCommand::Import {
            config,
            input,
            replace,
        } => {
            let cfg = AgentConfig::load(&config)?;
            let what = match pseudonym_key::import(&cfg.agent.state_dir, &input, replace)? {
                Imported::Installed => "installed",
                Imported::Unchanged => "already this agent's key: unchanged",
                Imported::Replaced => "replaced the previous key",
            };
            println!(
                "pseudonym key {what} ({})",
                pseudonym_key::path(&cfg.agent.state_dir).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_check(s: &str) -> Result<Check, String> {
    Check::from_id(s).ok_or_else(|| {
        let ids: Vec<&str> = Check::ALL.iter().map(|c| c.id()).collect();
        format!("unknown check {s:?}; checks: {}", ids.join(", "))
    })
}

fn main() -> Result<ExitCode> {
    tune_allocator();
    let cli = Cli::parse();
    // The service builds its runtime on the thread the SCM gives it.
    #[cfg(windows)]
    if let Command::Service { config, log_dir } = &cli.command {
        transmissor_agent::service::windows::run(config, log_dir.as_deref(), &cli.log_format)?;
        return Ok(ExitCode::SUCCESS);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    transmissor_proto::logging::init(&cli.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Enroll {
            collector,
            token,
            config,
            state_dir,
            server_name,
            force,
        } => {
            let mut opts = match (&config, &state_dir) {
                (Some(path), _) => {
                    let cfg = AgentConfig::load(path)?;
                    if cfg.collector.endpoint != collector {
                        tracing::warn!(config_endpoint = %cfg.collector.endpoint, %collector, "--collector differs from collector.endpoint in the config; the agent will upload to the config's");
                    }
                    let mut o =
                        EnrollOptions::new(&collector, &token, IdentityPaths::from_config(&cfg));
                    o.server_name = cfg.collector.server_name.clone();
                    o.connect_timeout = cfg.collector.connect_timeout;
                    o
                }
                (None, Some(dir)) => {
                    EnrollOptions::new(&collector, &token, IdentityPaths::in_state_dir(dir))
                }
                (None, None) => anyhow::bail!("give --config or --state-dir"),
            };
            if server_name.is_some() {
                opts.server_name = server_name;
            }
            opts.force = force;
            let enrolled = enroll(&opts).await?;
            print!("{enrolled}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => check(&config).await,
        Command::PseudonymKey { command } => pseudonym_key_cmd(command),
        Command::Doctor {
            config,
            lang,
            json,
            skip,
            service,
        } => {
            let opts = doctor::Options {
                skip: skip.into_iter().collect(),
                service,
            };
            doctor_cmd(&config, lang.unwrap_or_else(Lang::detect), json, &opts).await
        }
        Command::DbRole {
            config,
            table,
            apply,
            admin_user,
        } => db_role(&config, table, apply.then_some(admin_user)).await,
        #[cfg(unix)]
        Command::Install(args) => Ok(transmissor_agent::install::cli_install(args).await?),
        #[cfg(unix)]
        Command::Uninstall(args) => Ok(transmissor_agent::install::cli_uninstall(args)?),
        Command::Run { config, now, job } => {
            let cfg = AgentConfig::load(&config)?;
            let cancel = shutdown::on_signal();
            let agent = Agent::new(cfg, cancel.clone())?;
            if now {
                return run_now(&agent, &job, &cancel).await;
            }
            if agent.plans().is_none() && agent.job_set().jobs.iter().all(|j| j.timing.is_none()) {
                anyhow::bail!(
                    "no [schedule] in the config: set schedule.daily_at or schedule.every, or use --now"
                );
            }
            transmissor_agent::daemon::run(&agent, &cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(windows)]
        Command::Service { .. } => anyhow::bail!("`service` is run by main, outside the runtime"),
    }
}

/// `run --now [--job NAME]…`: one run now, then a heartbeat.
async fn run_now(
    agent: &Agent,
    only: &[String],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<ExitCode> {
    match agent.renew_if_due().await {
        // Already logged, word for word, by the renewer.
        Ok(_) | Err(RenewError::Expired { .. }) => {}
        Err(e) => {
            tracing::warn!(error = %e, "certificate renewal did not happen; the run goes on with the current certificate")
        }
    }
    let heartbeat = agent.heartbeat();
    if agent.plans().is_some() {
        // Central mode: the heartbeat's answer says which plan to fetch.
        if let Err(e) = heartbeat.beat().await {
            tracing::warn!(error = %transmissor_agent::pipeline::transport::explain(&e), "heartbeat not sent; running the plan already accepted");
        }
    }
    transmissor_agent::daemon::report_next_runs(agent);
    let all = agent.job_set();
    if agent.plans().is_some() && all.plan == 0 {
        eprintln!(
            "no plan to run: none accepted yet (the collector has published none for this municipality, or refused ones are in the log)"
        );
        return Ok(ExitCode::FAILURE);
    }
    let set = if only.is_empty() {
        all
    } else {
        for name in only {
            if all.get(name).is_none() {
                let known = all.names().join(", ");
                anyhow::bail!(
                    "job {name:?} is not in {}; its jobs: {}",
                    if all.plan > 0 {
                        format!("plan {}", all.plan)
                    } else if agent.plans().is_some() {
                        "any accepted plan (none yet)".to_string()
                    } else {
                        "the config".to_string()
                    },
                    if known.is_empty() { "none" } else { &known }
                );
            }
        }
        all.only(only)
    };
    let report = agent.run_jobs(&set, cancel).await;
    // Agents run from cron report their state too.
    if let Err(e) = heartbeat.beat().await {
        tracing::warn!(error = %transmissor_agent::pipeline::transport::explain(&e), "heartbeat not sent");
    }
    print!("{report}");
    Ok(if report.all_committed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `doctor`: runs the checklist, prints it, keeps its summary for the
/// heartbeat.
async fn doctor_cmd(
    config: &std::path::Path,
    lang: Lang,
    json: bool,
    opts: &doctor::Options,
) -> Result<ExitCode> {
    let report = doctor::run(config, opts).await;
    if json {
        println!("{}", report.json(lang));
    } else {
        print!("{}", report.render(lang));
    }
    if let Some(state_dir) = report.state_dir.as_deref().filter(|d| d.is_dir())
        && let Err(e) = doctor::report::save_summary(state_dir, &report.summary())
    {
        tracing::warn!(error = %e, "the summary for the collector was not kept");
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// `db-role`: the read-only role's SQL, printed or applied.
async fn db_role(
    config: &std::path::Path,
    tables: Vec<String>,
    admin: Option<String>,
) -> Result<ExitCode> {
    let cfg = AgentConfig::load(config)?;
    let tables = if tables.is_empty() {
        let jobs = match cfg.job_source() {
            JobSourceMode::Local => JobSet::local(&cfg),
            JobSourceMode::Central => {
                let id = identity::load(&IdentityPaths::from_config(&cfg))?;
                doctor::local::plan(&cfg, Some(&id), None, chrono::Utc::now())
                    .jobs
                    .unwrap_or_else(JobSet::empty)
            }
        };
        let t = doctor::role_sql::tables_of(&jobs)?;
        if t.is_empty() {
            return Err(doctor::role_sql::RoleSqlError::NoTables.into());
        }
        t
    } else {
        tables
            .iter()
            .map(|t| doctor::sql_name::TableName::parse(t))
            .collect::<Result<_, _>>()?
    };
    let Some(admin) = admin else {
        print!("{}", doctor::role_sql::print(&cfg, &tables)?);
        return Ok(ExitCode::SUCCESS);
    };
    let password = match std::env::var("TRANSMISSOR_ADMIN_PASSWORD") {
        Ok(p) => p,
        Err(_) => rpassword::prompt_password(format!(
            "senha de {admin} em {}:{} / password of {admin}: ",
            cfg.source.host, cfg.source.port
        ))
        .context("reading the administrator's password")?,
    };
    doctor::role_sql::apply(&cfg, &tables, &admin, &password).await?;
    drop(password);
    let lang = Lang::detect();
    println!(
        "{}",
        lang.pick(
            format!(
                "usuário {} criado ou ajustado; verificando:",
                cfg.source.user
            ),
            format!("role {} created or adjusted; checking:", cfg.source.user)
        )
    );
    doctor_cmd(config, lang, false, &doctor::Options::default()).await
}

/// `check`: configuration, mode, identity, plan, and every job's query.
async fn check(config: &std::path::Path) -> Result<ExitCode> {
    let cfg = AgentConfig::load(config)?;
    println!("config {}: ok", config.display());
    println!("mode: {}", cfg.job_source());
    let id = identity::load(&IdentityPaths::from_config(&cfg));
    let mut ibge = cfg.agent.ibge.clone();
    match &id {
        Ok(id) => {
            let who = id.info.as_ref().map_or_else(
                || "certificate".to_string(),
                |i| format!("agent {} of municipality {}", i.agent_id, i.ibge),
            );
            if let Some(i) = &id.info {
                ibge = Some(i.ibge.clone());
            }
            println!(
                "identity: ok ({who}, valid until {})",
                id.validity.not_after().to_rfc3339()
            );
        }
        Err(e) => println!("identity: ERROR: {e}"),
    }
    let mut ok = true;
    let jobs = match cfg.job_source() {
        JobSourceMode::Local => JobSet::local(&cfg),
        JobSourceMode::Central => {
            let keys: Vec<String> = cfg.plan.keys.iter().map(|k| k.key_id()).collect();
            println!("plan keys pinned: {}", keys.join(", "));
            let Some(ibge) = ibge else {
                println!("plan: ERROR: the municipality is unknown (enroll first)");
                return Ok(ExitCode::FAILURE);
            };
            if let Some(root) = &cfg.plan.root_key {
                println!("plan root key pinned: {}", root.key_id());
            }
            let keeper = PlanKeeper::open(
                cfg.plan.keys.iter().cloned().collect(),
                cfg.plan.root_key,
                &ibge,
                PlanStore::open(&cfg.plan_dir())?,
            )?;
            let report = keeper.report(chrono::Utc::now());
            if let Some(r) = &report.refusal {
                println!("plan: last refusal: {r}");
            }
            if report.key_list_serial > 0 {
                println!("plan-key list: serial {}", report.key_list_serial);
            }
            match keeper.running() {
                Some(r) => {
                    println!(
                        "plan: version {} (signed by {}, expires {}){}",
                        r.plan.version,
                        r.key_id,
                        r.plan.expires_at.to_rfc3339(),
                        if report.expired {
                            " EXPIRED: it keeps running, flagged"
                        } else {
                            ""
                        }
                    );
                    JobSet::from_plan(&r.plan)
                }
                None => {
                    println!(
                        "plan: none accepted yet (fetched from the collector by the running agent)"
                    );
                    JobSet::empty()
                }
            }
        }
    };
    let tz = cfg.schedule.timezone.0;
    for j in &jobs.jobs {
        let when = j.timing.as_ref().map_or("on demand only".to_string(), |t| {
            let next = t
                .next_after(chrono::Utc::now(), tz)
                .map_or("-".to_string(), |n| n.with_timezone(&tz).to_rfc3339());
            format!("{t}, next slot {next}")
        });
        let pec = j
            .pec_version
            .as_ref()
            .map(|r| format!(", PEC {r}"))
            .unwrap_or_default();
        println!(
            "job {}: {} into {}, {when}{pec}",
            j.job.name,
            j.job.mode.name(),
            j.job.target
        );
    }
    let (pec, described) = extract::describe_jobs(&cfg, &jobs)
        .await
        .context("source database")?;
    println!(
        "source PEC version: {}",
        pec.map_or("unknown (no tb_migracao)".to_string(), |v| v.to_string())
    );
    for (job, r) in described {
        match r {
            Ok(n) => println!("job {job}: query ok ({n} columns)"),
            Err(e) => {
                ok = false;
                println!("job {job}: ERROR: {e}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
