//! The project's binaries run as real processes (so tests can SIGKILL them).

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Directory holding `transmissor-agent` and `transmissor-collector`:
/// `TRANSMISSOR_BIN_DIR`, else next to (or one above) the running executable
/// (`target/<profile>/` for xtask, `target/<profile>/deps/` for tests).
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("TRANSMISSOR_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        if dir.join("transmissor-collector").exists() && dir.join("transmissor-agent").exists() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "transmissor binaries not found near {}: build them first with `cargo build --bins` (the README's test command does)",
        exe.display()
    )
}

/// A finished command's success and its stdout followed by its stderr.
pub fn outcome(out: &std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn bin(name: &str) -> Result<PathBuf> {
    Ok(bin_dir()?.join(name))
}

/// A child process whose output goes to a log file; killed on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn<I, S>(name: &str, args: I, envs: &[(&str, &str)], log: &Path) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_via(&[], name, args, envs, log)
    }

    /// As [`Self::spawn`], through a prefix that execs the binary (e.g.
    /// `ip netns exec <ns>`), so the pid is still the binary's own.
    pub fn spawn_via<I, S>(
        prefix: &[String],
        name: &str,
        args: I,
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = File::options().create(true).append(true).open(log)?;
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin(name)?);
                c
            }
            None => Command::new(bin(name)?),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` (SIGKILL after that).
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match self.wait(timeout).await {
            Ok(s) => Ok(s),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// Waits for exit up to `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let c = self.child.as_mut().context("process already reaped")?;
            if let Some(status) = c.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
