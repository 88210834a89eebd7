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
//!
//! Root acting inside a directory the agent's user can write (the state
//! directory: `doctor` and `install` run as root) must not follow what that
//! user planted there: a symbolic link named like the file root is about
//! to write would otherwise make root create, truncate or `chown` any file
//! on the machine. So files are never opened through a final symbolic link
//! (`O_NOFOLLOW`), [`replace_file_in`] works relative to the directory's
//! descriptor with a fresh file (`O_EXCL`) and changes the owner on the
//! descriptor, and [`open_regular`] refuses anything but a plain file.

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

/// Creates (or truncates) `path` for writing, 0600 from the start; a
/// symbolic link at `path` is refused, not followed. On Windows: with the
/// inherited ACL.
pub fn create_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits());
    }
    opts.open(path)
}

/// Opens `path` for reading only if it is a plain file reached without a
/// final symbolic link (a FIFO or device is refused without blocking on
/// it); returns it with its metadata, taken from the open file.
pub fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use nix::fcntl::OFlag;
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits());
    }
    let f = opts.open(path).map_err(|e| refused_link(e, path))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain file", path.display()),
        ));
    }
    Ok((f, meta))
}

/// `ELOOP` from `O_NOFOLLOW` said plainly.
fn refused_link(e: io::Error, path: &Path) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; refusing to follow it",
                path.display()
            ),
        );
    }
    let _ = path;
    e
}

/// Replaces `dir/name` with `bytes`, whole (a fresh temporary file in
/// `dir`, then a rename), 0600 and owned like `dir` itself, safely when
/// the caller is root and `dir` belongs to another user: everything is
/// done relative to `dir`'s descriptor, the temporary file is created new
/// (`O_EXCL`, so never through a planted link or over a planted file; a
/// stale one is unlinked first, which removes a link, not its target), its
/// owner and mode are set on the descriptor, and the rename replaces
/// whatever `name` was (a link included) without following it. `dir`
/// itself is taken as given (its path is the configuration's).
#[cfg(unix)]
pub fn replace_file_in(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use nix::fcntl::{OFlag, openat, renameat};
    use nix::sys::stat::{Mode, fchmod, fstat};
    use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};
    use std::io::Write;

    let dir_fd = File::open(dir)?;
    let owner = fstat(&dir_fd)?;
    if owner.st_mode & libc_dir_bit() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let tmp = format!("{name}.tmp");
    match unlinkat(&dir_fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = openat(
        &dir_fd,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(FILE_MODE),
    )?;
    fchown(
        &fd,
        Some(Uid::from_raw(owner.st_uid)),
        Some(Gid::from_raw(owner.st_gid)),
    )?;
    fchmod(&fd, Mode::from_bits_truncate(FILE_MODE))?;
    let mut f = File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    renameat(&dir_fd, tmp.as_str(), &dir_fd, name)?;
    Ok(())
}

/// Writes, syncs and removes a small file `name` in `dir`, to prove the
/// directory takes writes, safely when the caller is root and `dir` sits in
/// a directory another user controls: `dir` is opened without following a
/// final link (a planted link is refused, naming it), and the file is
/// created new relative to that descriptor and removed through it.
#[cfg(unix)]
pub fn probe_write_in(dir: &Path, name: &str) -> io::Result<()> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    use nix::unistd::{UnlinkatFlags, unlinkat};
    use std::io::Write;

    let dir_fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        // With O_DIRECTORY a final link gives ENOTDIR, not ELOOP.
        if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            refused_link(io::Error::from(nix::errno::Errno::ELOOP), dir)
        } else {
            io::Error::from(e)
        }
    })?;
    let fd = openat(
        &dir_fd,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(FILE_MODE),
    )?;
    let mut f = File::from(fd);
    let written = f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all());
    drop(f);
    let removed = unlinkat(&dir_fd, name, UnlinkatFlags::NoRemoveDir);
    written?;
    removed.map_err(io::Error::from)
}

/// Writes, syncs and removes a small file `name` in `dir` (Windows: the
/// installer's ACLs protect the directory).
#[cfg(not(unix))]
pub fn probe_write_in(dir: &Path, name: &str) -> io::Result<()> {
    use std::io::Write;
    let path = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(&[0u8; 4096])?;
        f.sync_all()
    })();
    let _ = fs::remove_file(&path);
    result
}

/// `S_IFDIR`, the directory bit of `st_mode`.
#[cfg(unix)]
fn libc_dir_bit() -> u32 {
    nix::sys::stat::SFlag::S_IFDIR.bits()
}

/// Replaces `dir/name` with `bytes`, whole (temporary file, rename). On
/// Windows the directory's ACL (the installer's) is what protects it.
#[cfg(not(unix))]
pub fn replace_file_in(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = create_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)
}
