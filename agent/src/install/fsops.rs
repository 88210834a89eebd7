//! Idempotent file operations: each brings one path to a wanted state
//! (content, owner, mode) and says what it had to do. Content is replaced
//! atomically (a temporary file in the same directory, fsynced, renamed over
//! the old one); modes are set explicitly, whatever the umask; symbolic
//! links are never followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::summary::Outcome;

/// A numeric owner and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// Creates `path` (one level: its parent must exist) or puts its owner and
/// mode back.
pub fn ensure_dir(path: &Path, owner: Owner, mode: u32) -> io::Result<Outcome> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fix_meta(path, owner, mode),
        Ok(_) => Err(io::Error::other("exists and is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut b = fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut b, mode);
            b.create(path)?;
            fix_meta(path, owner, mode)?;
            Ok(Outcome::Created)
        }
        Err(e) => Err(e),
    }
}

/// Creates missing parent directories of `path` (root's, 0755 whatever the
/// umask), as a package manager would; existing ones are left alone.
pub fn ensure_parents(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    for d in missing.into_iter().rev() {
        fs::create_dir(d)?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Puts the owner and mode of an existing path back; `Repaired` says what
/// was wrong. Safe when the path's directory belongs to another user (the
/// state directory is the agent's): the entry is opened once without
/// following a link (`O_PATH|O_NOFOLLOW`), checked and changed through that
/// descriptor, so a link or another file swapped in meanwhile is never
/// what changes. Only a directory or a plain file with a single hard link
/// is changed; anything else is refused.
pub fn fix_meta(path: &Path, owner: Owner, mode: u32) -> io::Result<Outcome> {
    use nix::fcntl::{AtFlags, OFlag, open};
    use nix::sys::stat::{Mode, SFlag, fstat};
    use nix::unistd::{Gid, Uid, fchownat};
    use std::os::fd::AsRawFd;

    let fd = open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| at(e, path))?;
    let st = fstat(&fd).map_err(|e| at(e, path))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: {why}; refusing to change its owner or mode",
                path.display()
            ),
        ))
    };
    if kind != SFlag::S_IFDIR && kind != SFlag::S_IFREG {
        return refuse("not a directory or a plain file (a link?)");
    }
    if kind == SFlag::S_IFREG && st.st_nlink > 1 {
        return refuse("a file with more than one hard link");
    }
    let mut wrong = Vec::new();
    if (st.st_uid, st.st_gid) != (owner.uid, owner.gid) {
        fchownat(
            &fd,
            "",
            Some(Uid::from_raw(owner.uid)),
            Some(Gid::from_raw(owner.gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| at(e, path))?;
        wrong.push(format!(
            "owner {}:{} → {}:{}",
            st.st_uid, st.st_gid, owner.uid, owner.gid
        ));
    }
    let had = st.st_mode & 0o7777;
    if had != mode {
        // chmod has no O_PATH form; the descriptor's /proc entry names
        // exactly the inode opened.
        fs::set_permissions(
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            fs::Permissions::from_mode(mode),
        )?;
        wrong.push(format!("mode {had:o} → {mode:o}"));
    }
    Ok(if wrong.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Repaired(wrong.join(", "))
    })
}

/// Gives `path` this content, owner and mode.
pub fn ensure_file(path: &Path, contents: &[u8], owner: Owner, mode: u32) -> io::Result<Outcome> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && fs::read(path)? == contents => fix_meta(path, owner, mode),
        Ok(_) => {
            write_atomic(path, owner, mode, |f| f.write_all(contents))?;
            Ok(Outcome::Updated)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomic(path, owner, mode, |f| f.write_all(contents))?;
            Ok(Outcome::Created)
        }
        Err(e) => Err(e),
    }
}

/// Gives `dst` the content of `src` (e.g. the running binary), this owner
/// and mode.
pub fn ensure_copy(src: &Path, dst: &Path, owner: Owner, mode: u32) -> io::Result<Outcome> {
    let copy = |f: &mut File| io::copy(&mut File::open(src)?, f).map(drop);
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_file() && same_contents(src, dst)? => fix_meta(dst, owner, mode),
        Ok(_) => {
            write_atomic(dst, owner, mode, copy)?;
            Ok(Outcome::Updated)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomic(dst, owner, mode, copy)?;
            Ok(Outcome::Created)
        }
        Err(e) => Err(e),
    }
}

fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.install-tmp"))
}

/// Writes a new file next to `path` (mode `mode` from the start, owned as
/// asked), fsyncs it, renames it over `path` and fsyncs the directory.
pub fn write_atomic(
    path: &Path,
    owner: Owner,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&tmp)?;
        fill(&mut f)?;
        std::os::unix::fs::fchown(&f, Some(owner.uid), Some(owner.gid))?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Gives every entry under `dir` (and `dir`) this owner, without following
/// symbolic links; returns how many had another. `dir` belongs to the
/// agent's user, who may swap entries while this runs as root, so every
/// step is taken on a descriptor: directories are opened relative to their
/// parent's descriptor with `O_NOFOLLOW` (a directory replaced by a link
/// fails to open rather than being entered) and listed through that
/// descriptor; other entries are opened as paths (`O_PATH|O_NOFOLLOW`) and
/// changed on that descriptor, a link itself and never its target. A plain
/// file with more than one hard link is refused: it may be another file
/// of the machine linked in.
pub fn chown_tree(dir: &Path, owner: Owner) -> io::Result<usize> {
    use nix::fcntl::open;
    use nix::sys::stat::Mode;
    let fd = open(dir, dir_flags(), Mode::empty()).map_err(|e| at(e, dir))?;
    chown_dir(fd, dir, owner)
}

fn dir_flags() -> nix::fcntl::OFlag {
    use nix::fcntl::OFlag;
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn at(e: nix::errno::Errno, path: &Path) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{}: {e}", path.display()),
    )
}

fn chown_dir(fd: std::os::fd::OwnedFd, path: &Path, owner: Owner) -> io::Result<usize> {
    use nix::fcntl::AtFlags;
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, SFlag, fstat};
    use nix::unistd::{Gid, Uid, fchown, fchownat};
    use std::os::fd::AsRawFd;

    let ids = (
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
    );
    let mut fixed = 0;
    let st = fstat(&fd).map_err(|e| at(e, path))?;
    if (st.st_uid, st.st_gid) != (owner.uid, owner.gid) {
        fchown(&fd, ids.0, ids.1).map_err(|e| at(e, path))?;
        fixed += 1;
    }
    // The directory this descriptor holds, whatever its path now names.
    let listing = fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    for entry in listing {
        let name = entry?.file_name();
        let child = path.join(&name);
        let sub = openat(&fd, name.as_os_str(), dir_flags(), Mode::empty());
        match sub {
            Ok(sub) => {
                fixed += chown_dir(sub, &child, owner)?;
                continue;
            }
            // Not a directory (or a link): changed below, on its own descriptor.
            Err(nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP) => {}
            Err(e) => return Err(at(e, &child)),
        }
        let node = openat(
            &fd,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| at(e, &child))?;
        let st = fstat(&node).map_err(|e| at(e, &child))?;
        if (st.st_uid, st.st_gid) == (owner.uid, owner.gid) {
            continue;
        }
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFREG && st.st_nlink > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has {} hard links; refusing to change its owner (it may be another file of this machine)",
                    child.display(),
                    st.st_nlink
                ),
            ));
        }
        fchownat(&node, "", ids.0, ids.1, AtFlags::AT_EMPTY_PATH).map_err(|e| at(e, &child))?;
        fixed += 1;
    }
    Ok(fixed)
}

/// Removes a file, link or whole directory.
pub fn remove(path: &Path) -> io::Result<Outcome> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map(|()| Outcome::Removed),
        Ok(_) => fs::remove_file(path).map(|()| Outcome::Removed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::Absent),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn files_created_unchanged_repaired_updated() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a");
        assert_eq!(
            ensure_file(&f, b"x", me(), 0o640).unwrap(),
            Outcome::Created
        );
        assert_eq!(mode(&f), 0o640);
        assert_eq!(
            ensure_file(&f, b"x", me(), 0o640).unwrap(),
            Outcome::Unchanged
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            ensure_file(&f, b"x", me(), 0o640).unwrap(),
            Outcome::Repaired("mode 666 → 640".into())
        );
        assert_eq!(
            ensure_file(&f, b"y", me(), 0o600).unwrap(),
            Outcome::Updated
        );
        assert_eq!((fs::read(&f).unwrap(), mode(&f)), (b"y".to_vec(), 0o600));
        assert!(!temp_path(&f).exists());

        let c = d.path().join("c");
        assert_eq!(ensure_copy(&f, &c, me(), 0o755).unwrap(), Outcome::Created);
        assert_eq!(
            ensure_copy(&f, &c, me(), 0o755).unwrap(),
            Outcome::Unchanged
        );
        fs::write(&f, b"z").unwrap();
        assert_eq!(ensure_copy(&f, &c, me(), 0o755).unwrap(), Outcome::Updated);
        assert_eq!((fs::read(&c).unwrap(), mode(&c)), (b"z".to_vec(), 0o755));
    }

    #[test]
    fn dirs_and_removal() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("s");
        assert_eq!(ensure_dir(&s, me(), 0o700).unwrap(), Outcome::Created);
        assert_eq!(mode(&s), 0o700);
        assert_eq!(ensure_dir(&s, me(), 0o700).unwrap(), Outcome::Unchanged);
        fs::write(s.join("f"), b"").unwrap();
        assert_eq!(chown_tree(&s, me()).unwrap(), 0);
        assert_eq!(remove(&s).unwrap(), Outcome::Removed);
        assert_eq!(remove(&s).unwrap(), Outcome::Absent);
        let file = d.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(ensure_dir(&file, me(), 0o700).is_err());
        let deep = d.path().join("a/b/c");
        ensure_parents(&deep).unwrap();
        assert_eq!(mode(&d.path().join("a")), 0o755);
        assert_eq!(mode(&d.path().join("a/b")), 0o755);
        assert!(!deep.exists());
    }
}
