//! Directories and files only the agent's user can read: the spool holds
//! extracted health records and the identity directory the private key.
//! Modes are explicit (0700 directories, 0600 files) rather than left to the
//! umask, and a directory that already exists with wider permissions is
//! tightened, with a warning.
//!
//! On Windows there are no modes: what the agent creates inherits the ACL of
//! the directory it is created in, and `installer/windows/install.ps1` sets
//! those ACLs on the data directory (`C:\ProgramData\transmissor`: its
//! inheritance from `ProgramData` removed, full control for SYSTEM,
//! Administrators and `NT SERVICE\transmissor-agent` only) and narrows the
//! password file further. These functions then create the directories and
//! files with that inherited ACL, and [`ensure_private_dir`] checks nothing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of the directories the agent creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the data files the agent creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parent, each 0700 (an existing parent is
/// left as it is). On Windows: with the inherited ACL.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(dir)
}

/// Creates `dir` like [`create_dir_all`], or tightens it to 0700 when it
/// exists with permissions for its group or others. On Windows: only
/// creates it (the installer's ACLs apply).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
        if mode != DIR_MODE {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "directory was open to other users; tightening it to 700"
            );
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
        }
    }
    Ok(())
}

/// Creates (or truncates) `path` for writing, 0600 from the start. On
/// Windows: with the inherited ACL.
pub fn create_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    opts.open(path)
}
