//! `transmissor-collector`: command-line entry point.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use transmissor_collector::config::CollectorConfig;
use transmissor_collector::{db, devcerts, registry, server, status};
use transmissor_proto::identity::Ibge;
use transmissor_proto::shutdown;

#[derive(Parser)]
#[command(
    name = "transmissor-collector",
    version,
    about = "Central collector of transmissor"
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

#[derive(clap::Args)]
struct ConfigArg {
    /// Path of the collector's TOML configuration.
    #[arg(long, short, env = "TRANSMISSOR_COLLECTOR_CONFIG")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update the control schema in the analytic database.
    Migrate(ConfigArg),
    /// Serve agents (gRPC over mutual TLS) until SIGTERM/SIGINT.
    Serve(ConfigArg),
    /// Print the last transmission of every municipality and job.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Register a municipality.
    Municipality {
        #[command(subcommand)]
        command: MunicipalityCommand,
    },
    /// Make a development PKI (CA, server and agent certificates) and, with
    /// --config, register the agents. Enrollment with one-time tokens replaces
    /// this for real installations.
    DevCerts {
        /// Directory to write the certificates to.
        #[arg(long)]
        dir: PathBuf,
        /// Extra DNS name or IP address for the server certificate.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Municipality as IBGE or IBGE=Name (repeatable).
        #[arg(long = "ibge", required = true)]
        ibges: Vec<String>,
        /// Register municipalities and agents in this collector's database.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MunicipalityCommand {
    Add {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        ibge: String,
        #[arg(long)]
        name: String,
    },
}

fn parse_municipality(s: &str) -> Result<(Ibge, String)> {
    let (code, name) = s.split_once('=').unwrap_or((s, ""));
    let ibge: Ibge = code.parse()?;
    let name = if name.is_empty() {
        format!("Município {ibge}")
    } else {
        name.to_string()
    };
    Ok((ibge, name))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    transmissor_proto::logging::init(&cli.log_format);
    match cli.command {
        Command::Migrate(c) => {
            let cfg = CollectorConfig::load(&c.config)?;
            let pool = db::connect(&cfg.database).await?;
            db::migrate(&pool, &cfg.load.target_schema).await?;
            tracing::info!("control schema up to date");
        }
        Command::Serve(c) => {
            let cfg = CollectorConfig::load(&c.config)?;
            let (tls, pool) = server::prepare(&cfg).await?;
            let listener = tokio::net::TcpListener::bind(cfg.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
            let stop = shutdown::on_signal();
            server::run(&cfg, tls, pool, listener, stop).await?;
        }
        Command::Status { config, json } => {
            let cfg = CollectorConfig::load(&config.config)?;
            let pool = db::connect(&cfg.database).await?;
            let rows = status::last_transmissions(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", status::render(&rows));
            }
        }
        Command::Municipality {
            command: MunicipalityCommand::Add { config, ibge, name },
        } => {
            let cfg = CollectorConfig::load(&config.config)?;
            let pool = db::connect(&cfg.database).await?;
            let ibge: Ibge = ibge.parse()?;
            registry::add_municipality(&pool, ibge, &name).await?;
            println!("municipality {ibge} ({name}) registered");
        }
        Command::DevCerts {
            dir,
            server_names,
            ibges,
            config,
        } => {
            let munis = ibges
                .iter()
                .map(|s| parse_municipality(s))
                .collect::<Result<Vec<_>>>()?;
            let codes: Vec<Ibge> = munis.iter().map(|(i, _)| *i).collect();
            let pki = devcerts::generate(&dir, &server_names, &codes)?;
            if let Some(path) = config {
                let cfg = CollectorConfig::load(&path)?;
                let pool = db::connect(&cfg.database).await?;
                for ((ibge, name), agent) in munis.iter().zip(&pki.agents) {
                    registry::add_municipality(&pool, *ibge, name).await?;
                    registry::add_agent(&pool, *ibge, agent.agent_id).await?;
                }
            }
            println!("CA:     {}", pki.ca_cert.display());
            println!(
                "server: {} / {}",
                pki.server_cert.display(),
                pki.server_key.display()
            );
            for a in &pki.agents {
                println!(
                    "agent {} {}: {} / {}",
                    a.ibge,
                    a.agent_id,
                    a.cert.display(),
                    a.key.display()
                );
            }
        }
    }
    Ok(())
}
