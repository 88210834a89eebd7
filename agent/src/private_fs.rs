//! Directories and files only the agent's user can read: the spool holds
//! extracted health records and the identity directory the private key.
//! Modes are explicit (0700 directories, 0600 files) rather than left to the
//! umask, and a directory that already exists with wider permissions is
//! tightened, with a warning. On other systems (Windows) the directories
//! inherit the ACLs of where they are created; the installer sets those.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of the directories the agent creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the data files the agent creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parent, each 0700 (an existing parent is
/// left as it is).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(dir)
}

/// Creates `dir` like [`create_dir_all`], or tightens it to 0700 when it
/// exists with permissions for its group or others.
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

/// Creates (or truncates) `path` for writing, 0600 from the start.
pub fn create_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    opts.open(path)
}
