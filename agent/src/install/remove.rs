//! `uninstall`: the service stopped and disabled, then the unit, the
//! binary, the config directory, the state directory (all of it, or all
//! but the spool and the pseudonym key with `--keep-spool`: what a
//! reinstallation on this machine picks up again, so the batches still
//! go and the municipality's pseudonyms stay the same) and the user and
//! group removed. Plain `uninstall` is the full removal: the pseudonym key
//! goes with the rest (`pseudonym-key export` keeps a copy first).
//! Run again, it finds everything absent. An agent installed from the
//! `.deb` is left to the package manager.

use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

use super::account;
use super::fsops;
use super::layout::{self, Layout};
use super::summary::{Outcome, Summary};
use super::systemd::Systemctl;
use super::{InstallError, UninstallArgs, require_root};
use crate::config::AgentConfig;

pub fn uninstall(args: &UninstallArgs) -> Result<Summary, InstallError> {
    require_root()?;
    let root = layout::absolute_root(&args.root).map_err(InstallError::io(&args.root))?;
    let layout = Layout::new(&root, false);
    if layout.rooted(layout::DPKG_LIST).exists() {
        return Err(InstallError::Packaged);
    }
    umask(Mode::from_bits_truncate(0o077));
    let mut summary = Summary {
        root: (!layout.is_live()).then(|| root.display().to_string()),
        ..Default::default()
    };
    // The spool's place, read before the config goes.
    let spool = std::fs::read_to_string(layout.rooted(layout::CONFIG))
        .ok()
        .and_then(|t| AgentConfig::parse(&t).ok())
        .map_or_else(
            || Path::new(layout::STATE_DIR).join("spool"),
            |c| c.spool_dir(),
        );

    let name = layout::UNIT_NAME;
    if let Some(sc) = Systemctl::find(&layout) {
        if sc.running() {
            let o = if sc.is_active(name) {
                sc.live("stop", Some(name))?
            } else {
                Outcome::Absent
            };
            summary.add(format!("systemctl stop {name}"), o);
        }
        summary.add(format!("systemctl disable {name}"), sc.disable(name)?);
    }
    // What `systemctl enable` made, if systemctl is missing or no longer
    // knew the unit.
    let link = PathBuf::from("/etc/systemd/system/multi-user.target.wants").join(name);
    let at = layout.rooted(&link);
    if fsops::remove(&at).map_err(InstallError::io(&at))? == Outcome::Removed {
        summary.add(show(&link), Outcome::Removed);
    }
    let remove = |summary: &mut Summary, path: &Path| -> Result<(), InstallError> {
        let at = layout.rooted(path);
        let o = fsops::remove(&at).map_err(InstallError::io(&at))?;
        summary.add(show(path), o);
        Ok(())
    };
    remove(&mut summary, Path::new(layout::UNIT))?;
    remove(&mut summary, Path::new(layout::BINARY))?;
    remove(&mut summary, Path::new(layout::CONFIG_DIR))?;

    let state = Path::new(layout::STATE_DIR);
    let key = state.join(crate::pseudonym_key::KEY_FILE);
    if args.keep_spool {
        // Everything but the spool and the pseudonym key (and the
        // directories leading to them).
        let state_at = layout.rooted(state);
        let keep: Vec<PathBuf> = [&spool, &key]
            .into_iter()
            .filter(|p| p.starts_with(state))
            .map(|p| layout.rooted(p))
            .collect();
        let mut gone = 0;
        if state_at.exists() {
            let mut stack = vec![state_at.clone()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir).map_err(InstallError::io(&dir))? {
                    let p = e.map_err(InstallError::io(&dir))?.path();
                    if keep.contains(&p) {
                        continue;
                    }
                    if keep.iter().any(|k| k.starts_with(&p)) {
                        stack.push(p);
                    } else {
                        fsops::remove(&p).map_err(InstallError::io(&p))?;
                        gone += 1;
                    }
                }
            }
        }
        summary.add(
            format!(
                "{} (but the spool and the pseudonym key)",
                layout::STATE_DIR
            ),
            if gone > 0 {
                Outcome::Removed
            } else {
                Outcome::Absent
            },
        );
        for kept in [&spool, &key] {
            summary.add(
                show(kept),
                if layout.rooted(kept).exists() {
                    Outcome::Kept("--keep-spool".into())
                } else {
                    Outcome::Absent
                },
            );
        }
    } else {
        if !spool.starts_with(state) {
            remove(&mut summary, &spool)?;
        }
        remove(&mut summary, state)?;
    }

    for (what, o) in account::remove(&root, &args.user, state)? {
        summary.add(what, o);
    }
    if let Some(sc) = Systemctl::find(&layout)
        && sc.running()
    {
        summary.add("systemctl daemon-reload", sc.live("daemon-reload", None)?);
    }
    Ok(summary)
}

fn show(p: &Path) -> String {
    p.display().to_string()
}
