//! `systemctl`. Enabling and disabling work offline (they only make and
//! remove the `multi-user.target.wants` link), so they are done under a
//! `--root` too (`systemctl --root=DIR`); reloading, starting and stopping
//! need a running systemd, i.e. the live system booted with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::{self, CommandError};
use super::layout::Layout;
use super::summary::Outcome;

pub struct Systemctl {
    program: PathBuf,
    /// `--root=`, when not the live system.
    root: Option<PathBuf>,
    /// systemd runs this system (and can start and stop services).
    running: bool,
}

impl Systemctl {
    /// `None` when `systemctl` is not installed.
    pub fn find(layout: &Layout) -> Option<Self> {
        Some(Self {
            program: command::find("systemctl")?,
            root: (!layout.is_live()).then(|| layout.root.clone()),
            running: layout.is_live() && Path::new("/run/systemd/system").exists(),
        })
    }

    /// Whether services can be started and stopped here.
    pub fn running(&self) -> bool {
        self.running
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        if let Some(r) = &self.root {
            c.arg(format!("--root={}", r.display()));
        }
        c.args(args);
        c
    }

    pub fn is_enabled(&self, unit: &str) -> bool {
        command::output(&mut self.cmd(&["is-enabled", unit]))
            .is_ok_and(|(out, _)| String::from_utf8_lossy(&out.stdout).trim() == "enabled")
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.running
            && command::output(&mut self.cmd(&["is-active", "--quiet", unit]))
                .is_ok_and(|(out, _)| out.status.success())
    }

    /// Enabled at boot (`Unchanged` when it already was).
    pub fn enable(&self, unit: &str) -> Result<Outcome, CommandError> {
        if self.is_enabled(unit) {
            return Ok(Outcome::Unchanged);
        }
        command::run(&mut self.cmd(&["enable", unit]))?;
        Ok(Outcome::Done)
    }

    /// No longer enabled at boot (`Absent` when it was not).
    pub fn disable(&self, unit: &str) -> Result<Outcome, CommandError> {
        if !self.is_enabled(unit) {
            return Ok(Outcome::Absent);
        }
        command::run(&mut self.cmd(&["disable", unit]))?;
        Ok(Outcome::Done)
    }

    /// `daemon-reload`, `restart`, `start`, `stop`: only with a running systemd.
    pub fn live(&self, verb: &str, unit: Option<&str>) -> Result<Outcome, CommandError> {
        if !self.running {
            return Ok(Outcome::Skipped(
                "systemd is not running here; it happens at the target's next boot".into(),
            ));
        }
        let mut args = vec![verb];
        args.extend(unit);
        command::run(&mut self.cmd(&args))?;
        Ok(Outcome::Done)
    }
}
