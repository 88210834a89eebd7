//! A whole transmissor installation on one machine: an analytic cluster, a
//! source cluster with one PEC-like database per municipality, a development
//! PKI, a collector (as a process or in-process) and agent configurations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_util_compat::CancellationToken;
use transmissor_collector::devcerts::{self, DevPki};
use transmissor_proto::identity::Ibge;

use crate::pg::{Cluster, ClusterOptions, free_port};
use crate::procs::Proc;

mod sqlx_pool {
    pub use transmissor_collector::db::Pool;
}

mod tokio_util_compat {
    pub use tokio_util::sync::CancellationToken;
}

/// Name of the analytic database in the analytic cluster.
pub const ANALYTIC_DB: &str = "analytic";
/// Read-only role the agents use on the source databases.
pub const READER_ROLE: &str = "transmissor_leitura";
/// Its password (throwaway clusters only; kept in a 0600 file for the agents).
pub const READER_PASSWORD: &str = "demo-only-password";

#[derive(Debug, Clone)]
pub struct Municipality {
    pub ibge: Ibge,
    pub name: String,
    /// Source database name in the source cluster.
    pub db: String,
    pub agent_id: uuid::Uuid,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A job for an agent's config.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub mode: &'static str,
    pub target: String,
    pub query: String,
    /// More TOML lines of the job (e.g. an upsert job's key).
    pub extra: String,
}

impl Job {
    pub fn new(name: &str, mode: &'static str, target: &str, query: &str) -> Self {
        Self {
            name: name.into(),
            mode,
            target: target.into(),
            query: query.into(),
            extra: String::new(),
        }
    }

    /// An upsert job: `key` columns, `watermark` column, `lookback` text.
    pub fn upsert(
        name: &str,
        target: &str,
        query: &str,
        key: &[&str],
        watermark: &str,
        lookback: &str,
    ) -> Self {
        let key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
        Self {
            extra: format!(
                "key = [{}]\nwatermark = \"{watermark}\"\nlookback = \"{lookback}\"\n",
                key.join(", ")
            ),
            ..Self::new(name, "upsert", target, query)
        }
    }
}

/// `[server]` lines of every harness collector: the harness's agents and
/// clients all connect from 127.0.0.1 (like many municipalities behind one
/// NAT), so that address is not counted per source; floods in tests come
/// from 127.0.0.2 and up.
pub const HARNESS_FRONT_DOOR: &str =
    "per_source_exempt = [\"127.0.0.1\"]\nmax_connections_without_certificate = 1024";

pub struct Stack {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub analytic: Cluster,
    pub source: Cluster,
    pub pki: DevPki,
    pub collector_config: PathBuf,
    pub collector_addr: SocketAddr,
    pub collector: Option<Proc>,
    /// The CA directory when enrollment is configured.
    pub ca_dir: Option<PathBuf>,
    /// What agents trust for the collector's certificate.
    pub server_trust: PathBuf,
    in_process: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    pub munis: Vec<Municipality>,
}

/// The root key's place, relative to the stack's directory.
const OFFLINE_ROOT_KEY: &str = "offline/root.key";

#[derive(Default)]
pub struct StackOptions {
    /// Keep the working directory (configs, logs, spools) instead of a temp dir.
    pub dir: Option<PathBuf>,
    /// Also make a CA directory (`ca init`) and configure enrollment: the
    /// collector then presents the CA's server certificate and trusts both
    /// the development CA and the enrollment root.
    pub enrollment: bool,
    /// Extra lines for the collector's `[ca]` section.
    pub ca_extra: String,
    pub cluster: ClusterOptions,
    /// Options for the source cluster when they differ from `cluster`'s.
    pub source_cluster: Option<ClusterOptions>,
    /// The collector listens on every address (not only 127.0.0.1), for
    /// agents in another network namespace.
    pub collector_listen_all: bool,
    pub collector_extra_toml: String,
    /// The collector accepts only jobs of published plans (`[plans]
    /// allow_local_jobs = false`, its default). Off, the harness lets the
    /// agents' local `[[jobs]]` load, as most tests use them.
    pub plans_required: bool,
    /// Extra lines for the collector's `[plans]` section (e.g. `keys`).
    pub plans_extra: String,
    /// Apply the control schema's migrations only up to this version (to
    /// build an older installation and test its upgrade).
    pub migrate_to: Option<i64>,
}

impl Stack {
    /// Starts the clusters, creates one (empty) source database per
    /// municipality, makes the PKI and migrates the control schema.
    pub async fn new(munis: &[(&str, &str)]) -> Result<Self> {
        Self::with_options(munis, StackOptions::default()).await
    }

    pub async fn with_options(munis: &[(&str, &str)], opts: StackOptions) -> Result<Self> {
        let (dir, tmp) = match opts.dir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("transmissor-stack.")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let analytic = Cluster::start_with(opts.cluster.clone())?;
        let source = Cluster::start_with(opts.source_cluster.unwrap_or(opts.cluster))?;
        analytic.create_db(ANALYTIC_DB).await?;
        let codes: Vec<Ibge> = munis
            .iter()
            .map(|(c, _)| c.parse::<Ibge>())
            .collect::<Result<_, _>>()?;
        let pki = devcerts::generate(&dir.join("pki"), &[], &codes)?;

        let offline_key = dir.join(OFFLINE_ROOT_KEY);
        let (ca_dir, server_trust, server_cert, server_key, client_trust, ca_section) =
            if opts.enrollment {
                let ca_dir = dir.join("ca");
                // The root key goes outside the CA directory, as offline
                // media would hold it (the collector refuses it inside).
                let files = transmissor_collector::ca::init(&ca_dir, &offline_key, &[])?;
                let bundle = dir.join("client-trust.pem");
                std::fs::write(
                    &bundle,
                    format!(
                        "{}{}",
                        std::fs::read_to_string(&pki.ca_cert)?,
                        std::fs::read_to_string(&files.root_cert)?
                    ),
                )?;
                let section = format!(
                    "\n[ca]\ndir = \"{}\"\n{}\n",
                    ca_dir.display(),
                    opts.ca_extra
                );
                (
                    Some(ca_dir),
                    files.root_cert,
                    files.server_cert,
                    files.server_key,
                    bundle,
                    section,
                )
            } else {
                (
                    None,
                    pki.ca_cert.clone(),
                    pki.server_cert.clone(),
                    pki.server_key.clone(),
                    pki.ca_cert.clone(),
                    String::new(),
                )
            };
        let port = free_port();
        let collector_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let listen = if opts.collector_listen_all {
            format!("0.0.0.0:{port}")
        } else {
            collector_addr.to_string()
        };
        let collector_config = dir.join("collector.toml");
        std::fs::write(
            &collector_config,
            format!(
                "version = 1\n\n[server]\nlisten = \"{listen}\"\ndrain_timeout = \"10s\"\n{front_door}\n\
                 [tls]\nca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\n\
                 [database]\nurl = \"{url}\"\nmax_connections = 16\n\n\
                 [plans]\nallow_local_jobs = {local}\nrefresh_every = \"1s\"\n{plans_extra}\n{extra}{ca_section}",
                local = !opts.plans_required,
                plans_extra = opts.plans_extra,
                ca = client_trust.display(),
                cert = server_cert.display(),
                key = server_key.display(),
                url = analytic.url(ANALYTIC_DB),
                extra = opts.collector_extra_toml,
                front_door = HARNESS_FRONT_DOOR,
            ),
        )?;
        let cfg = transmissor_collector::config::CollectorConfig::load(&collector_config)?;
        let pool = transmissor_collector::db::connect(&cfg.database).await?;
        match opts.migrate_to {
            Some(v) => {
                transmissor_collector::db::MIGRATOR.run_to(v, &pool).await?;
                transmissor_collector::db::ensure_schemas(&pool, &cfg.load.target_schema).await?;
            }
            None => transmissor_collector::db::migrate(&pool, &cfg.load.target_schema).await?,
        }

        let src = source.connect("postgres").await?;
        src.batch_execute(&format!(
            "CREATE ROLE {READER_ROLE} LOGIN PASSWORD '{READER_PASSWORD}'"
        ))
        .await?;
        let mut out = Vec::new();
        for ((code, name), agent) in munis.iter().zip(&pki.agents) {
            let db = format!("esus_{code}");
            source.create_db(&db).await?;
            transmissor_collector::registry::add_municipality(&pool, agent.ibge, name).await?;
            // With enrollment the agents enroll themselves; otherwise the
            // development certificates' agents are registered here.
            if !opts.enrollment {
                transmissor_collector::registry::add_agent(&pool, agent.ibge, agent.agent_id)
                    .await?;
            }
            out.push(Municipality {
                ibge: agent.ibge,
                name: name.to_string(),
                db,
                agent_id: agent.agent_id,
                cert: agent.cert.clone(),
                key: agent.key.clone(),
            });
        }
        pool.close().await;
        Ok(Self {
            dir,
            _tmp: tmp,
            analytic,
            source,
            pki,
            collector_config,
            collector_addr,
            collector: None,
            ca_dir,
            server_trust,
            in_process: None,
            munis: out,
        })
    }

    /// Loads the PEC-like schema and synthetic data into a municipality's
    /// source database, and lets the read-only role read it.
    pub async fn load_pec(
        &self,
        m: &Municipality,
        seed: u64,
        scale: &crate::pec::Scale,
    ) -> Result<()> {
        let c = self.source.connect(&m.db).await?;
        c.batch_execute(crate::pec::SCHEMA_SQL)
            .await
            .context("PEC schema")?;
        c.batch_execute(&crate::pec::data_sql(m.ibge.as_str(), &m.name, seed, scale))
            .await
            .context("PEC data")?;
        self.grant_reader(&m.db).await
    }

    /// Grants the read-only role SELECT on everything in `public`.
    pub async fn grant_reader(&self, db: &str) -> Result<()> {
        let c = self.source.connect(db).await?;
        c.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {READER_ROLE}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}; \
             ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on"
        ))
        .await?;
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.collector_addr.port())
    }

    /// Starts `transmissor-collector serve` and waits until it accepts connections.
    pub async fn start_collector(&mut self) -> Result<()> {
        let log = self.dir.join("collector.log");
        let cfg = self.collector_config.display().to_string();
        let proc_ = Proc::spawn(
            "transmissor-collector",
            ["serve", "--config", &cfg],
            &[],
            &log,
        )?;
        self.collector = Some(proc_);
        self.wait_collector_port().await
    }

    async fn wait_collector_port(&mut self) -> Result<()> {
        let addr = self.collector_addr;
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if let Some(p) = self.collector.as_mut()
                && !p.is_running()
            {
                bail!("collector exited at start; log:\n{}", p.log_text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("collector did not listen on {addr}")
    }

    /// Runs the collector inside this process (no process to kill; faster).
    pub async fn start_collector_in_process(&mut self) -> Result<()> {
        let cfg = transmissor_collector::config::CollectorConfig::load(&self.collector_config)?;
        let prepared = transmissor_collector::app::prepare(&cfg).await?;
        let listener = tokio::net::TcpListener::bind(cfg.server.listen).await?;
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = transmissor_collector::app::run(&cfg, prepared, listener, t).await {
                tracing::error!(error = %e, "in-process collector failed");
            }
        });
        self.in_process = Some((token, handle));
        Ok(())
    }

    /// Starts another `transmissor-collector serve` on the same database (a
    /// replica) on its own port; returns it and its address once it listens.
    pub async fn spawn_collector_replica(&self, name: &str) -> Result<(Proc, SocketAddr)> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let text = std::fs::read_to_string(&self.collector_config)?.replace(
            &format!("listen = \"{}\"", self.collector_addr),
            &format!("listen = \"{addr}\""),
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text)?;
        let cfg = path.display().to_string();
        let mut p = Proc::spawn(
            "transmissor-collector",
            ["serve", "--config", &cfg],
            &[],
            &self.dir.join(format!("{name}.log")),
        )?;
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok((p, addr));
            }
            if !p.is_running() {
                bail!("replica exited at start; log:\n{}", p.log_text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("replica did not listen on {addr}")
    }

    pub fn kill_collector(&mut self) {
        if let Some(mut p) = self.collector.take() {
            p.kill();
        }
    }

    pub async fn stop_collector(&mut self) -> Result<()> {
        if let Some(mut p) = self.collector.take() {
            p.terminate(Duration::from_secs(20)).await?;
        }
        if let Some((t, h)) = self.in_process.take() {
            t.cancel();
            let _ = h.await;
        }
        Ok(())
    }

    /// Writes an agent config for `m` with these jobs; returns its path.
    /// The agent uses the municipality's development certificate.
    pub fn agent_config(&self, m: &Municipality, jobs: &[Job], extra: &str) -> Result<PathBuf> {
        self.write_agent_config(m, jobs, extra, true)
    }

    /// As [`Self::agent_config`], for an agent that enrolls: no certificate
    /// paths, so the identity in its state directory is used.
    pub fn enrolled_agent_config(
        &self,
        m: &Municipality,
        jobs: &[Job],
        extra: &str,
    ) -> Result<PathBuf> {
        self.write_agent_config(m, jobs, extra, false)
    }

    /// Runs `transmissor-agent enroll` for a config with a fresh one-time
    /// token (passed in the environment, as the README suggests); returns
    /// what it printed.
    pub async fn enroll_agent(&self, m: &Municipality, config: &Path) -> Result<String> {
        let token = self
            .issue_token(m.ibge.as_str(), Duration::from_secs(3600))
            .await?;
        let out = std::process::Command::new(crate::procs::bin("transmissor-agent")?)
            .args(["enroll", "--collector", &self.endpoint(), "--config"])
            .arg(config)
            .env("TRANSMISSOR_ENROLL_TOKEN", &token)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("enroll failed: {text}");
        }
        Ok(text)
    }

    fn write_agent_config(
        &self,
        m: &Municipality,
        jobs: &[Job],
        extra: &str,
        dev_cert: bool,
    ) -> Result<PathBuf> {
        let adir = self.dir.join(format!("agent-{}", m.ibge));
        std::fs::create_dir_all(&adir)?;
        let password = adir.join("source.password");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&password)?;
            std::io::Write::write_all(&mut f, READER_PASSWORD.as_bytes())?;
        }
        let mut s = format!(
            "version = 1\n\n[agent]\nstate_dir = \"{state}\"\n\n\
             [source]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"{db}\"\nuser = \"{READER_ROLE}\"\n\
             password_file = \"{password}\"\n\n\
             [collector]\nendpoint = \"{endpoint}\"\n{identity}\n\
             [retry]\ninitial = \"100ms\"\nmax = \"2s\"\ngive_up_after = \"120s\"\n\n{extra}\n",
            state = adir.join("state").display(),
            password = password.display(),
            port = self.source.port,
            db = m.db,
            endpoint = self.endpoint(),
            identity = if dev_cert {
                format!(
                    "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                    self.server_trust.display(),
                    m.cert.display(),
                    m.key.display()
                )
            } else {
                String::new()
            },
        );
        for j in jobs {
            s.push_str(&format!(
                "[[jobs]]\nname = \"{}\"\nmode = \"{}\"\ntarget = \"{}\"\nquery = '''\n{}\n'''\n{}\n",
                j.name, j.mode, j.target, j.query, j.extra
            ));
        }
        let path = adir.join("agent.toml");
        std::fs::write(&path, s)?;
        Ok(path)
    }

    /// Starts `transmissor-agent run --once` for a config.
    pub fn spawn_agent(&self, config: &Path, log_name: &str) -> Result<Proc> {
        self.spawn_agent_via(&[], config, log_name)
    }

    /// As [`Self::spawn_agent`], through a prefix such as `ip netns exec <ns>`.
    pub fn spawn_agent_via(
        &self,
        prefix: &[String],
        config: &Path,
        log_name: &str,
    ) -> Result<Proc> {
        let log = self.dir.join(log_name);
        let cfg = config.display().to_string();
        Proc::spawn_via(
            prefix,
            "transmissor-agent",
            ["run", "--once", "--config", &cfg],
            &[],
            &log,
        )
    }

    /// Runs the agent library in this process, once.
    pub async fn run_agent_in_process(
        &self,
        config: &Path,
    ) -> Result<transmissor_agent::run::RunReport> {
        let cfg = transmissor_agent::config::AgentConfig::load(config)?;
        let cancel = CancellationToken::new();
        let agent = transmissor_agent::run::Agent::new(cfg, cancel.clone())?;
        Ok(agent.run_once(&cancel).await)
    }

    /// Where `ca init` put the root key, outside the CA directory (needs
    /// `enrollment`); `ca rotate` takes it.
    pub fn root_key(&self) -> PathBuf {
        self.dir.join(OFFLINE_ROOT_KEY)
    }

    /// Issues a one-time enrollment token for a municipality (needs `enrollment`).
    pub async fn issue_token(&self, ibge: &str, ttl: Duration) -> Result<String> {
        let ca_dir = self
            .ca_dir
            .as_ref()
            .context("the stack was made without enrollment")?;
        let pin = transmissor_collector::ca::load(ca_dir)?.pin;
        let pool = self.collector_pool().await?;
        let token = transmissor_collector::enroll::issue_token(
            &pool,
            pin,
            ibge.parse()?,
            ttl,
            &transmissor_collector::audit::operator(),
        )
        .await?;
        pool.close().await;
        Ok(token.to_string())
    }

    /// A pool on the analytic database, as the collector's CLI would open it.
    pub async fn collector_pool(&self) -> Result<sqlx_pool::Pool> {
        let cfg = transmissor_collector::config::CollectorConfig::load(&self.collector_config)?;
        Ok(transmissor_collector::db::connect(&cfg.database).await?)
    }

    pub async fn analytic_client(&self) -> Result<tokio_postgres::Client> {
        self.analytic.connect(ANALYTIC_DB).await
    }
}

/// The session settings the agent pins (`agent/src/source.rs`), so a COPY
/// text dump reads like the agent's batches.
const DUMP_SETTINGS: &str = "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; \
    SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET bytea_output = 'hex'";

/// COPY text dump of a query's result (ordered by the query), for byte-for-byte comparison.
pub async fn copy_dump(client: &tokio_postgres::Client, query: &str) -> Result<Vec<u8>> {
    use futures::StreamExt;
    client.batch_execute(DUMP_SETTINGS).await?;
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT"))
        .await?;
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Loads a COPY text dump (as [`copy_dump`] makes it, possibly from another
/// server) into `table`, under the same session settings; returns the rows.
pub async fn copy_load(client: &tokio_postgres::Client, table: &str, data: &[u8]) -> Result<u64> {
    use futures::SinkExt;
    client.batch_execute(DUMP_SETTINGS).await?;
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN"))
        .await?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::copy_from_slice(data)).await?;
    Ok(sink.finish().await?)
}
