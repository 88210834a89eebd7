//! Where the installer puts everything, with owners and modes. Paths are
//! absolute as the running system sees them; [`Layout::rooted`] places them
//! under `--root`.

use std::path::{Path, PathBuf};

/// The service's system user (and its group) unless `--user` says otherwise.
pub const DEFAULT_USER: &str = "transmissor";
/// The unit's name.
pub const UNIT_NAME: &str = "transmissor-agent.service";
/// The binary, installed by `install`.
pub const BINARY: &str = "/usr/local/bin/transmissor-agent";
/// The binary, installed by the `.deb`.
pub const PACKAGED_BINARY: &str = "/usr/bin/transmissor-agent";
/// The unit, written by `install`.
pub const UNIT: &str = "/etc/systemd/system/transmissor-agent.service";
/// The unit, shipped by the `.deb`.
pub const PACKAGED_UNIT: &str = "/lib/systemd/system/transmissor-agent.service";
/// root:USER 0750: the service reads its config through the group.
pub const CONFIG_DIR: &str = "/etc/transmissor";
/// root:USER 0640: the service cannot change its own config.
pub const CONFIG: &str = "/etc/transmissor/agent.toml";
/// USER:USER 0600: the agent refuses a password file others can read.
pub const PASSWORD: &str = "/etc/transmissor/db-password";
/// USER:USER 0700: `agent.state_dir` (identity, plan state, spool), the
/// only place the unit lets the agent write.
pub const STATE_DIR: &str = "/var/lib/transmissor";
/// dpkg's record of the package's files: its presence means the .deb is installed.
pub const DPKG_LIST: &str = "/var/lib/dpkg/info/transmissor-agent.list";

pub const BINARY_MODE: u32 = 0o755;
pub const UNIT_MODE: u32 = 0o644;
pub const CONFIG_DIR_MODE: u32 = 0o750;
pub const CONFIG_MODE: u32 = 0o640;
pub const PASSWORD_MODE: u32 = 0o600;
pub const STATE_MODE: u32 = 0o700;

/// One installation's paths.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `/`, or the directory given with `--root`.
    pub root: PathBuf,
    /// The `.deb` owns the binary and the unit.
    pub packaged: bool,
}

impl Layout {
    pub fn new(root: &Path, packaged: bool) -> Self {
        Self {
            root: root.to_path_buf(),
            packaged,
        }
    }

    /// Installing into the running system (not into a directory).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `path` (absolute on the target system) under the root.
    pub fn rooted(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.root
            .join(path.strip_prefix("/").unwrap_or(path))
            .components()
            .collect()
    }

    pub fn binary(&self) -> &'static str {
        if self.packaged {
            PACKAGED_BINARY
        } else {
            BINARY
        }
    }

    pub fn unit(&self) -> &'static str {
        if self.packaged { PACKAGED_UNIT } else { UNIT }
    }
}

/// `root` made absolute and normalised, so `/` is recognised however written.
pub fn absolute_root(root: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(root)?;
    Ok(if abs.exists() {
        abs.canonicalize()?
    } else {
        abs
    })
}

/// Whether this process is the packaged binary running on the live system.
pub fn running_from_package() -> bool {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .is_ok_and(|p| p == Path::new(PACKAGED_BINARY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooted_paths() {
        let l = Layout::new(Path::new("/tmp/r"), false);
        assert_eq!(
            l.rooted(CONFIG),
            PathBuf::from("/tmp/r/etc/transmissor/agent.toml")
        );
        assert!(!l.is_live());
        let live = Layout::new(Path::new("/"), true);
        assert_eq!(live.rooted(STATE_DIR), PathBuf::from(STATE_DIR));
        assert!(live.is_live());
        assert_eq!(live.binary(), PACKAGED_BINARY);
    }
}
