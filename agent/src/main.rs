//! `transmissor-agent`: command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use transmissor_agent::config::AgentConfig;
use transmissor_agent::extract;
use transmissor_agent::run::Agent;
use transmissor_agent::schedule::Schedule;
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
    /// Run the jobs: once (--once) or on the configured schedule.
    Run {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
        /// Run every job once, wait for the uploads, and exit (0 when all committed).
        #[arg(long)]
        once: bool,
    },
    /// Check the configuration and that every job's query can be described.
    Check {
        #[arg(long, short, env = "TRANSMISSOR_AGENT_CONFIG")]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    transmissor_proto::logging::init(&cli.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Check { config } => {
            let cfg = AgentConfig::load(&config)?;
            println!("config {}: ok ({} jobs)", config.display(), cfg.jobs.len());
            let mut ok = true;
            for (job, r) in extract::describe_jobs(&cfg)
                .await
                .context("source database")?
            {
                match r {
                    Ok(n) => println!("job {job}: ok ({n} columns)"),
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
        Command::Run { config, once } => {
            let cfg = AgentConfig::load(&config)?;
            let schedule = Schedule::from_config(&cfg.schedule);
            let cancel = shutdown::on_signal();
            let agent = Agent::new(cfg, cancel.clone())?;
            if once {
                let report = agent.run_once(&cancel).await;
                print!("{report}");
                return Ok(if report.all_committed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let Some(schedule) = schedule else {
                anyhow::bail!(
                    "no [schedule] in the config: set schedule.daily_at or schedule.every, or use --once"
                );
            };
            // Send what earlier runs left behind before waiting.
            for (_, job, outcome) in agent.recover().await? {
                tracing::info!(%job, ?outcome, "recovered");
            }
            loop {
                let next = schedule.next_after(chrono::Utc::now());
                tracing::info!(next_run = %next.to_rfc3339(), "waiting for the next run");
                // Sleep in short steps so a corrected wall clock is followed.
                while chrono::Utc::now() < next {
                    let left = (next - chrono::Utc::now()).to_std().unwrap_or_default();
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(ExitCode::SUCCESS),
                        () = tokio::time::sleep(left.min(std::time::Duration::from_secs(30))) => {}
                    }
                }
                let report = agent.run_once(&cancel).await;
                for line in report.to_string().lines() {
                    tracing::info!(summary = line, "run finished");
                }
                if cancel.is_cancelled() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}
