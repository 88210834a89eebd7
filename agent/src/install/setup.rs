//! `install`, step by step. Everything it needs is gathered and the config
//! it will write is validated before anything changes; then each step
//! brings one thing to its wanted state, so running it again repairs what
//! drifted and changes nothing else:
//!
//! 1. the system user and group;
//! 2. the directories (config 0750 root:USER, state and its `identity/`,
//!    `plan/`, `spool/` 0700 USER);
//! 3. the binary (a copy of the running one: an upgrade is the new binary's
//!    `install`);
//! 4. the database password (0600 USER) and `agent.toml` (0640 root:USER);
//! 5. the identity: enrolled with the token unless one exists (so re-runs
//!    and upgrades need no token), the pseudonym key
//!    (`<state_dir>/pseudonym.key`, made once, never replaced), then
//!    everything under the state directory owned by USER;
//! 6. the unit, `systemctl enable`, and on a running systemd
//!    `daemon-reload` and `restart` (or `start` when nothing changed);
//! 7. on the live system, `transmissor-agent doctor`.

use std::io;
use std::path::Path;
use std::process::Command;

use nix::sys::stat::{Mode, umask};

use super::account;
use super::config_file;
use super::fsops::{self, Owner};
use super::layout::{self, Layout};
use super::settings::{self, Ask, Existing, Terminal};
use super::summary::{Outcome, Summary};
use super::systemd::Systemctl;
use super::unit;
use super::{InstallArgs, InstallError, require_root};
use crate::config::AgentConfig;
use crate::identity::enroll::{EnrollOptions, enroll};
use crate::identity::{self, IdentityPaths};

/// What `install` did, and whether the doctor (if it ran) was satisfied.
#[derive(Debug)]
pub struct Installed {
    pub summary: Summary,
    pub healthy: bool,
}

/// The identity files of `cfg`, under the root.
fn identity_paths(layout: &Layout, cfg: &AgentConfig) -> IdentityPaths {
    let p = IdentityPaths::from_config(cfg);
    IdentityPaths {
        cert: layout.rooted(p.cert),
        key: layout.rooted(p.key),
        trust: layout.rooted(p.trust),
        info: layout.rooted(p.info),
    }
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

pub async fn install(args: InstallArgs) -> Result<Installed, InstallError> {
    require_root()?;
    let root = layout::absolute_root(&args.root).map_err(InstallError::io(&args.root))?;
    let packaged = args.from_package || (root == Path::new("/") && layout::running_from_package());
    let layout = Layout::new(&root, packaged);
    // Whatever the caller's umask, nothing is created open to others
    // (modes that should be wider are set explicitly).
    umask(Mode::from_bits_truncate(0o077));
    let mut summary = Summary {
        root: (!layout.is_live()).then(|| show(&root)),
        ..Default::default()
    };

    // What is there already, and what is asked for: all before any change.
    let config_path = layout.rooted(layout::CONFIG);
    let existing_text = match std::fs::read_to_string(&config_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(InstallError::io(&config_path)(e)),
    };
    let existing_cfg = existing_text
        .as_deref()
        .and_then(|t| AgentConfig::parse(t).ok());
    let existing = Existing {
        config: existing_text.is_some(),
        identity: !existing_cfg
            .as_ref()
            .map_or_else(
                || IdentityPaths::in_state_dir(&layout.rooted(layout::STATE_DIR)),
                |c| identity_paths(&layout, c),
            )
            .existing()
            .is_empty(),
        password: layout.rooted(layout::PASSWORD).exists(),
    };
    let mut terminal = Terminal::attached();
    let gathered = settings::gather(
        &args,
        existing,
        terminal.as_mut().map(|t| t as &mut dyn Ask),
    )?;
    let (config_text, cfg) = config_file::render(
        existing_text.as_deref().map(|t| (config_path.as_path(), t)),
        &gathered.config,
    )?;

    // 1. The user.
    let (user, outcome) = account::ensure(&root, &args.user, Path::new(layout::STATE_DIR))?;
    summary.add(
        format!("user {} (uid {}, gid {})", user.name, user.uid, user.gid),
        outcome,
    );
    let service = user.owner();
    let config_owner = Owner {
        uid: 0,
        gid: user.gid,
    };

    // 2. Directories.
    let mut dir = |path: &Path, owner: Owner, mode: u32| -> Result<(), InstallError> {
        let at = layout.rooted(path);
        fsops::ensure_parents(&at).map_err(InstallError::io(&at))?;
        let o = fsops::ensure_dir(&at, owner, mode).map_err(InstallError::io(&at))?;
        summary.add(show(path), o);
        Ok(())
    };
    dir(
        Path::new(layout::CONFIG_DIR),
        config_owner,
        layout::CONFIG_DIR_MODE,
    )?;
    dir(Path::new(layout::STATE_DIR), service, layout::STATE_MODE)?;
    for d in [cfg.identity_dir(), cfg.plan_dir(), cfg.spool_dir()] {
        dir(&d, service, layout::STATE_MODE)?;
    }
    let state_dir = Path::new(layout::STATE_DIR);
    let outside = !cfg.spool_dir().starts_with(state_dir);
    if outside {
        summary.next.push(format!(
            "note: spool.dir {} is outside {}: the unit does not let the agent write there; add it with `systemctl edit transmissor-agent` (ReadWritePaths=)",
            cfg.spool_dir().display(),
            layout::STATE_DIR
        ));
    }

    // 3. The binary.
    let mut changed = false;
    let binary = layout.rooted(layout.binary());
    if packaged {
        summary.add(layout.binary(), Outcome::Skipped("the package's".into()));
    } else {
        let exe = std::env::current_exe().map_err(InstallError::io(Path::new("current_exe")))?;
        fsops::ensure_parents(&binary).map_err(InstallError::io(&binary))?;
        let o = fsops::ensure_copy(&exe, &binary, Owner::ROOT, layout::BINARY_MODE)
            .map_err(InstallError::io(&binary))?;
        changed |= o.changed();
        summary.add(layout::BINARY, o);
    }

    // 4. The password and the config.
    let password = layout.rooted(layout::PASSWORD);
    let o = match &gathered.password {
        Some(p) => fsops::ensure_file(&password, p.as_bytes(), service, layout::PASSWORD_MODE),
        None => fsops::fix_meta(&password, service, layout::PASSWORD_MODE),
    }
    .map_err(InstallError::io(&password))?;
    changed |= o.changed();
    summary.add(layout::PASSWORD, o);
    let o = fsops::ensure_file(
        &config_path,
        config_text.as_bytes(),
        config_owner,
        layout::CONFIG_MODE,
    )
    .map_err(InstallError::io(&config_path))?;
    changed |= o.changed();
    summary.add(layout::CONFIG, o);

    // 5. The identity, then the state directory's owner.
    let paths = identity_paths(&layout, &cfg);
    let identity_dir = cfg.identity_dir();
    match &gathered.token {
        Some((_, token)) => {
            let mut o = EnrollOptions::new(&cfg.collector.endpoint, token, paths.clone());
            o.server_name = cfg.collector.server_name.clone();
            o.connect_timeout = cfg.collector.connect_timeout;
            o.force = args.force_enroll;
            let enrolled = enroll(&o).await.map_err(InstallError::Enroll)?;
            let at = layout.rooted(&identity_dir);
            fsops::chown_tree(&at, service).map_err(InstallError::io(&at))?;
            changed = true;
            summary.add_note(
                format!("identity in {}", identity_dir.display()),
                if existing.identity {
                    Outcome::Updated
                } else {
                    Outcome::Created
                },
                format!(
                    "enrolled as agent {} of municipality {}, certificate valid until {}",
                    enrolled.agent_id,
                    enrolled.ibge,
                    enrolled.not_after.format("%Y-%m-%d %H:%M UTC")
                ),
            );
        }
        None => {
            let loaded = identity::load(&paths).map_err(|error| InstallError::BrokenIdentity {
                dir: layout.rooted(&identity_dir),
                error,
            })?;
            let who = loaded.info.as_ref().map_or_else(
                || "certificate".to_string(),
                |i| format!("agent {} of municipality {}", i.agent_id, i.ibge),
            );
            let until = loaded.validity.not_after();
            summary.add_note(
                format!("identity in {}", identity_dir.display()),
                Outcome::Unchanged,
                format!(
                    "{who}, certificate valid until {}",
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
            );
            if args.token.is_some() {
                summary.next.push(
                    "note: the token was not used (already enrolled); --force-enroll enrolls again with it".into(),
                );
            }
            if until < chrono::Utc::now() {
                summary.next.push(
                    "WARNING: the certificate has expired: enroll again with --force-enroll and a new --token".into(),
                );
            }
        }
    }
    let mut owned = 0;
    let mut trees = vec![state_dir.to_path_buf()];
    if outside {
        trees.push(cfg.spool_dir());
    }
    for t in trees {
        let at = layout.rooted(&t);
        owned += fsops::chown_tree(&at, service).map_err(InstallError::io(&at))?;
    }
    summary.add(
        format!("owner of everything under {}", layout::STATE_DIR),
        if owned == 0 {
            Outcome::Unchanged
        } else {
            Outcome::Repaired(format!(
                "{owned} {} given to {}",
                if owned == 1 { "entry" } else { "entries" },
                user.name
            ))
        },
    );

    // 5b. The pseudonym key: made once; re-runs, upgrades and enrolling
    // again keep it. After the owners are repaired: a kept key must
    // belong to the agent's user to be loaded.
    let key_path = crate::pseudonym_key::path(state_dir);
    let state_at = layout.rooted(state_dir);
    let (_, made) =
        crate::pseudonym_key::load_or_create(&state_at).map_err(|e| InstallError::Io {
            path: layout.rooted(&key_path),
            error: std::io::Error::other(e.to_string()),
        })?;
    summary.add(
        show(&key_path),
        if made {
            Outcome::Created
        } else {
            Outcome::Unchanged
        },
    );

    // 6. The unit and the service.
    let unit_path = layout.rooted(layout.unit());
    let mut unit_changed = false;
    if packaged {
        summary.add(layout.unit(), Outcome::Skipped("the package's".into()));
    } else {
        fsops::ensure_parents(&unit_path).map_err(InstallError::io(&unit_path))?;
        let o = fsops::ensure_file(
            &unit_path,
            unit::render(layout::BINARY, &user.name).as_bytes(),
            Owner::ROOT,
            layout::UNIT_MODE,
        )
        .map_err(InstallError::io(&unit_path))?;
        unit_changed = o.changed();
        changed |= unit_changed;
        summary.add(layout::UNIT, o);
    }
    service_steps(&layout, &args, unit_changed, changed, &mut summary)?;

    // 7. The doctor, once the started service has had a moment to fetch
    // its plan (its first heartbeat), so the plan's tables are checked too.
    let healthy = if layout.is_live() {
        if !args.no_start {
            wait_for_plan(Path::new(layout::STATE_DIR), PLAN_WAIT);
        }
        doctor(&binary, &mut summary)
    } else {
        summary.add(
            "transmissor-agent doctor",
            Outcome::Skipped("not run under --root".into()),
        );
        true
    };
    Ok(Installed { summary, healthy })
}

fn service_steps(
    layout: &Layout,
    args: &InstallArgs,
    unit_changed: bool,
    changed: bool,
    summary: &mut Summary,
) -> Result<(), InstallError> {
    let name = layout::UNIT_NAME;
    let Some(sc) = Systemctl::find(layout) else {
        summary.add(
            format!("systemctl enable {name}"),
            Outcome::Skipped(
                "systemctl not found: enable and start the service with this system's init".into(),
            ),
        );
        return Ok(());
    };
    if unit_changed && sc.running() {
        summary.add("systemctl daemon-reload", sc.live("daemon-reload", None)?);
    }
    summary.add(format!("systemctl enable {name}"), sc.enable(name)?);
    let verb = if changed { "restart" } else { "start" };
    let what = format!("systemctl {verb} {name}");
    if args.no_start {
        summary.add(what, Outcome::Skipped("--no-start".into()));
    } else if !layout.is_live() {
        summary.add(
            what,
            Outcome::Skipped("under --root: it starts at the target's boot".into()),
        );
        summary
            .next
            .push(format!("on the target system: systemctl start {name}"));
    } else if !sc.running() {
        summary.add(
            what,
            Outcome::Skipped("systemd is not running on this system".into()),
        );
    } else if !changed && sc.is_active(name) {
        summary.add(what, Outcome::Unchanged);
    } else {
        summary.add(what, sc.live(verb, Some(name))?);
        summary.next.push(format!(
            "logs: journalctl -u {name} -f    status: systemctl status {name}"
        ));
    }
    Ok(())
}

/// How long `install` waits for the started service's first plan.
const PLAN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the service has accepted a plan (`plan/current.signed`) or
/// `limit` passes (the collector may publish none yet: the doctor says so).
fn wait_for_plan(state_dir: &Path, limit: std::time::Duration) {
    let current = state_dir.join("plan").join("current.signed");
    let start = std::time::Instant::now();
    while !current.exists() && start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Runs the installed binary's `doctor`; false when it reports a problem.
fn doctor(binary: &Path, summary: &mut Summary) -> bool {
    let what = format!("transmissor-agent doctor --config {}", layout::CONFIG);
    let out = Command::new(binary)
        .args(["doctor", "--config", layout::CONFIG])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            summary.add(what, Outcome::Failed(format!("could not run it: {e}")));
            return false;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    summary
        .next
        .push(format!("{stdout}{stderr}").trim_end().to_string());
    // The doctor's exit code: 0 all passed, 1 warnings, 2 a failure.
    match out.status.code() {
        Some(0) => {
            summary.add(what, Outcome::Done);
            true
        }
        Some(1) => {
            summary.add(what, Outcome::Done);
            summary
                .next
                .push("the doctor has warnings: read them above".to_string());
            true
        }
        _ => {
            summary.next.push(format!(
                "if a database item failed, the read-only role's SQL: transmissor-agent db-role --config {} (or run it once: add --apply --admin-user postgres)",
                layout::CONFIG
            ));
            summary.add(
                what,
                Outcome::Failed(format!("{}; its report is below", out.status)),
            );
            false
        }
    }
}
