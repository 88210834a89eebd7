//! The `.deb` (`cargo xtask deb`): the install's layout and unit with the
//! binary in `/usr/bin` and the unit in `/lib/systemd/system`, built with
//! `dpkg-deb` from a staged tree (files root-owned in the archive).
//!
//! ```text
//! usr/bin/transmissor-agent                       0755
//! lib/systemd/system/transmissor-agent.service    0644  (unit::render, ExecStart=/usr/bin/…)
//! usr/share/doc/transmissor-agent/copyright       0644
//! DEBIAN/control
//! DEBIAN/postinst  user, group, /etc/transmissor, /var/lib/transmissor/{identity,plan,spool};
//!                  restarts a configured service (upgrades)
//! DEBIAN/prerm     stops and disables the service on removal
//! DEBIAN/postrm    purge: configuration, state and the user removed
//! ```
//! The maintainer scripts are `installer/linux/debian/*`. Configuring and
//! enrolling stay with `transmissor-agent install` (it recognises the
//! packaged binary and leaves the binary and the unit to dpkg).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use super::command::{self, CommandError};
use super::layout;
use super::unit;

pub const POSTINST: &str = include_str!("../../../installer/linux/debian/postinst");
pub const PRERM: &str = include_str!("../../../installer/linux/debian/prerm");
pub const POSTRM: &str = include_str!("../../../installer/linux/debian/postrm");

/// The package's name.
pub const PACKAGE: &str = "transmissor-agent";
/// `Maintainer:` (dpkg requires one).
pub const MAINTAINER: &str = "transmissor maintainers <transmissor@localhost>";

#[derive(Debug, Error)]
pub enum DebError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("`dpkg-deb` not found: install dpkg (it builds the package)")]
    NoDpkgDeb,
    #[error(transparent)]
    Command(#[from] CommandError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DebError + '_ {
    move |error| DebError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Debian's name for this machine's architecture.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        other => other,
    }
}

/// `transmissor-agent_<version>_<arch>.deb`.
pub fn file_name() -> String {
    format!(
        "{PACKAGE}_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        architecture()
    )
}

/// The highest `GLIBC_2.N` symbol version the binary needs (for `Depends:`).
fn glibc_needed(binary: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_2.";
    let mut best = None;
    let mut i = 0;
    while let Some(at) = binary[i..].windows(TAG.len()).position(|w| w == TAG) {
        let start = i + at + TAG.len();
        let digits: Vec<u8> = binary[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if let Ok(minor) = String::from_utf8_lossy(&digits).parse::<u32>() {
            best = best.max(Some((2, minor)));
        }
        i = start;
    }
    best
}

/// Writes a staged file (directories 0755 and files `mode` whatever the
/// umask: the archive keeps the staged modes).
fn write(path: &Path, text: &[u8], mode: u32) -> Result<(), DebError> {
    super::fsops::ensure_parents(path).map_err(io_err(path))?;
    fs::write(path, text).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            tree_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// Builds the package from `binary` into `out_dir`; returns its path.
/// Debug information is stripped from the packaged copy when `strip` is
/// installed.
pub fn build(binary: &Path, out_dir: &Path) -> Result<PathBuf, DebError> {
    let dpkg_deb = command::find("dpkg-deb").ok_or(DebError::NoDpkgDeb)?;
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let staging = out_dir.join(format!(".staging-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    }
    fs::create_dir(&staging).map_err(io_err(&staging))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o755)).map_err(io_err(&staging))?;
    let result = stage_and_build(&dpkg_deb, binary, out_dir, &staging);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn stage_and_build(
    dpkg_deb: &Path,
    binary: &Path,
    out_dir: &Path,
    staging: &Path,
) -> Result<PathBuf, DebError> {
    let under = |p: &str| staging.join(p.trim_start_matches('/'));
    let bin = under(layout::PACKAGED_BINARY);
    write(&bin, &[], 0o755)?;
    match command::find("strip") {
        Some(strip) => {
            command::run(
                Command::new(strip)
                    .arg("--strip-debug")
                    .arg("-o")
                    .arg(&bin)
                    .arg(binary),
            )?;
        }
        None => {
            fs::copy(binary, &bin).map_err(io_err(&bin))?;
        }
    }
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).map_err(io_err(&bin))?;
    write(
        &under(layout::PACKAGED_UNIT),
        unit::render(layout::PACKAGED_BINARY, layout::DEFAULT_USER).as_bytes(),
        0o644,
    )?;
    write(
        &under(&format!("/usr/share/doc/{PACKAGE}/copyright")),
        format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: transmissor\n\nFiles: *\nLicense: {}\n",
            env!("CARGO_PKG_LICENSE")
        )
        .as_bytes(),
        0o644,
    )?;
    let installed_kib = tree_size(staging).map_err(io_err(staging))?.div_ceil(1024);
    let bytes = fs::read(&bin).map_err(io_err(&bin))?;
    let libc = glibc_needed(&bytes)
        .map(|(a, b)| format!("libc6 (>= {a}.{b}), "))
        .unwrap_or_default();
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {libc}passwd\n\
         Section: net\n\
         Priority: optional\n\
         Description: {summary}\n \
         Runs next to a municipality's e-SUS APS PEC database as a hardened\n \
         systemd service; configure and enroll it with\n \
         `transmissor-agent install --collector URL --token TOKEN --plan-key KEY`.\n",
        version = env!("CARGO_PKG_VERSION"),
        arch = architecture(),
        summary = "transmissor municipal agent (PEC extraction and upload)",
    );
    write(&staging.join("DEBIAN/control"), control.as_bytes(), 0o644)?;
    for (name, text) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
        write(&staging.join("DEBIAN").join(name), text.as_bytes(), 0o755)?;
    }
    let out = out_dir.join(file_name());
    command::run(
        Command::new(dpkg_deb)
            .args(["--root-owner-group", "--build"])
            .arg(staging)
            .arg(&out),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_version_from_symbol_versions() {
        let b = b"..GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(glibc_needed(b), Some((2, 34)));
        assert_eq!(glibc_needed(b"none"), None);
    }
}
