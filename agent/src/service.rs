//! The agent as a Windows service.
//!
//! | module      | responsibility                                                     |
//! |-------------|--------------------------------------------------------------------|
//! | [`windows`] | (Windows only) the service control manager's entry point: control handler, status reports, rolling log files |
//!
//! `installer/windows/install.ps1` registers the service [`SERVICE_NAME`]
//! as `transmissor-agent.exe service --config <agent.toml> --log-dir <dir>`,
//! run by the virtual account `NT SERVICE\transmissor-agent`, started
//! automatically (delayed) and restarted by the SCM's recovery actions when
//! it stops with a non-zero exit code. The service runs the same daemon as
//! `transmissor-agent run` ([`crate::daemon::run`]); Stop and Shutdown only
//! cancel its token, and the service reports `StopPending` (with a wait hint
//! it renews every [`STOP_CHECKPOINT_EVERY`]) while the current batch ends
//! and the background tasks stop, then `Stopped` with one of the
//! [`ExitCode`]s.
//!
//! Logs go to daily files `transmissor-agent.YYYY-MM-DD.log` in the log
//! directory (`--log-dir`, default `<state_dir>\logs`); the newest
//! [`LOG_FILES_KEPT`] are kept. The rest of this module is platform-neutral
//! (and tested on Linux).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::AgentConfig;

#[cfg(windows)]
pub mod windows;

/// The service's name in the service control manager (and of its virtual
/// account, `NT SERVICE\transmissor-agent`).
pub const SERVICE_NAME: &str = "transmissor-agent";

/// Log file names: `<prefix>.YYYY-MM-DD.log`.
pub const LOG_FILE_PREFIX: &str = "transmissor-agent";

/// Daily log files kept (older ones are removed as a new day starts).
pub const LOG_FILES_KEPT: usize = 14;

/// How long the SCM is told to wait for the next progress report while the
/// service stops.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(30);

/// How often the service reports progress while it stops (well within
/// [`STOP_WAIT_HINT`], so a long final batch is not taken for a hang).
pub const STOP_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

// Progress is reported well within the wait hint.
const _: () = assert!(STOP_CHECKPOINT_EVERY.as_secs() * 3 <= STOP_WAIT_HINT.as_secs());

/// How long the SCM is told to wait while the service starts.
pub const START_WAIT_HINT: Duration = Duration::from_secs(30);

/// The log directory: `--log-dir`, else `<state_dir>\logs`.
pub fn log_dir(explicit: Option<PathBuf>, cfg: &AgentConfig) -> PathBuf {
    explicit.unwrap_or_else(|| cfg.agent.state_dir.join("logs"))
}

/// The service-specific exit codes reported with `Stopped` (shown by
/// `sc.exe query transmissor-agent` as `SERVICE_EXIT_CODE`; the cause is in
/// the log). Any code but [`ExitCode::Stopped`] makes the SCM's recovery
/// actions restart the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Stopped on request (Stop, Shutdown), after an ordered shutdown.
    Stopped,
    /// The configuration could not be read or is invalid.
    Config,
    /// The log directory could not be created or opened.
    Logs,
    /// The agent could not start: identity (not enrolled?), spool, plan
    /// store, metrics port.
    Start,
    /// Local mode without any schedule: nothing would ever run.
    NoSchedule,
    /// The daemon stopped on an error.
    Failed,
}

impl ExitCode {
    /// The number reported to the SCM (`dwServiceSpecificExitCode`).
    pub fn code(self) -> u32 {
        match self {
            Self::Stopped => 0,
            Self::Config => 1,
            Self::Logs => 2,
            Self::Start => 3,
            Self::NoSchedule => 4,
            Self::Failed => 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_key() -> String {
        let signing = transmissor_plan::SigningKey::from_bytes(&[7; 32]);
        transmissor_plan::PublicKey::from(&signing).to_string()
    }

    fn config(state_dir: &str) -> AgentConfig {
        let key = plan_key();
        AgentConfig::parse(&format!(
            r#"version = 1
[agent]
state_dir = '{state_dir}'
[source]
host = "localhost"
port = 5433
dbname = "esus"
user = "transmissor_leitura"
[collector]
endpoint = "https://coletor.example.gov.br:7443"
[plan]
keys = ["{key}"]
"#
        ))
        .unwrap()
    }

    #[test]
    fn log_dir_defaults_to_the_state_dir() {
        let cfg = config("/var/lib/transmissor-agent");
        assert_eq!(
            log_dir(None, &cfg),
            PathBuf::from("/var/lib/transmissor-agent/logs")
        );
        assert_eq!(
            log_dir(Some(PathBuf::from("/elsewhere")), &cfg),
            PathBuf::from("/elsewhere")
        );
    }

    /// The agent.toml `installer/windows/install.ps1` writes, with Windows
    /// paths, parsed by the agent's strict parser.
    #[test]
    fn the_windows_installer_writes_a_valid_config() {
        let script = include_str!("../../installer/windows/install.ps1");
        // Windows PowerShell 5.1 reads a script without a BOM as ANSI: the
        // Portuguese messages need it.
        assert!(
            script.starts_with('\u{feff}'),
            "install.ps1 must be UTF-8 with a BOM"
        );
        let template = script
            .split_once("$AgentTomlTemplate = @'\n")
            .and_then(|(_, rest)| rest.split_once("\n'@"))
            .map(|(t, _)| t)
            .expect("the agent.toml template in install.ps1");
        let (k1, k2) = (plan_key(), {
            let signing = transmissor_plan::SigningKey::from_bytes(&[9; 32]);
            transmissor_plan::PublicKey::from(&signing).to_string()
        });
        let data = r"C:\ProgramData\transmissor";
        let text = template
            .replace("@@STATE_DIR@@", &format!(r"{data}\state"))
            .replace("@@DB_HOST@@", "localhost")
            .replace("@@DB_PORT@@", "5433")
            .replace("@@DB_NAME@@", "esus")
            .replace("@@DB_USER@@", "transmissor_leitura")
            .replace(
                "@@PASSWORD_FILE@@",
                &format!(r"{data}\config\source.password"),
            )
            .replace("@@COLLECTOR@@", "https://coletor.example.gov.br:7443")
            .replace("@@SPOOL_DIR@@", &format!(r"{data}\spool"))
            .replace("@@PLAN_KEYS@@", &format!("'{k1}', '{k2}'"))
            .replace('\n', "\r\n");
        assert!(!text.contains("@@"), "a placeholder is left: {text}");
        let cfg = AgentConfig::parse(&text).unwrap();
        assert_eq!(cfg.agent.state_dir, PathBuf::from(format!(r"{data}\state")));
        assert_eq!(cfg.source.host, "localhost");
        assert_eq!(cfg.source.port, 5433);
        assert_eq!(cfg.source.dbname, "esus");
        assert_eq!(cfg.source.user, "transmissor_leitura");
        assert_eq!(
            cfg.source.password_file,
            Some(PathBuf::from(format!(r"{data}\config\source.password")))
        );
        assert_eq!(
            cfg.collector.endpoint,
            "https://coletor.example.gov.br:7443"
        );
        assert_eq!(cfg.spool_dir(), PathBuf::from(format!(r"{data}\spool")));
        let keys: Vec<String> = cfg.plan.keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys, [k1, k2]);
        assert_eq!(cfg.job_source(), crate::config::JobSourceMode::Central);
    }

    #[test]
    fn exit_codes_are_distinct_and_only_a_requested_stop_is_zero() {
        let all = [
            ExitCode::Stopped,
            ExitCode::Config,
            ExitCode::Logs,
            ExitCode::Start,
            ExitCode::NoSchedule,
            ExitCode::Failed,
        ];
        let codes: std::collections::BTreeSet<u32> = all.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert!(
            all.iter()
                .all(|c| (c.code() == 0) == (*c == ExitCode::Stopped))
        );
    }
}
