//! The service checks: the agent is installed as a service, starts at boot
//! and runs (systemd on Linux, the service manager on Windows); on Linux,
//! systemd is new enough for the unit's sandboxing directives, which older
//! versions ignore without a word.

use std::process::Command;

use super::finding::Finding;
use super::item::{Check, Item};

/// The oldest systemd that knows every directive of the installed unit
/// (`ProtectProc=`, 247, is the newest of them).
pub const MIN_SYSTEMD: u32 = 247;

/// The service's name (systemd unit without `.service`; Windows service).
pub const SERVICE_NAME: &str = "transmissor-agent";

/// The service and, on Linux, systemd's version.
pub fn check(name: &str) -> Vec<Item> {
    #[cfg(windows)]
    {
        vec![
            Item::new(Check::Service, windows_service(name)),
            Item::new(Check::Systemd, Finding::NotApplicable),
        ]
    }
    #[cfg(not(windows))]
    {
        vec![
            Item::new(Check::Service, systemd_service(name)),
            Item::new(Check::Systemd, systemd_version()),
        ]
    }
}

/// How to look at the service, for the fixes.
pub fn how_to_see(name: &str) -> String {
    if cfg!(windows) {
        format!("Get-Service {name}")
    } else {
        format!("systemctl status {name}")
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(not(windows))]
fn systemd_service(name: &str) -> Finding {
    // systemd is the init only when this directory exists (sd_booted(3)).
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Finding::NoServiceManager;
    }
    let unit = format!("{name}.service");
    let shown = match run(
        "systemctl",
        &[
            "show",
            "--property=LoadState,UnitFileState,ActiveState,SubState",
            &unit,
        ],
    ) {
        Ok(s) => s,
        Err(_) => return Finding::NoServiceManager,
    };
    unit_state(name, &shown)
}

/// Reads `systemctl show` output.
#[cfg_attr(windows, allow(dead_code))]
fn unit_state(name: &str, shown: &str) -> Finding {
    let prop = |p: &str| {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(p)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    let name = name.to_string();
    if prop("LoadState") != "loaded" {
        return Finding::ServiceNotInstalled { name };
    }
    if !matches!(
        prop("UnitFileState").as_str(),
        "enabled" | "enabled-runtime"
    ) {
        return Finding::ServiceDisabled { name };
    }
    if prop("ActiveState") != "active" {
        return Finding::ServiceNotRunning {
            name,
            state: format!("{}/{}", prop("ActiveState"), prop("SubState")),
        };
    }
    Finding::ServiceRunning { name }
}

#[cfg(not(windows))]
fn systemd_version() -> Finding {
    match run("systemctl", &["--version"]) {
        Ok(out) => match parse_systemd_version(&out) {
            Some(version) if version >= MIN_SYSTEMD => Finding::SystemdOk {
                version,
                min: MIN_SYSTEMD,
            },
            Some(version) => Finding::SystemdOld {
                version,
                min: MIN_SYSTEMD,
            },
            None => Finding::SystemdUnknown {
                error: out.lines().next().unwrap_or("").to_string(),
            },
        },
        Err(error) => Finding::SystemdUnknown { error },
    }
}

/// `systemd 252 (252.38-1~deb12u1)` → 252.
#[cfg_attr(windows, allow(dead_code))]
fn parse_systemd_version(out: &str) -> Option<u32> {
    out.lines()
        .next()?
        .strip_prefix("systemd ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `sc.exe query` and `sc.exe qc`: their numeric states do not depend on
/// the system's language.
#[cfg(windows)]
fn windows_service(name: &str) -> Finding {
    let name_s = name.to_string();
    let Ok(query) = run("sc.exe", &["query", name]) else {
        return Finding::NoServiceManager;
    };
    let Some(state) = sc_field(&query, "STATE") else {
        return Finding::ServiceNotInstalled { name: name_s };
    };
    let config = run("sc.exe", &["qc", name]).unwrap_or_default();
    // 2: AUTO_START (with or without delayed start).
    if sc_field(&config, "START_TYPE").is_some_and(|t| !t.starts_with('2')) {
        return Finding::ServiceDisabled { name: name_s };
    }
    // 4: RUNNING.
    if !state.starts_with('4') {
        return Finding::ServiceNotRunning {
            name: name_s,
            state,
        };
    }
    Finding::ServiceRunning { name: name_s }
}

/// `        STATE              : 4  RUNNING` → `4  RUNNING`.
#[cfg(windows)]
fn sc_field(out: &str, field: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == field).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_versions() {
        assert_eq!(
            parse_systemd_version("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT"),
            Some(252)
        );
        assert_eq!(parse_systemd_version("systemd 219\n"), Some(219));
        assert_eq!(parse_systemd_version("bash: systemctl"), None);
    }

    #[test]
    fn unit_states() {
        let show = |load: &str, file: &str, active: &str| {
            format!("LoadState={load}\nUnitFileState={file}\nActiveState={active}\nSubState=dead\n")
        };
        assert!(matches!(
            unit_state("a", &show("not-found", "", "inactive")),
            Finding::ServiceNotInstalled { .. }
        ));
        assert!(matches!(
            unit_state("a", &show("loaded", "disabled", "inactive")),
            Finding::ServiceDisabled { .. }
        ));
        match unit_state("a", &show("loaded", "enabled", "failed")) {
            Finding::ServiceNotRunning { state, .. } => assert_eq!(state, "failed/dead"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            unit_state("a", &show("loaded", "enabled", "active")),
            Finding::ServiceRunning { .. }
        ));
    }
}
