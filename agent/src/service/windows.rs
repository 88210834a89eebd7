//! The service control manager's side of the agent (Windows only).
//!
//! `transmissor-agent service --config PATH` hands the main thread to the
//! SCM's dispatcher ([`run`]); the SCM then calls the service's main function
//! on a thread of its own, which:
//!
//! 1. registers the control handler: on Stop and Shutdown it cancels the
//!    daemon's token and returns at once (it never blocks the SCM);
//! 2. reports `StartPending`, opens the rolling log files, loads the
//!    configuration and the agent (identity, spool, plan store);
//! 3. reports `Running` and runs [`crate::daemon::run`] on a tokio runtime
//!    of its own;
//! 4. once the token is cancelled, reports `StopPending` with
//!    [`super::STOP_WAIT_HINT`], renewed every [`super::STOP_CHECKPOINT_EVERY`]
//!    until the daemon has drained (the current batch ends, the background
//!    tasks stop);
//! 5. reports `Stopped` with an [`ExitCode`].
//!
//! Nothing is written to stdout or stderr here (a service has neither): a
//! failure before the log files are open shows only as the exit code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tokio_util::sync::CancellationToken;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_dispatcher;

use super::{
    ExitCode, LOG_FILE_PREFIX, LOG_FILES_KEPT, SERVICE_NAME, START_WAIT_HINT,
    STOP_CHECKPOINT_EVERY, STOP_WAIT_HINT,
};
use crate::config::AgentConfig;
use crate::run::Agent;

/// `ERROR_FAILED_SERVICE_CONTROLLER_CONNECT`: the process was not started
/// by the SCM (someone ran `service` in a console).
const NOT_STARTED_BY_THE_SCM: i32 = 1063;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "`service` is started by the Windows service control manager (install.ps1 registers it); in a console, use `transmissor-agent run --config PATH`"
    )]
    NotAService,
    #[error("the service control manager's dispatcher failed: {0}")]
    Dispatcher(String),
}

/// What `service` was given on its command line, for the service's main
/// function (the SCM passes it only the arguments of `sc.exe start`).
struct Options {
    config: PathBuf,
    log_dir: Option<PathBuf>,
    log_format: String,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// Hands this thread to the SCM's dispatcher until the service has stopped.
pub fn run(config: &Path, log_dir: Option<&Path>, log_format: &str) -> Result<(), ServiceError> {
    let options = Options {
        config: config.to_path_buf(),
        log_dir: log_dir.map(Path::to_path_buf),
        log_format: log_format.to_string(),
    };
    if OPTIONS.set(options).is_err() {
        return Err(ServiceError::Dispatcher("started twice".into()));
    }
    service_dispatcher::start(SERVICE_NAME, entry::service_main_fn()).map_err(|e| match e {
        windows_service::Error::Winapi(io) if io.raw_os_error() == Some(NOT_STARTED_BY_THE_SCM) => {
            ServiceError::NotAService
        }
        windows_service::Error::Winapi(io) => ServiceError::Dispatcher(io.to_string()),
        other => ServiceError::Dispatcher(other.to_string()),
    })
}

/// The raw entry point the SCM calls (the macro's `unsafe` turns the SCM's
/// wide-string arguments into `OsString`s).
#[allow(unsafe_code)]
mod entry {
    use super::service_main;
    windows_service::define_windows_service!(ffi_service_main, service_main);

    /// `ffi_service_main` (the macro makes it private to this module).
    pub fn service_main_fn() -> extern "system" fn(u32, *mut *mut u16) {
        ffi_service_main
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some(options) = OPTIONS.get() else {
        return;
    };
    let cancel = CancellationToken::new();
    let on_control = {
        let cancel = cancel.clone();
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                cancel.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let Ok(handle) = service_control_handler::register(SERVICE_NAME, on_control) else {
        // Nothing to report to: the SCM times the start out.
        return;
    };
    let status = Status::new(handle);
    status.start_pending();
    let code = serve(options, &cancel, &status);
    status.stopped(code);
}

/// Steps 2 to 4 of the module doc; the exit code for `Stopped`.
fn serve(options: &Options, cancel: &CancellationToken, status: &Status) -> ExitCode {
    let cfg = AgentConfig::load(&options.config);
    let log_dir = match (&options.log_dir, &cfg) {
        (Some(dir), _) => dir.clone(),
        (None, Ok(cfg)) => super::log_dir(None, cfg),
        // Nowhere to log: the exit code says it.
        (None, Err(_)) => return ExitCode::Config,
    };
    let appender = match open_log_files(&log_dir) {
        Ok(a) => a,
        Err(_) => return ExitCode::Logs,
    };
    transmissor_proto::logging::init_with_writer(&options.log_format, appender, false);
    log_panics();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %options.config.display(),
        log_dir = %log_dir.display(),
        "service starting"
    );
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!(error = %e, "service not started: configuration");
            return ExitCode::Config;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "service not started: the async runtime");
            return ExitCode::Start;
        }
    };
    let code = runtime.block_on(daemon(cfg, cancel, status));
    // Tasks still running (none after an ordered shutdown) are dropped.
    runtime.shutdown_timeout(STOP_CHECKPOINT_EVERY);
    tracing::info!(exit_code = code.code(), "service stopped");
    code
}

async fn daemon(cfg: AgentConfig, cancel: &CancellationToken, status: &Status) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agent = match Agent::new(cfg, cancel.clone()) {
        Ok(agent) => agent,
        Err(e) => {
            tracing::error!(error = %e, "service not started");
            return ExitCode::Start;
        }
    };
    if agent.plans().is_none() && agent.job_set().jobs.iter().all(|j| j.timing.is_none()) {
        tracing::error!(
            "service not started: no [schedule] in the config and no plan key pinned (central mode): nothing would ever run"
        );
        return ExitCode::NoSchedule;
    }
    status.running();
    // Says a stop was asked for (once logged) so the log always holds it,
    // even when the daemon, idle, returns before this task is polled.
    let (said, heard) = tokio::sync::oneshot::channel::<()>();
    let stopping = {
        let cancel = cancel.clone();
        let status = status.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            tracing::info!("stop requested; ending the current batch");
            let _ = said.send(());
            loop {
                status.stop_pending();
                tokio::time::sleep(STOP_CHECKPOINT_EVERY).await;
            }
        })
    };
    let result = crate::daemon::run(&agent, cancel).await;
    if cancel.is_cancelled() {
        let _ = heard.await;
    }
    stopping.abort();
    match result {
        Ok(()) => ExitCode::Stopped,
        Err(e) => {
            tracing::error!(error = %e, "the agent stopped on an error");
            ExitCode::Failed
        }
    }
}

/// Daily files in `dir`, the newest [`LOG_FILES_KEPT`] kept.
fn open_log_files(dir: &Path) -> Result<RollingFileAppender, tracing_appender::rolling::InitError> {
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE_PREFIX)
        .filename_suffix("log")
        .max_log_files(LOG_FILES_KEPT)
        .build(dir)
}

/// A panic would otherwise print to a stderr nobody reads.
fn log_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic");
        previous(info);
    }));
}

/// The service's status reports, with the checkpoint the SCM watches while
/// the service starts or stops.
#[derive(Clone)]
struct Status {
    handle: ServiceStatusHandle,
    checkpoint: std::sync::Arc<Mutex<u32>>,
}

impl Status {
    fn new(handle: ServiceStatusHandle) -> Self {
        Self {
            handle,
            checkpoint: std::sync::Arc::new(Mutex::new(0)),
        }
    }

    fn start_pending(&self) {
        self.set(
            ServiceState::StartPending,
            ServiceExitCode::NO_ERROR,
            START_WAIT_HINT,
        );
    }

    fn running(&self) {
        self.set(
            ServiceState::Running,
            ServiceExitCode::NO_ERROR,
            std::time::Duration::ZERO,
        );
    }

    /// Each call moves the checkpoint on: the stop is progressing.
    fn stop_pending(&self) {
        self.set(
            ServiceState::StopPending,
            ServiceExitCode::NO_ERROR,
            STOP_WAIT_HINT,
        );
    }

    fn stopped(&self, code: ExitCode) {
        let exit_code = match code {
            ExitCode::Stopped => ServiceExitCode::NO_ERROR,
            other => ServiceExitCode::ServiceSpecific(other.code()),
        };
        self.set(ServiceState::Stopped, exit_code, std::time::Duration::ZERO);
    }

    fn set(&self, state: ServiceState, exit_code: ServiceExitCode, wait_hint: std::time::Duration) {
        let pending = matches!(
            state,
            ServiceState::StartPending | ServiceState::StopPending
        );
        let checkpoint = {
            let mut c = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
            *c = if pending { *c + 1 } else { 0 };
            *c
        };
        let controls_accepted = if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        };
        let report = ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint,
            wait_hint,
            process_id: None,
        };
        if let Err(e) = self.handle.set_service_status(report) {
            tracing::warn!(error = %e, state = ?state, "status not reported to the service control manager");
        }
    }
}
