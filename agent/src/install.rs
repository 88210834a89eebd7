//! `transmissor-agent install` and `uninstall` on Linux (issue #12): one
//! command puts the agent on a machine as a hardened systemd service; run
//! again it repairs what drifted, run from a newer binary it upgrades
//! (identity, plan state and spool kept), and `uninstall` removes it all.
//!
//! ```text
//! (relative to --root, default /)                          owner               mode
//! /usr/local/bin/transmissor-agent                         root:root           0755
//! /etc/transmissor/                                        root:transmissor    0750
//!   agent.toml                                             root:transmissor    0640
//!   db-password                                            transmissor:transmissor 0600
//! /var/lib/transmissor/   (agent.state_dir)                transmissor:transmissor 0700
//!   identity/ plan/ spool/  and all they hold              transmissor:transmissor 0700
//! /etc/systemd/system/transmissor-agent.service            root:root           0644
//! ```
//! The `.deb` ([`deb`]) has the same layout and unit, with the binary in
//! `/usr/bin` and the unit in `/lib/systemd/system`; `install` run from the
//! packaged binary ([`layout::Layout::packaged`]) leaves those two to dpkg.
//!
//! | module        | responsibility                                                      |
//! |---------------|---------------------------------------------------------------------|
//! | [`layout`]    | where everything goes, with owners and modes                        |
//! | [`fsops`]     | idempotent file operations, each reporting what it did              |
//! | [`account`]   | the system user and group (`useradd`/`userdel`, `--prefix` for a root) |
//! | [`settings`]  | the values to install: flags, then the existing config, then prompts |
//! | [`config_file`]| agent.toml: a new one from the template, an existing one edited in place |
//! | [`unit`]      | the hardened systemd unit, from `installer/linux/transmissor-agent.service.in` |
//! | [`systemd`]   | `systemctl`: enable, (re)start, stop, disable                      |
//! | [`command`]   | running the system's tools, their failures as errors               |
//! | [`setup`]     | `install`: the steps, in order                                      |
//! | [`remove`]    | `uninstall`                                                         |
//! | [`deb`]       | the `.deb`: staging tree, maintainer scripts, `dpkg-deb`            |
//! | [`summary`]   | what was done, path by path                                         |

pub mod account;
pub mod command;
pub mod config_file;
pub mod deb;
pub mod fsops;
pub mod layout;
pub mod remove;
pub mod settings;
pub mod setup;
pub mod summary;
pub mod systemd;
pub mod unit;

use std::path::PathBuf;
use std::process::ExitCode;

use thiserror::Error;

use transmissor_plan::PublicKey;
use transmissor_proto::identity::Ibge;

pub use unit::MIN_SYSTEMD;

/// `transmissor-agent install` (no `Debug`: it holds the token).
#[derive(Clone, clap::Args)]
pub struct InstallArgs {
    /// The collector, https://HOST:PORT (asked for when missing and a
    /// terminal is attached).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
    /// One-time enrollment token from the central team (or set
    /// TRANSMISSOR_ENROLL_TOKEN, which keeps it out of the process list).
    /// Needed only while the agent is not enrolled.
    #[arg(long, env = "TRANSMISSOR_ENROLL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Enroll again (a new identity) even when one exists; needs --token.
    #[arg(long)]
    pub force_enroll: bool,
    /// PEC database host [default for a new config: localhost].
    #[arg(long, value_name = "HOST")]
    pub db_host: Option<String>,
    /// PEC database port [default for a new config: 5432].
    #[arg(long, value_name = "PORT")]
    pub db_port: Option<u16>,
    /// PEC database name [default for a new config: esus].
    #[arg(long, value_name = "NAME")]
    pub db_name: Option<String>,
    /// Read-only database role [default for a new config: transmissor_leitura].
    #[arg(long, value_name = "ROLE")]
    pub db_user: Option<String>,
    /// File holding the role's password (copied into the 0600
    /// /etc/transmissor/db-password). Or set TRANSMISSOR_DB_PASSWORD, or
    /// type it when asked; it is never echoed, logged or stored elsewhere.
    #[arg(long, value_name = "PATH")]
    pub db_password_file: Option<PathBuf>,
    /// Public key central plans must be signed with, `ed25519:<base64>`
    /// (repeatable; replaces the config's list when given).
    #[arg(long = "plan-key", value_name = "KEY")]
    pub plan_keys: Vec<PublicKey>,
    /// The municipality's IBGE code (default: the token's).
    #[arg(long)]
    pub ibge: Option<Ibge>,
    /// Install into this directory as if it were / (no service is started
    /// and the doctor is not run there).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Enable the service but do not (re)start it.
    #[arg(long)]
    pub no_start: bool,
    /// The system user the service runs as.
    #[arg(long, value_name = "NAME", default_value = layout::DEFAULT_USER)]
    pub user: String,
    /// The binary and the unit are the .deb's (/usr/bin, /lib/systemd/system):
    /// write neither. Implied when run as /usr/bin/transmissor-agent.
    #[arg(long)]
    pub from_package: bool,
}

/// `transmissor-agent uninstall`.
#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    /// Keep the spool (/var/lib/transmissor/spool: batches not sent yet)
    /// and the pseudonym key (/var/lib/transmissor/pseudonym.key), for a
    /// reinstallation on this machine. Without it everything goes.
    #[arg(long)]
    pub keep_spool: bool,
    /// Remove from this directory as if it were /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The system user the service runs as.
    #[arg(long, value_name = "NAME", default_value = layout::DEFAULT_USER)]
    pub user: String,
}

#[derive(Debug, Error)]
pub enum InstallError {
    #[error(
        "run it as root (sudo): it creates a system user and writes under /etc, /usr/local and /var/lib"
    )]
    NotRoot,
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", settings::missing_message(.0))]
    Missing(Vec<settings::Missing>),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Account(#[from] account::AccountError),
    #[error(transparent)]
    Command(#[from] command::CommandError),
    #[error(transparent)]
    Config(#[from] config_file::ConfigFileError),
    #[error(transparent)]
    Enroll(crate::identity::enroll::EnrollError),
    #[error(
        "the identity in {dir} is incomplete or unreadable ({error}); enroll again: add --force-enroll and a new --token"
    )]
    BrokenIdentity {
        dir: PathBuf,
        error: crate::identity::IdentityError,
    },
    #[error(
        "this agent was installed from the .deb package: remove it with `apt remove transmissor-agent` (`apt purge transmissor-agent` also deletes its configuration, identity and spool)"
    )]
    Packaged,
}

impl InstallError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |error| Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// `install`: runs it and prints what was done; the exit code says whether
/// the doctor (when it ran) found the installation healthy.
pub async fn cli_install(args: InstallArgs) -> Result<ExitCode, InstallError> {
    let done = setup::install(args).await?;
    print!("{}", done.summary);
    Ok(if done.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `uninstall`: runs it and prints what was done.
pub fn cli_uninstall(args: UninstallArgs) -> Result<ExitCode, InstallError> {
    let summary = remove::uninstall(&args)?;
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// Fails unless the process runs as root.
fn require_root() -> Result<(), InstallError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(InstallError::NotRoot)
    }
}
