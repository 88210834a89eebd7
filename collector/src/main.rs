//! `transmissor-collector`: command-line entry point.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use transmissor_collector::config::CollectorConfig;
use transmissor_collector::{
    app, audit, ca, db, devcerts, enroll, operators, plans, registry, status,
};
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
    /// The certificate authority (offline root, online issuing CA).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Register a municipality.
    Municipality {
        #[command(subcommand)]
        command: MunicipalityCommand,
    },
    /// One-time enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled agents: list (with their last heartbeat) and revoke.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// People who use the dashboard and the API: add, list, disable.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Signed extraction plans: publish (store and serve; signing happens
    /// offline with `transmissor-plan`) and list.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Show the audit log (tokens, enrollments, renewals, revocations, CA changes).
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Make a development PKI (CA, server and agent certificates) and, with
    /// --config, register the agents. Real installations enroll agents with
    /// one-time tokens instead.
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
enum CaCommand {
    /// Create the root CA, the issuing CA and the server certificate in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the root CA's private key (0600): outside DIR, on
        /// media to be kept offline; only `ca rotate --root-key` needs it.
        #[arg(long)]
        root_key_out: PathBuf,
        /// DNS name or IP address agents use to reach the collector (repeatable).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Record the event in this collector's audit log.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Replace the issuing CA (needs the offline root key); agents keep working.
    Rotate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        root_key: PathBuf,
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List the issuing CAs (current and earlier) with their fingerprints.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Retire an earlier issuing CA (e.g. its key leaked): the collector
    /// refuses certificates it issued at once, agents at their next renewal.
    Retire {
        #[command(flatten)]
        config: ConfigArg,
        /// SHA-256 of the CA's public key, as `ca list` prints it.
        #[arg(long)]
        fingerprint: String,
        #[arg(long, default_value = "")]
        reason: String,
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

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a one-time token for a municipality (one line).
    Issue {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        ibge: String,
        /// Validity, e.g. "72h", at most 30 days (default: [ca] token_ttl).
        #[arg(long, value_parser = ca::parse_token_ttl)]
        ttl: Option<Duration>,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Add an operator. The password comes from TRANSMISSOR_OPERATOR_PASSWORD
    /// or, when unset, the first line of standard input (never an argument).
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Login name: lowercase letters, digits, '.', '_' or '-'.
        name: String,
        /// viewer (read), operator (also tokens, revocations, retries) or
        /// admin (also operators and plans).
        #[arg(long)]
        role: String,
    },
    /// The operators, with their role and last activity.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
    /// Disable an operator and end their sessions.
    Disable {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Store a signed plan or plan-key list (made by `transmissor-plan sign`
    /// or `sign-keys`) and serve it to the agents in its scope. The file is
    /// kept byte for byte: the collector can neither sign nor alter it.
    Publish {
        #[command(flatten)]
        config: ConfigArg,
        /// The signed envelope.
        file: PathBuf,
    },
    /// The published plans, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Include revoked agents.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent (by id) or every agent of a municipality (--ibge).
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        agent_id: Option<uuid::Uuid>,
        #[arg(long)]
        ibge: Option<String>,
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
    /// Ask a municipality's agent to run now, outside its schedule (a
    /// retry): it receives the request with its next heartbeat.
    RunNow {
        #[command(flatten)]
        config: ConfigArg,
        ibge: String,
        /// One job of the published plan (default: every job).
        #[arg(long)]
        job: Option<String>,
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

async fn pool_of(path: &std::path::Path) -> Result<(CollectorConfig, sqlx::PgPool)> {
    let cfg = CollectorConfig::load(path)?;
    let pool = db::connect(&cfg.database).await?;
    Ok((cfg, pool))
}

fn ca_dir_of(cfg: &CollectorConfig) -> Result<PathBuf> {
    match &cfg.ca {
        Some(ca) => Ok(ca.dir.clone()),
        None => bail!("the config has no [ca] section"),
    }
}

async fn audit_ca(
    config: Option<PathBuf>,
    action: &'static str,
    dir: &std::path::Path,
) -> Result<()> {
    if let Some(path) = config {
        let (_, pool) = pool_of(&path).await?;
        let mut conn = pool.acquire().await?;
        audit::record(
            &mut conn,
            audit::Event {
                actor: audit::operator(),
                action,
                detail: serde_json::json!({ "dir": dir.display().to_string() }),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    transmissor_proto::logging::init(&cli.log_format);
    match cli.command {
        Command::Migrate(c) => {
            let (cfg, pool) = pool_of(&c.config).await?;
            db::migrate(&pool, &cfg.load.target_schema).await?;
            tracing::info!("control schema up to date");
        }
        Command::Serve(c) => {
            let cfg = CollectorConfig::load(&c.config)?;
            let prepared = app::prepare(&cfg).await?;
            let listener = tokio::net::TcpListener::bind(cfg.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
            let stop = shutdown::on_signal();
            app::run(&cfg, prepared, listener, stop).await?;
        }
        Command::Status { config, json } => {
            let (_, pool) = pool_of(&config.config).await?;
            let rows = status::last_transmissions(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", status::render(&rows));
            }
        }
        Command::Ca { command } => match command {
            CaCommand::Init {
                dir,
                root_key_out,
                server_names,
                config,
            } => {
                let files = ca::init(&dir, &root_key_out, &server_names)?;
                audit_ca(config, audit::action::CA_INITIALIZED, &dir).await?;
                println!(
                    "root CA:   {} (key {}: keep it OFFLINE; only `ca rotate --root-key` needs it)",
                    files.root_cert.display(),
                    files.root_key.display()
                );
                println!(
                    "server:    {} / {}",
                    files.server_cert.display(),
                    files.server_key.display()
                );
                println!(
                    "use in the collector config: [tls] ca_file = root.pem, cert_file = server.pem, key_file = server.key; [ca] dir = {}",
                    dir.display()
                );
            }
            CaCommand::Rotate {
                dir,
                root_key,
                server_names,
                config,
            } => {
                let files = ca::rotate(&dir, &root_key, &server_names)?;
                audit_ca(config, audit::action::CA_ROTATED, &dir).await?;
                println!(
                    "new issuing CA in {}; new server certificate {}",
                    dir.display(),
                    files.server_cert.display()
                );
                println!(
                    "restart the collectors to use them; agents keep working and move to the new CA at renewal"
                );
            }
            CaCommand::List { config } => {
                let (cfg, pool) = pool_of(&config.config).await?;
                let dir = ca_dir_of(&cfg)?;
                let retired = ca::retired::retired_fingerprints(&pool).await?;
                for c in ca::issuing_cas(&dir)? {
                    let state = match (c.current, retired.contains(&c.fingerprint)) {
                        (true, _) => "current",
                        (false, true) => "retired",
                        (false, false) => "earlier",
                    };
                    println!(
                        "{}  {state:<8} {}  not after {}",
                        ca::retired::to_hex(&c.fingerprint),
                        c.subject,
                        c.not_after
                    );
                }
            }
            CaCommand::Retire {
                config,
                fingerprint,
                reason,
            } => {
                let (cfg, pool) = pool_of(&config.config).await?;
                let dir = ca_dir_of(&cfg)?;
                let c = ca::retired::retire(&pool, &dir, &fingerprint, &reason, &audit::operator())
                    .await?;
                println!(
                    "issuing CA {} retired: collectors refuse its certificates within seconds; agents learn of it at their next renewal",
                    c.subject
                );
            }
        },
        Command::Municipality {
            command: MunicipalityCommand::Add { config, ibge, name },
        } => {
            let (_, pool) = pool_of(&config.config).await?;
            let ibge: Ibge = ibge.parse()?;
            registry::add_municipality(&pool, ibge, &name).await?;
            let mut conn = pool.acquire().await?;
            audit::record(
                &mut conn,
                audit::Event {
                    actor: audit::operator(),
                    action: audit::action::MUNICIPALITY_ADDED,
                    ibge: Some(ibge.to_string()),
                    detail: serde_json::json!({ "name": name }),
                    ..Default::default()
                },
            )
            .await?;
            println!("municipality {ibge} ({name}) registered");
        }
        Command::Token {
            command: TokenCommand::Issue { config, ibge, ttl },
        } => {
            let (cfg, pool) = pool_of(&config.config).await?;
            let Some(ca_cfg) = &cfg.ca else {
                bail!(
                    "the config has no [ca] section: run `transmissor-collector ca init` and add [ca] dir = ..."
                );
            };
            let loaded = ca::load(&ca_cfg.dir)?;
            let ibge: Ibge = ibge.parse()?;
            let token = enroll::issue_token(
                &pool,
                loaded.pin,
                ibge,
                ttl.unwrap_or(ca_cfg.token_ttl),
                &audit::operator(),
            )
            .await?;
            println!("{token}");
        }
        Command::Operator { command } => match command {
            OperatorCommand::Add { config, name, role } => {
                let role: operators::Role = role.parse().map_err(anyhow::Error::msg)?;
                let password = match std::env::var("TRANSMISSOR_OPERATOR_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => {
                        eprintln!("password for {name} (one line on standard input):");
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line.trim_end_matches(['\r', '\n']).to_string()
                    }
                };
                let (_, pool) = pool_of(&config.config).await?;
                operators::add(&pool, &name, role, &password, &audit::operator()).await?;
                println!("operator {name} added ({role})");
            }
            OperatorCommand::List { config, json } => {
                let (_, pool) = pool_of(&config.config).await?;
                let rows = operators::list(&pool).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    println!(
                        "{:<24}  {:<9}  {:<9}  {:<20}  CREATED BY",
                        "NAME", "ROLE", "STATE", "LAST SEEN (UTC)"
                    );
                    for r in rows {
                        println!(
                            "{:<24}  {:<9}  {:<9}  {:<20}  {}",
                            r.name,
                            r.role,
                            if r.disabled_at.is_some() {
                                "disabled"
                            } else {
                                "active"
                            },
                            r.last_seen_at
                                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                                .unwrap_or_else(|| "never".into()),
                            r.created_by
                        );
                    }
                }
            }
            OperatorCommand::Disable { config, name } => {
                let (_, pool) = pool_of(&config.config).await?;
                operators::disable(&pool, &name, &audit::operator()).await?;
                println!("operator {name} disabled; their sessions ended");
            }
        },
        Command::Plan { command } => match command {
            PlanCommand::Publish { config, file } => {
                let (cfg, pool) = pool_of(&config.config).await?;
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let published = plans::publish::publish(
                    &pool,
                    &bytes,
                    cfg.plans.trusted().as_ref(),
                    &audit::operator(),
                )
                .await?;
                println!("{published}");
            }
            PlanCommand::List {
                config,
                limit,
                json,
            } => {
                let (_, pool) = pool_of(&config.config).await?;
                let rows = plans::publish::list(&pool, limit).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    println!(
                        "{:>8}  {:<16}  {:<22}  {:<20}  {:<20}  PUBLISHED BY",
                        "VERSION", "KEY", "SCOPE", "ISSUED (UTC)", "EXPIRES (UTC)"
                    );
                    for r in rows {
                        let scope = if r.scope_all {
                            "all".to_string()
                        } else {
                            format!("{} municipalities", r.scope_ibge.len())
                        };
                        println!(
                            "{:>8}  {:<16}  {:<22}  {:<20}  {:<20}  {}",
                            r.version,
                            r.key_id,
                            scope,
                            r.issued_at.format("%Y-%m-%d %H:%M"),
                            r.expires_at.format("%Y-%m-%d %H:%M"),
                            r.published_by
                        );
                    }
                }
            }
        },
        Command::Agent { command } => match command {
            AgentCommand::List { config, all, json } => {
                let (_, pool) = pool_of(&config.config).await?;
                let rows = registry::list_agents(&pool, all).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    print!("{}", registry::render_agents(&rows));
                }
            }
            AgentCommand::Revoke {
                config,
                agent_id,
                ibge,
                reason,
            } => {
                let ibge = ibge.map(|i| i.parse::<Ibge>()).transpose()?;
                if agent_id.is_none() == ibge.is_none() {
                    bail!("name exactly one: an AGENT_ID or --ibge");
                }
                let (_, pool) = pool_of(&config.config).await?;
                let revoked =
                    registry::revoke(&pool, agent_id, ibge, &reason, &audit::operator()).await?;
                if revoked.is_empty() {
                    bail!("no active agent matched");
                }
                for (id, ibge) in revoked {
                    println!("revoked agent {id} (municipality {ibge})");
                }
            }
            AgentCommand::RunNow { config, ibge, job } => {
                let ibge: Ibge = ibge.parse()?;
                let (cfg, pool) = pool_of(&config.config).await?;
                let plans = transmissor_collector::plans::PublishedPlans::load(
                    pool.clone(),
                    cfg.plans.trusted(),
                    cfg.plans.allow_local_jobs,
                )
                .await?;
                let row = transmissor_collector::run_requests::request(
                    &pool,
                    &plans,
                    ibge,
                    job.as_deref(),
                    &audit::operator(),
                )
                .await?;
                println!(
                    "run request {} stored: {} runs {} at its next heartbeat (expires {})",
                    row.id,
                    row.ibge,
                    row.job.as_deref().unwrap_or("every job"),
                    row.expires_at.to_rfc3339()
                );
            }
        },
        Command::Audit {
            config,
            limit,
            json,
        } => {
            let (_, pool) = pool_of(&config.config).await?;
            let rows = audit::latest(&pool, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", audit::render(&rows));
            }
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
                let (_, pool) = pool_of(&path).await?;
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
